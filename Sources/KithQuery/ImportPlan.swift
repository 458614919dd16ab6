import KithCRDT
import KithInterchange

/// Decides, record by record, what an import does with the contacts a node already holds
/// (README "Import"): an incoming record matches an existing contact by its id (a vCard UID or
/// CSV id column), then external id, then normalized email, then normalized phone; a match
/// updates that contact with only what is new, so importing a file again creates nothing and
/// writes nothing. Two existing contacts matching one record is a conflict, reported and not
/// guessed. Name + postal code is only ever a suggestion. Pure: the CLI, the HTTP API and the web
/// page's import screen (preview / dry run) call the same `plan`.
public struct ImportMatcher: Sendable {
    /// What an existing (or already planned) contact holds, as set keys.
    struct Known: Sendable {
        var fields: [Field: String] = [:]
        var members: Set<String> = []
    }

    private var known: [ContactID: Known] = [:]
    private var byExternalID: [String: Set<ContactID>] = [:]
    private var byEmail: [String: Set<ContactID>] = [:]
    private var byPhone: [String: Set<ContactID>] = [:]
    private var byNamePostal: [String: Set<ContactID>] = [:]

    /// What to do with one record.
    public enum Decision: Sendable {
        /// A new contact.
        case create(ContactEdit)
        /// An existing contact gets the ops that change it (`matchedBy`: "id", "external id",
        /// "email" or "phone").
        case update(ContactEdit, matchedBy: String)
        /// It matches an existing contact that already holds everything in it.
        case unchanged(ContactID, matchedBy: String)
        /// Several existing contacts match: nothing written.
        case conflict([ContactID], matchedBy: String)
    }

    public init() {}

    /// A matcher over the contacts a node holds.
    public init(existing: some Sequence<ContactDTO>) {
        for c in existing {
            guard let id = ContactID(text: c.id) else { continue }
            learn(id, Self.known(from: c))
        }
    }

    public var contactCount: Int { known.count }

    /// The decision for `c`, and what a name + postal code match suggests (never acted on).
    /// The matcher then counts the record as written, so a later row of the same person in the
    /// same file matches it.
    public mutating func plan(_ c: ConvertedContact) -> (decision: Decision, suggestion: ContactID?) {
        var target: ContactID?
        var how = ""
        if c.hasUID, known[c.edit.contact] != nil {
            target = c.edit.contact
            how = "id"
        } else {
            for (what, keys, index) in [("external id", c.keys.externalIDs, byExternalID), ("email", c.keys.emails, byEmail),
                                        ("phone", c.keys.phones, byPhone)] {
                let ids = keys.reduce(into: Set<ContactID>()) { $0.formUnion(index[$1] ?? []) }
                if ids.count > 1 { return (.conflict(ids.sorted(), matchedBy: what), nil) }
                if let id = ids.first {
                    target = id
                    how = what
                    break
                }
            }
        }
        guard let id = target else {
            let suggestion = namePostalKey(c.keys).flatMap { byNamePostal[$0]?.sorted().first }
            learn(c.edit.contact, Self.known(from: c.edit))
            return (.create(c.edit), suggestion)
        }
        let have = known[id] ?? Known()
        let ops = c.edit.ops.filter { op in
            switch op {
            case let .setField(f, v): return have.fields[f] != v
            case let .add(kind, key, payload):
                return !have.members.contains(Self.member(kind, String(decoding: key, as: UTF8.self), String(decoding: payload, as: UTF8.self)))
            case .logConversation: return true
            default: return true
            }
        }
        guard !ops.isEmpty else { return (.unchanged(id, matchedBy: how), nil) }
        let edit = ContactEdit(contact: id, ops: ops)
        learn(id, Self.known(from: edit))
        return (.update(edit, matchedBy: how), nil)
    }

    private func namePostalKey(_ k: MatchKeys) -> String? {
        guard !k.name.isEmpty, let pc = k.postalCode, !pc.isEmpty else { return nil }
        return k.name.lowercased() + "|" + pc.lowercased().filter { !$0.isWhitespace }
    }

