import ArgumentParser
import Foundation
import KithCRDT
import KithInterchange
import KithQuery
import KithStore

/// Field options shared by `contact add` and `contact edit`.
struct FieldOptions: ParsableArguments {
    @Option(name: .customLong("given"), help: "Given name.") var given: String?
    @Option(name: .customLong("family"), help: "Family name.") var family: String?
    @Option(name: .customLong("display"), help: "Display name (if not 'given family').") var display: String?
    @Option(help: "Street address.") var address: String?
    @Option(help: "City.") var city: String?
    @Option(name: .customLong("postal-code"), help: "Postal code.") var postalCode: String?
    @Option(help: "Free-text notes.") var notes: String?
    @Option(help: "How you know them: family, friend, neighbour, coworker, congregation, other.") var relationship: String?
    @Option(help: "Support level 1-5 (empty for unknown).") var support: String?
    @Option(name: .customLong("voter-id"), help: "Voter-file id.") var voterID: String?
    @Option(help: "The contact's own consent: none, contact (may be contacted by the chapter) or share (may be shared with the organization).")
    var consent: String?
    @Option(name: .customLong("consent-method"), help: "How consent was given (e.g. 'verbal, at the door').") var consentMethod: String?
    @Option(name: .customLong("consent-date"), help: "When consent was given, yyyy-mm-dd (default: today).") var consentDate: String?
    @Option(help: "Organization (company, union, school…).") var organization: String?
    @Option(help: "Job title.") var title: String?
    @Option(help: "Birthday: yyyy-mm-dd, or --mm-dd without the year.") var birthday: String?
    @Option(help: "Nickname.") var nickname: String?
    @Option(name: .customLong("state"), help: "The address's state, province or region.") var addressRegion: String?
    @Option(help: "The address's country.") var country: String?
    @Option(name: .customLong("email-subscription"), help: "Email subscription: subscribed, unsubscribed, bouncing, complained, unknown.")
    var emailSubscription: String?
    @Option(name: .customLong("sms-subscription"), help: "SMS subscription: subscribed, unsubscribed, bouncing, complained, unknown.")
    var smsSubscription: String?
    @Option(name: .customLong("label"), help: "Label a phone or email: \"<phone or email>=<label>\", e.g. \"+44 20 7946 0018=work\" (repeatable).")
    var labels: [String] = []

    /// The fields part of a patch (validated by the node, which words the errors).
    func patch() -> ContactPatch {
        var set: [String: String] = [:]
        let pairs: [(Field, String?)] = [
            (.givenName, given), (.familyName, family), (.displayName, display), (.address, address), (.city, city),
            (.postalCode, postalCode), (.notes, notes), (.relationship, relationship), (.support, support), (.voterFileID, voterID),
            (.organization, organization), (.title, title), (.birthday, birthday), (.nickname, nickname), (.region, addressRegion),
            (.country, country), (.emailSubscription, emailSubscription), (.smsSubscription, smsSubscription),
        ]
        for (f, v) in pairs { if let v { set[ContactDTO.apiName(f)] = v } }
        var p = ContactPatch(set: set.isEmpty ? nil : set)
        for l in labels {
            guard let eq = l.lastIndex(of: "=") else { fail("--label '\(l)' must be \"<phone or email>=<label>\"") }
            let target = String(l[..<eq]), label = String(l[l.index(after: eq)...])
            if target.contains("@") { p.emailLabels = (p.emailLabels ?? [:]).merging([target: label]) { _, b in b } } else {
                p.phoneLabels = (p.phoneLabels ?? [:]).merging([target: label]) { _, b in b }
            }
        }
        if let consent { p.consent = .init(level: consent, date: consentDate, method: consentMethod) }
        return p
    }
}

extension ContactClient {
    /// Applies a patch, or exits with the node's reason.
    @discardableResult
    func change(_ patch: ContactPatch, _ reference: String?) throws -> ContactDTO {
        try failing { try apply(patch, to: reference) }
    }
}

func nonEmpty(_ a: [String]) -> [String]? { a.isEmpty ? nil : a }

