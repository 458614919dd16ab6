@testable import KithCRDT
import KithCrypto
import Testing

/// Inputs that crashed a decoder under the fuzz targets (Fuzz/, scripts/fuzz), pinned: each must
/// now be refused, or handled, without a trap.
@Suite("Fuzz regressions: CRDT")
struct CRDTFuzzRegressionTests {
    /// Target `change-run` (seed 03): a run whose first seq is 2^64-1. `seq += 1` after the
    /// first change trapped before any change was checked; any peer could send it.
    @Test func runWithMaximalFirstSeqIsRefused() {
        let bytes = Hex.decode(
            "4ed32f63bf35f0eeefcb25f28a2e1fbdc873ae2835671b0c9460f5f12e4556a8ffffffffffffffffff0100000000000000000000000000"
                + "0000000000000000000000000000000000000001977420dc00000001000022010203040506070811121314151617185000000000000000"
                + "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
                + "0000")!
        var reader = ByteReader(bytes)
        #expect(throws: ChangeRejection.self) { try ChangeRun.decode(&reader, scope: ScopeID(name: "fuzz")) }
    }

    /// Target `sync-session` (seed 03): a peer's `vector` naming a device we hold with seq
    /// 2^64-1. `Int(seq)` in `changes(missingFrom:)` trapped; the peer simply lacks nothing.
    @Test func peerVectorAboveIntMaxSendsNothing() throws {
        var replica = Replica(scope: testScope)
        var author = ChangeAuthor(signer: deviceKey(0x20))
        _ = try author.commit([ContactEdit(contact: contactID(1), ops: [.setField(.city, "Leeds")])], to: &replica, wallMilliseconds: now)
        for seq in [UInt64.max, UInt64(Int.max) + 1, UInt64(Int.max)] {
            var vv = VersionVector()
            vv[deviceKey(0x20).publicKey] = seq
            #expect(replica.changes(missingFrom: vv).isEmpty, "seq \(seq)")
        }
        #expect(replica.changes(missingFrom: VersionVector()).count == 1)
    }
}
