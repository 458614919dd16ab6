@testable import KithCRDT
import KithCrypto
import Testing

@Suite("Changes: encoding, signatures, chains, rejections")
struct ChangeTests {
    func sampleEdits() -> [ContactEdit] {
        [
            ContactEdit(contact: contactID(1), ops: [
                .setField(.givenName, "Ada"), .setField(.familyName, "Lovelace"),
                .add(.phones, "+442079460000", payload: "020 7946 0000"), .add(.tags, "volunteer"),
            ]),
            ContactEdit(contact: contactID(2), ops: [.setField(.givenName, "Grace"), .setField(.support, "4")]),
        ]
    }

    @Test func roundTripAndVerify() throws {
        var author = ChangeAuthor(signer: deviceKey(1))
        let c = try! author.makeChange(scope: testScope, edits: sampleEdits(), wallMilliseconds: now)
        let d = try Change(decoding: c.encoded)
        #expect(d == c)
        #expect(d.id == c.id)
        #expect(d.seq == 1 && d.previous == ChangeID.zero)
        try d.verify()
        let edits = try d.decodeEdits()
        #expect(edits.map(\.edit) == sampleEdits())
    }

    @Test func everyFlippedByteIsRejectedNotCrashed() throws {
        var author = ChangeAuthor(signer: deviceKey(1))
        let c = try! author.makeChange(scope: testScope, edits: sampleEdits(), wallMilliseconds: now)
        var rejected = 0
        for i in c.encoded.indices {
            for bit in [0x01, 0x80] as [UInt8] {
                var t = c.encoded
                t[i] ^= bit
                var r = Replica(scope: testScope)
                do {
                    try r.receive(encoded: t, nowMilliseconds: now)
                    Issue.record("flipping bit \(bit) of byte \(i) was accepted")
                } catch {
                    rejected += 1
                    #expect(r.knownContactCount == 0, "partial apply after rejection at byte \(i)")
                }
            }
        }
        #expect(rejected == c.encoded.count * 2)
    }

    @Test func truncationsAndGarbageAreMalformed() throws {
        var author = ChangeAuthor(signer: deviceKey(1))
        let c = try! author.makeChange(scope: testScope, edits: sampleEdits(), wallMilliseconds: now)
        for n in 0..<c.encoded.count {
            #expect(throws: ChangeRejection.self) { _ = try Change(decoding: Array(c.encoded.prefix(n))).verify() }
        }
        #expect(throws: ChangeRejection(.malformed, "")) { _ = try Change(decoding: c.encoded + [0]) }
        var rng = SeededRandom(seed: 7)
        for _ in 0..<2_000 {
            let junk = rng.bytes(rng.int(0..<300))
            var r = Replica(scope: testScope)
            #expect(throws: ChangeRejection.self) { try r.receive(encoded: junk, nowMilliseconds: now) }
        }
    }

    @Test func wrongAuthorKeyIsABadSignature() throws {
        var author = ChangeAuthor(signer: deviceKey(1))
        let c = try! author.makeChange(scope: testScope, edits: sampleEdits(), wallMilliseconds: now)
        var t = c.encoded
        // Replace the author key (after format byte, scope length and scope) with another device's.
        let at = 2 + testScope.bytes.count
        t.replaceSubrange(at..<(at + 32), with: deviceKey(2).publicKey.bytes)
        var r = Replica(scope: testScope)
        #expect(throws: ChangeRejection(.badSignature, "")) { try r.receive(encoded: t, nowMilliseconds: now) }
    }

    @Test func brokenChainGapsAndEquivocation() throws {
        var a = ChangeAuthor(signer: deviceKey(1))
        let c1 = try! a.makeChange(scope: testScope, edits: [ContactEdit(contact: contactID(1), ops: [.setField(.city, "Lyon")])], wallMilliseconds: now)
        let c2 = try! a.makeChange(scope: testScope, edits: [ContactEdit(contact: contactID(1), ops: [.setField(.city, "Paris")])], wallMilliseconds: now + 1)
        let c3 = try! a.makeChange(scope: testScope, edits: [ContactEdit(contact: contactID(1), ops: [.setField(.city, "Nice")])], wallMilliseconds: now + 2)

        // Out of order: buffered, then applied when the gap fills.
        var r = Replica(scope: testScope)
        #expect(try r.receive(c3, nowMilliseconds: now) == .pending)
        #expect(try r.receive(c2, nowMilliseconds: now) == .pending)
        #expect(r.contact(contactID(1)) == nil)
        #expect(try r.receive(c1, nowMilliseconds: now) == .applied)
        #expect(r.contact(contactID(1))?[.city] == "Nice")
        #expect(r.pendingCount == 0)
        #expect(try r.receive(c2, nowMilliseconds: now) == .duplicate)

        // A change whose `previous` is not its predecessor.
        let forged = try! Change.make(scope: testScope, signer: deviceKey(1), seq: 2, previous: c3.id, timestamp: c2.timestamp,
                                 edits: [ContactEdit(contact: contactID(1), ops: [.setField(.city, "Rome")])])
        var r2 = Replica(scope: testScope)
        try r2.receive(c1, nowMilliseconds: now)
        #expect(throws: ChangeRejection(.brokenChain, "")) { try r2.receive(forged, nowMilliseconds: now) }

        // Equivocation: same seq, different content, both signed. The first is kept, evidence recorded.
        #expect(throws: ChangeRejection(.equivocation, "")) { try r.receive(forged, nowMilliseconds: now) }
        #expect(r.equivocations.count == 1)
        #expect(r.equivocations[0].kept == c2 && r.equivocations[0].refused == forged)
        #expect(r.contact(contactID(1))?[.city] == "Nice")
    }

