import Foundation
@testable import KithCRDT
import KithCrypto
import Testing

/// Golden vectors in `Protocol/vectors/changes.json` and `set-order.json`: fixed inputs → fixed
/// bytes, ids and state digests, for a second implementation to test against. Regenerate (only when the format
/// changes on purpose, with a version bump) with `KITH_WRITE_VECTORS=1 swift test --filter Golden`.
@Suite("Golden vectors")
struct GoldenVectorTests {
    static var file: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Protocol/vectors/changes.json")
    }

    /// The op description format of the vector file.
    static func describe(_ op: KithCRDT.Operation) -> [String: Any] {
        switch op {
        case let .setField(f, v): return ["op": "set_field", "field": f.name, "value": v]
        case let .add(k, key, payload): return ["op": "add", "set": k.description, "key": Hex.encode(key), "payload": Hex.encode(payload)]
        case let .remove(k, key, observed):
            return ["op": "remove", "set": k.description, "key": Hex.encode(key),
                    "observed": observed.map { ["device": Hex.encode($0.device.bytes), "seq": $0.seq, "block": $0.block, "op": $0.op] }]
        case let .logConversation(e):
            return ["op": "log_conversation", "day": e.day, "channel": e.channel.description, "outcome": e.outcome, "note": e.note]
        case .delete: return ["op": "delete"]
        case .forget: return ["op": "forget"]
        }
    }

    static func parse(_ d: [String: Any]) -> KithCRDT.Operation {
        func kind(_ s: Any?) -> SetKind { SetKind.allCases.first { $0.description == s as? String }! }
        func bytes(_ s: Any?) -> ArraySlice<UInt8> { ArraySlice(Hex.decode(s as! String)!) }
        switch d["op"] as! String {
        case "set_field": return .setField(Field(name: d["field"] as! String)!, d["value"] as! String)
        case "add": return .add(kind(d["set"]), key: bytes(d["key"]), payload: bytes(d["payload"]))
        case "remove":
            let refs = (d["observed"] as! [[String: Any]]).map {
                OpRef(device: try! DeviceKey(bytes: Hex.decode($0["device"] as! String)!), seq: ($0["seq"] as! NSNumber).uint64Value,
                      block: ($0["block"] as! NSNumber).uint32Value, op: ($0["op"] as! NSNumber).uint32Value)
            }
            return .remove(kind(d["set"]), key: bytes(d["key"]), observed: refs)
        case "log_conversation":
            return .logConversation(ConversationEntry(day: (d["day"] as! NSNumber).uint32Value, channel: Channel(name: d["channel"] as! String)!,
                                                      outcome: d["outcome"] as! String, note: d["note"] as! String))
        case "delete": return .delete
        default: return .forget
        }
    }

    /// The scenario: one device's chain of four changes, then a second device's change.
    static func scenario() -> [(seed: UInt8, edits: [ContactEdit], ms: UInt64)] {
        let ada = ContactID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10)
        let bo = ContactID(high: 0x1111_1111_1111_1111, low: 0x2222_2222_2222_2222)
        let dev1 = try! Ed25519.PrivateKey(seed: [UInt8](repeating: 1, count: 32)).publicKey
        let member = try! Ed25519.PrivateKey(seed: [UInt8](repeating: 9, count: 32)).publicKey
        return [
            (1, [ContactEdit(contact: ada, ops: [
                .setField(.givenName, "Ada"), .setField(.familyName, "Lovelace"), .add(.phones, "+442079460000", payload: "020 7946 0000"),
                .add(.emails, "ada@example.org"), .add(.tags, "door-knock"), .setField(.support, "4"), .setField(.relationship, "neighbour"),
                .setField(.consent, "share;2026-11-02;verbal at the door"),
            ]), ContactEdit(contact: bo, ops: [.setField(.givenName, "Bo"), .setField(.city, "Zürich")])], 1_790_000_000_000),
            (1, [ContactEdit(contact: ada, ops: [
                .remove(.tags, "door-knock", observed: [OpRef(device: dev1, seq: 1, block: 0, op: 4)]),
                .logConversation(ConversationEntry(day: 20_394, channel: .door, outcome: "supportive", note: "wants a yard sign")),
                .knows(member: member, strength: 5), .link(to: bo),
            ])], 1_790_000_001_000),
            (2, [ContactEdit(contact: bo, ops: [.setField(.city, "Genève"), .delete])], 1_790_000_002_000),
            (1, [ContactEdit(contact: bo, ops: [.forget])], 1_790_000_003_000),
            // Revision 2 (data-model.md §4): what organizers' exports carry.
            (2, [ContactEdit(contact: ada, ops: [
                .setField(.organization, "Analytical Engines Ltd"), .setField(.title, "Programmer"), .setField(.birthday, "--12-10"),
                .setField(.nickname, "Enchantress"), .setField(.region, "Greater London"), .setField(.country, "United Kingdom"),
                .setField(.emailSubscription, "subscribed"), .setField(.smsSubscription, "unsubscribed"),
                .add(.phones, "+14155550132;ext=12", payload: "(415) 555-0132 ext. 12"),
                .add(.labels, "tel:+14155550132;ext=12", payload: "work"), .add(.labels, "email:ada@example.org", payload: "home"),
                .add(.urls, "https://example.org/ada", payload: "home"), .add(.externalIDs, "van:123456"),
                .add(.externalIDs, "voterfile:GB:0001"), .add(.events, "mobilize:41234@2026-10-03", payload: "Canvass kickoff"),
            ])], 1_790_000_004_000),
        ]
    }

    static func build() -> ([Change], [Replica]) {
        var authors: [UInt8: ChangeAuthor] = [:]
        var replica = Replica(scope: ScopeID(name: "private"))
        var changes: [Change] = [], states: [Replica] = []
        for (seed, edits, ms) in scenario() {
            var a = authors[seed] ?? ChangeAuthor(signer: try! Ed25519.PrivateKey(seed: [UInt8](repeating: seed, count: 32)))
            changes.append(try! a.commit(edits, to: &replica, wallMilliseconds: ms))
            authors[seed] = a
            states.append(replica)
        }
        return (changes, states)
    }

    @Test func encodingsIdsAndStatesMatchTheCheckedInVectors() throws {
        let (changes, states) = Self.build()
        let scenario = Self.scenario()
        var vectors: [[String: Any]] = []
        for (i, c) in changes.enumerated() {
            vectors.append([
                "signer_seed": Hex.encode([UInt8](repeating: scenario[i].seed, count: 32)),
                "scope": Hex.encode(c.scope.bytes), "seq": c.seq, "previous": Hex.encode(c.previous.bytes),
                "timestamp": c.timestamp.rawValue,
                "edits": scenario[i].edits.map { ["contact": Hex.encode($0.contact.bytes), "ops": $0.ops.map(Self.describe)] },
                "encoded": Hex.encode(c.encoded),
                "change_id": Hex.encode(c.id.bytes),
                "state_digest_after": Hex.encode(states[i].stateDigest()),
                "canonical_state_after": Hex.encode(states[i].canonicalState()),
            ])
        }
        // After the forget, the first change as every replica holds it (block 1 erased).
        let erasedFirst = states.last!.allChanges().first { $0.id == changes[0].id }!
        let doc: [String: Any] = [
            "description": "Kith data model v1 golden vectors (Protocol/data-model.md). Apply the changes in order to an empty replica of scope 'private'; after each, the canonical state and its BLAKE2b-256 digest must match. 'erased_first_change' is change 1 as held after change 4 forgot contact 1111…2222. Change 5 uses the revision-2 fields and sets.",
            "changes": vectors,
            "erased_first_change": Hex.encode(erasedFirst.encoded),
        ]
        if ProcessInfo.processInfo.environment["KITH_WRITE_VECTORS"] == "1" {
            let data = try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: Self.file)
        }
        let stored = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.file)) as! [String: Any]
        let storedChanges = stored["changes"] as! [[String: Any]]
        #expect(storedChanges.count == changes.count)
        var replica = Replica(scope: ScopeID(name: "private"))
        for (i, v) in storedChanges.enumerated() {
            // Rebuild from the described inputs: byte-identical.
            let signer = try Ed25519.PrivateKey(seed: Hex.decode(v["signer_seed"] as! String)!)
            let edits = (v["edits"] as! [[String: Any]]).map {
                ContactEdit(contact: try! ContactID(bytes: Hex.decode($0["contact"] as! String)!), ops: ($0["ops"] as! [[String: Any]]).map(Self.parse))
            }
            let rebuilt = try Change.make(scope: try ScopeID(bytes: Hex.decode(v["scope"] as! String)!), signer: signer,
                                          seq: (v["seq"] as! NSNumber).uint64Value, previous: try ChangeID(bytes: Hex.decode(v["previous"] as! String)!),
                                          timestamp: HybridTimestamp(rawValue: (v["timestamp"] as! NSNumber).uint64Value), edits: edits)
            #expect(Hex.encode(rebuilt.encoded) == v["encoded"] as? String, "change \(i + 1) bytes")
            #expect(Hex.encode(rebuilt.id.bytes) == v["change_id"] as? String, "change \(i + 1) id")
            try replica.receive(encoded: Hex.decode(v["encoded"] as! String)!, nowMilliseconds: 1_790_000_010_000)
            #expect(Hex.encode(replica.stateDigest()) == v["state_digest_after"] as? String, "state after change \(i + 1)")
            #expect(Hex.encode(replica.canonicalState()) == v["canonical_state_after"] as? String)
        }
        let erased = try Change(decoding: Hex.decode(stored["erased_first_change"] as! String)!)
        try erased.verify()
        #expect(erased.id == changes[0].id)
        #expect(replica.allChanges().first { $0.id == erased.id } == erased)
    }

    // MARK: Set key order (data-model.md §10)

    static var setOrderFile: URL {
        file.deletingLastPathComponent().appendingPathComponent("set-order.json")
    }

    /// One change adding keys whose order as raw bytes differs from their order as text: knows
    /// (member keys), links (contact ids) and match tokens sort by their base64url text, tags by
    /// their UTF-8 bytes (no locale, no case folding).
    static func setOrderEdit() -> ContactEdit {
        func member(_ seed: UInt8) -> Ed25519.PublicKey { try! Ed25519.PrivateKey(seed: [UInt8](repeating: seed, count: 32)).publicKey }
        func id(_ first: UInt8) -> ArraySlice<UInt8> { ArraySlice([first] + [UInt8](repeating: 0, count: 15)) }
        let contact = ContactID(high: 0x0A0A_0A0A_0A0A_0A0A, low: 0x0A0A_0A0A_0A0A_0A0A)
        return ContactEdit(contact: contact, ops: [
            .knows(member: member(8), strength: 1), .knows(member: member(5), strength: 2),
            .knows(member: member(3), strength: 3), .knows(member: member(9), strength: 4),
            .add(.links, key: id(0x10), payload: []), .add(.links, key: id(0xF0), payload: []), .add(.links, key: id(0xF8), payload: []),
            .add(.matchTokens, key: id(0x00), payload: []), .add(.matchTokens, key: id(0x68), payload: []),
            .add(.matchTokens, key: id(0xF8), payload: []), .add(.matchTokens, key: id(0xFC), payload: []),
            .add(.tags, "apple"), .add(.tags, "Zebra"), .add(.tags, "éclair"), .add(.tags, "Éclair"),
        ])
    }

    static let orderedSets: [SetKind] = [.tags, .knows, .links, .matchTokens]

    /// The raw key bytes of `kind`'s members in the order the replica lists them (which is the
    /// order of the canonical state).
    static func keyOrder(_ replica: Replica, _ contact: ContactID, _ kind: SetKind) -> [String] {
        replica.contact(contact)!.values(kind).map { v in
            Hex.encode(kind == .tags ? Array(v.key.utf8) : Base64URL.decode(v.key)!)
        }
    }

    @Test func setKeysSortByTheirTextFormNotTheirRawBytes() throws {
        let edit = Self.setOrderEdit()
        let signer = try Ed25519.PrivateKey(seed: [UInt8](repeating: 1, count: 32))
        let zero = try ChangeID(bytes: [UInt8](repeating: 0, count: 32))
        let timestamp = HybridTimestamp(rawValue: 1_790_000_000_000 << 16)
        if ProcessInfo.processInfo.environment["KITH_WRITE_VECTORS"] == "1" {
            let change = try Change.make(scope: ScopeID(name: "private"), signer: signer, seq: 1, previous: zero, timestamp: timestamp, edits: [edit])
            var replica = Replica(scope: ScopeID(name: "private"))
            try replica.receive(encoded: change.encoded, nowMilliseconds: 1_790_000_010_000)
            var order: [String: [String]] = [:]
            for kind in Self.orderedSets { order[kind.description] = Self.keyOrder(replica, edit.contact, kind) }
            let doc: [String: Any] = [
                "description": "Kith data model v1 golden vector for the order of set members in the canonical state (Protocol/data-model.md §10). Apply 'encoded' (one change, scope 'private') to an empty replica: the canonical state and its digest must match. 'key_order' lists each set's keys (hex of the raw key bytes) in canonical order: tags by UTF-8 bytes; knows, links and match_tokens by their unpadded base64url text, which is NOT the raw byte order.",
                "signer_seed": Hex.encode([UInt8](repeating: 1, count: 32)), "scope": Hex.encode(ScopeID(name: "private").bytes), "seq": 1,
                "previous": Hex.encode(zero.bytes), "timestamp": timestamp.rawValue,
                "edits": [["contact": Hex.encode(edit.contact.bytes), "ops": edit.ops.map(Self.describe)]],
                "encoded": Hex.encode(change.encoded), "change_id": Hex.encode(change.id.bytes),
                "canonical_state": Hex.encode(replica.canonicalState()), "state_digest": Hex.encode(replica.stateDigest()),
                "key_order": order,
            ]
            let data = try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
            try data.write(to: Self.setOrderFile)
        }
        let v = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.setOrderFile)) as! [String: Any]
        // Rebuild from the described inputs: byte-identical.
        let edits = (v["edits"] as! [[String: Any]]).map {
            ContactEdit(contact: try! ContactID(bytes: Hex.decode($0["contact"] as! String)!), ops: ($0["ops"] as! [[String: Any]]).map(Self.parse))
        }
        let rebuilt = try Change.make(scope: try ScopeID(bytes: Hex.decode(v["scope"] as! String)!),
                                      signer: try Ed25519.PrivateKey(seed: Hex.decode(v["signer_seed"] as! String)!),
                                      seq: (v["seq"] as! NSNumber).uint64Value, previous: try ChangeID(bytes: Hex.decode(v["previous"] as! String)!),
                                      timestamp: HybridTimestamp(rawValue: (v["timestamp"] as! NSNumber).uint64Value), edits: edits)
        #expect(Hex.encode(rebuilt.encoded) == v["encoded"] as? String)
        #expect(Hex.encode(rebuilt.id.bytes) == v["change_id"] as? String)
        var replica = Replica(scope: ScopeID(name: "private"))
        try replica.receive(encoded: Hex.decode(v["encoded"] as! String)!, nowMilliseconds: 1_790_000_010_000)
        #expect(Hex.encode(replica.canonicalState()) == v["canonical_state"] as? String)
        #expect(Hex.encode(replica.stateDigest()) == v["state_digest"] as? String)
        let stored = v["key_order"] as! [String: [String]]
        for kind in Self.orderedSets {
            let expected = try #require(stored[kind.description])
            // The code's order is the vector's…
            #expect(Self.keyOrder(replica, edits[0].contact, kind) == expected, "\(kind) order")
            // …and the vector's is the text order, which here differs from the raw byte order
            // (tags: UTF-8 byte order, which differs from a locale's or a case-insensitive one).
            let raw = expected.map { Hex.decode($0)! }
            let asText = raw.map { kind == .tags ? $0 : Array(Base64URL.encode($0).utf8) }
            #expect(asText == asText.sorted { $0.lexicographicallyPrecedes($1) }, "\(kind) keys are in text order")
            if kind != .tags {
                #expect(raw != raw.sorted { $0.lexicographicallyPrecedes($1) }, "\(kind): the vector must tell text order from raw order")
            }
        }
    }
}
