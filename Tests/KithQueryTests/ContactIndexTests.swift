import KithCRDT
import KithCrypto
import KithQuery
import KithSampleData
import KithStore
import PropertyBased
import Testing

@Suite("Search index")
struct SearchTests {
    @Test func namesPhonesEmailsTags() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        let ids = (0..<3).map { ContactID(high: 0, low: UInt64($0)) }
        try a.commit([
            ContactEdit(contact: ids[0], ops: [.setField(.givenName, "Zoë"), .setField(.familyName, "Müller-Smith"), .add(.phones, "+15558675309"), .add(.tags, "GOTV")]),
            ContactEdit(contact: ids[1], ops: [.setField(.displayName, "José García"), .add(.emails, "jose@example.org")]),
            ContactEdit(contact: ids[2], ops: [.setField(.givenName, "Zora"), .add(.tags, "gotv-2")]),
        ], to: &r, wallMilliseconds: 1_790_000_000_000)
        let idx = ContactIndex(replica: r)
        #expect(idx.search("zoe") == [ids[0]])
        #expect(idx.search("zo") == [ids[0], ids[2]])
        #expect(idx.search("zoe smith") == [ids[0]])
        #expect(idx.search("garcia") == [ids[1]])
        #expect(idx.search("(555) 867-5309") == [ids[0]])
        #expect(idx.search("867 5309") == [ids[0]])
        #expect(idx.search("1-555-867-5309") == [ids[0]])
        #expect(idx.search("jose@") == [ids[1]])
        #expect(idx.search("#gotv") == [ids[0]])
        #expect(idx.search("tag:GOTV-2") == [ids[2]])
        #expect(idx.search("nobody").isEmpty)
    }

    /// A number is found in any format of it: national with its trunk 0, international with
    /// (0), 00 or +; and a number with an extension by the number alone.
    @Test func phonesInAnyFormat() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        let ids = (0..<2).map { ContactID(high: 1, low: UInt64($0)) }
        try a.commit([
            ContactEdit(contact: ids[0], ops: [.setField(.givenName, "Ada"), .add(.phones, Normalization.phone("020 7946 0018", region: PhoneRegion(code: "GB"))!)]),
            ContactEdit(contact: ids[1], ops: [.setField(.givenName, "Grace"), .add(.phones, Normalization.phone("(415) 555-0132 ext. 12", region: PhoneRegion(code: "US"))!)]),
        ], to: &r, wallMilliseconds: 1_790_000_000_000)
        let idx = ContactIndex(replica: r)
        for q in ["020 7946 0018", "+44 (0)20 7946 0018", "0044 20 7946 0018", "+442079460018", "7946 0018"] {
            #expect(idx.search(q) == [ids[0]], "\(q)")
        }
        for q in ["(415) 555-0132", "+1 415 555 0132", "555-0132"] {
            #expect(idx.search(q) == [ids[1]], "\(q)")
        }
    }
}

@Suite("Incremental index")
struct IncrementalIndexTests {
    static let now: UInt64 = 1_790_000_000_000

