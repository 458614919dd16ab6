import ArgumentParser
import Foundation
import KithChapter
import KithCRDT
import KithCrypto
import KithInterchange
import KithNode

/// "30s", "90m", "48h", "7d" → seconds. The unit is required: a bare "3" would silently mean
/// 3 seconds to one reader and 3 days to another.
func parseDuration(_ text: String, option: String = "--expires") throws -> Int {
    let units: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
    guard let last = text.last, let unit = units[last] else {
        if let n = Int(text) { throw ValidationError("\(option) \(text) needs a unit: \(n)s, \(n)m, \(n)h or \(n)d (seconds, minutes, hours, days)") }
        throw ValidationError("\(option) '\(text)' is not a duration: a whole number and a unit, s, m, h or d (examples: 30m, 48h, 7d)")
    }
    guard let n = Int(text.dropLast()), n > 0 else {
        throw ValidationError("\(option) '\(text)' is not a duration: a whole number above 0 and a unit, s, m, h or d (examples: 30m, 48h, 7d)")
    }
    return n * unit
}

struct ChapterOption: ParsableArguments {
    @Option(name: .customLong("chapter"), help: "The chapter: id, id prefix or name (write --chapter=ID when the id starts with -); optional when the node is in one chapter.")
    var chapter: String?

    func add(to request: [String: Any]) -> [String: Any] {
        var r = request
        if let chapter { r["chapter"] = chapter }
        return r
    }
}

