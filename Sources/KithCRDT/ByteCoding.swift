/// Appends Kith's canonical primitives to a byte buffer: unsigned LEB128 varints (minimal form),
/// big-endian fixed-width integers and length-prefixed byte strings.
public struct ByteWriter {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }

    public mutating func uvarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func uvarint(_ value: Int) { uvarint(UInt64(value)) }

    public mutating func u64(_ v: UInt64) { bytes.appendBigEndian(v) }

    public mutating func raw(_ b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }

    /// `uvarint(count) ‖ bytes`.
    public mutating func lengthPrefixed(_ b: some Collection<UInt8>) {
        uvarint(b.count)
        bytes.append(contentsOf: b)
    }

    public mutating func text(_ s: String) {
        var s = s
        s.withUTF8 { lengthPrefixed($0) }
    }
}

/// Reads what `ByteWriter` wrote, refusing anything non-canonical or out of bounds with a
/// `DecodeError` (never a trap).
public struct ByteReader {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    public let end: Int

    public init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        self.offset = start
        self.end = end ?? bytes.count
    }

    public var isAtEnd: Bool { offset >= end }
    public var remaining: Int { end - offset }

    @inline(__always)
    public mutating func u8() throws(DecodeError) -> UInt8 {
        guard offset < end else { throw DecodeError("unexpected end of data at byte \(offset)") }
        let v = bytes[offset]
        offset += 1
        return v
    }

    /// A minimal-form LEB128 varint of at most 10 bytes.
    @inline(__always)
    public mutating func uvarint() throws(DecodeError) -> UInt64 {
        try Self.uvarint(bytes, offset: &offset, end: end)
    }

    /// The varint rules, shared with the raw-byte reader of snapshot records (ContactRecords.swift).
    @inline(__always)
    static func uvarint<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes, offset: inout Int, end: Int) throws(DecodeError) -> UInt64 where Bytes.Index == Int {
        guard offset < end else { throw DecodeError("unexpected end of data at byte \(offset)") }
        let first = bytes[offset]
        offset += 1
        if first < 0x80 { return UInt64(first) }
        var result = UInt64(first & 0x7f)
        var shift: UInt64 = 7
        while true {
            guard offset < end else { throw DecodeError("unexpected end of data at byte \(offset)") }
            let b = bytes[offset]
            offset += 1
            if shift == 63 && b > 1 { throw DecodeError("varint overflows 64 bits at byte \(offset - 1)") }
            result |= UInt64(b & 0x7f) << shift
            if b < 0x80 {
                if b == 0 { throw DecodeError("varint is not in minimal form at byte \(offset - 1)") }
                return result
            }
            shift += 7
            if shift > 63 { throw DecodeError("varint longer than 10 bytes at byte \(offset)") }
        }
    }

    /// A varint that must fit in `Int` and be at most `limit`.
    public mutating func count(max limit: Int, _ what: @autoclosure () -> String) throws(DecodeError) -> Int {
        let v = try uvarint()
        guard v <= UInt64(limit) else { throw DecodeError("\(what()) is \(v), more than the limit \(limit)") }
        return Int(v)
    }

    public mutating func u64() throws(DecodeError) -> UInt64 {
        guard remaining >= 8 else { throw DecodeError("unexpected end of data reading u64 at byte \(offset)") }
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(bytes[offset + i]) }
        offset += 8
        return v
    }

    public mutating func raw(_ n: Int) throws(DecodeError) -> ArraySlice<UInt8> {
        guard n >= 0, remaining >= n else { throw DecodeError("need \(n) bytes at byte \(offset), only \(remaining) left") }
        defer { offset += n }
        return bytes[offset..<(offset + n)]
    }

    public mutating func skip(_ n: Int) throws(DecodeError) {
        guard n >= 0, remaining >= n else { throw DecodeError("need \(n) bytes at byte \(offset), only \(remaining) left") }
        offset += n
    }

    public mutating func lengthPrefixed(max limit: Int) throws(DecodeError) -> ArraySlice<UInt8> {
        let n = try count(max: limit, "length")
        return try raw(n)
    }

    /// Length-prefixed UTF-8; invalid UTF-8 is an error, not replaced.
    public mutating func text(max limit: Int) throws(DecodeError) -> String {
        let slice = try lengthPrefixed(max: limit)
        return try Self.utf8(slice)
    }

    /// Checks that `slice` is valid UTF-8 without building a string (ASCII needs no allocation).
    public static func checkUTF8(_ slice: ArraySlice<UInt8>) throws(DecodeError) {
        for b in slice where b >= 0x80 {
            guard String(validating: slice, as: UTF8.self) != nil else { throw DecodeError("text is not valid UTF-8") }
            return
        }
    }

    public static func utf8(_ slice: ArraySlice<UInt8>) throws(DecodeError) -> String {
        // Fast path: ASCII needs no validation beyond the high bit.
        var ascii = true
        for b in slice where b >= 0x80 { ascii = false; break }
        if ascii { return String(decoding: slice, as: UTF8.self) }
        guard let s = String(validating: slice, as: UTF8.self) else {
            throw DecodeError("text is not valid UTF-8")
        }
        return s
    }
}

/// Bytes that do not decode as what they claim to be.
public struct DecodeError: Error, Equatable, CustomStringConvertible, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
