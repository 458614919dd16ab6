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

    /// Parses a text form: the 26-character base32 form (`description`, either case) or the
    /// 22-character base64url form that earlier versions printed (Protocol/data-model.md §3.1).
    public init?(text: String) {
        let b: [UInt8]?
        switch text.utf8.count {
        case 26: b = ContactIDText.decodeBase32(text)
        case 22: b = Base64URL.decode(text)
        default: b = nil
        }
        guard let b, let id = try? ContactID(bytes: b) else { return nil }
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

    /// The text form people see and type: 26 characters of lowercase base32 (RFC 4648 alphabet
    /// `a–z 2–7`, no padding), which can never start with `-` and so is never read as an option.
    public var description: String { ContactIDText.base32(bytes) }

    /// The 22-character base64url form: how set members (links) hold a contact id inside the
    /// CRDT (Protocol/data-model.md §6), and the text form earlier versions printed.
    public var base64url: String { Base64URL.encode(bytes) }
}

/// Contact id text forms and prefixes (Protocol/data-model.md §3.1). Pure.
public enum ContactIDText {
    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

    /// Lowercase base32 (RFC 4648 §6 alphabet), unpadded.
    public static func base32(_ bytes: some Collection<UInt8>) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count * 8 + 4) / 5)
        var buffer: UInt32 = 0
        var bits = 0
        for b in bytes {
            buffer = buffer << 8 | UInt32(b)
            bits += 8
            while bits >= 5 {
                bits -= 5
                out.append(alphabet[Int(buffer >> UInt32(bits) & 31)])
            }
        }
        if bits > 0 { out.append(alphabet[Int(buffer << UInt32(5 - bits) & 31)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// The 5-bit value of a base32 character (either case), nil for any other character.
    static func value32(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x61...0x7A: c - 0x61
        case 0x41...0x5A: c - 0x41
        case 0x32...0x37: c - 0x32 + 26
        default: nil
        }
    }

    /// The 6-bit value of a base64url character, nil for any other character.
    static func value64(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x41...0x5A: c - 0x41
        case 0x61...0x7A: c - 0x61 + 26
        case 0x30...0x39: c - 0x30 + 52
        case 0x2D: 62
        case 0x5F: 63
        default: nil
        }
    }

    /// Decodes unpadded base32 (either case); nil for other characters or non-zero trailing bits.
    public static func decodeBase32(_ text: String) -> [UInt8]? {
        guard let p = bits(of: text, width: 5, value: value32) else { return nil }
        let whole = p.count / 8
        guard p.count - whole * 8 < 5, p.dropFirst(whole * 8).allSatisfy({ !$0 }) else { return nil }
        return pack(p.prefix(whole * 8))
    }

    static func bits(of text: String, width: Int, value: (UInt8) -> UInt8?) -> [Bool]? {
        var out = [Bool]()
        out.reserveCapacity(text.utf8.count * width)
        for c in text.utf8 {
            guard let v = value(c) else { return nil }
            for i in stride(from: width - 1, through: 0, by: -1) { out.append(v >> UInt8(i) & 1 == 1) }
        }
        return out
    }

    static func pack(_ bits: some Collection<Bool>) -> [UInt8] {
        var out = [UInt8]()
        var byte: UInt8 = 0
        var n = 0
        for b in bits {
            byte = byte << 1 | (b ? 1 : 0)
            n += 1
            if n == 8 { out.append(byte); byte = 0; n = 0 }
        }
        return out
    }
}

/// What a short contact reference such as `k7qd` or (the older form) `-1EG` can stand for: the
/// leading bits of a contact id. The base32 reading applies to text in the base32 alphabet
/// (lowercase letters and 2–7), the base64url reading to text in that alphabet; a prefix may
/// have both readings. Prefixes match ids by their bytes, so an index keyed by id bytes finds
/// the candidates of either form in one ordered scan.
public struct ContactIDPrefix: Sendable, Equatable {
    /// The leading bits, most significant first (at most 128).
    public let bits: [Bool]
    public let form: Form

    public enum Form: Sendable, Equatable { case base32, base64url }

    /// Both readings of `text` that are valid prefixes (the base32 one first); empty when it is
    /// no prefix of a contact id in either form. Upper case letters are read as base64url only:
    /// the base32 form is printed in lower case.
    public static func readings(of text: String) -> [ContactIDPrefix] {
        var out: [ContactIDPrefix] = []
        let lower = text.utf8.allSatisfy { (0x61...0x7A).contains($0) || (0x32...0x37).contains($0) }
        if lower, let b = ContactIDText.bits(of: text, width: 5, value: ContactIDText.value32), b.count <= 130,
           b.dropFirst(128).allSatisfy({ !$0 }) {
            out.append(ContactIDPrefix(bits: Array(b.prefix(128)), form: .base32))
        }
        if let b = ContactIDText.bits(of: text, width: 6, value: ContactIDText.value64), b.count <= 132,
           b.dropFirst(128).allSatisfy({ !$0 }) {
            out.append(ContactIDPrefix(bits: Array(b.prefix(128)), form: .base64url))
        }
        return out
    }

    /// The smallest id bytes this prefix can start (the prefix padded with zero bits): where an
    /// ordered scan of ids begins.
    public var lowerBound: [UInt8] {
        ContactIDText.pack(bits + [Bool](repeating: false, count: 128 - bits.count))
    }

    public func matches(_ id: some Collection<UInt8>) -> Bool {
        var i = 0
        for byte in id {
            for k in stride(from: 7, through: 0, by: -1) {
                guard i < bits.count else { return true }
                if (byte >> UInt8(k) & 1 == 1) != bits[i] { return false }
                i += 1
            }
        }
        return i >= bits.count
    }

    public func matches(_ id: ContactID) -> Bool { matches(id.bytes) }
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