/// A tag as an add op (chapter map edits, which travel as encoded edits).
func tagOp(_ raw: String) throws -> KithCRDT.Operation {
    guard let t = Normalization.tag(raw) else { throw CLIFailure(message: "empty tag") }
    return .add(.tags, t)
}

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

struct ContactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contact",
        abstract: "Add, edit, show, list, search and remove contacts.",
        subcommands: [Add.self, Edit.self, Show.self, List.self, Search.self, Remove.self]
    )

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", 
            abstract: "Add a contact; prints its id.",
            discussion: """
                Examples:
                  kith contact add --given Ada --family Lovelace \\
                      --phone "020 7946 0000" --region GB
                  kith contact add --display "Mx. Rivera" --email rivera@example.org \\
                      --tag gotv --support 4 \\
                      --consent contact --consent-method "asked at the door"
                """
        )
        @OptionGroup var node: NodeOptions
        @OptionGroup var fields: FieldOptions
        @OptionGroup var phoneOptions: PhoneOptions
        @Option(name: .customLong("phone"), help: "A phone number (repeatable).") var phones: [String] = []
        @Option(name: .customLong("email"), help: "An email address (repeatable).") var emails: [String] = []
        @Option(name: .customLong("tag"), help: "A tag (repeatable).") var tags: [String] = []
        @Option(name: .customLong("url"), help: "A web address (repeatable).") var urls: [String] = []
        @Option(name: .customLong("external-id"), help: "An id in another system, <system>:<id>, e.g. van:123456 (repeatable).") var externalIDs: [String] = []

        func run() throws {
            var patch = fields.patch()
            patch.addUrls = nonEmpty(urls)
            patch.addExternalIds = nonEmpty(externalIDs)
            patch.addPhones = nonEmpty(phones)
            patch.addEmails = nonEmpty(emails)
            patch.addTags = nonEmpty(tags)
            patch.region = phoneOptions.regionCode
            guard patch != ContactPatch(region: patch.region) else { fail("nothing to add: give at least a name, phone or email (see --help)") }
            let c = try node.open().change(patch, nil)
            if node.json { printJSON(c) } else { print(c.id) }
        }
    }

    struct Edit: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "edit", 
            abstract: "Change fields, phones and emails of a contact.",
            discussion: """
                Examples:
                  kith contact edit k7qd --city Leeds --support 5
                  kith contact edit k7qd --add-phone "+44 7700 900123" \\
                      --remove-email old@example.org --clear notes
                """
        )
        @OptionGroup var node: NodeOptions
        @Argument(help: "The contact: its id or a unique prefix (4+ characters).") var contact: String
        @OptionGroup var fields: FieldOptions
        @OptionGroup var phoneOptions: PhoneOptions
        @Option(name: .customLong("add-phone")) var addPhones: [String] = []
        @Option(name: .customLong("remove-phone")) var removePhones: [String] = []
        @Option(name: .customLong("add-email")) var addEmails: [String] = []
        @Option(name: .customLong("remove-email")) var removeEmails: [String] = []
        @Option(name: .customLong("add-url")) var addUrls: [String] = []
        @Option(name: .customLong("remove-url")) var removeUrls: [String] = []
        @Option(name: .customLong("add-external-id"), help: "An id in another system, <system>:<id> (repeatable).") var addExternalIDs: [String] = []
        @Option(name: .customLong("remove-external-id")) var removeExternalIDs: [String] = []
        @Option(name: .customLong("clear"), help: "Clear a field (repeatable), e.g. --clear notes.") var clear: [String] = []

        func run() throws {
            var patch = fields.patch()
            var set = patch.set ?? [:]
            for f in clear {
                guard let field = ContactDTO.field(named: f), field != .consent else { fail("--clear: unknown field '\(f)'") }
                set[ContactDTO.apiName(field)] = ""
            }
            patch.set = set.isEmpty ? nil : set
            patch.addPhones = nonEmpty(addPhones)
            patch.removePhones = nonEmpty(removePhones)
            patch.addUrls = nonEmpty(addUrls)
            patch.removeUrls = nonEmpty(removeUrls)
            patch.addExternalIds = nonEmpty(addExternalIDs)
            patch.removeExternalIds = nonEmpty(removeExternalIDs)
            patch.addEmails = nonEmpty(addEmails)
            patch.removeEmails = nonEmpty(removeEmails)
            patch.region = phoneOptions.regionCode
            guard patch != ContactPatch(region: patch.region) else { fail("nothing to change (see --help)") }
            let c = try node.open().change(patch, contact)
            if node.json { printJSON(c) } else { say("updated \(c.id)") }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one contact.")
        @OptionGroup var node: NodeOptions
        @Argument(help: "The contact: its id or a unique prefix.") var contact: String
        @Flag(help: "Read it together with every record linked as the same person.") var merged = false

        func run() throws {
            let client = try node.open()
            let c = try failing { try client.show(contact, merged: merged, scope: nil) }
            if node.json { printJSON(c) } else { printContact(c) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List contacts, ordered by name.")
        @OptionGroup var node: NodeOptions
        @Option(help: "Only contacts with this tag.") var tag: String?
        @Option(parsing: .unconditional, help: "At most this many (0 = all, fetched page by page).") var limit = 0
        @Option(help: "Continue after this cursor (the `next` of a --json page).") var cursor: String?

        func validate() throws {
            guard limit >= 0 else { throw ValidationError("--limit must be 0 (all) or more, not \(limit)") }
        }

        func run() throws {
            let client = try node.open()
            let (contacts, next, total) = try collect(client, q: nil, tag: tag, limit: limit, cursor: cursor)
            _ = (next, total)
            if node.json { printJSON(contacts) } else { Terminal.page(tableText(contacts)) }
        }
    }

    struct Search: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "search", 
            abstract: "Find contacts by name prefix, phone (any format), email or tag.",
            discussion: """
                Examples:
                  kith contact search ada lov          each word starts a name word
                                                       (accents and case ignored)
                  kith contact search "(555) 867-5309" phones ending with these digits
                  kith contact search ada@             emails starting with it
                  kith contact search "#gotv"          a tag
                  kith contact search ada "#gotv"      both (every part must match)
                """
        )
        @OptionGroup var node: NodeOptions
        @Argument(help: "The query (several words are ANDed).") var query: [String]
        @Option(parsing: .unconditional, help: "At most this many (0 = all).") var limit = 50

        func validate() throws {
            guard limit >= 0 else { throw ValidationError("--limit must be 0 (all) or more, not \(limit)") }
        }

        func run() throws {
            let client = try node.open()
            let (found, next, total) = try collect(client, q: query.joined(separator: " "), tag: nil, limit: limit, cursor: nil)
            _ = (next, total)
            if node.json { printJSON(found) } else if found.isEmpty { say("no match") } else { Terminal.page(tableText(found)) }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm",
            abstract: "Delete a contact (or, with --forget, erase it everywhere for good).",
            discussion: """
                Deleting hides the contact; an edit made later by another device brings it back.

                --forget erases every stored payload about the contact on every replica that \
                receives the forget, and refuses it from then on (a person asked to be forgotten). \
                It cannot be undone, so kith asks first on a terminal; --yes skips the question \
                and is required when standard input is not a terminal.
                """
        )
        @OptionGroup var node: NodeOptions
        @Argument(help: "The contact: its id or a unique prefix.") var contact: String
        @Flag(help: "Erase for good instead of deleting.") var forget = false
        @OptionGroup var confirm: ConfirmOption

        func run() throws {
            let client = try node.open()
            var target = contact
            if forget {
                let c = try failing { try client.show(contact, merged: false, scope: nil) }
                Terminal.confirm("Forget \(c.name) (\(c.id)) on every device and in every chapter, for good", yes: confirm.yes)
                target = c.id
            }
            let id = try failing { try client.delete(target, forget: forget) }
            if node.json { return printJSONObject(["id": id, forget ? "forgotten" : "deleted": true]) }
            say(forget ? "forgot \(id)" : "deleted \(id)")
        }
    }
}

