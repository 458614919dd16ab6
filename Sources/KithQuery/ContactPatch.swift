import Foundation
import KithCrypto
import KithInterchange
import KithCRDT

/// What a client asks to change on one contact (Protocol/api.md §3.3): the body of
/// `POST /v1/contacts` (a new contact) and `PATCH /v1/contacts/{id}`. The node turns it into
/// ops against its replica — observed removes name the adds it holds — so a client never needs
/// the replica.
public struct ContactPatch: Codable, Sendable, Equatable {
    /// Field (API name, e.g. `givenName`, `postalCode`) → new value; "" clears it.
    public var set: [String: String]?
    /// The contact's own consent.
    public var consent: ConsentChange?
    public var addPhones: [String]?
    public var removePhones: [String]?
    public var addEmails: [String]?
    public var removeEmails: [String]?
    public var addTags: [String]?
    public var removeTags: [String]?
    /// Phone (as typed or normalized) → label (home, work, mobile…); "" removes the label.
    public var phoneLabels: [String: String]?
    /// Email → label; "" removes the label.
    public var emailLabels: [String: String]?
    public var addUrls: [String]?
    public var removeUrls: [String]?
    /// `<system>:<id>` (`van:123456`).
    public var addExternalIds: [String]?
    public var removeExternalIds: [String]?
    /// A line appended to the notes.
    public var appendNote: String?
    public var logConversation: ConversationChange?
    /// Contacts (ids or unique prefixes) to mark as the same person, or to unmark.
    public var link: [String]?
    public var unlink: [String]?
    /// Region national phone numbers are read in: an ISO country code ("GB", "US").
    public var region: String?
    /// Deprecated: a calling code ("44") standing for its main region; `region` wins.
    public var defaultCountry: String?

    public struct ConsentChange: Codable, Sendable, Equatable {
        /// none, contact or share
        public var level: String
        /// yyyy-mm-dd (default: today)
        public var date: String?
        public var method: String?

        public init(level: String, date: String? = nil, method: String? = nil) {
            self.level = level
            self.date = date
            self.method = method
        }
    }

    public struct ConversationChange: Codable, Sendable, Equatable {
        /// door, phone, text, in-person or other
        public var channel: String
        public var outcome: String
        public var note: String?
        /// yyyy-mm-dd (default: today)
        public var date: String?

        public init(channel: String, outcome: String, note: String? = nil, date: String? = nil) {
            self.channel = channel
            self.outcome = outcome
            self.note = note
            self.date = date
        }
    }

    public init(set: [String: String]? = nil, consent: ConsentChange? = nil, addPhones: [String]? = nil, removePhones: [String]? = nil,
                phoneLabels: [String: String]? = nil, emailLabels: [String: String]? = nil, addUrls: [String]? = nil, removeUrls: [String]? = nil,
                addExternalIds: [String]? = nil, removeExternalIds: [String]? = nil,
                addEmails: [String]? = nil, removeEmails: [String]? = nil, addTags: [String]? = nil, removeTags: [String]? = nil,
                appendNote: String? = nil, logConversation: ConversationChange? = nil, link: [String]? = nil, unlink: [String]? = nil,
                region: String? = nil, defaultCountry: String? = nil) {
        self.region = region
        self.set = set
        self.consent = consent
        self.addPhones = addPhones
        self.removePhones = removePhones
        self.phoneLabels = phoneLabels
        self.emailLabels = emailLabels
        self.addUrls = addUrls
        self.removeUrls = removeUrls
        self.addExternalIds = addExternalIds
        self.removeExternalIds = removeExternalIds
        self.addEmails = addEmails
        self.removeEmails = removeEmails
        self.addTags = addTags
        self.removeTags = removeTags
        self.appendNote = appendNote
        self.logConversation = logConversation
        self.link = link
        self.unlink = unlink
        self.defaultCountry = defaultCountry
    }

