import KithCrypto

/// A contact's stable id: 16 random bytes chosen by the device that first wrote about it.
public struct ContactID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let high: UInt64
    public let low: UInt64

    public static let length = 16

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A fresh random id.
    public static func random() -> ContactID {
        try! ContactID(bytes: SecureRandom.bytes(16))
    }

    public init(bytes: some Collection<UInt8>) throws(DecodeError) {
        guard bytes.count == 16 else { throw DecodeError("a contact id is 16 bytes, got \(bytes.count)") }
        var h: UInt64 = 0, l: UInt64 = 0
        var i = 0
        for b in bytes {
            if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
            i += 1
        }
        high = h
        low = l
    }

    /// Parses the base64url text form.
    public init?(text: String) {
        guard let b = Base64URL.decode(text), let id = try? ContactID(bytes: b) else { return nil }
        self = id
    }

    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(16)
        out.appendBigEndian(high)
        out.appendBigEndian(low)
        return out
    }

    public static func < (a: ContactID, b: ContactID) -> Bool {
        (a.high, a.low) < (b.high, b.low)
    }

    /// 22 characters of base64url.
    public var description: String { Base64URL.encode(bytes) }
}

/// An opaque scope id (1...64 bytes): `private`, a chapter, an upward grant — defined by the
/// layers above. The CRDT only requires that every change names exactly one.
public struct ScopeID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public static let maxLength = 64

    public init(bytes: some Collection<UInt8>) throws(DecodeError) {
        guard (1...Self.maxLength).contains(bytes.count) else {
            throw DecodeError("a scope id is 1...\(Self.maxLength) bytes, got \(bytes.count)")
        }
        self.bytes = Array(bytes)
    }

    /// A scope named by text (e.g. "private"), for tests and local scopes.
    public init(name: String) {
        try! self.init(bytes: Array(name.utf8.prefix(Self.maxLength)))
    }

    /// A member's private scope (their devices only): `0x01 ‖ BLAKE2b-256("kith/scope/private" ‖ member key)[0..<16]`.
    public static func privateScope(of member: Ed25519.PublicKey) -> ScopeID {
        let h = BLAKE2b.hash(Array("kith/scope/private".utf8) + member.bytes)
        return try! ScopeID(bytes: [0x01] + h.prefix(16))
    }

    public var description: String {
        if let s = String(validating: bytes, as: UTF8.self), s.allSatisfy({ $0.isASCII && !$0.isWhitespace }) { return s }
        return Base64URL.encode(bytes)
    }
}

/// A device key: the Ed25519 public key that signs a device's changes.
public typealias DeviceKey = Ed25519.PublicKey

/// A 32-byte change id: BLAKE2b-256 of the change's signed header.
public struct ChangeID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public func hash(into h: inout Hasher) { bytes.withUnsafeBytes { h.combine(bytes: $0) } }
    public static func == (a: ChangeID, b: ChangeID) -> Bool { a.bytes == b.bytes }
    public static let zero = ChangeID(unchecked: [UInt8](repeating: 0, count: 32))

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    public init(bytes: some Collection<UInt8>) throws(DecodeError) {
        guard bytes.count == 32 else { throw DecodeError("a change id is 32 bytes, got \(bytes.count)") }
        self.bytes = Array(bytes)
    }

    public var description: String { Base64URL.encode(bytes) }
}
