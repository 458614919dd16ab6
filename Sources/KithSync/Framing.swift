import KithCRDT

/// Splitting application messages into Noise transport plaintexts and back (Protocol/sync.md §3).
///
/// Each Noise plaintext is `u8 flags ‖ data`; flag bit 0 set means "more fragments of this
/// message follow". A message is at most `maxMessageLength` bytes; anything larger, or a flags
/// byte with unknown bits, is an error that ends the connection.
public enum Fragmenter {
    public static let maxFragmentData = Noise.maxMessageLength - Noise.tagLength - 1
    /// The largest application message: one change of 32 MiB plus framing.
    public static let maxMessageLength = Change.maxEncodedLength + 1_024

    /// The plaintexts carrying `message`, in order.
    public static func fragments(of message: [UInt8]) -> [[UInt8]] {
        if message.count <= maxFragmentData { return [[0] + message] }
        var out: [[UInt8]] = []
        var start = 0
        while start < message.count {
            let end = min(start + maxFragmentData, message.count)
            out.append([end < message.count ? 1 : 0] + message[start..<end])
            start = end
        }
        return out
    }
}

/// Reassembles fragments into messages, refusing oversized or malformed input.
public struct Reassembler: Sendable {
    private var partial: [UInt8] = []
    private var inMessage = false

    public init() {}

    /// Feeds one decrypted plaintext; returns a complete message when this was its last fragment.
    public mutating func feed(_ plaintext: [UInt8]) throws(FramingError) -> [UInt8]? {
        guard let flags = plaintext.first else { throw FramingError("empty fragment") }
        guard flags & ~1 == 0 else { throw FramingError("fragment flags 0x\(String(flags, radix: 16)) have unknown bits") }
        guard partial.count + plaintext.count - 1 <= Fragmenter.maxMessageLength else {
            throw FramingError("message exceeds \(Fragmenter.maxMessageLength) bytes")
        }
        partial += plaintext.dropFirst()
        inMessage = flags & 1 == 1
        if inMessage { return nil }
        defer { partial = [] }
        return partial
    }
}

/// Splits a TCP byte stream into Noise messages: each is `u16 length (big-endian) ‖ message`.
public struct LengthPrefixedReader: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    public mutating func append(_ bytes: some Sequence<UInt8>) { buffer += bytes }

    /// The next complete Noise message, or nil until more bytes arrive.
    public mutating func next() -> [UInt8]? {
        guard buffer.count - start >= 2 else { return nil }
        let n = Int(buffer[start]) << 8 | Int(buffer[start + 1])
        guard buffer.count - start - 2 >= n else { return nil }
        let msg = Array(buffer[(start + 2)..<(start + 2 + n)])
        start += 2 + n
        if start > 65_536 {
            buffer.removeFirst(start)
            start = 0
        }
        return msg
    }

    public static func frame(_ message: [UInt8]) -> [UInt8] {
        precondition(message.count <= Noise.maxMessageLength)
        return [UInt8(message.count >> 8), UInt8(message.count & 0xff)] + message
    }
}

public struct FramingError: Error, Equatable, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
