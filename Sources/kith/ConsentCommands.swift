import ArgumentParser
import Foundation
import KithNode

struct ConsentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consent",
        abstract: "Decide what your chapter's organization sees: grant, revoke, show (needs kithd running).",
        discussion: """
            Nothing about a contact reaches the organization without a grant from you, and by \
            default only when the contact agreed to be shared (their consent field is 'share'). \
            The record is sealed to the organization's key and acknowledged with a signed receipt; \
            a revocation deletes it and returns a signed deletion receipt. Until the organization \
            has approved your chapter (kithd hub approve), records wait here, pending, and kithd \
            sends them again; only answers signed by the organization count.

            Examples:
              kith consent grant k7qd --fields name,emails --purpose "GOTV" --expires 90d
              kith consent show k7qd     what the organization holds about them now
              kith consent revoke k7qd
              kith audit                 every grant, transmission, receipt, revocation
            """,
        subcommands: [Grant.self, Revoke.self, Show.self]
    )

    static func printResults(_ r: [String: Any]) {
        for line in r["results"] as? [[String: String]] ?? [] {
            let reason = line["reason"].map { ": \($0)" } ?? ""
            print("\(String((line["contact"] ?? "").prefix(8)))  \(line["result"] ?? "?")\(reason)")
        }
    }

    struct Grant: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "grant", abstract: "Grant the organization the chosen fields of contacts, for a purpose.")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @Argument(help: "Contact ids or prefixes.") var contacts: [String] = []
        @Option(help: "Every contact with this tag.") var tag: String?
        @Option(help: "Comma-separated fields (name, phones, emails, tags, support, address, city, postal, notes, relationship, voter).") var fields: String
        @Option(help: "What the organization may use them for.") var purpose: String
        @Option(help: "When the grant lapses (e.g. 90d); default: until revoked.") var expires: String?
        @OptionGroup var chapter: ChapterOption
        @Option(name: .customLong("to"), help: "The organization (its name, as kith chapter show prints it); checked against the chapter's affiliation.") var organization: String?

        func run() throws {
            var req: [String: Any] = ["op": "consent-grant", "contacts": contacts, "fields": fields, "purpose": purpose]
            if let organization { req["organization"] = organization }
            if let tag { req["tag"] = tag }
            if let c = chapter.chapter { req["chapter"] = c }
            if let expires { req["expires"] = try parseDuration(expires) }
            let r = try daemonRequest(data, req)
            if json { return printJSONObject(r) }
            ConsentCommand.printResults(r)
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke the grants of contacts; the organization deletes its records and returns a receipt.")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @Argument(help: "Contact ids or prefixes.") var contacts: [String] = []
        @Option(help: "Every contact with this tag.") var tag: String?
        @OptionGroup var confirm: ConfirmOption

        func run() throws {
            guard !contacts.isEmpty || tag != nil else { throw ValidationError("name the contacts (ids or prefixes) or give --tag") }
            var req: [String: Any] = ["op": "consent-revoke", "contacts": contacts]
            if let tag { req["tag"] = tag }
            let whom = ([contacts.isEmpty ? nil : contacts.joined(separator: ", "), tag.map { "every contact tagged \($0)" }]).compactMap { $0 }.joined(separator: " and ")
            Terminal.confirm("Revoke the organization's grants for \(whom) (it deletes what it holds; granting again takes a new grant)", yes: confirm.yes)
            let r = try daemonRequest(data, req)
            if json { return printJSONObject(r) }
            ConsentCommand.printResults(r)
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show what the organization holds about a contact right now, and every grant for it.")
        @OptionGroup var data: DataDirOption
        @Argument(help: "The contact's id or prefix.") var contact: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let grants = try daemonRequest(data, ["op": "consent-show", "contact": contact])["grants"] as? [[String: Any]] ?? []
            if json { return printJSONObject(grants) }
            if grants.isEmpty { print("no grants: the organization holds nothing about this contact") }
            for g in grants {
                print("grant \(g["grant"] ?? "?") to \(g["organization"] ?? "?") for \"\(g["purpose"] ?? "")\": \(g["state"] ?? "?"), \(g["receipts"] ?? 0) receipt(s)")
                let holds = g["organizationHolds"] as? [String: Any] ?? [:]
                if holds.isEmpty { print("  the organization holds nothing under it") }
                for (k, v) in holds.sorted(by: { $0.key < $1.key }) {
                    if let c = v as? [String: Any] {
                        let method = (c["method"] as? String).flatMap { $0.isEmpty ? nil : " (\($0))" } ?? ""
                        print("  \(k): \(c["level"] ?? "?") since \(c["date"] ?? "?")\(method)")
                    } else {
                        print("  \(k): \(v)")
                    }
                }
                // The organization's signed deletion receipt, place by place (Protocol/consent.md §4.5).
                if let places = g["deletion"] as? [[String: Any]] {
                    print("  deletion\(g["deletionComplete"] as? Bool == true ? " (finished)" : " (in progress: kithd asks the hub again)"):")
                    for p in places { print("    \(p["place"] ?? "?"): \(p["state"] ?? "?")") }
                }
            }
        }
    }
}

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "audit", abstract: "List every grant, upward transmission, receipt and revocation.")
    @OptionGroup var data: DataDirOption
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let entries = try daemonRequest(data, ["op": "audit"])["entries"] as? [[String: Any]] ?? []
        if json { return printJSONObject(entries) }
        if entries.isEmpty { return print("nothing has gone to an organization") }
        let f = ISO8601DateFormatter()
        Terminal.page(entries.map { e in
            let at = Date(timeIntervalSince1970: Double(e["at"] as? UInt64 ?? 0) / 1000)
            return "\(f.string(from: at))  \(e["event"] ?? "?")  contact \(String((e["contact"] as? String ?? "").prefix(8)))  \(e["detail"] ?? "")\n"
        }.joined())
    }
}
