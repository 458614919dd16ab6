import ArgumentParser
import Foundation
import KithCRDT
import KithCrypto
import KithInterchange
import KithNode
import KithQuery
import KithStore

/// Options shared by every command that opens the node's contacts.
struct NodeOptions: ParsableArguments {
    @OptionGroup var data: DataDirOption

    @Option(name: .customLong("passphrase-file"), help: "Passphrase for a protected key ring (default: $KITH_PASSPHRASE_FILE).")
    var passphraseFile: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    /// The running kithd's API when it answers, else the store opened here (no extra round
    /// trip to find out: the first request tells).
    func open() throws -> any ContactClient {
        let api = try failing { try APIClient(directory: data.directory) }
        let dir = data.directory
        let file = passphraseFile ?? ProcessInfo.processInfo.environment["KITH_PASSPHRASE_FILE"]
        return AutoClient(api: api) {
            let pass = try file.map { try NodeIdentity.readPassphrase(file: $0) }
            return LocalClient(store: try NodeAccess.openStore(dir, passphrase: pass), directory: dir)
        }
    }
}

/// The region national phone numbers are read in (libphonenumber, data-model.md §9): --region,
/// else $KITH_REGION, else the deprecated calling code (--default-country, then
/// $KITH_DEFAULT_CALLING_CODE) mapped to its main region, else none (national numbers are then
/// kept as their digits). The environment is read once per command, not per contact.
struct PhoneOptions: ParsableArguments {
    @Option(help: "Region for national phone numbers, an ISO country code such as GB, US, FR (default: $KITH_REGION).")
    var region: String?
    @Option(name: .customLong("default-country"), help: ArgumentHelp("Deprecated: use --region. A calling code (44, 1, 33) for national numbers.", visibility: .hidden))
    var defaultCountry: String?

    /// The ISO code to send with a patch or use for an import, or exits naming the bad value.
    var regionCode: String? {
        let env = ProcessInfo.processInfo.environment
        if let r = region ?? env["KITH_REGION"].flatMap({ $0.isEmpty ? nil : $0 }) {
            guard let pr = PhoneRegion(code: r) else {
                fail("region '\(r)' is not an ISO country code libphonenumber knows (for example GB, US, FR, DE, IT)")
            }
            return pr.code
        }
        if let cc = defaultCountry ?? env["KITH_DEFAULT_CALLING_CODE"].flatMap({ $0.isEmpty ? nil : $0 }) {
            guard let pr = PhoneRegion(callingCode: cc) else { fail("calling code '\(cc)' is not one libphonenumber knows; use --region GB") }
            return pr.code
        }
        return nil
    }

    var phoneRegion: PhoneRegion? { regionCode.flatMap(PhoneRegion.init(code:)) }
}

/// An answer of the daemon's administrative ops, as JSON (the API's field names).
func printJSONObject(_ object: Any) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

func printJSON(_ value: some Encodable) {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    print(String(decoding: try! e.encode(value), as: UTF8.self))
}

func printJSON(_ object: Any) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

/// A plain table: short id, name, first phone, first email, tags.
func tableText(_ contacts: [ContactDTO]) -> String {
    let rows = contacts.map { c in
        [String(c.id.prefix(8)), c.name, c.phones.first?.number ?? "", c.emails.first?.address ?? "", c.tags.joined(separator: ",")]
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
    return ([fmt(header)] + rows.map(fmt)).map { $0 + "\n" }.joined()
}

func printContact(_ c: ContactDTO) {
    func line(_ label: String, _ value: String?) {
        guard let value, !value.isEmpty else { return }
        print(label.padding(toLength: 14, withPad: " ", startingAt: 0) + value.replacingOccurrences(of: "\n", with: "\n              "))
    }
    line("id", c.id)
    line("name", c.name)
    line("given_name", c.givenName)
    line("family_name", c.familyName)
    line("address", c.address)
    line("city", c.city)
    line("region", c.region)
    line("postal_code", c.postalCode)
    line("country", c.country)
    line("nickname", c.nickname)
    line("organization", c.organization)
    line("title", c.title)
    line("birthday", c.birthday)
    line("email_subscr.", c.emailSubscription)
    line("sms_subscr.", c.smsSubscription)
    line("notes", c.notes)
    line("relationship", c.relationship)
    line("support", c.support)
    line("voter_file_id", c.voterFileId)
    if let k = c.consent { line("consent", "\(k.level) since \(k.date)" + (k.method.isEmpty ? "" : " (\(k.method))")) }
    for p in c.phones { print("phone         \(p.number)" + (p.raw == p.number ? "" : "  (\(p.raw))") + (p.label.map { "  [\($0)]" } ?? "")) }
    for e in c.emails { print("email         \(e.address)" + (e.label.map { "  [\($0)]" } ?? "")) }
    for u in c.urls ?? [] { print("url           \(u.url)" + (u.label.map { "  [\($0)]" } ?? "")) }
    for x in c.externalIds ?? [] { print("external id   \(x)") }
    for e in c.events ?? [] { print("event         \(e.event)" + (e.title.isEmpty ? "" : " — \(e.title)")) }
    if !c.tags.isEmpty { print("tags          \(c.tags.joined(separator: ", "))") }
    for k in c.knows { print("known by      \(fingerprint(k.member)) (strength \(k.strength))") }
    for l in c.links { print("same as       \(l)") }
    for e in c.conversations {
        print("conversation  \(e.date) \(e.channel): \(e.outcome)" + (e.note.isEmpty ? "" : " — \(e.note)"))
    }
}

func today() -> UInt32 { UInt32(Date().timeIntervalSince1970 / 86_400) }

