import Foundation
import KithCrypto
import KithInterchange
import KithCRDT

/// The in-memory indexes of one scope's visible contacts, kept beside its replica and patched
/// from `Replica.takeChangedContacts()`, and saved in the store's snapshot (index section,
/// ContactIndex+Snapshot.swift). Pure: no I/O.
///
/// - Terms (bytes, sorted with the contact id): name words (case- and accent-folded) for prefix
///   search; phone digits reversed for "ends with" search in any format; emails for prefix
///   search; tags exact (folded); match tokens (chapter maps) exact.
/// - The order: every visible contact by folded display name, then id — what `list` pages
///   through, so no request sorts the store.
/// - Match tokens shared by more than one contact: the likely duplicates of a chapter map.
///
/// Patching one contact costs O(log n + chunk) per term; a change touching more than a quarter
/// of the contacts rebuilds instead.
///
/// An index loaded from a snapshot answers from its flat arrays (`frozen`); contacts changed
/// since are `retired` from them and indexed in the chunked structures beside (the overlay), so
/// every answer is the union of the two.
public struct ContactIndex: Sendable {
    public enum Kind: CaseIterable, Sendable {
        case name, phone, email, tag
    }

    struct Term: Comparable, Sendable {
        let bytes: [UInt8]
        let id: ContactID
        static func < (a: Term, b: Term) -> Bool {
            let c = compareBytes(a.bytes, b.bytes)
            return c == 0 ? a.id < b.id : c < 0
        }
    }

    /// A contact's place in the list order: folded display name, then id.
    public struct OrderKey: Comparable, Sendable {
        public let name: [UInt8]
        public let id: ContactID
        public static func < (a: OrderKey, b: OrderKey) -> Bool {
            let c = compareBytes(a.name, b.name)
            return c == 0 ? a.id < b.id : c < 0
        }

        /// An opaque paging cursor: base64url(name ‖ 16-byte id).
        public var cursor: String { Base64URL.encode(name + id.bytes) }

        public init?(cursor: String) {
            guard let b = Base64URL.decode(cursor), b.count >= 16, let id = try? ContactID(bytes: b.suffix(16)) else { return nil }
            name = Array(b.dropLast(16))
            self.id = id
        }

        init(name: [UInt8], id: ContactID) {
            self.name = name
            self.id = id
        }
    }

    struct Entry: Sendable {
        var terms: [[UInt8]]
        var key: OrderKey
        var tokens: [String]
        /// Contacts this one is linked to as the same person.
        var links: [ContactID]
    }

    var terms = SortedChunks<Term>()
    var order = SortedChunks<OrderKey>()
    var entries: [ContactID: Entry] = [:]
    private var tokenMembers: [String: Set<ContactID>] = [:]
    /// Match tokens held by two or more contacts.
    private var sharedTokens: Set<String> = []
    /// Reverse "same person" links: who links to a contact.
    var linkedFrom: [ContactID: Set<ContactID>] = [:]
    /// The index as loaded from a snapshot, and its contacts indexed anew since (or gone).
    var frozen: FrozenIndex?
    var retired: Set<ContactID> = []
    private var retiredTerms = 0

    public init() {}

    init(frozen f: FrozenIndex) {
        frozen = f
        for (o, ts) in f.tokens {
            for t in ts { tokenMembers[t, default: []].insert(f.ids[Int(o)]) }
        }
        sharedTokens = Set(tokenMembers.filter { $0.value.count > 1 }.keys)
        for (o, ls) in f.links {
            for l in ls { linkedFrom[l, default: []].insert(f.ids[Int(o)]) }
        }
    }

    /// Indexes every visible contact of `replica`.
    public init(replica: Replica) {
        rebuild(from: replica)
    }

    /// Visible contacts indexed.
    public var count: Int { entries.count + (frozen?.count ?? 0) - retired.count }
    public var termCount: Int { terms.count + (frozen?.termCount ?? 0) - retiredTerms }

    /// A contact's ordinal in `frozen` while it is indexed from there.
    private func frozenOrdinal(_ id: ContactID) -> Int? {
        guard let frozen, retired.isEmpty || !retired.contains(id) else { return nil }
        return frozen.ordinal(of: id)
    }

