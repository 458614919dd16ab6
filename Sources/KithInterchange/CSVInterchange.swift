import CSV
import Foundation
import KithCRDT

/// CSV with a header row: common column names are recognised automatically (Google, Outlook,
/// Apple and spreadsheet exports), `--map "Column=field"` handles the rest.
public enum CSVInterchange {
    /// What a column can hold.
    public enum Target: Hashable, Sendable {
        case id
        case field(Field)
        case phones, emails, tags
    }

    /// Header names (lowercased, without spaces, dashes, underscores and dots) → target.
    static let known: [String: Target] = {
        var m: [String: Target] = [:]
        func add(_ names: [String], _ t: Target) { for n in names { m[n] = t } }
        add(["id", "uid", "kithid", "contactid"], .id)
        add(["givenname", "firstname", "first", "given", "forename", "prenom", "prénom"], .field(.givenName))
        add(["familyname", "lastname", "last", "surname", "family", "nom"], .field(.familyName))
        add(["displayname", "name", "fullname", "fn"], .field(.displayName))
        add(["phone", "phones", "phonenumber", "mobile", "mobilephone", "cell", "cellphone", "telephone", "tel", "homephone",
             "workphone", "primaryphone", "phone1value", "phone2value", "phone3value"], .phones)
        add(["email", "emails", "emailaddress", "mail", "email1value", "email2value", "email3value", "emailaddress1",
             "email2address", "e-mail", "primaryemail"], .emails)
        add(["address", "street", "streetaddress", "address1", "homestreet", "addressline1", "address1street"], .field(.address))
        add(["city", "town", "locality", "homecity", "address1city"], .field(.city))
        add(["postalcode", "postcode", "zip", "zipcode", "homepostalcode", "address1postalcode"], .field(.postalCode))
        add(["tags", "tag", "labels", "categories", "groups", "groupmembership"], .tags)
        add(["notes", "note", "comments", "comment"], .field(.notes))
        add(["relationship", "howknown", "howdoyouknowthem"], .field(.relationship))
        add(["support", "supportlevel"], .field(.support))
        add(["voterid", "voterfileid", "voter"], .field(.voterFileID))
        add(["consent"], .field(.consent))
        return m
    }()

    static func normalizeHeader(_ s: String) -> String {
        String(s.lowercased().filter { !" -_.\t".contains($0) })
    }

    /// Parses a `--map` target name: a field name, `phones`/`phone`, `emails`/`email`, `tags`, `id`.
    public static func target(named name: String) -> Target? {
        switch name.lowercased() {
        case "id", "uid": .id
        case "phone", "phones": .phones
        case "email", "emails": .emails
        case "tag", "tags": .tags
        default: Field(name: name.lowercased()).map { .field($0) }
        }
    }

