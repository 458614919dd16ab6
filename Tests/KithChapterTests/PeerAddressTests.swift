import Foundation
@testable import KithChapter
import KithCRDT
import KithCrypto
import KithSync
import Testing

/// Address records of the chapter overlay (Protocol/sync.md §9): the golden vector, and every
/// way a record is refused.
@Suite("Peer address records")
struct PeerAddressTests {
    static func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }

    /// The vector printed in Protocol/sync.md §9.
    @Test func goldenVector() throws {
        let device = try Ed25519.PrivateKey(seed: [UInt8](repeating: 0x01, count: 32))
        let chapter = try ChapterID(bytes: [UInt8](repeating: 0xC0, count: 16))
        let epoch = try EpochRef(bytes: [UInt8](repeating: 0xE0, count: 16))
        let key = try SymmetricKey(bytes: [UInt8](repeating: 0x42, count: 32))
        let record = try PeerAddressRecord.make(address: "192.0.2.7:7434", chapter: chapter, device: device, issuedMilliseconds: 1_796_073_637_000,
                                                epoch: epoch, epochKey: key, nonce: [UInt8](repeating: 0x24, count: 24))
        let expected = Self.goldenRecord
        #expect(Self.hex(record.encoded) == expected)
        #expect(try PeerAddressRecord(decoding: record.encoded) == record)
        let message = SyncMessage.addresses(chapter: chapter.bytes, records: [record.encoded])
        #expect(record.encoded.count == 175)
        let header: String = "15" + String(repeating: "c0", count: 16) + "01" + "af01" // 175 bytes as a uvarint
        let messageHex: String = Self.hex(message.encoded)
        #expect(messageHex == header + expected)
        #expect(try SyncMessage(decoding: message.encoded) == message)
    }

    static let goldenRecord = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c000001a22e54c488e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e02424242424242424242424242424242424242424242424241e417b7e68f9b7974614b23a9e6e38184c81e0dde6d310afc940b3bb85f5af850ad13f87b99373a5881c4171c101fc8c940782c510de18e452bbb607317dafa3e5ff15961210674e18ec3cb249da9acacad66e0ce1b163b7e1baa1baff0105"

    /// A chapter created by `admin`, and the admin's current epoch key.
    func chapter(_ admin: Person) throws -> (MembershipLog, SymmetricKey) {
        let log = try MembershipLog.create(name: "Ward 5", certificate: admin.certificate, device: admin.device, now: 1_796_073_000_000)
        let epoch = try #require(log.state.currentEpoch)
        return (log, try #require(EpochKeys.open(epoch, device: admin.device.publicKey, agreement: admin.agreement)))
    }

    @Test func opensForACurrentDeviceUnderTheCurrentEpoch() throws {
        let admin = Person(1)
        let (log, key) = try chapter(admin)
        let r = try PeerAddressRecord.make(address: "127.0.0.1:7434", chapter: log.chapter, device: admin.device, issuedMilliseconds: 1,
                                           epoch: log.state.currentEpoch!.ref, epochKey: key)
        #expect(try r.open(chapter: log.chapter, state: log.state, epochKey: key) == "127.0.0.1:7434")
    }

    @Test func refusesForgeriesStaleEpochsAndStrangers() throws {
        let admin = Person(1), stranger = Person(9)
        var (log, key) = try chapter(admin)
        let ref = log.state.currentEpoch!.ref
        let good = try PeerAddressRecord.make(address: "127.0.0.1:7434", chapter: log.chapter, device: admin.device, issuedMilliseconds: 1, epoch: ref, epochKey: key)
        // Another key signing for the admin's device (a member poisoning someone else's entry).
        var forged = try PeerAddressRecord.make(address: "10.6.6.6:1", chapter: log.chapter, device: stranger.device, issuedMilliseconds: 2, epoch: ref, epochKey: key).encoded
        forged.replaceSubrange(0..<32, with: admin.device.publicKey.bytes)
        #expect(throws: MembershipError.self) { try PeerAddressRecord(decoding: forged).open(chapter: log.chapter, state: log.state, epochKey: key) }
        // A device the log does not list.
        let outsider = try PeerAddressRecord.make(address: "10.6.6.6:1", chapter: log.chapter, device: stranger.device, issuedMilliseconds: 2, epoch: ref, epochKey: key)
        #expect(throws: MembershipError.self) { try outsider.open(chapter: log.chapter, state: log.state, epochKey: key) }
        // A flipped ciphertext byte, or a record replayed into another chapter.
        var tampered = good.encoded
        tampered[32 + 8 + 16 + 24 + 1] ^= 1
        #expect(throws: MembershipError.self) { try PeerAddressRecord(decoding: tampered).open(chapter: log.chapter, state: log.state, epochKey: key) }
        let other = try ChapterID(bytes: [UInt8](repeating: 7, count: 16))
        #expect(throws: MembershipError.self) { try good.open(chapter: other, state: log.state, epochKey: key) }
        // Truncated and padded bytes do not parse.
        #expect(throws: MembershipError.self) { try PeerAddressRecord(decoding: Array(good.encoded.dropLast())) }
        #expect(throws: MembershipError.self) { try PeerAddressRecord(decoding: good.encoded + [0]) }
        // After a new epoch (a removal), the old epoch's records are refused, and a record sealed
        // under the new epoch does not open with the old key a removed member still holds.
        _ = try log.startEpoch(certificate: admin.certificate, device: admin.device, now: 1_796_073_100_000)
        #expect(throws: MembershipError.self) { try good.open(chapter: log.chapter, state: log.state, epochKey: key) }
        let newKey = try #require(EpochKeys.open(log.state.currentEpoch!, device: admin.device.publicKey, agreement: admin.agreement))
        let fresh = try PeerAddressRecord.make(address: "127.0.0.1:7435", chapter: log.chapter, device: admin.device, issuedMilliseconds: 3,
                                               epoch: log.state.currentEpoch!.ref, epochKey: newKey)
        #expect(try fresh.open(chapter: log.chapter, state: log.state, epochKey: newKey) == "127.0.0.1:7435")
        #expect(throws: MembershipError.self) { try fresh.open(chapter: log.chapter, state: log.state, epochKey: key) }
    }

    @Test func addressesMessageBoundsAndTruncation() throws {
        let chapter = [UInt8](repeating: 0xC0, count: 16)
        #expect(throws: DecodeError.self) { try SyncMessage(decoding: [0x15] + chapter + [0x02, 0x01, 0x00]) }
        #expect(throws: DecodeError.self) { try SyncMessage(decoding: [0x15] + chapter + [0x81, 0x40]) } // 8,193 records > 4,096
        #expect(throws: DecodeError.self) { try SyncMessage(decoding: [0x15] + chapter + [0x01, 0x85, 0x04] + [UInt8](repeating: 0, count: 517)) }
        #expect(throws: DecodeError.self) { try SyncMessage(decoding: SyncMessage.addresses(chapter: chapter, records: []).encoded + [0]) }
    }
}
