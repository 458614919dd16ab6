import Foundation
import KithCRDT

/// jCard (RFC 7095): vCard as JSON, `["vcard", [[name, {params}, type, value…], …]]` or an
/// array of those. Each property is turned back into its vCard content line and read by the
/// vCard reader, so both formats keep and drop exactly the same things.
public enum JCard {
    /// True when `data` looks like jCard: JSON starting with `[` whose first string is "vcard".
    public static func looksLike(_ data: [UInt8]) -> Bool {
        let head = data.prefix(256).filter { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
        return head.starts(with: Array("[\"vcard\"".utf8)) || head.starts(with: Array("[[\"vcard\"".utf8))
    }

    public static func parse(_ data: [UInt8]) -> ImportBatch {
        var batch = ImportBatch()
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(data))
        } catch {
            batch.issues.append(ImportIssue(origin: "file", reason: "is not valid JSON (jCard): \(error.localizedDescription)"))
            return batch
        }
        let cards: [Any]
        if let a = json as? [Any], a.first as? String == "vcard" { cards = [a] } else if let a = json as? [Any] { cards = a } else {
            batch.issues.append(ImportIssue(origin: "file", reason: "is JSON but not jCard (RFC 7095: [\"vcard\", [properties]])"))
            return batch
        }
        var text = ""
        var bad: [ImportIssue] = []
        for (n, card) in cards.enumerated() {
            guard let c = card as? [Any], c.count == 2, c[0] as? String == "vcard", let props = c[1] as? [Any] else {
                bad.append(ImportIssue(origin: "card \(n + 1)", reason: "is not [\"vcard\", [properties]]"))
                continue
            }
            text += "BEGIN:VCARD\r\n"
            for p in props {
                if let line = contentLine(p) { text += line + "\r\n" }
            }
            text += "END:VCARD\r\n"
        }
        batch = VCard.parse(Array(text.utf8))
        batch.issues = bad + batch.issues
        batch.format = "jcard"
        return batch
    }

    /// `[name, {params}, type, value…]` → `GROUP.NAME;PARAM=v:value`; nil when malformed.
    static func contentLine(_ p: Any) -> String? {
        guard let a = p as? [Any], a.count >= 4, let name = a[0] as? String, let params = a[1] as? [String: Any] else { return nil }
        var head = name.uppercased()
        if let g = params["group"] as? String { head = g + "." + head }
        for (k, v) in params.sorted(by: { $0.key < $1.key }) where k != "group" {
            let values = (v as? [Any] ?? [v]).map { "\($0)" }.map(VCard.paramValue)
            head += ";" + k.uppercased() + "=" + values.joined(separator: ",")
        }
        func text(_ v: Any) -> String {
            if let s = v as? String { return VCard.escape(s) }
            if let list = v as? [Any] { return list.map { e in (e as? [Any])?.map { VCard.escape("\($0)") }.joined(separator: ",") ?? text(e) }.joined(separator: ";") }
            return VCard.escape("\(v)")
        }
        let values = a[3...].map(text)
        return head + ":" + values.joined(separator: ",")
    }
}
