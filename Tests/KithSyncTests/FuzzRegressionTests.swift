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
}