struct ChapterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chapter",
        abstract: "Create, join and manage chapters: the groups whose members share contacts.",
        subcommands: [Create.self, List.self, Members.self, Invite.self, Invites.self, Join.self, Requests.self, Approve.self, Deny.self,
                      Remove.self, Leave.self, Map.self, Know.self, Tag.self, LogConversation.self, Affiliate.self, Show.self]
    )

    static func describeInvite(_ i: [String: Any]) -> String {
        let expires = (i["expiresAt"] as? Int).map { Date(timeIntervalSince1970: TimeInterval($0)).formatted(date: .abbreviated, time: .shortened) } ?? "?"
        return "\(i["id"] ?? "?")  \(i["usesLeft"] ?? "?") of \(i["uses"] ?? "?") uses left  expires \(expires)\(i["approval"] as? Bool == true ? "  (joins wait for approval)" : "")"
    }

    static func describe(_ c: [String: Any]) -> String {
        "\(c["name"] ?? "?")  id \(c["id"] ?? "?")  you: \(c["role"] ?? "?")  members \(c["members"] ?? 0)  shared contacts \(c["contacts"] ?? 0)"
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a chapter with you as its first admin.")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @Argument(help: "The chapter's name, e.g. \"Ward 5\".") var name: String

        func run() throws {
            let r = try daemonRequest(data, ["op": "chapter-create", "name": name])
            if json { return printJSONObject(r) }
            let c = r["chapter"] as? [String: Any] ?? [:]
            print("created chapter \"\(name)\" (id \(c["id"] ?? "?")); invite members with: kith chapter invite")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the chapters this node is in or relays.")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let list = try daemonRequest(data, ["op": "chapter-list"])["chapters"] as? [[String: Any]] ?? []
            if json { return printJSONObject(list) }
            if list.isEmpty { print("no chapters yet: kith chapter create NAME, or kith chapter join INVITE") }
            for c in list { print(ChapterCommand.describe(c)) }
        }
    }

    struct Members: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "members", abstract: "List a chapter's members, admins first.")
        @OptionGroup var data: DataDirOption
        @OptionGroup var chapter: ChapterOption
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let r = try daemonRequest(data, chapter.add(to: ["op": "chapter-members"]))
            let members = r["members"] as? [[String: Any]] ?? []
            if json { return printJSONObject(["chapter": r["chapter"] ?? [:], "members": members]) }
            print(ChapterCommand.describe(r["chapter"] as? [String: Any] ?? [:]))
            for m in members {
                let you = m["you"] as? Bool == true ? "  (you)" : ""
                let name = (m["name"] as? String).map { "\($0)  " } ?? ""
                print("  \(m["admin"] as? Bool == true ? "admin " : "member") \(name)\(fingerprint(m["member"]))  devices \(m["devices"] ?? 0)\(you)")
            }
        }
    }

    struct Invite: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "invite", 
            abstract: "Print an invite to paste into a message, or close one (admins only).",
            discussion: """
            The new member runs `kith chapter join <invite>` with their kithd running; this node's daemon checks the invite and adds them.

            `kith chapter invite --close ID` closes an open invite before it expires or runs out of uses (see `kith chapter invites`).
            """
        )
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @OptionGroup var chapter: ChapterOption
        @Option(help: "How long the invite stays valid (30m, 48h, 7d).") var expires = "48h"
        @Option(parsing: .unconditional, help: "How many people may join with it (1 or more).") var uses = 1
        @Option(help: "host:port the joiner reaches this daemon at (default: kithd's advertised address).") var hint: String?
        @Flag(help: "Hold joins with this invite until an admin approves them (kith chapter requests / approve).") var approve = false
        @Option(help: ArgumentHelp("Close the open invite with this id (or its first 4+ characters) instead of making one.", valueName: "id"))
        var close: String?

        func validate() throws {
            guard uses >= 1 else { throw ValidationError("--uses must be 1 or more, not \(uses)") }
            _ = try parseDuration(expires)
        }

        func run() throws {
            if let close {
                let r = try daemonRequest(data, chapter.add(to: ["op": "chapter-invite-close", "invite": close]))
                if json { return printJSONObject(r) }
                return say("closed invite \(r["closed"] ?? close); nobody can join with it any more")
            }
            var req: [String: Any] = ["op": "chapter-invite", "expires": try parseDuration(expires), "uses": uses, "approve": approve]
            if let hint { req["hint"] = hint }
            let r = try daemonRequest(data, chapter.add(to: req))
            if json { return printJSONObject(r) }
            print(r["invite"] as? String ?? "")
            note("valid for \(expires), \(uses) use\(uses == 1 ? "" : "s"); the joiner's daemon will connect to \(r["hint"] ?? "?")")
        }
    }

    struct Invites: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "invites", abstract: "List the chapter's open invites: uses left and expiry.")
        @OptionGroup var data: DataDirOption
        @OptionGroup var chapter: ChapterOption
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let r = try daemonRequest(data, chapter.add(to: ["op": "chapter-invites"]))
            let list = r["invites"] as? [[String: Any]] ?? []
            if json { return printJSONObject(list) }
            if list.isEmpty { return print("no open invites") }
            for i in list { print(ChapterCommand.describeInvite(i)) }
            print("close one with: kith chapter invite --close ID")
        }
    }

    struct Join: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "join", abstract: "Join a chapter with an invite an admin gave you.")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @Argument(help: "The invite (starts with kith:).") var invite: String

        func run() throws {
            let r = try daemonRequest(data, ["op": "chapter-join", "invite": invite])
            if json { return printJSONObject(r) }
            if r["held"] as? Bool == true { return print(r["message"] as? String ?? "held for approval") }
            let c = r["chapter"] as? [String: Any] ?? [:]
            print("joined \"\(c["name"] ?? "?")\" (id \(c["id"] ?? "?"), \(c["members"] ?? 0) members); share contacts with: kith share CONTACT")
        }
    }

    struct Requests: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "requests", abstract: "List joins held for approval (invites made with --approve).")
        @OptionGroup var data: DataDirOption
        @OptionGroup var chapter: ChapterOption
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let list = try daemonRequest(data, chapter.add(to: ["op": "chapter-requests"]))["requests"] as? [[String: Any]] ?? []
            if json { return printJSONObject(list) }
            if list.isEmpty { print("no join requests waiting") }
            for r in list { print("member \(fingerprint(r["member"]))  device \(fingerprint(r["device"]))  — kith chapter approve \(String((r["member"] as? String ?? "").prefix(8)))") }
        }
    }

    struct Approve: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "approve", abstract: "Admit a held join request (admins only).")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @OptionGroup var chapter: ChapterOption
        @Argument(help: "The requesting member's key or a prefix of 4+ characters.") var member: String

        func run() throws {
            let r = try daemonRequest(data, chapter.add(to: ["op": "chapter-approve", "member": member]))
            if json { return printJSONObject(r) }
            say("approved \(r["member"] ?? member); their daemon takes up the chapter when it next connects")
        }
    }

    struct Deny: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "deny", abstract: "Drop a held join request (admins only).")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @OptionGroup var chapter: ChapterOption
        @Argument(help: "The requesting member's key or a prefix of 4+ characters.") var member: String

        func run() throws {
            let r = try daemonRequest(data, chapter.add(to: ["op": "chapter-deny", "member": member]))
            if json { return printJSONObject(r) }
            say("denied \(r["member"] ?? member)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove", 
            abstract: "Remove a member (admins only); starts a new chapter key at once.",
            discussion: "The removed member's devices are refused from then on and cannot read anything written afterwards. What they already saw cannot be recalled."
        )
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @OptionGroup var chapter: ChapterOption
        @Argument(help: "The member's key, or at least 4 characters of it (see `kith chapter members`).") var member: String
        @OptionGroup var confirm: ConfirmOption

        func run() throws {
            Terminal.confirm("Remove member \(member) from the chapter\(chapter.chapter.map { " \($0)" } ?? "") (their devices are refused from now on; rejoining takes a new invite)", yes: confirm.yes)
            let r = try daemonRequest(data, chapter.add(to: ["op": "chapter-remove", "member": member]))
            if json { return printJSONObject(r) }
            print("removed \(r["removed"] ?? member); a new chapter key was sealed to the remaining devices")
            print("invites made before the removal no longer admit them; rejoining takes a new invite")
            let open = r["openInvites"] as? [[String: Any]] ?? []
            if !open.isEmpty {
                print("still open (anyone else holding one can join; close with kith chapter invite --close ID):")
                for i in open { print("  " + ChapterCommand.describeInvite(i)) }
            }
        }
    }

    struct Leave: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "leave", abstract: "Leave a chapter.")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @OptionGroup var chapter: ChapterOption

        func run() throws {
            let r = try daemonRequest(data, chapter.add(to: ["op": "chapter-leave"]))
            if json { return printJSONObject(r) }
            say("left \"\(r["left"] ?? "?")\"")
        }
    }

    struct Map: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "map", abstract: "Show the chapter's shared contacts (a page at a time), which members know each, and likely duplicates.")
        @OptionGroup var data: DataDirOption
        @OptionGroup var chapter: ChapterOption
        @Flag(help: "Print JSON.") var json = false
        @Option(help: "Only contacts matching this search (as `kith contact search`).") var q: String?
        @Option(parsing: .unconditional, help: "Contacts per page (1-1000).") var limit = 100
        @Option(help: "Continue after this cursor (printed at the end of a page).") var cursor: String?

        func validate() throws {
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be 1 to 1000, not \(limit)") }
        }

        func run() throws {
            var request: [String: Any] = ["op": "chapter-map", "limit": limit]
            if let q { request["q"] = q }
            if let cursor { request["cursor"] = cursor }
            let r = try daemonRequest(data, chapter.add(to: request))
            let contacts = r["contacts"] as? [[String: Any]] ?? []
            let duplicates = r["likelyDuplicates"] as? [[String]] ?? []
            if json { return printJSONObject(r) }
            var lines = [ChapterCommand.describe(r["chapter"] as? [String: Any] ?? [:])]
            for c in contacts {
                let names = r["names"] as? [String: String] ?? [:]
                let known = (c["knows"] as? [[String: Any]] ?? []).map { k in
                    let key = k["member"] as? String ?? ""
                    return names[key] ?? String(key.prefix(8))
                }
                lines.append("  \(String((c["id"] as? String ?? "").prefix(8)))  \(c["name"] as? String ?? "(no name)")  known by \(known.joined(separator: ", "))")
            }
            if let next = r["next"] as? String { lines.append("more: kith chapter map --limit \(limit) --cursor \(next)") }
            for group in duplicates {
                lines.append("likely the same person (same phone or email): \(group.map { String($0.prefix(8)) }.joined(separator: ", "))")
            }
            Terminal.page(lines.map { $0 + "\n" }.joined())
        }
    }
}

