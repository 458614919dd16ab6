import KithCRDT
import KithInterchange

/// Decides, record by record, what an import does with the contacts a node already holds
/// (README "Import"): an incoming record matches an existing contact by its id (a vCard UID or
/// CSV id column; a Kith id matches only by id), then external id, then normalized email, then
/// normalized phone; a match
/// updates that contact with only what is new, so importing a file again creates nothing and
/// writes nothing. Two existing contacts matching one record is a conflict, reported and not
/// guessed. Name + postal code is only ever a suggestion. Pure: the CLI, the HTTP API and the web
/// page's import screen (preview / dry run) call the same `plan`.
public struct ImportMatcher: Sendable {
    /// The contacts the matcher knows, flat (about 100 B a contact instead of ~440 with a hash
    /// set each and dictionaries of ids): contact `i` is `ids[i]`, with its name, postal code and
    /// the 64-bit hash of each field value and set member it holds (`member`): the hashes it
    /// came with are `values[valueEnd[i - 1] ..< valueEnd[i]]`, those learned later (an update)
    /// are in `more[i]`.
    var ids: [ContactID] = []
    var names: [String] = []
    var postalCodes: [String] = []
    var values: [UInt64] = []
    var valueEnd: [Int] = []
    var more: [Int32: [UInt64]] = [:]
    /// Contact id → its slot.
    var slots = FlatMap<ContactID>()
    /// Match key hash → the slot of the one contact that holds it; `shared` when several do.
    var index = FlatMap<UInt64>()
    var shared: [UInt64: Set<ContactID>] = [:]
    /// Name + postal code hash → the slot of the first contact with it.
    var byNamePostal = FlatMap<UInt64>()

    /// A map to contact slots in a sorted array (binary search, 4 B a value beside the key), with
    /// a small dictionary for what is added, merged into the array when it grows past a quarter
    /// of it (so a 1M-contact import never holds a dictionary entry per contact).
    struct FlatMap<Key: Hashable & Comparable & Sendable>: Sendable {
        struct Entry: Sendable {
            var key: Key
            var slot: Int32
        }

        private(set) var sorted: [Entry] = []
        private var added: [Key: Int32] = [:]

        init() {}

        /// A map of `entries` (sorted in place and taken: no second copy), nil when a key repeats.
        init?(taking entries: inout [Entry]) {
            entries.sort { $0.key < $1.key }
            sorted = entries
            entries = []
            for i in sorted.indices.dropFirst() where sorted[i - 1].key == sorted[i].key { return nil }
        }

        var count: Int { sorted.count + added.count }

        /// Each entry (the sorted ones, then those added since the last merge), without a copy.
        func forEach(_ body: (Key, Int32) -> Void) {
            for e in sorted { body(e.key, e.slot) }
            for (k, s) in added { body(k, s) }
        }

        subscript(key: Key) -> Int32? {
            if let s = added[key] { return s }
            var lo = 0, hi = sorted.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if sorted[mid].key < key { lo = mid + 1 } else { hi = mid }
            }
            return lo < sorted.count && sorted[lo].key == key ? sorted[lo].slot : nil
        }

        /// Adds a key not in the map.
        mutating func insert(_ key: Key, _ slot: Int32) {
            added[key] = slot
            if added.count > max(4_096, sorted.count / 4) { merge() }
        }

