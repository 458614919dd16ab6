#if canImport(Glibc)
import Glibc
#endif

/// The replica's contact states, in the replica's order. A state loaded from a snapshot stays
/// encoded — a range of the snapshot's decrypted state section — until it is read: a query
/// decodes the few contacts it shows, an edit decodes the contact it changes (which is then held
/// decoded), and opening a store checks each record's encoding in one pass without building
/// any string or array (Protocol/store.md §Snapshots, "Records on demand").
///
/// Whether an encoded contact is visible (not deleted) is worked out by that pass and kept in a
/// bit, so listing the visible contacts decodes nothing.
struct ContactRecords: Sendable, RandomAccessCollection {
    private var states: [ContactState] = []
    /// Per record while any is encoded (else empty): 0 when `states[i]` holds it, otherwise
    /// `visible << 63 | offset << 32 | length` of its bytes in `source`.
    private var encoded: [UInt64] = []
    private var encodedCount = 0
    private var source: EncodedContactStates?

    init() {}

    var startIndex: Int { 0 }
    var endIndex: Int { states.count }

    subscript(i: Int) -> ContactState {
        get {
            if encodedCount > 0, encoded[i] != 0 { return source!.decode(encoded[i]) }
            return states[i]
        }
        set {
            if encodedCount > 0, encoded[i] != 0 { markDecoded(i) }
            states[i] = newValue
        }
        _modify {
            if encodedCount > 0, encoded[i] != 0 {
                states[i] = source!.decode(encoded[i])
                markDecoded(i)
            }
            yield &states[i]
        }
    }

    /// Whether the contact at `i` is visible, without decoding an encoded one.
    func isVisible(_ i: Int, _ devices: DeviceTable) -> Bool {
        if encodedCount > 0, encoded[i] != 0 { return encoded[i] >> 63 == 1 }
        return states[i].isVisible(devices)
    }

    /// The record's encoding when it is still the one loaded (a snapshot writer copies it).
    func encodedBytes(_ i: Int) -> ArraySlice<UInt8>? {
        guard encodedCount > 0, encoded[i] != 0 else { return nil }
        let (offset, length) = EncodedContactStates.range(encoded[i])
        return source!.bytes[offset..<(offset + length)]
    }

    /// Records still encoded (for tests and memory accounting).
    var encodedRecordCount: Int { encodedCount }

    private mutating func markDecoded(_ i: Int) {
        encoded[i] = 0
        encodedCount -= 1
        if encodedCount == 0 {
            // Every record was decoded: the state bytes are no longer needed.
            encoded = []
            source = nil
        }
    }

    mutating func reserveCapacity(_ n: Int) {
        states.reserveCapacity(n)
    }

    mutating func append(_ state: ContactState) {
        states.append(state)
        if encodedCount > 0 { encoded.append(0) }
    }

    mutating func removeLast() {
        states.removeLast()
        if encodedCount > 0, encoded.removeLast() != 0 {
            encodedCount -= 1
            if encodedCount == 0 {
                encoded = []
                source = nil
            }
        }
    }

    mutating func swapAt(_ i: Int, _ j: Int) {
        states.swapAt(i, j)
        if encodedCount > 0 { encoded.swapAt(i, j) }
    }

    /// Starts holding records encoded in `bytes` (appended with `appendEncoded`); only on an
    /// empty collection. False when `bytes` is too large to address this way (the caller then
    /// decodes every record).
    mutating func holdEncoded(in bytes: [UInt8], deviceCount: UInt32, capacity: Int) -> Bool {
        precondition(states.isEmpty)
        guard bytes.count < 1 << 31 else { return false }
        source = EncodedContactStates(bytes: bytes, deviceCount: deviceCount)
        encoded.reserveCapacity(capacity)
        states.reserveCapacity(capacity)
        return true
    }

    /// Appends a record whose encoding (already checked by `ContactState.check`) is
    /// `bytes[offset ..< offset + length]` of `holdEncoded`'s bytes.
    mutating func appendEncoded(offset: Int, length: Int, visible: Bool) {
        precondition(source != nil && length > 0 && length < 1 << 32)
        if encodedCount == 0 && !states.isEmpty { encoded = Array(repeating: 0, count: states.count) }
        states.append(ContactState())
        encoded.append((visible ? 1 << 63 : 0) | UInt64(offset) << 32 | UInt64(length))
        encodedCount += 1
    }
}