/// A key as people compare it: its fingerprint and, to pass to commands, its first 8 characters
/// ("k7qd-2mxa-pl5n-3eb7 (key mGh2QZk3)"); the JSON keeps the full key.
func fingerprint(_ key: Any?) -> String {
    guard let text = key as? String, let bytes = Base64URL.decode(text), bytes.count == 32 else { return "\(key ?? "?")" }
    return "\(KeyFingerprint.of(bytes)) (key \(text.prefix(8)))"
}

/// Adds to a contact in the chapter map (resolved by the daemon against the chapter): tag and
/// conversation ops, and/or "this member knows them" with a strength (the daemon writes its
/// own member key).
func chapterEdit(_ data: DataDirOption, _ chapter: ChapterOption, contact: String, ops: [KithCRDT.Operation] = [], knows: UInt8? = nil) throws -> String {
    var request: [String: Any] = ["op": "chapter-edit", "contact": contact]
    if !ops.isEmpty { request["edit"] = Base64URL.encode(ContactEdit(contact: ContactID(high: 0, low: 0), ops: ops).encoded) }
    if let knows { request["knows"] = Int(knows) }
    let r = try daemonRequest(data, chapter.add(to: request))
    return r["contact"] as? String ?? contact
}

extension ChapterCommand {
    struct Affiliate: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "affiliate", abstract: "Affiliate the chapter with an organization and its hub (admins only).")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @OptionGroup var chapter: ChapterOption
        @Argument(help: "The organization's card (kith-org:…, printed by kithd hub init).") var card: String
        @Option(help: "host:port of the organization's hub.") var hub: String
        @Flag(help: "Let members send records of contacts who agreed only to be contacted by the chapter (receipts record this rule).")
        var allowWithoutContactConsent = false

        func run() throws {
            let r = try daemonRequest(data, chapter.add(to: ["op": "chapter-affiliate", "card": card, "hub": hub,
                                                             "allowWithoutContactConsent": allowWithoutContactConsent]))
            if json { return printJSONObject(r) }
            print("the chapter asked \(r["organization"] ?? "?") to approve its affiliation; members grant what it sees with kith consent grant,")
            print("and their records wait (pending) until the organization approves the chapter (kithd hub approve)")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a chapter: admins and its affiliated organization.")
        @OptionGroup var data: DataDirOption
        @OptionGroup var chapter: ChapterOption
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let c = try daemonRequest(data, chapter.add(to: ["op": "chapter-show"]))["chapter"] as? [String: Any] ?? [:]
            if json { return printJSONObject(c) }
            print("\(c["name"] ?? "?")  id \(c["id"] ?? "?")  you: \(c["role"] ?? "?")")
            print("admins: \((c["admins"] as? [String] ?? []).joined(separator: ", "))")
            if let o = c["organization"] as? [String: Any] {
                print("organization: \(o["name"] ?? "?")  key \(o["key"] ?? "?")  hub \(o["hub"] ?? "?")")
                if o["allowsWithoutContactConsent"] as? Bool == true { print("  records may go up without the contact's own consent (chapter rule)") }
            } else {
                print("organization: none (an admin runs kith chapter affiliate)")
            }
        }
    }

    struct Know: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "know", abstract: "Say you know a contact someone shared with the chapter (\"I know them too\").")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @OptionGroup var chapter: ChapterOption
        @Argument(help: "The contact's id or prefix in the chapter map.") var contact: String
        @Option(parsing: .unconditional, help: "How well, 1 (barely) to 5 (close).") var strength = 1

        func validate() throws {
            guard (1...5).contains(strength) else { throw ValidationError("--strength must be 1 (barely) to 5 (close), not \(strength)") }
        }

        func run() throws {
            let id = try chapterEdit(data, chapter, contact: contact, knows: UInt8(strength))
            if json { return printJSONObject(["contact": id]) }
            say("you know \(id) (strength \(strength)); the chapter map shows it")
        }
    }

    struct Tag: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "tag", abstract: "Tag a contact in the chapter map.")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @OptionGroup var chapter: ChapterOption
        @Argument(help: "The contact's id or prefix in the chapter map.") var contact: String
        @Argument(help: "Tags to add.") var tags: [String]

        func run() throws {
            guard !tags.isEmpty else { throw ValidationError("give at least one tag") }
            let id = try chapterEdit(data, chapter, contact: contact, ops: try failing { try tags.map(tagOp) })
            if json { return printJSONObject(["contact": id]) }
            say("tagged \(id) in the chapter")
        }
    }

    struct LogConversation: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "log-conversation", abstract: "Log a conversation with a shared contact, visible to the chapter.")
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @OptionGroup var chapter: ChapterOption
        @Argument(help: "The contact's id or prefix in the chapter map.") var contact: String
        @Option(help: "door, phone, text, in-person or other.") var channel: String
        @Option(help: "The outcome, e.g. supportive, not home, moved.") var outcome: String
        @Option var note = ""
        @Option(help: "yyyy-mm-dd (default: today).") var date: String?

        func run() throws {
            let entry = conversationEntry(channel: channel, outcome: outcome, note: note, date: date)
            let id = try chapterEdit(data, chapter, contact: contact, ops: [.logConversation(entry)])
            if json { return printJSONObject(["contact": id]) }
            say("logged a conversation with \(id) for the chapter")
        }
    }
}

