import KithCRDT
import KithCrypto
@testable import KithQuery
import KithSampleData
import Testing

/// The index section of a snapshot (store.md §Snapshots): an index loaded from it, and patched
/// after, must answer exactly as one built from the replica, and save the same bytes.
@Suite("Index in the snapshot")
struct IndexSnapshotTests {
    static let now: UInt64 = 1_790_000_000_000

    /// Everything the index answers, for comparison with one built from scratch.
    static func expectSameAnswers(_ index: ContactIndex, _ r: Replica, _ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let fresh = ContactIndex(replica: r)
        #expect(index.count == fresh.count, "\(context)", sourceLocation: sourceLocation)
        #expect(index.termCount == fresh.termCount, "\(context)", sourceLocation: sourceLocation)
        for q in ["ada", "zoe", "jose", "#gotv", "#door", "p1", "p3@", "7946", "mx", "celik son", "oyvind", "ada son", "a", "ada #gotv"] {
            #expect(index.search(q) == fresh.search(q), "\(context): query \(q)", sourceLocation: sourceLocation)
        }
        for size in [1, 3, 1000] {
            var cursor: ContactIndex.OrderKey?
            var a: [ContactID] = [], b: [ContactID] = []
            repeat {
                let p = index.page(nil, after: cursor, limit: size)
                a += p.ids
                cursor = p.next
            } while cursor != nil
            repeat {
                let p = fresh.page(nil, after: cursor, limit: size)
                b += p.ids
                cursor = p.next
            } while cursor != nil
            #expect(a == b, "\(context): pages of \(size)", sourceLocation: sourceLocation)
        }
        let subset = fresh.search("ada")
        #expect(index.page(subset, after: nil, limit: 2).ids == fresh.page(subset, after: nil, limit: 2).ids, sourceLocation: sourceLocation)
        #expect(index.sharedTokenGroups() == fresh.sharedTokenGroups(), "\(context)", sourceLocation: sourceLocation)
        for id in r.visibleContactIDs {
            #expect(index.sameGroup(of: id) == fresh.sameGroup(of: id), "\(context): group of \(id)", sourceLocation: sourceLocation)
            #expect(index.orderKey(of: id) == fresh.orderKey(of: id), sourceLocation: sourceLocation)
            for prefix in ContactIDPrefix.readings(of: String(id.description.prefix(2))) {
                #expect(index.ids(withPrefix: prefix, limit: 5) == fresh.ids(withPrefix: prefix, limit: 5), sourceLocation: sourceLocation)
            }
        }
        // The encoding is canonical: a loaded and patched index saves what a fresh one does.
        #expect(index.snapshotBytes() == fresh.snapshotBytes(), "\(context): saved bytes", sourceLocation: sourceLocation)
    }