        mutating func merge() {
            let new = added.map { Entry(key: $0.key, slot: $0.value) }.sorted { $0.key < $1.key }
            added = [:]
            var out: [Entry] = []
            out.reserveCapacity(sorted.count + new.count)
            var i = 0, j = 0
            while i < sorted.count, j < new.count {
                if sorted[i].key < new[j].key {
                    out.append(sorted[i])
                    i += 1
                } else {
                    out.append(new[j])
                    j += 1
                }
            }
            out += sorted[i...]
            out += new[j...]
            sorted = out
        }
    }

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
        for c in existing { learn(existing: c) }
    }

    /// A matcher over every visible contact of `replica`, read from its views directly: no
    /// search index, no pages of DTOs (what `kith import` does when it opens the store itself).
    public init(replica: Replica) {
        for id in replica.visibleContactIDs {
            if let v = replica.contact(id) { learn(existing: v) }
        }
    }

    /// Adds one contact the node holds (page by page: the pages need not be kept).
    public mutating func learn(existing c: ContactDTO) {
        guard let id = ContactID(text: c.id) else { return }
        var members: [Member] = []
        for f in Field.allCases { if let v = c.value(of: f) { members.append(Self.field(f, v)) } }
        members += Self.setMembers(phones: c.phones.map { ($0.number, $0.label) }, emails: c.emails.map { ($0.address, $0.label) }, tags: c.tags,
                                   externalIDs: c.externalIds ?? [], urls: (c.urls ?? []).map(\.url), events: (c.events ?? []).map(\.event))
        learn(id, members, name: Self.name(given: c.givenName, family: c.familyName, display: c.displayName), postalCode: c.postalCode)
    }

    /// Adds one contact the node holds, from the replica's view: the same members as the
    /// contact's `ContactDTO` gives (a label only for a phone or email the contact has).
    public mutating func learn(existing c: ContactView) {
        var members: [Member] = []
        for f in Field.allCases { if let v = c[f] { members.append(Self.field(f, v)) } }
        let labels = Dictionary(c.values(.labels).map { ($0.key, $0.payload) }, uniquingKeysWith: { a, _ in a })
        members += Self.setMembers(phones: c.phones.map { ($0, labels["tel:" + $0]) }, emails: c.emails.map { ($0, labels["email:" + $0]) },
                                   tags: c.tags, externalIDs: c.values(.externalIDs).map(\.key), urls: c.values(.urls).map(\.key),
                                   events: c.values(.events).map(\.key))
        learn(c.id, members, name: Self.name(given: c[.givenName], family: c[.familyName], display: c[.displayName]), postalCode: c[.postalCode])
    }

    private static func setMembers(phones: [(String, String?)], emails: [(String, String?)], tags: [String], externalIDs: [String],
                                   urls: [String], events: [String]) -> [Member] {
        var members: [Member] = []
        for (number, label) in phones {
            members.append(member(.phones, number.utf8, EmptyCollection()))
            if let label { members.append(member(.labels, ("tel:" + number).utf8, label.utf8)) }
        }
        for (address, label) in emails {
            members.append(member(.emails, address.utf8, EmptyCollection()))
            if let label { members.append(member(.labels, ("email:" + address).utf8, label.utf8)) }
        }
        for t in tags { members.append(member(.tags, t.utf8, EmptyCollection())) }
        for x in externalIDs { members.append(member(.externalIDs, x.utf8, EmptyCollection())) }
        for u in urls { members.append(member(.urls, u.utf8, EmptyCollection())) }
        for e in events { members.append(member(.events, e.utf8, EmptyCollection())) }
        return members
    }

    public var contactCount: Int { ids.count }

    /// The decision for `c`, and what a name + postal code match suggests (never acted on).
    /// The matcher then counts the record as written, so a later row of the same person in the
    /// same file matches it.
    public mutating func plan(_ c: ConvertedContact) -> (decision: Decision, suggestion: ContactID?) {
        var target: ContactID?
        var how = ""
        if c.hasUID, slots[c.edit.contact] != nil {
            target = c.edit.contact
            how = "id"
        } else if c.isKithID {
            // A Kith export's record is exactly its contact: two contacts sharing an email stay two.
        } else {
            for (what, kind, keys) in [("external id", SetKind.externalIDs, c.keys.externalIDs), ("email", .emails, c.keys.emails),
                                       ("phone", .phones, c.keys.phones)] {
                var ids = Set<ContactID>()
                for k in keys {
                    let h = Self.member(kind, k.utf8, EmptyCollection()).hash
                    if let many = shared[h] { ids.formUnion(many) } else if let one = index[h] { ids.insert(self.ids[Int(one)]) }
                }
                if ids.count > 1 { return (.conflict(ids.sorted(), matchedBy: what), nil) }
                if let id = ids.first {
                    target = id
                    how = what
                    break
                }
            }
        }
        let members = Self.members(of: c.edit)
        guard let id = target else {
            let suggestion = c.isKithID ? nil : Self.namePostal(c.keys.name, c.keys.postalCode ?? "").flatMap { byNamePostal[$0] }.map { ids[Int($0)] }
            learn(c.edit.contact, members.compactMap(\.member), name: c.keys.name, postalCode: c.keys.postalCode)
            return (.create(c.edit), suggestion)
        }
        let slot = slots[id]
        var ops: [KithCRDT.Operation] = []
        for (op, m) in members where m.map({ h in slot.map { !holds($0, h.hash) } ?? true }) ?? true { ops.append(op) }
        guard !ops.isEmpty else { return (.unchanged(id, matchedBy: how), nil) }
        let edit = ContactEdit(contact: id, ops: ops)
        learn(id, members.compactMap(\.member), name: c.keys.name, postalCode: c.keys.postalCode)
        return (.update(edit, matchedBy: how), nil)
    }

    private mutating func learn(_ id: ContactID, _ members: [Member], name: String, postalCode: String?) {
        let slot: Int32
        if let s = slots[id] {
            slot = s
            for m in members where !holds(slot, m.hash) { more[slot, default: []].append(m.hash) }
        } else {
            slot = Int32(ids.count)
            ids.append(id)
            names.append("")
            postalCodes.append("")
            let start = values.count
            for m in members where !values[start...].contains(m.hash) { values.append(m.hash) }
            valueEnd.append(values.count)
            slots.insert(id, slot)
        }
        for m in members where m.isMatchKey { // only phones, emails and external ids match records
            let h = m.hash
            if var many = shared[h] {
                many.insert(id)
                shared[h] = many
            } else if let one = index[h] {
                if ids[Int(one)] != id { shared[h] = [ids[Int(one)], id] }
            } else {
                index.insert(h, slot)
            }
        }
        let i = Int(slot)
        if !name.isEmpty { names[i] = name }
        if let postalCode, !postalCode.isEmpty { postalCodes[i] = postalCode }
        if let np = Self.namePostal(names[i], postalCodes[i]), byNamePostal[np] == nil { byNamePostal.insert(np, slot) }
    }

    /// The hashes contact `slot` holds.
    func values(of slot: Int32) -> ArraySlice<UInt64> {
        let i = Int(slot)
        return values[(i == 0 ? 0 : valueEnd[i - 1])..<valueEnd[i]]
    }

    func holds(_ slot: Int32, _ hash: UInt64) -> Bool {
        values(of: slot).contains(hash) || more[slot]?.contains(hash) == true
    }

    static func name(given: String?, family: String?, display: String?) -> String {
        let n = [given, family].compactMap { $0 }.joined(separator: " ")
        return n.isEmpty ? display ?? "" : n
    }

    static func namePostal(_ name: String, _ postalCode: String) -> UInt64? {
        guard !name.isEmpty, !postalCode.isEmpty else { return nil }
        return hash("np|" + name.lowercased() + "|" + postalCode.lowercased().filter { !$0.isWhitespace })
    }

    /// FNV-1a (64 bits) of the UTF-8: fast and small. Two different keys colliding (odds about
    /// 10^-8 for a million keys) would match or skip wrongly; an import accepts that.
    static func hash(_ s: String) -> UInt64 {
        var h = FNV1a()
        h.add(s.utf8)
        return h.value
    }

    /// FNV-1a (64 bits), fed piece by piece: a member's hash is that of its text without the
    /// text being built.
    struct FNV1a {
        private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

        mutating func add(_ bytes: some Sequence<UInt8>) {
            var h = value
            for b in bytes {
                h ^= UInt64(b)
                h &*= 0x100_0000_01b3
            }
            value = h
        }

        mutating func add(_ byte: UInt8) {
            value ^= UInt64(byte)
            value &*= 0x100_0000_01b3
        }

        /// The decimal digits of `n` (as `"\(n)"` writes them).
        mutating func add(decimal n: UInt8) {
            if n >= 100 { add(0x30 + n / 100) }
            if n >= 10 { add(0x30 + n / 10 % 10) }
            add(0x30 + n % 10)
        }
    }

    /// What the matcher keeps of a field value or set member: the hash of its text, and whether
    /// it matches records (phones, emails and external ids do).
    struct Member: Equatable {
        var hash: UInt64
        var isMatchKey: Bool
    }

    /// A set member, hashed as the text `p|key` (phones), `e|key` (emails), `x|key` (external
    /// ids), `l|key|payload` (labels) or `<kind number>|key` (other sets): phones, emails and
    /// external ids by key (a new raw form of a known number changes nothing), labels by key and
    /// label, other sets by key.
    static func member(_ kind: SetKind, _ key: some Sequence<UInt8>, _ payload: some Sequence<UInt8>) -> Member {
        var h = FNV1a()
        switch kind {
        case .phones: h.add(0x70) // p
        case .emails: h.add(0x65) // e
        case .externalIDs: h.add(0x78) // x
        case .labels: h.add(0x6C) // l
        default: h.add(decimal: kind.rawValue)
        }
        h.add(0x7C) // |
        h.add(key)
        if kind == .labels {
            h.add(0x7C)
            h.add(payload)
        }
        return Member(hash: h.value, isMatchKey: kind == .phones || kind == .emails || kind == .externalIDs)
    }

    /// A field value, hashed as the text `f<field number>|value`.
    static func field(_ f: Field, _ v: String) -> Member {
        var h = FNV1a()
        h.add(0x66) // f
        h.add(decimal: f.rawValue)
        h.add(0x7C)
        h.add(v.utf8)
        return Member(hash: h.value, isMatchKey: false)
    }

    /// Each op's member (nil for ops always written: conversation log entries).
    static func members(of edit: ContactEdit) -> [(op: KithCRDT.Operation, member: Member?)] {
        edit.ops.map { op in
            switch op {
            case let .setField(f, v): (op, field(f, v))
            case let .add(kind, key, payload): (op, member(kind, key, payload))
            default: (op, nil)
            }
        }
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

/// One import, record by record: converts, matches and gathers the edits to commit, with the
/// summary, warnings and problems. The CLI commits `takeBatch()` as it reads; a route (the web
/// page's import screen) can run it without committing for a preview or dry run, or commit the
/// batches through the node like `POST /v1/edits`.
public struct ImportSession: Sendable {
    public private(set) var matcher: ImportMatcher
    public let region: PhoneRegion?
    public private(set) var summary = ImportSummary()
    /// Records skipped (no name, phone or email left…).
    public private(set) var issues: [ImportIssue] = []
    /// Values dropped from records that were kept.
    public private(set) var warnings: [ImportIssue] = []
    private var pending: [ContactEdit] = []
    private var pendingAt: [ContactID: Int] = [:]

    public init(matcher: ImportMatcher, region: PhoneRegion?) {
        self.matcher = matcher
        self.region = region
    }

    /// Edits waiting to be committed.
    public var pendingCount: Int { pending.count }

    public mutating func take(_ contacts: [ImportedContact]) {
        take(converted: Self.convert(contacts, region: region))
    }

    /// Each record converted to ops (normalized phones, emails…), or why it cannot be imported.
    /// Pure, so it can run on another thread than `take(converted:)` (the CLI reads, parses and
    /// converts on one thread while the other matches and commits).
    public static func convert(_ contacts: [ImportedContact], region: PhoneRegion?) -> [Result<ConvertedContact, ImportIssue>] {
        contacts.map { c in
            do throws(ImportIssue) { return .success(try c.convert(region: region)) } catch { return .failure(error) }
        }
    }

    /// Matches records `convert` made (with this session's region) and gathers their edits.
    public mutating func take(converted records: [Result<ConvertedContact, ImportIssue>]) {
        for r in records {
            let converted: ConvertedContact
            switch r {
            case let .success(c): converted = c
            case let .failure(issue):
                issues.append(issue)
                continue
            }
            let c = converted
            warnings += converted.warnings
            let (decision, suggestion) = matcher.plan(converted)
            switch decision {
            case let .create(e):
                summary.created += 1
                add(e)
            case let .update(e, _):
                summary.updated += 1
                add(e)
            case .unchanged: summary.unchanged += 1
            case let .conflict(ids, how):
                summary.conflicts.append("\(c.origin): matches \(ids.count) contacts by \(how) (\(ids.map(\.description).joined(separator: ", "))): skipped; link them (kith link) or fix the file")
            }
            if let s = suggestion {
                summary.suggestions.append("\(c.origin): same name and postal code as \(s); if it is the same person: kith link \(s) <its id>")
            }
        }
    }

    /// The edits gathered so far, emptied: one block per contact (two rows of one person in a
    /// batch share it).
    public mutating func takeBatch() -> [ContactEdit] {
        defer {
            pending = []
            pendingAt = [:]
        }
        return pending
    }

    private mutating func add(_ e: ContactEdit) {
        if let i = pendingAt[e.contact], pending[i].ops.count + e.ops.count <= Change.maxOpsPerBlock {
            pending[i].ops += e.ops
        } else {
            pendingAt[e.contact] = pending.count
            pending.append(e)
        }
    }

    /// Edits grouped into changes of about 1,000 ops (one signature per ~100 contacts).
    public static func changes(_ edits: [ContactEdit]) -> [[ContactEdit]] {
        var changes: [[ContactEdit]] = [[]]
        var ops = 0
        for e in edits {
            if ops + e.ops.count > 1_000, !changes[changes.count - 1].isEmpty {
                changes.append([])
                ops = 0
            }
            changes[changes.count - 1].append(e)
            ops += e.ops.count
        }
        return changes
    }
}