    private func isIndexed(_ id: ContactID) -> Bool { entries[id] != nil || frozenOrdinal(id) != nil }

    private func links(of id: ContactID) -> [ContactID] {
        if let e = entries[id] { return e.links }
        return frozenOrdinal(id).flatMap { frozen!.links[UInt32($0)] } ?? []
    }

    /// Whether the indexed contact `id` has a term starting with `prefix` (equal when `exact`).
    private func has(_ id: ContactID, _ prefix: [UInt8], exact: Bool) -> Bool {
        if let e = entries[id] { return e.terms.contains { $0.starts(with: prefix) && (!exact || $0.count == prefix.count) } }
        return frozenOrdinal(id).map { frozen!.has($0, prefix, exact: exact) } ?? false
    }

    // MARK: Building

    /// Collects one contact's index data from the search-term visitor.
    struct Collector {
        var given: String?, family: String?, display: String?
        var email: String?, phone: String?
        var terms = Set<[UInt8]>()
        var tokens = Set<String>()
        var links = Set<ContactID>()

        mutating func take(_ field: Field?, _ set: SetKind?, _ text: String) {
            if let field {
                switch field {
                case .givenName: given = text
                case .familyName: family = text
                case .displayName: display = text
                default: break
                }
                for w in ContactIndex.words(text) { terms.insert(ContactIndex.tagged(0x6E, w)) } // n
            } else if set == .phones {
                // The number without its extension (`;ext=12`): searches match the number's end.
                let digits = ContactIndex.digits(text.range(of: ";ext=").map { String(text[..<$0.lowerBound]) } ?? text)
                if !digits.isEmpty { terms.insert(ContactIndex.tagged(0x70, digits.reversed())) } // p
                if phone == nil || text < phone! { phone = text }
            } else if set == .emails {
                terms.insert(ContactIndex.tagged(0x65, Array(text.lowercased().utf8))) // e
                if email == nil || text < email! { email = text }
            } else if set == .tags {
                terms.insert(ContactIndex.tagged(0x74, ContactIndex.fold(text))) // t
            } else if set == .matchTokens {
                tokens.insert(text)
            } else if set == .links, let other = ContactID(text: text) {
                links.insert(other)
            }
        }

        /// The name shown for the contact: `ContactView.displayName`'s rule.
        var name: String {
            if let display { return display }
            let n = [given, family].compactMap { $0 }.joined(separator: " ")
            return n.isEmpty ? (email ?? phone ?? "(no name)") : n
        }

        func entry(_ id: ContactID) -> Entry {
            var all = terms
            all.insert(ContactIndex.tagged(0x69, id.bytes)) // i: the id's bytes, for prefixes of either text form
            return Entry(terms: Array(all), key: OrderKey(name: ContactIndex.fold(name), id: id), tokens: Array(tokens), links: Array(links))
        }
    }

    private mutating func rebuild(from replica: Replica) {
        var collected: [ContactID: Collector] = [:]
        collected.reserveCapacity(replica.knownContactCount)
        replica.forEachSearchTerm { id, field, set, text in collected[id, default: Collector()].take(field, set, text) }
        // A visible contact with no indexed text still has a place in the order.
        for id in replica.visibleContactIDs where collected[id] == nil { collected[id] = Collector() }
        entries = [:]
        frozen = nil
        retired = []
        retiredTerms = 0
        entries.reserveCapacity(collected.count)
        var allTerms: [Term] = []
        var keys: [OrderKey] = []
        keys.reserveCapacity(collected.count)
        tokenMembers = [:]
        linkedFrom = [:]
        for (id, c) in collected {
            let e = c.entry(id)
            entries[id] = e
            keys.append(e.key)
            for t in e.terms { allTerms.append(Term(bytes: t, id: id)) }
            for t in e.tokens { tokenMembers[t, default: []].insert(id) }
            for l in e.links { linkedFrom[l, default: []].insert(id) }
        }
        terms = SortedChunks(ContactIndex.sortedTerms(allTerms)) // sorting sorted input is one pass
        order = SortedChunks(ContactIndex.sortedKeys(keys))
        sharedTokens = Set(tokenMembers.filter { $0.value.count > 1 }.keys)
    }

