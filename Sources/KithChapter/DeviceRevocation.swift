import KithCRDT
import KithCrypto

/// A member's signed statement that one of their devices no longer acts for them (a lost or
/// stolen phone). Signed with the member key, so only the member's primary device can make one;
/// every device of the member refuses the revoked device from then on, for the private scope as
/// for chapters (Protocol/chapters.md §9).
///
/// `version(1)=1 ‖ member[32] ‖ device[32] ‖ u64 at_ms ‖ signature[64]`, the signature over
/// `"kith/device-revoke/v1\0" ‖` the first 73 bytes.
public struct DeviceRevocation: Hashable, Sendable {
    public static let encodedLength = 1 + 32 + 32 + 8 + 64
    static let domain = Array("kith/device-revoke/v1\0".utf8)

    public let member: Ed25519.PublicKey
    public let device: Ed25519.PublicKey
    public let atMilliseconds: UInt64
    public let encoded: [UInt8]

    public static func make(member: Ed25519.PrivateKey, device: Ed25519.PublicKey, atMilliseconds: UInt64) -> DeviceRevocation {
        var body: [UInt8] = [1]
        body += member.publicKey.bytes
        body += device.bytes
        body.appendBigEndian(atMilliseconds)
        return try! DeviceRevocation(encoded: body + member.signature(for: domain + body))
    }

    /// Parses and verifies the member's signature.
    public init(encoded b: [UInt8]) throws(MembershipError) {
        guard b.count == Self.encodedLength, b[0] == 1 else {
            throw MembershipError(.malformed, "a device revocation is \(Self.encodedLength) bytes of version 1")
        }
        do {
            member = try Ed25519.PublicKey(bytes: b[1..<33])
            device = try Ed25519.PublicKey(bytes: b[33..<65])
        } catch {
            throw MembershipError(.malformed, "a device revocation holds a malformed key")
        }
        atMilliseconds = UInt64(bigEndianBytes: b[65..<73])
        guard member.isValidSignature(b[73...], for: Self.domain + b[0..<73]) else {
            throw MembershipError(.badSignature, "device revocation signature does not verify against member \(member)")
        }
        encoded = b
    }
}