struct TagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tag", abstract: "Add or remove tags.", subcommands: [Add.self, Remove.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Tag a contact: kith tag add <contact> gotv door-knock")
        @OptionGroup var node: NodeOptions
        @Argument var contact: String
        @Argument var tags: [String]

        func run() throws {
            guard !tags.isEmpty else { fail("give at least one tag") }
            let c = try node.open().change(ContactPatch(addTags: tags), contact)
            if node.json { return printJSON(c) }
            say("tagged \(c.id)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Untag a contact: kith tag rm <contact> gotv")
        @OptionGroup var node: NodeOptions
        @Argument var contact: String
        @Argument var tags: [String]

        func run() throws {
            guard !tags.isEmpty else { fail("give at least one tag") }
            let c = try node.open().change(ContactPatch(removeTags: tags), contact)
            if node.json { return printJSON(c) }
            say("untagged \(c.id)")
        }
    }
}

struct NoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "note", abstract: "Set (or --append to) a contact's notes.")
    @OptionGroup var node: NodeOptions
    @Argument var contact: String
    @Argument var text: String
    @Flag(help: "Append a line instead of replacing.") var append = false

    func run() throws {
        let patch = append ? ContactPatch(appendNote: text) : ContactPatch(set: ["notes": text])
        let c = try node.open().change(patch, contact)
        if node.json { return printJSON(c) }
        say("noted \(c.id)")
    }
}

