import KithCrypto
import KithSync
import Testing

@Suite("LAN announcements")
struct LANAnnouncementTests {
    let member = Ed25519.PrivateKey().publicKey
    let instance: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]

    @Test func ownMemberRecognisesOthersDoNot() {
        let key = LANAnnouncement.memberKey(member)
        let a = LANAnnouncement(key: key, port: 7434, instance: instance, nowSeconds: 1_000_000)
        #expect(LANAnnouncement.verify(a.encoded, key: key, nowSeconds: 1_000_010)?.port == 7434)
        #expect(LANAnnouncement.verify(a.encoded, key: LANAnnouncement.memberKey(Ed25519.PrivateKey().publicKey), nowSeconds: 1_000_010) == nil)
        // No names, no keys in the clear: only magic, epoch, port, a random instance and a MAC.
        #expect(!a.encoded.containsSubsequence(member.bytes.prefix(8)))
    }

    @Test func rotatesAndRefusesStaleTamperedOrForged() {
        let key = LANAnnouncement.memberKey(member)
        let now: UInt64 = 1_000_000
        let a = LANAnnouncement(key: key, port: 7434, instance: instance, nowSeconds: now)
        let later = LANAnnouncement(key: key, port: 7434, instance: instance, nowSeconds: now + 600)
        #expect(a.tag != later.tag) // unlinkable across epochs without the key
        #expect(LANAnnouncement.verify(a.encoded, key: key, nowSeconds: now + 900) == nil) // replayed too late
        for i in 0..<a.encoded.count {
            var t = a.encoded
            t[i] ^= 0x01
            #expect(LANAnnouncement.verify(t, key: key, nowSeconds: now) == nil, "byte \(i)")
        }
        #expect(LANAnnouncement.verify(Array(a.encoded.dropLast()), key: key, nowSeconds: now) == nil)
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: ArraySlice<UInt8>) -> Bool {
        guard needle.count <= count else { return false }
        for i in 0...(count - needle.count) where self[i..<(i + needle.count)].elementsEqual(needle) { return true }
        return false
    }
}
