import ArgumentParser
import Foundation
import KithCRDT
import KithInterchange
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

    func ops() throws -> [KithCRDT.Operation] {
        var out: [KithCRDT.Operation] = []
        let pairs: [(Field, String?)] = [
            (.givenName, given), (.familyName, family), (.displayName, display), (.address, address), (.city, city),
            (.postalCode, postalCode), (.notes, notes), (.relationship, relationship), (.support, support), (.voterFileID, voterID),
        ]
        for (f, v) in pairs {
            guard let v else { continue }
            do { try f.validate(v) } catch { throw CLIFailure(message: "--\(f.name.replacingOccurrences(of: "_", with: "-")): \(error.reason)") }
            out.append(.setField(f, v))
        }
        if let consent {
            guard let level = ContactConsent.Level(rawValue: consent) else {
                throw CLIFailure(message: "--consent must be none, contact or share")
            }
            let date = consentDate ?? Day.format(today())
            let value = ContactConsent(level: level, date: date, method: consentMethod ?? "").encoded
            do { try Field.consent.validate(value) } catch { throw CLIFailure(message: "--consent-date: \(error.reason)") }
            out.append(.setField(.consent, value))
        }
        return out
    }
}

func phoneOp(_ raw: String, _ phone: PhoneOptions) throws -> KithCRDT.Operation {
    guard let key = Normalization.phone(raw, defaultCallingCode: phone.callingCode) else {
        throw CLIFailure(message: "phone '\(raw)' has no digits")
    }
    return .add(.phones, key, payload: key == raw ? "" : raw)
}

func emailOp(_ raw: String) throws -> KithCRDT.Operation {
    guard let key = Normalization.email(raw) else { throw CLIFailure(message: "'\(raw)' is not an email address") }
    return .add(.emails, key, payload: key == raw ? "" : raw)
}

func tagOp(_ raw: String) throws -> KithCRDT.Operation {
    guard let t = Normalization.tag(raw) else { throw CLIFailure(message: "empty tag") }
    return .add(.tags, t)
}