    /// Brings the index up to date with what changed in `replica` since the last update.
    public mutating func update(from replica: inout Replica) {
        switch replica.takeChangedContacts() {
        case .all: rebuild(from: replica)
        case let .some(ids): update(ids, from: replica)
        }
    }

    /// Re-indexes `ids` from `replica` (each removed if no longer visible).
    public mutating func update(_ ids: Set<ContactID>, from replica: Replica) {
        guard !ids.isEmpty else { return }
        if ids.count > max(1024, count / 4) { return rebuild(from: replica) }
        var collected: [ContactID: Collector] = [:]
        replica.forEachSearchTerm(of: ids) { id, field, set, text in collected[id, default: Collector()].take(field, set, text) }
        for id in ids {
            if let old = entries.removeValue(forKey: id) {
                for t in old.terms { terms.remove(Term(bytes: t, id: id)) }
                order.remove(old.key)
                for t in old.tokens { dropToken(t, id) }
                for l in old.links {
                    linkedFrom[l]?.remove(id)
                    if linkedFrom[l]?.isEmpty == true { linkedFrom[l] = nil }
                }
            } else if let o = frozenOrdinal(id), let f = frozen {
                retired.insert(id)
                retiredTerms += Int(f.contactTermStarts[o + 1] - f.contactTermStarts[o])
                for t in f.tokens[UInt32(o)] ?? [] { dropToken(t, id) }
                for l in f.links[UInt32(o)] ?? [] {
                    linkedFrom[l]?.remove(id)
                    if linkedFrom[l]?.isEmpty == true { linkedFrom[l] = nil }
                }
            }
            var c = collected[id]
            if c == nil, replica.contact(id) != nil { c = Collector() }
            guard let c else { continue }
            let e = c.entry(id)
            entries[id] = e
            for t in e.terms { terms.insert(Term(bytes: t, id: id)) }
            order.insert(e.key)
            for t in e.tokens {
                tokenMembers[t, default: []].insert(id)
                if tokenMembers[t]!.count > 1 { sharedTokens.insert(t) }
            }
            for l in e.links { linkedFrom[l, default: []].insert(id) }
        }
    }

    private mutating func dropToken(_ t: String, _ id: ContactID) {
        guard var members = tokenMembers[t] else { return }
        members.remove(id)
        if members.isEmpty { tokenMembers[t] = nil } else { tokenMembers[t] = members }
        if members.count < 2 { sharedTokens.remove(t) }
    }

    static func tagged(_ tag: UInt8, _ bytes: some Collection<UInt8>) -> [UInt8] {
        var out: [UInt8] = [tag, 0x3A]
        out.append(contentsOf: bytes)
        return out
    }

