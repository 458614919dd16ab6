@testable import KithCRDT
import KithCrypto
import Testing

/// `Replica.receive(_ changes:)` checks signatures and decodes a batch across cores before
/// applying it in order: it must accept and refuse exactly what receiving one by one does.
@Suite("Batch receive")
struct BatchReceiveTests {
    /// Devices' changes big enough (> 64 KiB together) that the batch is prepared in parallel.
    func honestChanges(devices: [UInt8], perDevice: Int) throws -> [Change] {
        var out: [Change] = []
        for d in devices {
            var author = ChangeAuthor(signer: deviceKey(d))
            for s in 0..<perDevice {
                let edits = (0..<40).map { i in
                    ContactEdit(contact: contactID(UInt64(d) << 32 | UInt64(s * 40 + i)), ops: [
                        .setField(.givenName, "Given \(d)-\(s)-\(i) with a longer name"),
                        .setField(.consent, "contact;2026-0\(1 + i % 9)-1\(i % 10);verbal, at the door"),
                        .setField(.birthday, i % 2 == 0 ? "1990-12-31" : "--02-29"),
                        .setField(.support, "\(1 + i % 5)"),
                        .add(.emails, "someone.\(d).\(s).\(i)@example.org"),
                    ])
                }
                out.append(try author.makeChange(scope: testScope, edits: edits, wallMilliseconds: now + UInt64(s)))
            }
        }
        return out
    }

    /// The same bytes with one byte of the last block flipped (the digest no longer matches).
    func tampered(_ c: Change) throws -> Change {
        var bytes = c.encoded
        bytes[bytes.count - 2] ^= 0x01
        return try Change(decoding: bytes)
    }

    /// The same change with one byte of its signature flipped.
    func badlySigned(_ c: Change) throws -> Change {
        var bytes = c.encoded
        bytes[c.headerLength + 5] ^= 0x80
        return try Change(decoding: bytes)
    }

    func oneByOne(_ changes: [Change]) -> (Replica, [Result<ReceiveOutcome, ChangeRejection>]) {
        var r = Replica(scope: testScope)
        let results = changes.map { c in Result { () throws(ChangeRejection) in try r.receive(c, nowMilliseconds: now + 10_000_000) } }
        return (r, results)
    }

    @Test("a batch is applied as receiving one by one")
    func honestBatch() throws {
        let changes = try honestChanges(devices: [1, 2, 3], perDevice: 6)
        #expect(changes.reduce(0) { $0 + $1.encoded.count } > Change.parallelThreshold)
        var batch = Replica(scope: testScope)
        let results = batch.receive(changes, nowMilliseconds: now + 10_000_000)
        let (serial, expected) = oneByOne(changes)
        #expect(results == expected)
        #expect(results.allSatisfy { $0 == .success(.applied) })
        #expect(batch.contacts() == serial.contacts())
        #expect(batch.knownContactCount == 3 * 6 * 40)
        // The mark of the parallel check is not held with the changes.
        #expect(batch.allChanges().allSatisfy { !$0.plainChecked })
    }

    @Test("tampered, badly signed and malformed changes in a parallel batch are refused as alone")
    func attacksInABatch() throws {
        var changes = try honestChanges(devices: [4, 5], perDevice: 8)
        changes[2] = try tampered(changes[2])
        changes[9] = try badlySigned(changes[9])
        // A validly signed change whose field breaks its grammar (support must be 1...5).
        var forger = ChangeAuthor(signer: deviceKey(6))
        let good = try forger.makeChange(scope: testScope, edits: [ContactEdit(contact: contactID(77), ops: [.setField(.city, "x")])], wallMilliseconds: now)
        let bad = try Change.build(scope: testScope, signer: deviceKey(6), seq: 2, previous: good.id,
                                   timestamp: HybridTimestamp(rawValue: (now + 5) << 16),
                                   edits: [ContactEdit(contact: contactID(78), ops: [.setField(.support, "9")])])
        changes.insert(contentsOf: [good, bad], at: 5)
        var batch = Replica(scope: testScope)
        let results = batch.receive(changes, nowMilliseconds: now + 10_000_000)
        let (serial, expected) = oneByOne(changes)
        #expect(results == expected)
        #expect(results[2] == .failure(ChangeRejection(.tampered, "")))
        #expect(results[6] == .failure(ChangeRejection(.malformed, "")))
        #expect(results[11] == .failure(ChangeRejection(.badSignature, "")))
        // Later changes of the tampered device wait for the seq it lacks; nothing of it applied.
        #expect(results[3] == .success(.pending))
        #expect(batch.contacts() == serial.contacts())
        #expect(batch.contact(contactID(78)) == nil)
        #expect(batch.contact(contactID(77))?[.city] == "x")
        #expect(batch.versionVector() == serial.versionVector())
        #expect(batch.pendingChanges().allSatisfy { !$0.plainChecked })
    }