struct ContactCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contact",
        abstract: "Add, edit, show, list, search and remove contacts.",
        subcommands: [Add.self, Edit.self, Show.self, List.self, Search.self, Remove.self]
    )

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a contact; prints its id.",
            discussion: """
                Examples:
                  kith contact add --given Ada --family Lovelace --phone "020 7946 0000" --default-country 44
                  kith contact add --display "Mx. Rivera" --email rivera@example.org --tag gotv --support 4 \\
                      --consent contact --consent-method "asked at the door"
                """
        )
        @OptionGroup var node: NodeOptions
        @OptionGroup var fields: FieldOptions
        @OptionGroup var phoneOptions: PhoneOptions
        @Option(name: .customLong("phone"), help: "A phone number (repeatable).") var phones: [String] = []
        @Option(name: .customLong("email"), help: "An email address (repeatable).") var emails: [String] = []
        @Option(name: .customLong("tag"), help: "A tag (repeatable).") var tags: [String] = []

        func run() throws {
            let ops = try failing { try fields.ops() + phones.map { try phoneOp($0, phoneOptions) } + emails.map(emailOp) + tags.map(tagOp) }
            guard !ops.isEmpty else { fail("nothing to add: give at least a name, phone or email (see --help)") }
            let store = try node.open()
            let id = ContactID.random()
            try store.commitOne([ContactEdit(contact: id, ops: ops)])
            if node.json { printJSON(contactJSON(store.replica.contact(id)!)) } else { print(id) }
        }
    }

    struct Edit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change fields, phones and emails of a contact.",
            discussion: """
                Examples:
                  kith contact edit 3fA9 --city Leeds --support 5
                  kith contact edit 3fA9 --add-phone "+44 7700 900123" --remove-email old@example.org --clear notes
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
        @Option(name: .customLong("clear"), help: "Clear a field (repeatable), e.g. --clear notes.") var clear: [String] = []

        func run() throws {
            let store = try node.open()
            let id = try store.lookup(contact)
            let r = store.replica
            var ops = try failing { try fields.ops() + addPhones.map { try phoneOp($0, phoneOptions) } + addEmails.map(emailOp) }
            for f in clear {
                guard let field = Field(name: f.replacingOccurrences(of: "-", with: "_")) else { fail("--clear: unknown field '\(f)'") }
                ops.append(.setField(field, ""))
            }
            for p in removePhones {
                let key = Normalization.phone(p, defaultCallingCode: phoneOptions.callingCode) ?? p
                let adds = r.liveAdds(of: key, in: .phones, contact: id)
                guard !adds.isEmpty else { fail("contact \(id) has no phone \(p)") }
                ops.append(.remove(.phones, key, observed: adds))
            }
            for e in removeEmails {
                let key = Normalization.email(e) ?? e
                let adds = r.liveAdds(of: key, in: .emails, contact: id)
                guard !adds.isEmpty else { fail("contact \(id) has no email \(e)") }
                ops.append(.remove(.emails, key, observed: adds))
            }
            guard !ops.isEmpty else { fail("nothing to change (see --help)") }
            try store.commitOne([ContactEdit(contact: id, ops: ops)])
            if node.json { printJSON(contactJSON(store.replica.contact(id)!)) } else { print("updated \(id)") }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one contact.")
        @OptionGroup var node: NodeOptions
        @Argument(help: "The contact: its id or a unique prefix.") var contact: String
        @Flag(help: "Read it together with every record linked as the same person.") var merged = false

        func run() throws {
            let store = try node.open()
            let id = try store.lookup(contact)
            guard let c = merged ? store.replica.mergedContact(id) : store.replica.contact(id) else { fail("no contact \(contact)") }
            if node.json { printJSON(contactJSON(c)) } else { printContact(c) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List contacts, ordered by name.")
        @OptionGroup var node: NodeOptions
        @Option(help: "Only contacts with this tag.") var tag: String?
        @Option(help: "At most this many (0 = all).") var limit = 0

        func run() throws {
            let store = try node.open()
            var ids = store.replica.visibleContactIDs
            if let tag { ids = Array(store.search("#" + tag)) }
            var contacts = ids.compactMap { store.replica.contact($0) }
            contacts.sort { (displayName($0), $0.id) < (displayName($1), $1.id) }
            if limit > 0 { contacts = Array(contacts.prefix(limit)) }
            if node.json { printJSON(contacts.map(contactJSON)) } else { printTable(contacts) }
        }
    }

    struct Search: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Find contacts by name prefix, phone (any format), email or tag.",
            discussion: """
                Examples:
                  kith contact search ada lov          every word starts a name word (accents and case ignored)
                  kith contact search "(555) 867-5309" phones ending with these digits
                  kith contact search ada@             emails starting with it
                  kith contact search "#gotv"          a tag
                """
        )
        @OptionGroup var node: NodeOptions
        @Argument(help: "The query (several words are ANDed).") var query: [String]
        @Option(help: "At most this many (0 = all).") var limit = 50

        func run() throws {
            let store = try node.open()
            var found = store.search(query.joined(separator: " ")).compactMap { store.replica.contact($0) }
            found.sort { (displayName($0), $0.id) < (displayName($1), $1.id) }
            if limit > 0 { found = Array(found.prefix(limit)) }
            if node.json { printJSON(found.map(contactJSON)) } else if found.isEmpty { print("no match") } else { printTable(found) }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm",
            abstract: "Delete a contact (or, with --forget, erase it everywhere for good).",
            discussion: """
                Deleting hides the contact; an edit made later by another device brings it back.
                --forget erases every stored payload about the contact on every replica that
                receives the forget, and refuses it from then on (a person asked to be forgotten).
                """
        )
        @OptionGroup var node: NodeOptions
        @Argument(help: "The contact: its id or a unique prefix.") var contact: String
        @Flag(help: "Erase for good instead of deleting.") var forget = false

        func run() throws {
            let store = try node.open()
            let id = try store.lookup(contact)
            try store.commitOne([ContactEdit(contact: id, ops: [forget ? .forget : .delete])])
            print(forget ? "forgot \(id)" : "deleted \(id)")
        }
    }
}

struct TagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tag", abstract: "Add or remove tags.", subcommands: [Add.self, Remove.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Tag a contact: kith tag add <contact> gotv door-knock")
        @OptionGroup var node: NodeOptions
        @Argument var contact: String
        @Argument var tags: [String]

        func run() throws {
            let ops = try failing { try tags.map(tagOp) }
            guard !ops.isEmpty else { fail("give at least one tag") }
            let store = try node.open()
            let id = try store.lookup(contact)
            try store.commitOne([ContactEdit(contact: id, ops: ops)])
            print("tagged \(id)")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Untag a contact: kith tag rm <contact> gotv")
        @OptionGroup var node: NodeOptions
        @Argument var contact: String
        @Argument var tags: [String]

        func run() throws {
            let store = try node.open()
            let id = try store.lookup(contact)
            var ops: [KithCRDT.Operation] = []
            for t in tags {
                let key = Normalization.tag(t) ?? t
                let adds = store.replica.liveAdds(of: key, in: .tags, contact: id)
                guard !adds.isEmpty else { fail("contact \(id) has no tag '\(t)'") }
                ops.append(.remove(.tags, key, observed: adds))
            }
            guard !ops.isEmpty else { fail("give at least one tag") }
            try store.commitOne([ContactEdit(contact: id, ops: ops)])
            print("untagged \(id)")
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
        let store = try node.open()
        let id = try store.lookup(contact)
        let old = store.replica.contact(id)?[.notes]
        let value = append && old != nil ? old! + "\n" + text : text
        do { try Field.notes.validate(value) } catch { fail(error.reason) }
        try store.commitOne([ContactEdit(contact: id, ops: [.setField(.notes, value)])])
        print("noted \(id)")
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
        let entry = conversationEntry(channel: channel, outcome: outcome, note: note, date: date)
        let store = try node.open()
        let id = try store.lookup(contact)
        try store.commitOne([ContactEdit(contact: id, ops: [.logConversation(entry)])])
        print("logged \(id)")
    }
}

struct LinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "link", abstract: "Mark two contacts as the same person (read as one with `contact show --merged`).")
    @OptionGroup var node: NodeOptions
    @Argument var first: String
    @Argument var second: String

    func run() throws {
        let store = try node.open()
        let a = try store.lookup(first), b = try store.lookup(second)
        guard a != b else { fail("a contact is always the same person as itself") }
        try store.commitOne([ContactEdit(contact: a, ops: [.link(to: b)])])
        print("linked \(a) and \(b)")
    }
}

struct UnlinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unlink", abstract: "Undo `kith link` between two contacts.")
    @OptionGroup var node: NodeOptions
    @Argument var first: String
    @Argument var second: String

    func run() throws {
        let store = try node.open()
        let a = try store.lookup(first), b = try store.lookup(second)
        var edits: [ContactEdit] = []
        for (x, y) in [(a, b), (b, a)] {
            let adds = store.replica.liveAdds(of: y.description, in: .links, contact: x)
            if !adds.isEmpty { edits.append(ContactEdit(contact: x, ops: [.unlink(from: y, observed: adds)])) }
        }
        guard !edits.isEmpty else { fail("\(a) and \(b) are not linked") }
        try store.commitOne(edits)
        print("unlinked \(a) and \(b)")
    }
}
