@testable import KithCRDT
import KithCrypto
import Testing

@Suite("Change runs: compact, chain-authenticated")
struct ChangeRunTests {
    /// 50 single-edit changes of one device.
    func chain(_ n: Int = 50) throws -> (Replica, [Change]) {
        var r = Replica(scope: testScope)
        var a = ChangeAuthor(signer: deviceKey(7))
        var out: [Change] = []
        for i in 0..<n {
            out.append(try a.commit([ContactEdit(contact: contactID(UInt64(i % 7)), ops: [.setField(.city, "City \(i)")])], to: &r,
                                    wallMilliseconds: now + UInt64(i)))
        }
        return (r, out)
    }

    func decode(_ bytes: [UInt8]) throws -> [Change] {
        var reader = ByteReader(bytes)
        return try ChangeRun.decode(&reader, scope: testScope)
    }

    @Test func roundTripsWithOneSignatureAndIsSmaller() throws {
        let (source, changes) = try chain()
        let run = ChangeRun.encode(changes[...])
        let plain = changes.reduce(0) { $0 + $1.encoded.count }
        #expect(run.count * 2 < plain, "run \(run.count) B vs \(plain) B as separate changes")
        let decoded = try decode(run)
        #expect(decoded.map(\.id) == changes.map(\.id))
        #expect(decoded.last!.isSigned && decoded.dropLast().allSatisfy { !$0.isSigned && $0.authenticatedByChain })
        var r = Replica(scope: testScope)
        for c in decoded { try r.receive(c, nowMilliseconds: now + 100) }
        #expect(r.canonicalState() == source.canonicalState())
        // A relay holding the unsigned changes forwards them as a run again; the next node accepts.
        let again = try decode(ChangeRun.encode(r.changes(missingFrom: VersionVector())[...]))
        var r2 = Replica(scope: testScope)
        for c in again { try r2.receive(c, nowMilliseconds: now + 100) }
        #expect(r2.canonicalState() == source.canonicalState())
    }

    @Test func erasedBlocksTravelInRuns() throws {
        var (source, _) = try chain(20)
        var a = ChangeAuthor(signer: deviceKey(7))
        a.resume(from: source)
        try a.commit([ContactEdit(contact: contactID(3), ops: [.forget])], to: &source, wallMilliseconds: now + 1_000)
        let held = source.changes(missingFrom: VersionVector())
        #expect(held.contains { $0.hasErasedBlocks })
        let decoded = try decode(ChangeRun.encode(held[...]))
        #expect(decoded.map(\.id) == held.map(\.id))
        var r = Replica(scope: testScope)
        for c in decoded { try r.receive(c, nowMilliseconds: now + 2_000) }
        #expect(r.canonicalState() == source.canonicalState())
    }

    @Test func tamperingAnywhereIsRefused() throws {
        let (_, changes) = try chain(10)
        let run = ChangeRun.encode(changes[...])
        var refused = 0
        for i in 0..<run.count {
            var b = run
            b[i] ^= 0x04
            if (try? decode(b)) == nil { refused += 1 }
        }
        #expect(refused == run.count, "\(run.count - refused) tampered runs were accepted")
    }

    @Test func anUnsignedChangeOutsideARunIsRefused() throws {
        let (_, changes) = try chain(3)
        let decoded = try decode(ChangeRun.encode(changes[...]))
        // Re-parsed from its bytes (as if sent in a plain `changes` message) it has no signature.
        let bare = try Change(decoding: decoded[0].encoded)
        var r = Replica(scope: testScope)
        #expect(throws: ChangeRejection.self) { try r.receive(bare, nowMilliseconds: now + 100) }
        // A run cannot end in an unsigned change.
        #expect(!ChangeRun.canEncode(decoded[0..<2]))
        #expect(ChangeRun.canEncode(decoded[...]))
    }

    @Test func anotherDevicesSignatureDoesNotAuthenticateTheRun() throws {
        let (_, changes) = try chain(5)
        var run = ChangeRun.encode(changes[...])
        let forged = deviceKey(9).signature(for: Change.signatureDomain + Array(changes.last!.signedHeader))
        run.replaceSubrange((run.count - 64)..., with: forged)
        #expect(throws: ChangeRejection.self) { _ = try decode(run) }
    }
}
