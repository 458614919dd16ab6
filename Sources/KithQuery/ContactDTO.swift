import Foundation
import KithCrypto
import KithInterchange
import KithCRDT

/// A contact as the HTTP API, the CLI's `--json` and the web page show it (Protocol/api.md §3):
/// camelCase keys, absent fields left out.
public struct ContactDTO: Codable, Sendable, Equatable {
    public struct Phone: Codable, Sendable, Equatable {
        /// Normalized (E.164 where possible, `;ext=` and the extension when there is one): what
        /// search and dedup compare.
        public var number: String
        /// As entered.
        public var raw: String
        /// The extension's digits, when there is one.
        public var `extension`: String?
        /// home, work, mobile…
        public var label: String?
    }

    public struct Email: Codable, Sendable, Equatable {
        public var address: String
        public var raw: String
        public var label: String?
    }

    public struct URLValue: Codable, Sendable, Equatable {
        public var url: String
        public var label: String?
    }

    public struct Event: Codable, Sendable, Equatable {
        /// `<source>:<event id>[@yyyy-mm-dd]`
        public var event: String
        public var title: String
    }

    public struct Knows: Codable, Sendable, Equatable {
        public var member: String
        public var strength: Int
    }

    public struct Conversation: Codable, Sendable, Equatable {
        /// yyyy-mm-dd
        public var date: String
        public var channel: String
        public var outcome: String
        public var note: String

        public init(date: String, channel: String, outcome: String, note: String) {
            self.date = date
            self.channel = channel
            self.outcome = outcome
            self.note = note
        }
    }

    public struct Consent: Codable, Sendable, Equatable {
        public var level: String
        public var date: String
        public var method: String
    }

    public var id: String
    /// The name to show: display name, else given and family name, else first email or phone.
    public var name: String
    public var givenName: String?
    public var familyName: String?
    public var displayName: String?
    public var address: String?
    public var city: String?
    public var postalCode: String?
    public var notes: String?
    public var relationship: String?
    public var support: String?
    public var voterFileId: String?
    public var consent: Consent?
    public var organization: String?
    public var title: String?
    /// yyyy-mm-dd, or --mm-dd without the year.
    public var birthday: String?
    public var nickname: String?
    /// The address's state, province or region.
    public var region: String?
    public var country: String?
    /// subscribed, unsubscribed, bouncing, complained or unknown, as the source reported it.
    public var emailSubscription: String?
    public var smsSubscription: String?
    public var phones: [Phone]
    public var emails: [Email]
    public var tags: [String]
    /// Chapter maps: the members who know this person, with how well.
    public var knows: [Knows]
    /// Contacts marked as the same person.
    public var links: [String]
    public var conversations: [Conversation]
    /// Ids in other systems (`van:123456`, `actionnetwork:…`).
    public var externalIds: [String]?
    public var urls: [URLValue]?
    /// Events attended or signed up for (Mobilize…).
    public var events: [Event]?

    public init(_ c: ContactView) {
        id = c.id.description
        name = c.displayName
        givenName = c[.givenName]
        familyName = c[.familyName]
        displayName = c[.displayName]
        address = c[.address]
        city = c[.city]
        postalCode = c[.postalCode]
        notes = c[.notes]
        relationship = c[.relationship]
        support = c[.support]
        voterFileId = c[.voterFileID]
        consent = c[.consent].flatMap { try? ContactConsent(encoded: $0) }.map { Consent(level: $0.level.rawValue, date: $0.date, method: $0.method) }
        organization = c[.organization]
        title = c[.title]
        birthday = c[.birthday]
        nickname = c[.nickname]
        region = c[.region]
        country = c[.country]
        emailSubscription = c[.emailSubscription]
        smsSubscription = c[.smsSubscription]
        let labels = Dictionary(c.values(.labels).map { ($0.key, $0.payload) }, uniquingKeysWith: { a, _ in a })
        phones = c.values(.phones).map { p in
            let ext = p.key.range(of: ";ext=").map { String(p.key[$0.upperBound...]) }
            return Phone(number: p.key, raw: p.payload.isEmpty ? p.key : p.payload, extension: ext, label: labels["tel:" + p.key])
        }
        emails = c.values(.emails).map { Email(address: $0.key, raw: $0.payload.isEmpty ? $0.key : $0.payload, label: labels["email:" + $0.key]) }
        let ids = c.values(.externalIDs).map(\.key)
        externalIds = ids.isEmpty ? nil : ids
        let u = c.values(.urls).map { URLValue(url: $0.key, label: $0.payload.isEmpty ? nil : $0.payload) }
        urls = u.isEmpty ? nil : u
        let ev = c.values(.events).map { Event(event: $0.key, title: $0.payload) }
        events = ev.isEmpty ? nil : ev
        tags = c.tags
        knows = c.values(.knows).map { Knows(member: $0.key, strength: Int($0.payload) ?? 0) }
        links = c.values(.links).map { ContactID(text: $0.key)?.description ?? $0.key }
        conversations = c.log.map { Conversation(date: Day.format($0.day), channel: $0.channel.description, outcome: $0.outcome, note: $0.note) }
    }

    /// The camelCase API name of a field (`postal_code` → `postalCode`, `voter_file_id` → `voterFileId`).
    public static func apiName(_ f: Field) -> String {
        var out = ""
        var upper = false
        for ch in f.name {
            if ch == "_" { upper = true; continue }
            out += upper ? ch.uppercased() : String(ch)
            upper = false
        }
        return out
    }

    /// The field an API name (or the older snake_case / kebab-case name) stands for.
    public static func field(named name: String) -> Field? {
        Field.allCases.first { apiName($0) == name || $0.name == name || $0.name == name.replacingOccurrences(of: "-", with: "_") }
    }
}

/// One page of a list or search (Protocol/api.md §3.2).
public struct ContactPage: Codable, Sendable, Equatable {
    public var contacts: [ContactDTO]
    /// Pass as `cursor` for the next page; absent on the last page.
    public var next: String?
    /// How many contacts match in all (the whole scope for a plain list).
    public var total: Int

    public init(contacts: [ContactDTO], next: String?, total: Int) {
        self.contacts = contacts
        self.next = next
        self.total = total
    }
}