struct NameCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "name",
        abstract: "Give yourself, or one of your devices, a name other members see instead of a key.",
        subcommands: [SetName.self]
    )

    struct SetName: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set",
            abstract: "Set your display name (or, with --device, one of your devices'); empty clears it (needs kithd running).",
            discussion: """
                The name is signed by you and travels in the membership log of every chapter you are \
                in; members see it in `kith chapter members`, the map's "known by", `kith peers` and \
                `kith device list`. Nobody else can name you or your devices: their daemons refuse it. \
                The membership log is not encrypted: the chapter's relays and, once the chapter is \
                affiliated, the organization's hub see the name too.

                Examples:
                  kith name set "Ada Lovelace"
                  kith name set "Ada's phone" --device 76uf-z6jk-czun-32e4
                """
        )
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @Argument(help: "The name (at most 64 bytes; empty clears it).") var name: String
        @Option(help: "One of your devices (fingerprint, key or key prefix; see kith device list) instead of yourself.") var device: String?

        func run() throws {
            var req: [String: Any] = ["op": "name-set", "name": name]
            if let device { req["device"] = device }
            let r = try daemonRequest(data, req)
            if json { return printJSONObject(r) }
            say("\(fingerprint(r["subject"])) is now \(name.isEmpty ? "unnamed" : "\"\(name)\"") in \(count(r["chapters"], "chapter"))")
        }
    }
}

