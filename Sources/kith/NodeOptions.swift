import ArgumentParser
import Foundation
import KithCRDT
import KithCrypto
import KithInterchange
import KithNode
import KithStore

/// Options shared by every command that opens the node's contacts.
struct NodeOptions: ParsableArguments {
    @OptionGroup var data: DataDirOption

    @Option(name: .customLong("passphrase-file"), help: "Passphrase for a protected key ring (default: $KITH_PASSPHRASE_FILE).")
    var passphraseFile: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func open() throws -> any ContactBackend {
        try failing {
            // A running kithd holds the store: go through its control socket.
            do {
                if let daemon = try DaemonBackend(directory: data.directory) { return daemon }
            } catch {
                throw CLIFailure(message: "kithd is running but its control socket failed: \(error)")
            }
            let file = passphraseFile ?? ProcessInfo.processInfo.environment["KITH_PASSPHRASE_FILE"]
            let pass = try file.map { try NodeIdentity.readPassphrase(file: $0) }
            return try NodeAccess.openStore(data.directory, passphrase: pass)
        }
    }
}

/// The calling code used to normalize national phone numbers: --default-country, else
/// $KITH_DEFAULT_CALLING_CODE, else none (numbers without + or 00 are kept as digits).
struct PhoneOptions: ParsableArguments {
    @Option(name: .customLong("default-country"), help: "Calling code for national numbers, e.g. 1, 44, 33 (default: $KITH_DEFAULT_CALLING_CODE).")
    var defaultCountry: String?

    var callingCode: String? {
        let c = defaultCountry ?? ProcessInfo.processInfo.environment["KITH_DEFAULT_CALLING_CODE"]
        return c.map { $0.hasPrefix("+") ? String($0.dropFirst()) : $0 }
    }
}

extension ContactBackend {
    func commitOne(_ edits: [ContactEdit]) throws {
        _ = try failing { try commit(batches: [edits]) }
    }

    func lookup(_ ref: String) throws -> ContactID {
        try failing { try resolve(ref) }
    }
}

// MARK: Output

func contactJSON(_ c: ContactView) -> [String: Any] {
    var o: [String: Any] = ["id": c.id.description]
    for (f, v) in c.fields { o[f.name] = v }
    o["phones"] = c.values(.phones).map { ["number": $0.key, "raw": $0.payload.isEmpty ? $0.key : $0.payload] }
    o["emails"] = c.values(.emails).map { ["address": $0.key, "raw": $0.payload.isEmpty ? $0.key : $0.payload] }
    o["tags"] = c.tags
    o["knows"] = c.values(.knows).map { ["member": $0.key, "strength": Int($0.payload) ?? 0] }
    o["links"] = c.values(.links).map(\.key)
    o["conversations"] = c.log.map { ["date": Day.format($0.day), "channel": $0.channel.description, "outcome": $0.outcome, "note": $0.note] }
    return o
}

func printJSON(_ object: Any) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

func displayName(_ c: ContactView) -> String {
    if let d = c[.displayName] { return d }
    let n = [c[.givenName], c[.familyName]].compactMap { $0 }.joined(separator: " ")
    return n.isEmpty ? (c.emails.first ?? c.phones.first ?? "(no name)") : n
}

/// A plain table: short id, name, first phone, first email, tags.
func printTable(_ contacts: [ContactView]) {
    let rows = contacts.map { c in
        [String(c.id.description.prefix(8)), displayName(c), c.phones.first ?? "", c.emails.first ?? "", c.tags.joined(separator: ",")]
    }
    let header = ["ID", "NAME", "PHONE", "EMAIL", "TAGS"]
    var widths = header.map(\.count)
    for r in rows { for (i, v) in r.enumerated() { widths[i] = min(max(widths[i], v.count), 40) } }
    func fmt(_ r: [String]) -> String {
        r.enumerated().map { i, v in
            let cut = v.count > 40 ? String(v.prefix(39)) + "…" : v
            return i == r.count - 1 ? cut : cut.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    print(fmt(header))
    for r in rows { print(fmt(r)) }
}

func printContact(_ c: ContactView) {
    print("id            \(c.id)")
    print("name          \(displayName(c))")
    for f in Field.allCases where f != .displayName {
        if let v = c[f] { print(f.name.padding(toLength: 14, withPad: " ", startingAt: 0) + v.replacingOccurrences(of: "\n", with: "\n              ")) }
    }
    for p in c.values(.phones) { print("phone         \(p.key)" + (p.payload.isEmpty ? "" : "  (\(p.payload))")) }
    for e in c.values(.emails) { print("email         \(e.key)") }
    if !c.tags.isEmpty { print("tags          \(c.tags.joined(separator: ", "))") }
    for k in c.values(.knows) { print("known by      \(k.key) (strength \(k.payload))") }
    for l in c.values(.links) { print("same as       \(l.key)") }
    for e in c.log {
        print("conversation  \(Day.format(e.day)) \(e.channel): \(e.outcome)" + (e.note.isEmpty ? "" : " — \(e.note)"))
    }
}

func today() -> UInt32 { UInt32(Date().timeIntervalSince1970 / 86_400) }

/// The conversation entry of `log-conversation` options, or exits with a clear message.
func conversationEntry(channel: String, outcome: String, note: String, date: String?) -> ConversationEntry {
    guard let ch = Channel(name: channel) else { fail("--channel must be door, phone, text, in-person or other") }
    var day = today()
    if let date {
        guard let d = Day.parse(date) else { fail("--date must be yyyy-mm-dd") }
        day = d
    }
    return ConversationEntry(day: day, channel: ch, outcome: outcome, note: note)
}