    /// Parses CSV text. `mapping` overrides header recognition (header as written → target).
    public static func parse(_ data: [UInt8], mapping: [String: Target] = [:]) -> ImportBatch {
        var batch = ImportBatch()
        var bytes = data[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            batch.issues.append(ImportIssue(origin: "file", reason: "is not valid UTF-8 (save it as UTF-8 CSV)"))
            return batch
        }
        let reader: CSVReader
        do {
            reader = try CSVReader(string: text, hasHeaderRow: true)
        } catch {
            batch.issues.append(ImportIssue(origin: "file", reason: "cannot read CSV: \(error)"))
            return batch
        }
        guard let header = reader.headerRow, !header.isEmpty else {
            batch.issues.append(ImportIssue(origin: "file", reason: "has no header row"))
            return batch
        }
        let lowerMapping = Dictionary(mapping.map { (normalizeHeader($0.key), $0.value) }, uniquingKeysWith: { a, _ in a })
        var targets: [Target?] = []
        var unmapped: [String] = []
        for h in header {
            let n = normalizeHeader(h)
            if let t = lowerMapping[n] ?? known[n] {
                targets.append(t)
            } else {
                targets.append(nil)
                if !h.isEmpty { unmapped.append(h) }
            }
        }
        for m in mapping.keys where !header.contains(where: { normalizeHeader($0) == normalizeHeader(m) }) {
            batch.notices.append("--map names column '\(m)', which the header does not have")
        }
        if !unmapped.isEmpty {
            batch.notices.append("ignored columns: \(unmapped.joined(separator: ", ")) (use --map \"Column=field\" to import them)")
        }
        if !targets.contains(where: { $0 != nil }) {
            batch.issues.append(ImportIssue(origin: "header", reason: "no column is recognised; use --map \"Column=field\""))
            return batch
        }
        var row = 0
        while let values = reader.next() {
            row += 1
            let origin = "row \(row)"
            if values.allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) { continue }
            guard values.count == header.count else {
                batch.issues.append(ImportIssue(origin: origin, reason: "has \(values.count) columns, the header has \(header.count)"))
                continue
            }
            var c = ImportedContact(origin: origin)
            for (i, v) in values.enumerated() {
                let value = v.trimmingCharacters(in: .whitespacesAndNewlines)
                guard let t = targets[i], !value.isEmpty else { continue }
                switch t {
                case .id: c.uid = value
                case let .field(f):
                    if f == .notes, let prev = c.fields[.notes] { c.fields[.notes] = prev + "\n" + v } else { c.fields[f] = f == .notes ? v : value }
                case .phones: c.phones += splitMulti(value).map { ($0, nil) }
                case .emails: c.emails += splitMulti(value).map { ($0, nil) }
                case .tags: c.tags += value.split(whereSeparator: { $0 == ";" || $0 == "," }).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                }
            }
            batch.contacts.append(c)
        }
        if let e = reader.error {
            batch.issues.append(ImportIssue(origin: "row \(row + 1)", reason: "CSV syntax error: \(e)"))
        }
        return batch
    }

    /// Several phones or emails in one cell, separated by ";" or " ::: " (Google's export).
    static func splitMulti(_ s: String) -> [String] {
        s.components(separatedBy: " ::: ").flatMap { $0.split(separator: ";") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    public static let exportColumns = ["id", "given_name", "family_name", "display_name", "phones", "emails", "address", "city",
                                       "postal_code", "tags", "notes", "relationship", "support", "voter_file_id", "consent"]

    /// CSV with Kith's own header; phones and emails as typed (raw input when recorded), joined by "; ".
    public static func write(_ contacts: [ContactView]) -> String {
        let stream = OutputStream(toMemory: ())
        let writer = try! CSVWriter(stream: stream)
        try! writer.write(row: exportColumns)
        for c in contacts {
            let phones = c.values(.phones).map { $0.payload.isEmpty ? $0.key : $0.payload }.joined(separator: "; ")
            let emails = c.values(.emails).map { $0.payload.isEmpty ? $0.key : $0.payload }.joined(separator: "; ")
            let row = [c.id.description, c[.givenName] ?? "", c[.familyName] ?? "", c[.displayName] ?? "", phones, emails,
                       c[.address] ?? "", c[.city] ?? "", c[.postalCode] ?? "", c.tags.joined(separator: "; "), c[.notes] ?? "",
                       c[.relationship] ?? "", c[.support] ?? "", c[.voterFileID] ?? "", c[.consent] ?? ""]
            // Bytes, not Characters: "," followed by a combining mark is one Character, and was
            // written unquoted (found by Fuzz/ target csv: the export re-imported with an extra column).
            try! writer.write(row: row, quotedAtIndex: { i in row[i].utf8.contains(where: { $0 == 0x2C || $0 == 0x22 || $0 == 0x0A || $0 == 0x0D }) })
        }
        writer.stream.close()
        let data = stream.property(forKey: .dataWrittenToMemoryStreamKey) as? Data ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