struct ShareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "share",
        abstract: "Share contacts with a chapter: the chosen fields only, kept up to date as you edit them.",
        discussion: "Fields: \(["name", "phones", "emails", "tags", "support", "address", "city", "postal", "notes", "relationship", "voter", "consent"].joined(separator: ", ")). Default: name,support,tags. Other fields never leave your device."
    )
    @OptionGroup var data: DataDirOption
    @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
    @Argument(help: "Contact ids or id prefixes.") var contacts: [String] = []
    @Option(help: "Share every contact with this tag.") var tag: String?
    @OptionGroup var chapter: ChapterOption
    @Option(name: .customLong("with"), help: .hidden) var with: String?
    @Option(help: "Comma-separated fields to share.") var fields: String?

    func run() throws {
        var req: [String: Any] = ["op": "share", "contacts": contacts]
        if let tag { req["tag"] = tag }
        if let c = chapter.chapter ?? with { req["chapter"] = c }
        if let fields { req["fields"] = fields }
        let r = try daemonRequest(data, req)
        if json { return printJSONObject(r) }
        say("shared \(r["contacts"] ?? 0) contact(s) (\((r["fields"] as? [String] ?? []).joined(separator: ","))); \(r["shared"] ?? 0) needed an update")
    }
}

struct UnshareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unshare",
        abstract: "Stop sharing contacts with a chapter and retract them from every member's copy.",
        discussion: "Members who already saw the contact could have copied it; unsharing stops updates and removes it from the chapter map."
    )
    @OptionGroup var data: DataDirOption
    @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
    @Argument(help: "Contact ids or id prefixes.") var contacts: [String] = []
    @Option(help: "Unshare every contact with this tag.") var tag: String?
    @OptionGroup var chapter: ChapterOption
    @Option(name: .customLong("from"), help: .hidden) var from: String?

    func run() throws {
        var req: [String: Any] = ["op": "unshare", "contacts": contacts]
        if let tag { req["tag"] = tag }
        if let c = chapter.chapter ?? from { req["chapter"] = c }
        let r = try daemonRequest(data, req)
        if json { return printJSONObject(r) }
        say("retracted \(r["retracted"] ?? 0) contact(s) from the chapter")
    }
}
