#if canImport(Glibc)
import Glibc
#endif

/// A member's statement, signed with the member key, that a device's keys act for the member.
///
/// Encoding (177 bytes, all integers big-endian; see `Protocol/identity.md`):
/// `version(1)=1 ‖ member Ed25519(32) ‖ device Ed25519(32) ‖ device X25519(32) ‖
///  createdAt u64 seconds ‖ expiresAt u64 seconds (0 = never) ‖ signature(64)`.
/// The signature covers `"kith/device-cert/v1\0"` followed by the first 113 bytes.
public struct DeviceCertificate: Hashable, Sendable {
    public static let version: UInt8 = 1
    public static let encodedLength = 1 + 32 * 3 + 8 + 8 + 64
    static let domain = Array("kith/device-cert/v1\0".utf8)

    public let memberKey: Ed25519.PublicKey
    public let deviceSigningKey: Ed25519.PublicKey
    public let deviceAgreementKey: X25519.PublicKey
    /// Unix time in seconds.
    public let createdAt: UInt64
    /// Unix time in seconds after which the certificate is no longer valid; nil = no expiry.
    public let expiresAt: UInt64?
    public let signature: [UInt8]

    /// Issues a certificate for a device, signed by the member's key.
    public static func issue(
        member: Ed25519.PrivateKey,
        deviceSigningKey: Ed25519.PublicKey,
        deviceAgreementKey: X25519.PublicKey,
        createdAt: UInt64,
        expiresAt: UInt64? = nil
    ) -> DeviceCertificate {
        let body = signedBody(member.publicKey, deviceSigningKey, deviceAgreementKey, createdAt, expiresAt)
        let sig = member.signature(for: domain + body)
        return DeviceCertificate(member.publicKey, deviceSigningKey, deviceAgreementKey, createdAt, expiresAt, sig)
    }

    private init(_ m: Ed25519.PublicKey, _ ds: Ed25519.PublicKey, _ da: X25519.PublicKey, _ c: UInt64, _ e: UInt64?, _ s: [UInt8]) {
        memberKey = m
        deviceSigningKey = ds
        deviceAgreementKey = da
        createdAt = c
        expiresAt = e
        signature = s
    }

    private static func signedBody(_ m: Ed25519.PublicKey, _ ds: Ed25519.PublicKey, _ da: X25519.PublicKey, _ c: UInt64, _ e: UInt64?) -> [UInt8] {
        var out: [UInt8] = [version]
        out.reserveCapacity(encodedLength)
        out += m.bytes
        out += ds.bytes
        out += da.bytes
        out.appendBigEndian(c)
        out.appendBigEndian(e ?? 0)
        return out
    }

    public var encoded: [UInt8] {
        Self.signedBody(memberKey, deviceSigningKey, deviceAgreementKey, createdAt, expiresAt) + signature
    }

    /// Parses the encoding. Does not verify the signature: call `verify(now:expectedMember:)`.
    public init(encoded b: [UInt8]) throws {
        guard b.count == Self.encodedLength else {
            throw CryptoError(.malformed, "a device certificate is \(Self.encodedLength) bytes, got \(b.count)")
        }
        guard b[0] == Self.version else {
            throw CryptoError(.malformed, "unsupported device certificate version \(b[0]) (this build reads version \(Self.version))")
        }
        let m = try Ed25519.PublicKey(bytes: b[1..<33])
        let ds = try Ed25519.PublicKey(bytes: b[33..<65])
        let da = try X25519.PublicKey(bytes: b[65..<97])
        let c = UInt64(bigEndianBytes: b[97..<105])
        let e = UInt64(bigEndianBytes: b[105..<113])
        self.init(m, ds, da, c, e == 0 ? nil : e, Array(b[113...]))
    }

    /// Checks the member's signature, the expected member (when given) and the validity window.
    /// A certificate created more than `clockSkew` seconds in the future is not yet valid.
    public func verify(now: UInt64, expectedMember: Ed25519.PublicKey? = nil, clockSkew: UInt64 = 300) throws {
        if let expectedMember, expectedMember != memberKey {
            throw CryptoError(.wrongSigner, "device certificate is signed by member \(memberKey), expected \(expectedMember)")
        }
        let body = Self.signedBody(memberKey, deviceSigningKey, deviceAgreementKey, createdAt, expiresAt)
        guard memberKey.isValidSignature(signature, for: Self.domain + body) else {
            throw CryptoError(.invalidSignature, "device certificate signature does not verify against member key \(memberKey)")
        }
        if createdAt > now &+ clockSkew {
            throw CryptoError(.certificateNotYetValid, "device certificate is dated \(Self.utc(createdAt)), but this computer's clock says it is \(Self.utc(now)): check this computer's clock (and time zone) and fix it")
        }
        if let expiresAt, now >= expiresAt {
            throw CryptoError(.certificateExpired, "device certificate expired on \(Self.utc(expiresAt)) (this computer's clock says \(Self.utc(now)); if that is wrong, fix the clock)")
        }
    }

    /// "2026-12-03 07:30:00 UTC" for Unix seconds.
    public static func utc(_ seconds: UInt64) -> String {
        var t = time_t(clamping: seconds), parts = tm()
        guard gmtime_r(&t, &parts) != nil else { return "\(seconds) s after 1970" }
        var buf = [CChar](repeating: 0, count: 40)
        let n = strftime(&buf, buf.count, "%Y-%m-%d %H:%M:%S UTC", &parts)
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    @inlinable
    public mutating func appendBigEndian(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
    }

    @inlinable
    public mutating func appendBigEndian(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }

    @inlinable
    public mutating func appendBigEndian(_ v: UInt16) {
        append(UInt8(truncatingIfNeeded: v >> 8))
        append(UInt8(truncatingIfNeeded: v))
    }
}

extension FixedWidthInteger {
    /// Reads a big-endian integer from exactly `MemoryLayout<Self>.size` bytes.
    @inlinable
    public init(bigEndianBytes bytes: some Collection<UInt8>) {
        precondition(bytes.count == MemoryLayout<Self>.size)
        var v: Self = 0
        for b in bytes { v = v << 8 | Self(b) }
        self = v
    }
}