struct LogConversation: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log-conversation",
        abstract: "Record a conversation: kith log-conversation <contact> --channel door --outcome supportive --note \"wants a sign\""
    )
    @OptionGroup var node: NodeOptions
    @Argument var contact: String
    @Option(help: "door, phone, text, in-person or other.") var channel: String
    @Option(help: "The outcome, e.g. supportive, not home, moved.") var outcome: String
    @Option var note = ""
    @Option(help: "yyyy-mm-dd (default: today).") var date: String?

    func run() throws {
        guard Channel(name: channel) != nil else { fail("--channel must be door, phone, text, in-person or other") }
        if let date, Day.parse(date) == nil { fail("--date must be yyyy-mm-dd") }
        let c = try node.open().change(ContactPatch(logConversation: .init(channel: channel, outcome: outcome, note: note, date: date)), contact)
        if node.json { return printJSON(c) }
        say("logged \(c.id)")
    }
}

struct LinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "link", abstract: "Mark two contacts as the same person (read as one with `contact show --merged`).")
    @OptionGroup var node: NodeOptions
    @Argument var first: String
    @Argument var second: String

    func run() throws {
        let client = try node.open()
        let b = try failing { try client.show(second, merged: false, scope: nil) }
        let a = try client.change(ContactPatch(link: [b.id]), first)
        if node.json { return printJSON(a) }
        say("linked \(a.id) and \(b.id)")
    }
}

struct UnlinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unlink", abstract: "Undo `kith link` between two contacts.")
    @OptionGroup var node: NodeOptions
    @Argument var first: String
    @Argument var second: String

    func run() throws {
        let client = try node.open()
        let b = try failing { try client.show(second, merged: false, scope: nil) }
        let a = try client.change(ContactPatch(unlink: [b.id]), first)
        if node.json { return printJSON(a) }
        say("unlinked \(a.id) and \(b.id)")
    }
}

/// Pages through a list or search: `limit` contacts (0 = all), from `cursor`.
func collect(_ client: any ContactClient, q: String?, tag: String?, limit: Int, cursor: String?) throws -> ([ContactDTO], String?, Int) {
    var out: [ContactDTO] = []
    var next = cursor
    var total = 0
    repeat {
        let want = limit == 0 ? ContactQueries.maxLimit : min(ContactQueries.maxLimit, limit - out.count)
        let page = try failing { try client.page(q: q, tag: tag, limit: want, cursor: next, merged: false, scope: nil) }
        out += page.contacts
        total = page.total
        next = page.next
    } while next != nil && (limit == 0 || out.count < limit)
    return (out, next, total)
}