    @Test("a plaintext change applied from its bytes gives the state its decoded ops give")
    func applyFromBytesMatchesDecodedOps() throws {
        var a = ChangeAuthor(signer: deviceKey(21)), b = ChangeAuthor(signer: deviceKey(22))
        var replica = Replica(scope: testScope)
        let long = String(repeating: "é long note ", count: 2_000) // a 3-byte length varint
        let first = try a.commit([
            ContactEdit(contact: contactID(1), ops: [
                .setField(.givenName, "Ada"), .setField(.notes, long), .setField(.region, "Ohio"),
                .setField(.emailSubscription, "subscribed"), .add(.emails, "ada@example.org", payload: "Ada@Example.org"),
                .add(.tags, "volunteer"), .add(.phones, "+15550100"), .knows(member: deviceKey(9).publicKey, strength: 4),
                .link(to: contactID(2)), .add(.matchTokens, key: ArraySlice(repeating: 7, count: 16), payload: []),
                .add(.labels, "tel:+15550100", payload: "mobile"),
                .logConversation(ConversationEntry(day: 20_394, channel: .door, outcome: "supportive", note: "yard sign")),
            ]),
            ContactEdit(contact: contactID(2), ops: [.setField(.familyName, "Lovelace"), .delete]),
            ContactEdit(contact: contactID(3), ops: [.add(.tags, "gone")]),
        ], to: &replica, wallMilliseconds: now)
        let tagAdd = replica.liveAdds(of: "volunteer", in: .tags, contact: contactID(1))
        _ = try b.commit([
            ContactEdit(contact: contactID(1), ops: [
                .remove(.tags, "volunteer", observed: tagAdd), .setField(.givenName, "Ada B."),
                .remove(.tags, "never-added", observed: [OpRef(device: deviceKey(21).publicKey, seq: 9, block: 300, op: 200)]),
            ]),
            ContactEdit(contact: contactID(2), ops: [.setField(.city, "London")]),
            ContactEdit(contact: contactID(3), ops: [.forget]),
        ], to: &replica, wallMilliseconds: now + 1)
        _ = try a.commit([ContactEdit(contact: contactID(3), ops: [.add(.tags, "after the forget")]),
                          ContactEdit(contact: contactID(4), ops: [.setField(.city, "Paris")])],
                         to: &replica, wallMilliseconds: now + 2)
        #expect(first.blockCount == 3)

        // The same changes received by a fresh replica, one by one and as a batch.
        let changes = replica.allChanges()
        var single = Replica(scope: testScope)
        for c in changes { #expect(try single.receive(c, nowMilliseconds: now + 10) == .applied) }
        var batch = Replica(scope: testScope)
        #expect(batch.receive(changes, nowMilliseconds: now + 10).allSatisfy { $0 == .success(.applied) })

        // Reference: every decoded op applied through `ContactState.apply` (forgotten contacts dropped).
        var reference: [ContactID: ContactState] = [:]
        for c in changes {
            let d = single.devices.lookup(c.author)!
            for (block, edit) in try c.decodeEdits() {
                for (i, op) in edit.ops.enumerated() {
                    reference[edit.contact, default: ContactState()].apply(op, at: Stamp(hlc: c.timestamp.rawValue, device: d, seq: UInt32(c.seq),
                                                                                        block: UInt32(block), op: UInt16(i)), devices: single.devices)
                }
            }
        }
        reference[contactID(3)] = nil
        for r in [replica, single, batch] {
            #expect(r.knownContactCount == 3)
            for id in (1...4).map(contactID) {
                #expect(r.contact(id) == reference[id].flatMap { $0.isVisible(r.devices) ? r.view(of: $0, id: id) : nil })
                #expect(r.isDeleted(id) == (reference[id].map { !$0.isVisible(r.devices) } ?? false))
            }
            #expect(r.forgotten == [contactID(3)])
        }
        // The author counted the forgotten contact's op it applied before the forget; the others
        // received that block erased.
        #expect(batch.opCount == single.opCount && replica.opCount == single.opCount + 1)
        #expect(single.contact(contactID(1))?.tags == [])
        #expect(single.contact(contactID(1))?[.notes] == long)
        #expect(single.allChanges().map(\.encoded) == batch.allChanges().map(\.encoded))
    }

    @Test("a peer's count of coming changes sizes the contact tables once, within a bound")
    func expectedChangesSizeTheTables() throws {
        let changes = try honestChanges(devices: [7], perDevice: 10) // 40 new contacts each
        var r = Replica(scope: testScope)
        r.expectChanges(10)
        _ = r.receive(Array(changes[0..<2]), nowMilliseconds: now + 10_000_000)
        #expect(r.expectedChanges == 0)
        #expect(r.contactIndex.capacity >= 400, "80 contacts in 2 changes, 8 changes to come")
        let capacity = r.contactIndex.capacity
        _ = r.receive(Array(changes[2...]), nowMilliseconds: now + 10_000_000)
        #expect(r.knownContactCount == 400)
        #expect(r.contactIndex.capacity == capacity, "sized once: no growth while the rest arrived")

        // A peer may claim any count: the reservation is bounded, and the state is the same.
        var claimed = Replica(scope: testScope)
        claimed.expectChanges(Int.max)
        _ = claimed.receive(changes, nowMilliseconds: now + 10_000_000)
        #expect(claimed.contactIndex.capacity >= Replica.maxReservedContacts)
        #expect(claimed.contactIndex.capacity < 3 * Replica.maxReservedContacts)
        #expect(claimed.contacts() == r.contacts())

        var theirs = VersionVector(), ours = VersionVector()
        theirs[deviceKey(1).publicKey] = 10
        theirs[deviceKey(2).publicKey] = 3
        ours[deviceKey(1).publicKey] = 4
        ours[deviceKey(3).publicKey] = 9
        #expect(theirs.changesAhead(of: ours) == 9)
        #expect(ours.changesAhead(of: theirs) == 9)
        theirs[deviceKey(4).publicKey] = .max
        theirs[deviceKey(5).publicKey] = .max
        #expect(theirs.changesAhead(of: ours) == .max, "saturates")
    }

    @Test("field grammar checked without allocating agrees with the parser")
    func fieldGrammar() {
        for (field, value, ok) in [
            (Field.consent, "share;2026-01-31;signed form; twice", true), (.consent, "share;2026-13-01;x", false),
            (.consent, "maybe;2026-01-01;x", false), (.consent, "share;2026-01-01", false), (.consent, "none;;x", false),
            (.birthday, "2000-02-29", true), (.birthday, "--12-31", true), (.birthday, "--13-01", false),
            (.birthday, "-12-31", false), (.birthday, "1999-1-01", false), (.birthday, "１999-01-01", false),
            (.support, "5", true), (.support, "0", false), (.support, "55", false), (.support, "", true),
        ] as [(Field, String, Bool)] {
            #expect(((try? field.validate(value)) != nil) == ok, "\(field) '\(value)'")
        }
    }
}
