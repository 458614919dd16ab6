import KithChapter
import KithConsent
import KithCRDT
import KithCrypto

/// Fixed keys: the seeds are valid only against these, and signing harnesses use them.
enum Keys {
    static func ed(_ n: UInt8) -> Ed25519.PrivateKey { try! Ed25519.PrivateKey(seed: [UInt8](repeating: n, count: 32)) }
    static func x(_ n: UInt8) -> X25519.PrivateKey { try! X25519.PrivateKey(bytes: [UInt8](repeating: n, count: 32)) }

    /// Certificates are dated at `created`; targets run at `nowSeconds`.
    static let created: UInt64 = 1_700_000_000
    static let nowSeconds: UInt64 = 1_750_000_000
    static var nowMilliseconds: UInt64 { nowSeconds * 1000 }

    struct Identity: Sendable {
        let member: Ed25519.PrivateKey
        let device: Ed25519.PrivateKey
        let agreement: X25519.PrivateKey
        let certificate: DeviceCertificate
    }

    /// Four members with one device each, and a second device of member 0.
    static let identities: [Identity] = (0..<5).map { i in
        let n = UInt8(i)
        let member = ed(0x10 + (i == 4 ? 0 : n))
        let device = ed(0x20 + n)
        let agreement = x(0x30 + n)
        let cert = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey,
                                           createdAt: created, expiresAt: i == 3 ? created + 86_400 : nil)
        return Identity(member: member, device: device, agreement: agreement, certificate: cert)
    }

    static let organization = OrganizationKeys(signing: ed(0x40), agreement: x(0x41), name: "Fuzz Org")
}

/// Signature domains (the protocol's, copied because the types keep them internal).
enum Domain {
    static let membership = Array("kith/membership/v1\0".utf8)
    static let deviceRevoke = Array("kith/device-revoke/v1\0".utf8)
    static let grant = Array("kith/grant/v1\0".utf8)
    static let upward = Array("kith/upward/v1\0".utf8)
    static let revokeGrant = Array("kith/revoke-grant/v1\0".utf8)
    static let hubAnswer = Array("kith/hub-answer/v1\0".utf8)

    /// `body ‖ certificate ‖ signature` as grants, records and grant revocations are signed.
    static func deviceSigned(_ domain: [UInt8], _ body: [UInt8], by who: Keys.Identity) -> [UInt8] {
        let signed = body + who.certificate.encoded
        return signed + who.device.signature(for: domain + signed)
    }
}

/// Splits a fuzz input into pieces, never failing: short reads give what is left.
struct Cursor {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset >= bytes.count }

    mutating func byte() -> UInt8? {
        guard offset < bytes.count else { return nil }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func take(_ n: Int) -> [UInt8] {
        let end = min(bytes.count, offset + max(0, n))
        defer { offset = end }
        return Array(bytes[offset..<end])
    }

    /// `u16 big-endian length ‖ bytes`.
    mutating func chunk() -> [UInt8]? {
        guard let hi = byte(), let lo = byte() else { return nil }
        return take(Int(hi) << 8 | Int(lo))
    }

    /// `u8 length ‖ bytes`.
    mutating func shortChunk() -> [UInt8]? {
        guard let n = byte() else { return nil }
        return take(Int(n))
    }

    mutating func rest() -> [UInt8] { take(bytes.count - offset) }

    static func chunk(_ b: [UInt8]) -> [UInt8] { [UInt8(b.count >> 8), UInt8(b.count & 0xff)] + b }
}