    /// Base letters of U+00C0…U+024F (Latin-1 Supplement, Latin Extended-A and -B), from their
    /// canonical decompositions; 0 where there is none (generated, see data in the git history).
    static let latinFold: [UInt8] = [97, 97, 97, 97, 97, 97, 97, 99, 101, 101, 101, 101, 105, 105, 105, 105, 100, 110, 111, 111, 111, 111, 111, 0, 111, 117, 117, 117, 117, 121, 116, 115, 97, 97, 97, 97, 97, 97, 97, 99, 101, 101, 101, 101, 105, 105, 105, 105, 100, 110, 111, 111, 111, 111, 111, 0, 111, 117, 117, 117, 117, 121, 116, 121, 97, 97, 97, 97, 97, 97, 99, 99, 99, 99, 99, 99, 99, 99, 100, 100, 100, 100, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 103, 103, 103, 103, 103, 103, 103, 103, 104, 104, 104, 104, 105, 105, 105, 105, 105, 105, 105, 105, 105, 105, 0, 0, 106, 106, 107, 107, 107, 108, 108, 108, 108, 108, 108, 108, 108, 108, 108, 110, 110, 110, 110, 110, 110, 0, 110, 110, 111, 111, 111, 111, 111, 111, 111, 111, 114, 114, 114, 114, 114, 114, 115, 115, 115, 115, 115, 115, 115, 115, 116, 116, 116, 116, 116, 116, 117, 117, 117, 117, 117, 117, 117, 117, 117, 117, 117, 117, 119, 119, 121, 121, 121, 122, 122, 122, 122, 122, 122, 115, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 111, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 117, 117, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 97, 97, 105, 105, 111, 111, 117, 117, 117, 117, 117, 117, 117, 117, 117, 117, 0, 97, 97, 97, 97, 0, 0, 0, 0, 103, 103, 107, 107, 111, 111, 111, 111, 0, 0, 106, 0, 0, 0, 103, 103, 0, 0, 110, 110, 97, 97, 0, 0, 0, 0, 97, 97, 97, 97, 101, 101, 101, 101, 105, 105, 105, 105, 111, 111, 111, 111, 114, 114, 114, 114, 117, 117, 117, 117, 115, 115, 116, 116, 0, 0, 104, 104, 0, 0, 0, 0, 0, 0, 97, 97, 101, 101, 111, 111, 111, 111, 111, 111, 111, 111, 121, 121, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]

    /// Lowercased with Latin accents removed (é→e, ß→s, ł→l); other scripts lowercased only.
    /// Pure Swift: no locale, identical on every platform.
    static func fold(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        for u in s.unicodeScalars { foldScalar(u, into: &out) }
        return out
    }

    @inline(__always)
    static func foldScalar(_ u: Unicode.Scalar, into out: inout [UInt8]) {
        let v = u.value
        if v < 0x80 {
            let b = UInt8(v)
            out.append((65...90).contains(b) ? b + 32 : b)
        } else if v >= 0xC0, v < 0x250, latinFold[Int(v - 0xC0)] != 0 {
            out.append(latinFold[Int(v - 0xC0)])
        } else {
            out.append(contentsOf: u.properties.lowercaseMapping.utf8)
        }
    }

    /// Folded words: runs of letters and digits.
    static func words(_ s: String) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var cur: [UInt8] = []
        for u in s.unicodeScalars {
            let v = u.value
            let isWordChar = v < 0x80
                ? (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A)
                : (u.properties.isAlphabetic || u.properties.numericType != nil)
            if isWordChar {
                foldScalar(u, into: &cur)
            } else if !cur.isEmpty {
                out.append(cur)
                cur = []
            }
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    static func digits(_ s: String) -> [UInt8] { s.utf8.filter { (48...57).contains($0) } }

    /// The digits a phone query's matches end with, whatever format it was typed in: the national
    /// number when libphonenumber can place it (`+44 (0)20 7946 0018` → 2079460018), else the
    /// digits without the leading trunk or international prefix zeros (`020 7946 0018` →
    /// 2079460018), so both find the key `+442079460018`.
    static func phoneSearchDigits(_ q: String) -> [UInt8] {
        if let p = Normalization.parsePhone(q), p.e164 != nil { return Array(p.nationalNumber.utf8) }
        let d = digits(q)
        let trimmed = Array(d.drop { $0 == 48 })
        return trimmed.count >= 3 ? trimmed : d
    }

    // MARK: Searching

    /// Which kind of term a one-kind `query` searches (see `Query`).
    public static func kind(of query: String) -> Kind {
        let q = query.trimmingCharacters(in: .whitespacesAndNewlines)
        if q.hasPrefix("#") || q.lowercased().hasPrefix("tag:") { return .tag }
        if q.contains("@") { return .email }
        if isPhoneLike(q) { return .phone }
        return .name
    }

    static func isPhoneLike(_ q: String) -> Bool {
        q.allSatisfy({ $0.isASCII && ($0.isNumber || "+()-. ".contains($0)) }) && digits(q).count >= 3
    }

    /// A parsed query: every part must match (AND).
    ///
    /// - `#tag` or `tag:x`: the tag (case- and accent-insensitive);
    /// - a word with `@`: emails starting with it;
    /// - the other words, when together mostly digits (with `+ ( ) - . space`): phones ending with
    ///   those digits, in any format;
    /// - otherwise each other word must start a word of the given, family or display name.
    public struct Query: Sendable, Equatable {
        public var nameWords: [[UInt8]] = []
        public var phoneDigits: [UInt8]?
        public var emailPrefixes: [String] = []
        public var tags: [[UInt8]] = []

        public init(_ text: String) {
            var rest: [Substring] = []
            for word in text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
                if word.hasPrefix("#"), word.count > 1 {
                    tags.append(ContactIndex.fold(String(word.dropFirst())))
                } else if word.lowercased().hasPrefix("tag:"), word.count > 4 {
                    tags.append(ContactIndex.fold(String(word.dropFirst(4))))
                } else if word.contains("@") {
                    emailPrefixes.append(word.lowercased())
                } else {
                    rest.append(word)
                }
            }
            let joined = rest.joined(separator: " ")
            if ContactIndex.isPhoneLike(joined) {
                phoneDigits = ContactIndex.phoneSearchDigits(joined)
            } else {
                nameWords = ContactIndex.words(joined)
            }
        }

        /// True when the query says nothing (matches nothing).
        public var isEmpty: Bool { nameWords.isEmpty && phoneDigits == nil && emailPrefixes.isEmpty && tags.isEmpty }
    }