/// The decrypted state section that encoded records point into; zeroed when the last replica
/// holding it lets it go.
///
/// `@unchecked Sendable`: `bytes` is never changed after `init` except by `deinit`, when no other
/// reference exists.
final class EncodedContactStates: @unchecked Sendable {
    private(set) var bytes: [UInt8]
    let deviceCount: UInt32

    init(bytes: [UInt8], deviceCount: UInt32) {
        self.bytes = bytes
        self.deviceCount = deviceCount
    }

    static func range(_ packed: UInt64) -> (offset: Int, length: Int) {
        (Int((packed >> 32) & 0x7fff_ffff), Int(packed & 0xffff_ffff))
    }

    /// Decodes a record `ContactState.check` accepted when it was loaded.
    func decode(_ packed: UInt64) -> ContactState {
        let (offset, length) = Self.range(packed)
        var reader = ByteReader(bytes, from: offset, to: offset + length)
        do {
            let state = try ContactState(decoding: &reader, deviceCount: deviceCount)
            precondition(reader.isAtEnd, "a snapshot record decoded to fewer bytes than were checked")
            return state
        } catch {
            // `check` accepts exactly what this decoder accepts, so this is a bug, never bad input.
            preconditionFailure("a snapshot record checked at open does not decode: \(error)")
        }
    }

    deinit {
        let count = bytes.count
        bytes.withUnsafeMutableBytes { if let p = $0.baseAddress { memset(p, 0, count) } }
    }
}

extension ContactState {
    /// Checks one record of a snapshot state (`encode(into:)`'s format) and moves past it,
    /// building nothing: it accepts exactly what `init(decoding:deviceCount:)` accepts. Returns
    /// whether the contact is visible (`isVisible`).
    static func check(_ r: inout ByteReader, devices: DeviceTable) throws(DecodeError) -> Bool {
        let deviceCount = UInt32(devices.keys.count)
        func text(_ r: inout ByteReader) throws(DecodeError) {
            try ByteReader.checkUTF8(try r.lengthPrefixed(max: maxText))
        }
        let fieldCount = try r.count(max: r.remaining / 13, "field count")
        for _ in 0..<fieldCount {
            _ = try Stamp(decoding: &r, deviceCount: deviceCount)
            let raw = try r.u8()
            guard Field(rawValue: raw) != nil else { throw DecodeError("unknown field \(raw)") }
            try text(&r)
        }
        let memberCount = try r.count(max: r.remaining / 14, "member count")
        for _ in 0..<memberCount {
            _ = try Stamp(decoding: &r, deviceCount: deviceCount)
            let raw = try r.u8()
            guard SetKind(rawValue: raw) != nil else { throw DecodeError("unknown set kind \(raw)") }
            try text(&r)
            try text(&r)
        }
        let removedCount = try r.count(max: r.remaining / 6, "removed count")
        for _ in 0..<removedCount {
            let raw = try r.u8()
            guard SetKind(rawValue: raw) != nil else { throw DecodeError("unknown set kind \(raw)") }
            try text(&r)
            _ = try r.deviceIndex(below: deviceCount)
            _ = try r.count(max: Int(UInt32.max), "op seq")
            _ = try r.count(max: Int(UInt32.max), "op block")
            _ = try r.count(max: Int(UInt32.max), "op index")
        }
        let logCount = try r.count(max: r.remaining / 15, "log count")
        for _ in 0..<logCount {
            _ = try Stamp(decoding: &r, deviceCount: deviceCount)
            _ = try r.count(max: Int(UInt32.max), "day")
            let rawChannel = try r.u8()
            guard Channel(rawValue: rawChannel) != nil else { throw DecodeError("unknown channel \(rawChannel)") }
            try text(&r)
            try text(&r)
        }
        let flags = try r.u8()
        guard flags < 4 else { throw DecodeError("unknown record flags \(flags)") }
        let deletedAt = flags & 1 != 0 ? try Stamp(decoding: &r, deviceCount: deviceCount) : nil
        let touchedAt = flags & 2 != 0 ? try Stamp(decoding: &r, deviceCount: deviceCount) : nil
        var probe = ContactState()
        probe.deletedAt = deletedAt
        probe.touchedAt = touchedAt
        return probe.isVisible(devices)
    }
}