    /// Random edits in rounds (names, phones, emails, tags, deletes, links, match tokens);
    /// every other round the index is saved and loaded again, so answers come from the loaded
    /// arrays, the contacts patched since, and both.
    @Test func loadedAndPatchedEqualsRebuilt() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        try a.commit(SyntheticContacts(seed: 11).contacts(200).map(\.edit), to: &r, wallMilliseconds: Self.now)
        var index = ContactIndex(replica: r)
        _ = r.takeChangedContacts()
        var rng = SystemRandomNumberGenerator()
        let names = ["Ada", "Zoë", "José", "Émile", "ada", "Bea", "Çelik", "Øyvind"]
        let ids = (0..<60).map { ContactID(high: 7, low: UInt64($0)) } + r.visibleContactIDs.prefix(40)
        for round in 0..<16 {
            if round % 2 == 0 {
                index = try ContactIndex(snapshot: index.snapshotBytes())
                Self.expectSameAnswers(index, r, "loaded in round \(round)")
            }
            var edits: [ContactEdit] = []
            for id in ids.shuffled().prefix(Int.random(in: 1...12, using: &rng)) {
                var ops: [KithCRDT.Operation] = []
                switch Int.random(in: 0..<8, using: &rng) {
                case 6: ops = [.link(to: ids.randomElement(using: &rng)!)]
                case 0: ops = [.setField(.givenName, names.randomElement()!)]
                case 1: ops = [.setField(.familyName, names.randomElement()! + "son"), .add(.tags, ["gotv", "Door", "x"].randomElement()!)]
                case 2: ops = [.add(.phones, "+4420794600\(Int.random(in: 10...99))")]
                case 3:
                    if r.contact(id) != nil { ops = [.delete] } else { ops = [.setField(.displayName, "Mx \(names.randomElement()!)")] }
                case 4: ops = [.add(.emails, "p\(id.low)@example.org")]
                case 5: ops = [.forget]
                default: ops = [.setField(.givenName, ""), .add(.matchTokens, "0123456789abcde\(id.low % 5)")]
                }
                if case .forget = ops[0], r.forgotten.contains(id) { continue }
                edits.append(ContactEdit(contact: id, ops: ops))
            }
            guard !edits.isEmpty else { continue }
            try a.commit(edits, to: &r, wallMilliseconds: Self.now)
            index.update(from: &r)
            Self.expectSameAnswers(index, r, "patched in round \(round)")
        }
    }

    /// The section is checked before use: every truncation, trailing bytes, offsets out of
    /// range and an index of another replica throw; nothing traps.
    @Test func damagedSectionThrowsNeverTraps() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        try a.commit(SyntheticContacts(seed: 2).contacts(40).map(\.edit)
            + [ContactEdit(contact: ContactID(high: 1, low: 1), ops: [.add(.matchTokens, "0123456789abcdef"), .link(to: ContactID(high: 1, low: 2))])],
            to: &r, wallMilliseconds: Self.now)
        let bytes = ContactIndex(replica: r).snapshotBytes()
        _ = try ContactIndex(snapshot: bytes)
        for cut in 0..<bytes.count {
            #expect(throws: IndexSnapshotError.self) { _ = try ContactIndex(snapshot: Array(bytes.prefix(cut))) }
        }
        #expect(throws: IndexSnapshotError.self) { _ = try ContactIndex(snapshot: bytes + [0]) }
        // Every 4-byte word set to 0xFFFFFFFF: either refused, or (inside text) still consistent.
        for at in stride(from: 1, to: bytes.count - 4, by: 4) {
            var bad = bytes
            for k in 0..<4 { bad[at + k] = 0xFF }
            if let loaded = try? ContactIndex(snapshot: bad) {
                _ = loaded.search("a") // answers without trapping
                _ = loaded.page(nil, after: nil, limit: 100)
            }
        }
    }

    /// `current` uses the section only when there is no index yet, and rebuilds when the
    /// replica says everything changed or the section does not load.
    @Test func currentPicksTheRightSource() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        try a.commit(SyntheticContacts(seed: 4).contacts(30).map(\.edit), to: &r, wallMilliseconds: Self.now)
        let saved = ContactIndex(replica: r).snapshotBytes()
        _ = r.takeChangedContacts()
        let added = ContactID(high: 3, low: 3)
        try a.commit([ContactEdit(contact: added, ops: [.setField(.givenName, "Tailwind")])], to: &r, wallMilliseconds: Self.now)
        let changed = r.takeChangedContacts()
        let loaded = ContactIndex.current(nil, snapshot: saved, changed: changed, replica: r)
        #expect(loaded.frozen != nil)
        #expect(loaded.search("tailwind") == [added])
        Self.expectSameAnswers(loaded, r, "loaded and patched with the tail")
        let rebuilt = ContactIndex.current(nil, snapshot: Array(saved.dropLast()), changed: changed, replica: r)
        #expect(rebuilt.frozen == nil)
        #expect(rebuilt.search("tailwind") == [added])
        #expect(ContactIndex.current(loaded, snapshot: nil, changed: .all, replica: r).frozen == nil)
        // A section that does not match the replica once patched (an index of another state:
        // one contact fewer) is dropped for a rebuild.
        var bigger = r
        try a.commit([ContactEdit(contact: ContactID(high: 4, low: 4), ops: [.setField(.givenName, "Unseen")])], to: &bigger, wallMilliseconds: Self.now)
        let mismatched = ContactIndex.current(nil, snapshot: saved, changed: changed, replica: bigger)
        #expect(mismatched.frozen == nil)
        #expect(mismatched.search("unseen").count == 1)
    }
}
