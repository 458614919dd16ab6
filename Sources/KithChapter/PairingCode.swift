import KithCRDT
import KithCrypto

/// A one-time code that lets a new machine become a device of a member over the network
/// (`kith device pair` on the device holding the member key, `kith device add --pair CODE` on the
/// new one; Protocol/identity.md §5):
/// `kith-pair:` ‖ base64url(`version(1)=1 ‖ member[32] ‖ token[16] ‖ expires u32 seconds ‖ text hint`).
///
/// The new device connects to the hint with a self-certified temporary certificate, checks that
/// the daemon it reached is the member's (its certificate names the member key in the code), and
/// proves the token bound to that connection; the member's daemon answers with a real
/// certificate for the new device's keys.
public struct PairingCode: Sendable, Equatable {
    public static let prefix = "kith-pair:"
    static let proofDomain = Array("kith/pair/v1".utf8)

    public let member: Ed25519.PublicKey
    public let token: [UInt8]
    public let expiresAt: UInt64
    public let hint: String

    public init(member: Ed25519.PublicKey, token: [UInt8], expiresAt: UInt64, hint: String) {
        self.member = member
        self.token = token
        self.expiresAt = expiresAt
        self.hint = hint
    }

    public var text: String {
        PastedCode.encode(prefix: Self.prefix, head: member.bytes + token, expiresAt: expiresAt, hint: hint)
    }

    public init(text: String, now: UInt64) throws(MembershipError) {
        let d = try PastedCode.decode(text, prefix: Self.prefix, headLength: 32 + 16, what: "pairing code",
                                      renew: "make a new one with kith device pair", now: now)
        member = try! Ed25519.PublicKey(bytes: d.head[0..<32])
        token = Array(d.head[32...])
        expiresAt = d.expiresAt
        hint = d.hint
    }

    /// BLAKE2b-256 keyed by the token over the domain, the Noise handshake hash and the new
    /// device's temporary certificate.
    public static func proof(token: [UInt8], handshakeHash: [UInt8], certificate: DeviceCertificate) -> [UInt8] {
        BLAKE2b.hash(proofDomain + handshakeHash + certificate.encoded, outputLength: 32, key: token)
    }
}