    /// The region of `region` (an ISO code) or, failing that, of the deprecated calling code.
    public static func phoneRegion(region: String?, defaultCountry: String?) throws(QueryError) -> PhoneRegion? {
        if let region, !region.isEmpty {
            guard let r = PhoneRegion(code: region) else {
                throw QueryError(.invalid, "region '\(region)' is not an ISO country code libphonenumber knows (for example GB, US, FR)")
            }
            return r
        }
        if let defaultCountry, !defaultCountry.isEmpty {
            guard let r = PhoneRegion(callingCode: defaultCountry) else { throw QueryError(.invalid, "calling code '\(defaultCountry)' is unknown; use region") }
            return r
        }
        return nil
    }

    /// Today as days since 1970 (UTC).
    public static func today(nowMilliseconds: UInt64) -> UInt32 { UInt32(nowMilliseconds / 86_400_000) }

    /// The edits this patch makes to `id` (a new contact when `replica` does not hold it), or the
    /// first problem found, worded for the person who typed it. `resolve` turns link references
    /// into ids.
    public func edits(for id: ContactID, in replica: Replica, nowMilliseconds: UInt64,
                      resolve: (String) throws(QueryError) -> ContactID) throws(QueryError) -> [ContactEdit] {
        var ops: [KithCRDT.Operation] = []
        let phoneRegion = try Self.phoneRegion(region: region, defaultCountry: defaultCountry)
        for (name, value) in (set ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard let f = ContactDTO.field(named: name), f != .consent else {
                throw QueryError(.invalid, "unknown field '\(name)' (fields: \(Field.allCases.filter { $0 != .consent }.map(ContactDTO.apiName).joined(separator: ", ")))")
            }
            do { try f.validate(value) } catch { throw QueryError(.invalid, "\(ContactDTO.apiName(f)): \(error.reason)") }
            ops.append(.setField(f, value))
        }
        if let consent {
            guard let level = ContactConsent.Level(rawValue: consent.level) else { throw QueryError(.invalid, "consent level must be none, contact or share") }
            let value = ContactConsent(level: level, date: consent.date ?? Day.format(Self.today(nowMilliseconds: nowMilliseconds)),
                                       method: consent.method ?? "").encoded
            do throws(DecodeError) { try Field.consent.validate(value) } catch { throw QueryError(.invalid, "consent date: \(error.reason)") }
            ops.append(.setField(.consent, value))
        }
        for raw in addPhones ?? [] {
            guard let key = Normalization.phone(raw, region: phoneRegion) else { throw QueryError(.invalid, "phone '\(raw)' has no digits") }
            ops.append(.add(.phones, key, payload: key == raw ? "" : raw))
        }
        for raw in addEmails ?? [] {
            guard let key = Normalization.email(raw) else { throw QueryError(.invalid, "'\(raw)' is not an email address") }
            ops.append(.add(.emails, key, payload: key == raw ? "" : raw))
        }
        for raw in addTags ?? [] {
            guard let t = Normalization.tag(raw) else { throw QueryError(.invalid, "empty tag") }
            ops.append(.add(.tags, t))
        }
        func remove(_ values: [String]?, _ kind: SetKind, _ what: String, _ key: (String) -> String) throws(QueryError) {
            for raw in values ?? [] {
                let k = key(raw)
                let adds = replica.liveAdds(of: k, in: kind, contact: id)
                guard !adds.isEmpty else { throw QueryError(.notFound, "contact \(id) has no \(what) \(raw)") }
                ops.append(.remove(kind, k, observed: adds))
            }
        }
        try remove(removePhones, .phones, "phone") { Normalization.phone($0, region: phoneRegion) ?? $0 }
        try remove(removeEmails, .emails, "email") { Normalization.email($0) ?? $0 }
        try remove(removeTags, .tags, "tag") { Normalization.tag($0) ?? $0 }
        for raw in addUrls ?? [] {
            let u = raw.trimmingCharacters(in: .whitespaces)
            guard !u.isEmpty, u.utf8.count <= 1_024 else { throw QueryError(.invalid, "a URL is 1...1024 bytes") }
            ops.append(.add(.urls, u))
        }
        try remove(removeUrls, .urls, "URL") { $0.trimmingCharacters(in: .whitespaces) }
        for raw in addExternalIds ?? [] {
            guard SetKind.isExternalID(raw) else { throw QueryError(.invalid, "external id '\(raw)' is not <system>:<id>, e.g. van:123456 (system: a-z 0-9 . _ -)") }
            ops.append(.add(.externalIDs, raw))
        }
        try remove(removeExternalIds, .externalIDs, "external id") { $0 }
        func label(_ labels: [String: String]?, _ prefix: String, _ kind: SetKind, _ key: (String) -> String?) throws(QueryError) {
            for (raw, label) in (labels ?? [:]).sorted(by: { $0.key < $1.key }) {
                guard let k = key(raw) else { throw QueryError(.invalid, "'\(raw)' is not a \(kind == .phones ? "phone number" : "email address")") }
                let adds = replica.liveAdds(of: prefix + k, in: .labels, contact: id)
                let label = label.trimmingCharacters(in: .whitespaces)
                if label.isEmpty {
                    if !adds.isEmpty { ops.append(.remove(.labels, prefix + k, observed: adds)) }
                    continue
                }
                guard label.utf8.count <= 64 else { throw QueryError(.invalid, "a label is at most 64 bytes") }
                let known = replica.liveAdds(of: k, in: kind, contact: id).isEmpty == false
                let adding = ops.contains { if case let .add(s, key, _) = $0 { s == kind && key.elementsEqual(k.utf8) } else { false } }
                guard known || adding else { throw QueryError(.notFound, "contact \(id) has no \(kind == .phones ? "phone" : "email") \(raw) to label") }
                ops.append(.add(.labels, prefix + k, payload: label))
            }
        }
        try label(phoneLabels, "tel:", .phones) { Normalization.phone($0, region: phoneRegion) }
        try label(emailLabels, "email:", .emails) { Normalization.email($0) }
        if let appendNote {
            let old = replica.contact(id)?[.notes]
            let value = old.map { $0 + "\n" + appendNote } ?? appendNote
            do { try Field.notes.validate(value) } catch { throw QueryError(.invalid, "notes: \(error.reason)") }
            ops.append(.setField(.notes, value))
        }
        if let c = logConversation {
            guard let channel = Channel(name: c.channel) else { throw QueryError(.invalid, "channel must be door, phone, text, in-person or other") }
            var day = Self.today(nowMilliseconds: nowMilliseconds)
            if let date = c.date {
                guard let d = Day.parse(date) else { throw QueryError(.invalid, "conversation date must be yyyy-mm-dd") }
                day = d
            }
            ops.append(.logConversation(ConversationEntry(day: day, channel: channel, outcome: c.outcome, note: c.note ?? "")))
        }
        var edits: [ContactEdit] = []
        for ref in link ?? [] {
            let other = try resolve(ref)
            guard other != id else { throw QueryError(.invalid, "a contact is always the same person as itself") }
            ops.append(.link(to: other))
        }
        for ref in unlink ?? [] {
            let other = try resolve(ref)
            var found = false
            for (x, y) in [(id, other), (other, id)] {
                let adds = replica.liveLinkAdds(to: y, contact: x)
                guard !adds.isEmpty else { continue }
                found = true
                if x == id { ops.append(.unlink(from: y, observed: adds)) } else { edits.append(ContactEdit(contact: x, ops: [.unlink(from: y, observed: adds)])) }
            }
            guard found else { throw QueryError(.notFound, "\(id) and \(other) are not linked") }
        }
        if !ops.isEmpty { edits.insert(ContactEdit(contact: id, ops: ops), at: 0) }
        guard !edits.isEmpty else { throw QueryError(.invalid, "nothing to change") }
        return edits
    }
}

/// A query or change the node refused, with the HTTP status that fits (Protocol/api.md §2.3).
public struct QueryError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalid = "invalid_request"
        case notFound = "not_found"
        case ambiguous = "ambiguous"
        case conflict = "conflict"
        case unavailable = "unavailable"
        case failed = "failed"

        public var httpStatus: Int {
            switch self {
            case .invalid: 400
            case .notFound: 404
            case .ambiguous: 409
            case .conflict: 409
            case .unavailable: 503
            case .failed: 500
            }
        }
    }

    public let code: Code
    public let message: String
    /// For `.ambiguous`: the candidates.
    public var candidates: [String] = []

    public init(_ code: Code, _ message: String, candidates: [String] = []) {
        self.code = code
        self.message = message
        self.candidates = candidates
    }

    public var description: String { message }
}