    /// Contacts matching `query` (see `Query`); empty for an empty query.
    public func search(_ query: String) -> Set<ContactID> {
        search(Query(query))
    }

    public func search(_ q: Query) -> Set<ContactID> {
        var parts: [(prefix: [UInt8], exact: Bool)] = []
        for t in q.tags { parts.append((Self.tagged(0x74, t), true)) }
        for e in q.emailPrefixes { parts.append((Self.tagged(0x65, Array(e.utf8)), false)) }
        if let d = q.phoneDigits { parts.append((Self.tagged(0x70, d.reversed()), false)) }
        for w in q.nameWords { parts.append((Self.tagged(0x6E, w), false)) }
        guard !parts.isEmpty else { return [] }
        // Walk the matches of the most specific part (the longest prefix) and check the others
        // against each candidate's own terms: no set is built for the common parts ("ada" in a
        // million contacts), so the cost follows the rarest part, not the store.
        let driver = parts.indices.max { parts[$0].prefix.count < parts[$1].prefix.count }!
        let others = parts.indices.filter { $0 != driver }.map { parts[$0] }
        let (prefix, exact) = parts[driver]
        var out = Set<ContactID>()
        terms.scan(from: terms.position(of: Term(bytes: prefix, id: ContactID(high: 0, low: 0)))) { t in
            guard t.bytes.starts(with: prefix) else { return false }
            guard !exact || t.bytes.count == prefix.count else { return true }
            if others.allSatisfy({ has(t.id, $0.prefix, exact: $0.exact) }) { out.insert(t.id) }
            return true
        }
        if let f = frozen {
            var i = f.lowerBound(prefix)
            while i < f.termCount, f.compareTerm(i, prefix, prefixOnly: true) == 0 {
                defer { i += 1 }
                guard !exact || f.termLength(i) == prefix.count else { continue }
                let o = Int(f.termOwners[i]), id = f.ids[o]
                guard retired.isEmpty || !retired.contains(id) else { continue }
                if others.allSatisfy({ f.has(o, $0.prefix, exact: $0.exact) }) { out.insert(id) }
            }
        }
        return out
    }

    /// Visible contacts whose id starts with `prefix`'s bits, at most `limit`, in id byte order.
    /// The matches are one run of the ordered terms, from the prefix padded with zero bits.
    public func ids(withPrefix prefix: ContactIDPrefix, limit: Int = 20) -> [ContactID] {
        var out: [ContactID] = []
        let start = Self.tagged(0x69, prefix.lowerBound)
        terms.scan(from: terms.position(of: Term(bytes: start, id: ContactID(high: 0, low: 0)))) { t in
            guard t.bytes.count == 2 + ContactID.length, t.bytes.starts(with: start.prefix(2)),
                  prefix.matches(t.bytes.dropFirst(2)), out.count < limit else { return false }
            out.append(t.id)
            return true
        }
        if let f = frozen {
            var i = f.lowerBound(start)
            var more: [ContactID] = []
            while i < f.termCount, more.count < limit, f.termLength(i) == 2 + ContactID.length {
                let t = f.term(i)
                guard t.starts(with: start.prefix(2)), prefix.matches(t.dropFirst(2)) else { break }
                let id = f.ids[Int(f.termOwners[i])]
                if retired.isEmpty || !retired.contains(id) { more.append(id) }
                i += 1
            }
            out = Array((out + more).sorted().prefix(limit))
        }
        return out
    }

