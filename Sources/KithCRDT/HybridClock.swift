/// A hybrid logical clock value: milliseconds since the Unix epoch in the upper 48 bits and a
/// logical counter in the lower 16. Compared as one unsigned 64-bit integer.
public struct HybridTimestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64

    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(milliseconds: UInt64, counter: UInt16 = 0) {
        rawValue = milliseconds << 16 | UInt64(counter)
    }

    public var milliseconds: UInt64 { rawValue >> 16 }
    public var counter: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

    public static func < (a: HybridTimestamp, b: HybridTimestamp) -> Bool { a.rawValue < b.rawValue }
    public static let zero = HybridTimestamp(rawValue: 0)

    public var description: String { "\(milliseconds).\(counter)" }
}

/// A device's hybrid logical clock. Pure: the caller passes the wall clock in.
///
/// `tick` never goes backwards, even when the wall clock does; `observe` moves the clock past
/// anything seen from peers so a new edit always orders after what its author had seen.
public struct HybridClock: Sendable, Equatable {
    public private(set) var last: HybridTimestamp

    public init(last: HybridTimestamp = .zero) { self.last = last }

    /// The timestamp for a new local change at wall-clock time `wallMilliseconds`.
    public mutating func tick(wallMilliseconds: UInt64) -> HybridTimestamp {
        let physical = HybridTimestamp(milliseconds: wallMilliseconds)
        last = physical > last ? physical : HybridTimestamp(rawValue: last.rawValue &+ 1)
        return last
    }

    /// Takes a timestamp seen on a received change into account.
    public mutating func observe(_ remote: HybridTimestamp) {
        if remote > last { last = remote }
    }
}

extension HybridTimestamp {
    /// A duration as people say it, rounded to the nearest unit: "2 h", "2 h 5 min", "45 min",
    /// "30 s" (7,199,990 ms is "2 h", not "119 min").
    public static func spoken(milliseconds ms: UInt64) -> String {
        let s = (ms + 500) / 1000
        if s < 120 { return "\(s) s" }
        let min = (s + 30) / 60
        if min < 120 { return "\(min) min" }
        let h = min / 60, rest = min % 60
        if h >= 48 { return "\(h / 24) days" }
        return rest == 0 ? "\(h) h" : "\(h) h \(rest) min"
    }
}
