import KithCRDT
import KithCrypto
import KithSync
import Testing

/// Inputs the fuzz targets (Fuzz/, scripts/fuzz) found crashing a decoder, pinned as tests:
/// each must now be refused cleanly.
@Suite("Fuzz regressions: sync")
struct SyncFuzzRegressionTests {
    func bytes(_ base64: String) -> [UInt8] {
        Base64URL.decode(String(base64.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 }))!
    }

    /// Target `lan`: an announcement whose epoch is 2^64-1 overflowed `epoch + 1` (a trap any
    /// host on the LAN could trigger with one UDP datagram).
    @Test func lanAnnouncementWithMaximalEpoch() {
        let datagram = bytes("S0lUSExBTjH/////////////HOgBAgMEBQYHCKGMWDUmr6HFzNGzOjr8")
        #expect(datagram.count == LANAnnouncement.length)
        let key = LANAnnouncement.memberKey(try! Ed25519.PrivateKey(seed: [UInt8](repeating: 0x10, count: 32)).publicKey)
        #expect(LANAnnouncement.verify(datagram, key: key, nowSeconds: 1_750_000_000) == nil)
        #expect(LANAnnouncement.verify(datagram, key: key, nowSeconds: .max) == nil)
    }

    /// Target `sync-session` (seed 03): `hello`, then a `vector` claiming seq 2^64-1 for a device
    /// the replica holds (framed as the target reads them: u16 length ‖ message). Building the
    /// answer trapped in `Replica.changes(missingFrom:)`; now the peer is sent nothing but
    /// caught-up.
    @Test func vectorWithMaximalSeq() throws {
        let script = Hex.decode("00080101010466757a7a0031020466757a7a014ed32f63bf35f0eeefcb25f28a2e1fbdc873ae2835671b0c9460f5f12e4556a8ffffffffffffffffff01")!
        let device = try Ed25519.PrivateKey(seed: [UInt8](repeating: 0x20, count: 32))
        let scope = ScopeID(name: "fuzz")
        var replica = Replica(scope: scope)
        var author = ChangeAuthor(signer: device)
        _ = try author.commit([ContactEdit(contact: ContactID(high: 1, low: 2), ops: [.setField(.city, "Leeds")])], to: &replica,
                              wallMilliseconds: 1_750_000_000_000)
        var session = SyncSession(scopes: [scope])
        _ = session.start()
        var i = 0
        var answers: [SyncSession.Action] = []
        while i + 2 <= script.count {
            let n = Int(script[i]) << 8 | Int(script[i + 1])
            let message = try SyncMessage(decoding: Array(script[(i + 2)..<(i + 2 + n)]))
            answers = session.receive(message) { $0 == scope ? replica : nil }
            i += 2 + n
        }
        #expect(answers == [.send(.caughtUp(scope: scope))])
    }
}
