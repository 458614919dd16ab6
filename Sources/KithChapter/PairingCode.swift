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
        var w = ByteWriter(capacity: 96)
        w.u8(1)
        w.raw(member.bytes)
        w.raw(token)
        var e: [UInt8] = []
        e.appendBigEndian(UInt32(clamping: expiresAt))
        w.raw(e)
        w.text(hint)
        return Self.prefix + Base64URL.encode(w.bytes)
    }

    public init(text raw: String, now: UInt64) throws(MembershipError) {
        let text = raw.trimmingWhitespace
        guard text.hasPrefix(Self.prefix), let b = Base64URL.decode(String(text.dropFirst(Self.prefix.count))) else {
            throw MembershipError(.badInvite, "this is not a Kith pairing code (it starts with \"\(Self.prefix)\")")
        }
        var r = ByteReader(b)
        do throws(DecodeError) {
            guard try r.u8() == 1 else { throw DecodeError("unsupported version") }
            do { member = try Ed25519.PublicKey(bytes: try r.raw(32)) } catch { throw DecodeError("bad member key") }
            token = Array(try r.raw(16))
            expiresAt = UInt64(UInt32(bigEndianBytes: try r.raw(4)))
            hint = try r.text(max: 255)
            guard r.isAtEnd else { throw DecodeError("trailing bytes") }
        } catch {
            throw MembershipError(.badInvite, "the pairing code is damaged (\(error.reason)); make a new one with kith device pair")
        }
        guard now < expiresAt else {
            throw MembershipError(.badInvite, "the pairing code expired \(ChapterInvite.ago(now - expiresAt)) ago; make a new one with kith device pair")
        }
    }

    /// BLAKE2b-256 keyed by the token over the domain, the Noise handshake hash and the new
    /// device's temporary certificate.
    public static func proof(token: [UInt8], handshakeHash: [UInt8], certificate: DeviceCertificate) -> [UInt8] {
        BLAKE2b.hash(proofDomain + handshakeHash + certificate.encoded, outputLength: 32, key: token)
    }
}