    private mutating func learn(_ id: ContactID, _ k: Known) {
        var cur = known[id] ?? Known()
        cur.fields.merge(k.fields) { _, b in b }
        cur.members.formUnion(k.members)
        known[id] = cur
        for m in k.members {
            if m.hasPrefix("x|") { byExternalID[String(m.dropFirst(2)), default: []].insert(id) }
            if m.hasPrefix("e|") { byEmail[String(m.dropFirst(2)), default: []].insert(id) }
            if m.hasPrefix("p|") { byPhone[String(m.dropFirst(2)), default: []].insert(id) }
        }
        var keys = MatchKeys()
        keys.name = [cur.fields[.givenName], cur.fields[.familyName]].compactMap { $0 }.joined(separator: " ")
        if keys.name.isEmpty { keys.name = cur.fields[.displayName] ?? "" }
        keys.postalCode = cur.fields[.postalCode]
        if let np = namePostalKey(keys) { byNamePostal[np, default: []].insert(id) }
    }

    /// A set member as a comparable string: phones, emails and external ids by key (a new raw
    /// form of a known number changes nothing), labels by key and label, others by key.
    static func member(_ kind: SetKind, _ key: String, _ payload: String) -> String {
        switch kind {
        case .phones: "p|" + key
        case .emails: "e|" + key
        case .externalIDs: "x|" + key
        case .labels: "l|" + key + "|" + payload
        default: "\(kind.rawValue)|" + key
        }
    }

    static func known(from edit: ContactEdit) -> Known {
        var k = Known()
        for op in edit.ops {
            switch op {
            case let .setField(f, v): k.fields[f] = v
            case let .add(kind, key, payload): k.members.insert(member(kind, String(decoding: key, as: UTF8.self), String(decoding: payload, as: UTF8.self)))
            default: break
            }
        }
        return k
    }

    static func known(from c: ContactDTO) -> Known {
        var k = Known()
        for f in Field.allCases { if let v = c.value(of: f) { k.fields[f] = v } }
        for p in c.phones {
            k.members.insert(member(.phones, p.number, ""))
            if let l = p.label { k.members.insert(member(.labels, "tel:" + p.number, l)) }
        }
        for e in c.emails {
            k.members.insert(member(.emails, e.address, ""))
            if let l = e.label { k.members.insert(member(.labels, "email:" + e.address, l)) }
        }
        for t in c.tags { k.members.insert(member(.tags, t, "")) }
        for x in c.externalIds ?? [] { k.members.insert(member(.externalIDs, x, "")) }
        for u in c.urls ?? [] { k.members.insert(member(.urls, u.url, "")) }
        for e in c.events ?? [] { k.members.insert(member(.events, e.event, "")) }
        return k
    }
}

/// The outcome of planning a whole import: what `--dry-run` prints and a real import commits.
public struct ImportSummary: Sendable, Codable, Equatable {
    public var created = 0
    public var updated = 0
    public var unchanged = 0
    public var conflicts: [String] = []
    public var suggestions: [String] = []
    public init() {}
}

extension ContactDTO {
    /// The value of a field as the replica holds it (consent in its encoded form).
    public func value(of f: Field) -> String? {
        switch f {
        case .givenName: givenName
        case .familyName: familyName
        case .displayName: displayName
        case .address: address
        case .city: city
        case .postalCode: postalCode
        case .notes: notes
        case .relationship: relationship
        case .support: support
        case .voterFileID: voterFileId
        case .consent: consent.map { ContactConsent(level: ContactConsent.Level(rawValue: $0.level) ?? .none, date: $0.date, method: $0.method).encoded }
        case .organization: organization
        case .title: title
        case .birthday: birthday
        case .nickname: nickname
        case .region: region
        case .country: country
        case .emailSubscription: emailSubscription
        case .smsSubscription: smsSubscription
        }
    }
}