    // MARK: Order and paging

    public func orderKey(of id: ContactID) -> OrderKey? {
        if let e = entries[id] { return e.key }
        return frozenOrdinal(id).map { frozen!.key(atOrder: Int(frozen!.orderPosition[$0])) }
    }

    /// One page of contacts in list order, after `cursor`: of `subset` when given (a search
    /// result), else of every visible contact. Costs O(log n + limit) for the whole list, and
    /// O(k log k) for a subset of k.
    public func page(_ subset: Set<ContactID>?, after cursor: OrderKey?, limit: Int) -> (ids: [ContactID], next: OrderKey?) {
        let limit = max(1, limit)
        var out: [ContactID] = []
        var last: OrderKey?
        if let subset {
            var keys = subset.compactMap { orderKey(of: $0) }
            if let cursor { keys.removeAll { !(cursor < $0) } }
            if keys.count > limit {
                // Partial selection would do; a sort of the matches is proportional to them, not the store.
                keys.sort()
                keys = Array(keys.prefix(limit))
                return (keys.map(\.id), keys.last)
            }
            keys.sort()
            return (keys.map(\.id), nil)
        }
        let start = cursor.map { order.position(of: $0, after: true) } ?? order.startIndex
        var more = false
        guard let f = frozen else {
            order.scan(from: start) { k in
                if out.count == limit { more = true; return false }
                out.append(k.id)
                last = k
                return true
            }
            return (out, more ? last : nil)
        }
        // The overlay's keys and the frozen ones (not retired), merged: limit + 1 of each.
        var keys: [OrderKey] = []
        order.scan(from: start) { k in
            keys.append(k)
            return keys.count <= limit
        }
        var p = cursor.map { f.orderPosition(of: $0, after: true) } ?? 0
        var taken = 0
        while p < f.order.count, taken <= limit {
            let id = f.ids[Int(f.order[p])]
            if retired.isEmpty || !retired.contains(id) {
                keys.append(f.key(atOrder: p))
                taken += 1
            }
            p += 1
        }
        keys.sort()
        more = keys.count > limit
        let page = keys.prefix(limit)
        return (page.map(\.id), more ? page.last : nil)
    }

    // MARK: Same person

    /// The visible contacts linked to `id` as the same person, directly or through others
    /// (`Replica.sameAsGroups`' group of it), sorted; `[id]` when it has no links. Costs the
    /// size of the group, not of the store.
    public func sameGroup(of id: ContactID) -> [ContactID] {
        guard isIndexed(id) else { return [id] }
        var seen: Set<ContactID> = [id]
        var queue = [id]
        while let x = queue.popLast() {
            let neighbours = links(of: x) + Array(linkedFrom[x] ?? [])
            for y in neighbours where isIndexed(y) && seen.insert(y).inserted { queue.append(y) }
        }
        return seen.sorted()
    }

    // MARK: Likely duplicates

    /// Groups of contacts sharing a match token (at most `limit` groups, by first id), without
    /// the groups already linked as one person.
    public func sharedTokenGroups(limit: Int = .max) -> [[ContactID]] {
        var groups = Set<[ContactID]>()
        for t in sharedTokens {
            guard let members = tokenMembers[t], members.count > 1 else { continue }
            guard Set(members.map { sameGroup(of: $0).first! }).count > 1 else { continue }
            groups.insert(members.sorted())
        }
        return Array(groups.sorted { $0[0] < $1[0] }.prefix(limit))
    }
}