    /// Applies random edits in rounds; after each round the patched index must equal one built
    /// from scratch: same search answers, same order, same pages.
    @Test func patchedEqualsRebuilt() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        var index = ContactIndex(replica: r)
        var rng = SystemRandomNumberGenerator()
        let names = ["Ada", "Zoë", "José", "Émile", "ada", "Bea", "Çelik", "Øyvind"]
        let ids = (0..<60).map { ContactID(high: 7, low: UInt64($0)) }
        for _ in 0..<25 {
            var edits: [ContactEdit] = []
            for id in ids.shuffled().prefix(Int.random(in: 1...8, using: &rng)) {
                var ops: [KithCRDT.Operation] = []
                switch Int.random(in: 0..<8, using: &rng) {
                case 6: ops = [.link(to: ids.randomElement(using: &rng)!)]
                case 7:
                    if let other = ids.first(where: { !r.liveLinkAdds(to: $0, contact: id).isEmpty }) {
                        ops = [.unlink(from: other, observed: r.liveLinkAdds(to: other, contact: id))]
                    } else {
                        ops = [.setField(.city, "Leeds")]
                    }
                case 0: ops = [.setField(.givenName, names.randomElement()!)]
                case 1: ops = [.setField(.familyName, names.randomElement()! + "son"), .add(.tags, ["gotv", "Door", "x"].randomElement()!)]
                case 2: ops = [.add(.phones, "+4420794600\(Int.random(in: 10...99))")]
                case 3:
                    if r.contact(id) != nil { ops = [.delete] } else { ops = [.setField(.displayName, "Mx \(names.randomElement()!)")] }
                case 4:
                    let adds = r.liveAdds(of: "gotv", in: .tags, contact: id)
                    ops = adds.isEmpty ? [.add(.emails, "p\(id.low)@example.org")] : [.remove(.tags, "gotv", observed: adds)]
                default: ops = [.setField(.givenName, ""), .add(.matchTokens, "0123456789abcde\(id.low % 5)")]
                }
                edits.append(ContactEdit(contact: id, ops: ops))
            }
            try a.commit(edits, to: &r, wallMilliseconds: Self.now)
            index.update(from: &r)
            let fresh = ContactIndex(replica: r)
            #expect(index.count == fresh.count)
            #expect(index.count == r.visibleContactIDs.count)
            for q in ["ada", "zoe", "jose", "#gotv", "#door", "p1", "p3@", "7946", "mx", "celik son", "oyvind"] {
                #expect(index.search(q) == fresh.search(q), "query \(q)")
            }
            #expect(index.page(nil, after: nil, limit: 1000).ids == fresh.page(nil, after: nil, limit: 1000).ids)
            #expect(index.sharedTokenGroups() == fresh.sharedTokenGroups())
            let groups = r.sameAsGroups()
            for id in r.visibleContactIDs {
                let expected = groups.values.first { $0.contains(id) } ?? [id]
                #expect(index.sameGroup(of: id) == expected, "same-person group of \(id)")
                #expect(r.mergedContact(group: index.sameGroup(of: id)).map(ContactDTO.init) == r.mergedContact(id).map(ContactDTO.init))
            }
        }
    }

    /// Paging with the cursor visits every contact exactly once, in name order, for any page size.
    @Test func pagingVisitsEachOnce() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        let contacts = SyntheticContacts(seed: 3).contacts(700)
        try a.commit(contacts.map(\.edit), to: &r, wallMilliseconds: Self.now)
        let index = ContactIndex(replica: r)
        for size in [1, 7, 50, 699, 700, 1000] {
            var seen: [ContactID] = []
            var cursor: ContactIndex.OrderKey?
            repeat {
                let (ids, next) = index.page(nil, after: cursor, limit: size)
                seen += ids
                cursor = next
            } while cursor != nil
            #expect(seen.count == 700)
            #expect(Set(seen).count == 700)
            let keys = seen.map { index.orderKey(of: $0)! }
            #expect(keys == keys.sorted())
        }
    }

    @Test func queriesCombine() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        let ids = (0..<3).map { ContactID(high: 0, low: UInt64($0)) }
        try a.commit([
            ContactEdit(contact: ids[0], ops: [.setField(.givenName, "Ada"), .add(.tags, "gotv"), .add(.emails, "ada@example.org")]),
            ContactEdit(contact: ids[1], ops: [.setField(.givenName, "Ada"), .add(.tags, "door")]),
            ContactEdit(contact: ids[2], ops: [.setField(.givenName, "Bob"), .add(.tags, "gotv"), .add(.phones, "+15558675309")]),
        ], to: &r, wallMilliseconds: Self.now)
        let idx = ContactIndex(replica: r)
        #expect(idx.search("ada #gotv") == [ids[0]])
        #expect(idx.search("#gotv 867-5309") == [ids[2]])
        #expect(idx.search("ada@ #gotv") == [ids[0]])
        #expect(idx.search("#gotv #door").isEmpty)
        let page = try ContactQueries.page(r, idx, q: "ada", tag: "door", limit: 10, cursor: nil)
        #expect(page.contacts.map(\.id) == [ids[1].description])
        #expect(throws: QueryError.self) { try ContactQueries.page(r, idx, q: nil, tag: nil, limit: 0, cursor: nil) }
        #expect(throws: QueryError.self) { try ContactQueries.page(r, idx, q: nil, tag: nil, limit: 5, cursor: "!!") }
    }

    @Test func ambiguousPrefixListsCandidates() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        // Two ids sharing their first 8 base64url characters.
        let x = ContactID(high: 0xAAAA_AAAA_AAAA_0000, low: 1), y = ContactID(high: 0xAAAA_AAAA_AAAA_FFFF, low: 2)
        try a.commit([ContactEdit(contact: x, ops: [.setField(.givenName, "X")]), ContactEdit(contact: y, ops: [.setField(.givenName, "Y")])],
                     to: &r, wallMilliseconds: Self.now)
        let idx = ContactIndex(replica: r)
        let prefix = String(x.description.prefix(8))
        #expect(y.description.hasPrefix(prefix))
        do {
            _ = try ContactQueries.resolve(prefix, r, idx)
            Issue.record("an ambiguous prefix resolved")
        } catch {
            #expect(error.code == .ambiguous)
            #expect(error.candidates.count == 2)
        }
        #expect(try ContactQueries.resolve(x.description, r, idx) == x)
    }

    /// The base32 text form (Protocol/data-model.md §3.1 golden vectors), the older base64url
    /// form still read, and prefixes of either form resolving through the index.
    @Test func textFormsAndPrefixes() throws {
        let golden: [(String, String, String)] = [
            ("00112233445566778899aabbccddeeff", "aaisem2ekvthpcezvk54zxpo74", "ABEiM0RVZneImaq7zN3u_w"),
            ("f8000000000000000000000000000001", "7aaaaaaaaaaaaaaaaaaaaaaaae", "-AAAAAAAAAAAAAAAAAAAAQ"),
            ("ffffffffffffffffffffffffffffffff", "77777777777777777777777774", "_____________________w"),
        ]
        for (hex, b32, b64) in golden {
            let id = try ContactID(bytes: Hex.decode(hex)!)
            #expect(id.description == b32)
            #expect(id.base64url == b64)
            #expect(ContactID(text: b32) == id)
            #expect(ContactID(text: b32.uppercased()) == id)
            #expect(ContactID(text: b64) == id)
        }
        #expect(ContactID(text: "aaisem2ekvthpcezvk54zxpo75") == nil) // non-zero trailing bits
        #expect(ContactID(text: "aaisem2ekvthpcezvk54zxpo7") == nil)
        #expect(ContactID(text: "aaisem2ekvthpcezvk54zxpo7!") == nil)
        for _ in 0..<2000 {
            let t = ContactID.random().description
            #expect(t.count == 26 && !t.hasPrefix("-") && t.allSatisfy { $0.isLowercase || ("2"..."7").contains($0) })
        }

        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        let dash = try ContactID(bytes: Hex.decode("f8000000000000000000000000000001")!)
        let other = try ContactID(bytes: Hex.decode("f8000000000000000000000000000002")!)
        let ada = try ContactID(bytes: Hex.decode("00112233445566778899aabbccddeeff")!)
        try a.commit([ContactEdit(contact: dash, ops: [.setField(.givenName, "Dash")]), ContactEdit(contact: other, ops: [.setField(.givenName, "Other")]),
                      ContactEdit(contact: ada, ops: [.setField(.givenName, "Ada")])], to: &r, wallMilliseconds: Self.now)
        let idx = ContactIndex(replica: r)
        #expect(try ContactQueries.resolve("aais", r, idx) == ada)        // base32 prefix
        #expect(try ContactQueries.resolve("ABEiM0", r, idx) == ada)      // old base64url prefix
        #expect(try ContactQueries.resolve(dash.base64url, r, idx) == dash) // old full id starting with '-'
        #expect(try r.resolve("ABEiM0") == ada)
        #expect(try r.resolve("aaisem") == ada)
        do {
            _ = try ContactQueries.resolve("7aaaaa", r, idx)
            Issue.record("an ambiguous prefix resolved")
        } catch {
            #expect(error.code == .ambiguous)
            #expect(error.message.contains("matches 2 contacts"))
            #expect(error.candidates == ["\(dash)  Dash", "\(other)  Other"])
        }
        do {
            _ = try r.resolve("-AAA")
            Issue.record("an ambiguous old-form prefix resolved")
        } catch {
            #expect(error.detail.contains("matches 2 contacts") && error.detail.contains("Dash") && error.detail.contains("Other"))
        }
        #expect(throws: QueryError.self) { try ContactQueries.resolve("zzzzzz", r, idx) }
        #expect(throws: QueryError.self) { try ContactQueries.resolve("!!!!", r, idx) }
    }
}

@Suite("Sorted chunks")
struct SortedChunksTests {
    @Test func matchesASortedArray() {
        var chunks = SortedChunks<Int>(chunkLimit: 8)
        var model: [Int] = []
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            let v = Int.random(in: 0..<200, using: &rng)
            if Bool.random(using: &rng) || model.isEmpty {
                chunks.insert(v)
                model.append(v)
            } else {
                let removed = chunks.remove(v)
                if let i = model.firstIndex(of: v) { model.remove(at: i); #expect(removed) } else { #expect(!removed) }
            }
        }
        #expect(chunks.elements == model.sorted())
        #expect(chunks.count == model.count)
        var after: [Int] = []
        chunks.scan(from: chunks.position(of: 100, after: true)) { after.append($0); return true }
        #expect(after == model.sorted().filter { $0 > 100 })
    }
}