    @Test func clockRegressionAndFutureStamps() throws {
        let k = deviceKey(1)
        let c1 = try! Change.make(scope: testScope, signer: k, seq: 1, previous: .zero, timestamp: HybridTimestamp(milliseconds: now),
                             edits: [ContactEdit(contact: contactID(1), ops: [.setField(.city, "A")])])
        let back = try! Change.make(scope: testScope, signer: k, seq: 2, previous: c1.id, timestamp: HybridTimestamp(milliseconds: now - 5),
                               edits: [ContactEdit(contact: contactID(1), ops: [.setField(.city, "B")])])
        var r = Replica(scope: testScope)
        try r.receive(c1, nowMilliseconds: now)
        #expect(throws: ChangeRejection(.clockRegression, "")) { try r.receive(back, nowMilliseconds: now) }

        let future = try! Change.make(scope: testScope, signer: deviceKey(2), seq: 1, previous: .zero,
                                 timestamp: HybridTimestamp(milliseconds: now + 3_600_001),
                                 edits: [ContactEdit(contact: contactID(1), ops: [.setField(.city, "C")])])
        #expect(throws: ChangeRejection(.fromTheFuture, "")) { try r.receive(future, nowMilliseconds: now) }
        // Within the bound it is fine (a skewed but sane clock).
        #expect(try r.receive(future, nowMilliseconds: now + 2) == .applied)
    }

    @Test func wrongScopeIsRefused() throws {
        var a = ChangeAuthor(signer: deviceKey(1))
        let c = try! a.makeChange(scope: ScopeID(name: "chapter:x"), edits: sampleEdits(), wallMilliseconds: now)
        var r = Replica(scope: testScope)
        #expect(throws: ChangeRejection(.wrongScope, "")) { try r.receive(c, nowMilliseconds: now) }
    }

    @Test func invalidFieldGrammarIsMalformed() throws {
        for (f, v) in [(Field.support, "6"), (.relationship, "enemy"), (.consent, "yes"), (.consent, "share;2024-13-01;door")] {
            let edits = [ContactEdit(contact: contactID(1), ops: [.setField(f, v)])]
            #expect(throws: ChangeRejection(.malformed, "")) {
                _ = try Change.make(scope: testScope, signer: deviceKey(1), seq: 1, previous: .zero, timestamp: HybridTimestamp(milliseconds: now), edits: edits)
            }
            // Forged anyway and signed: the replica refuses it.
            let c = try! Change.build(scope: testScope, signer: deviceKey(1), seq: 1, previous: .zero, timestamp: HybridTimestamp(milliseconds: now), edits: edits)
            var r = Replica(scope: testScope)
            #expect(throws: ChangeRejection(.malformed, ""), "\(f)=\(v)") { try r.receive(c, nowMilliseconds: now) }
        }
        let ok = try! Change.make(scope: testScope, signer: deviceKey(1), seq: 1, previous: .zero, timestamp: HybridTimestamp(milliseconds: now),
                             edits: [ContactEdit(contact: contactID(1), ops: [.setField(.consent, "share;2026-11-02;signed form at the door")])])
        var r = Replica(scope: testScope)
        try r.receive(ok, nowMilliseconds: now)
        #expect(try ContactConsent(encoded: r.contact(contactID(1))![.consent]!).level == .share)
    }

    @Test func hybridClock() {
        var c = HybridClock()
        let t1 = c.tick(wallMilliseconds: 1000)
        let t2 = c.tick(wallMilliseconds: 1000)
        let t3 = c.tick(wallMilliseconds: 900) // wall clock went backwards
        #expect(t1 < t2 && t2 < t3)
        #expect(t3.milliseconds == 1000)
        c.observe(HybridTimestamp(milliseconds: 5000, counter: 3))
        let t4 = c.tick(wallMilliseconds: 1001)
        #expect(t4 == HybridTimestamp(milliseconds: 5000, counter: 4))
        let t5 = c.tick(wallMilliseconds: 6000)
        #expect(t5 == HybridTimestamp(milliseconds: 6000))
    }
}
