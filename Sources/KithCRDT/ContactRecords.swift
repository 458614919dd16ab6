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
/// bit, so listing the visible contacts decodes nothing. While any record is encoded, the
/// decoded ones are kept apart (`states`, reached through `slots`), so a million encoded
/// records cost 8 bytes each, not an empty `ContactState` each; once every record is decoded
/// the states are put back in record order.
struct ContactRecords: Sendable, RandomAccessCollection {
    /// By record, or (while `source` is set) by position in `owners`.
    private var states: [ContactState] = []
    /// Per record while `source` is set (else empty): `decodedTag | k` when `states[k]` holds
    /// it, otherwise `visible << 63 | offset << 32 | length` of its bytes in `source`.
    private var slots: [UInt64] = []
    /// Per entry of `states` while `source` is set: the record it is.
    private var owners: [Int] = []
    private var encodedCount = 0
    private var source: EncodedContactStates?

    private static let visibleBit: UInt64 = 1 << 63
    private static let decodedTag: UInt64 = 1 << 62
    /// The largest state section whose offsets fit the 30 bits `slots` gives them.
    static let maxEncodedBytes = 1 << 30

    init() {}

    var startIndex: Int { 0 }
    var endIndex: Int { source == nil ? states.count : slots.count }

    subscript(i: Int) -> ContactState {
        get {
            guard let source else { return states[i] }
            let slot = slots[i]
            if slot & Self.decodedTag != 0 { return states[Int(slot & 0xffff_ffff)] }
            return source.decode(slot)
        }
        set {
            guard source != nil else {
                states[i] = newValue
                return
            }
            states[materialize(i)] = newValue
            compactIfDecoded()
        }
        _modify {
            if source == nil {
                yield &states[i]
            } else {
                let k = materialize(i)
                yield &states[k]
                compactIfDecoded()
            }
        }
    }

    /// Whether the contact at `i` is visible, without decoding an encoded one.
    func isVisible(_ i: Int, _ devices: DeviceTable) -> Bool {
        guard source != nil else { return states[i].isVisible(devices) }
        let slot = slots[i]
        if slot & Self.decodedTag != 0 { return states[Int(slot & 0xffff_ffff)].isVisible(devices) }
        return slot & Self.visibleBit != 0
    }

    /// The record's encoding when it is still the one loaded (a snapshot writer copies it).
    func encodedBytes(_ i: Int) -> ArraySlice<UInt8>? {
        guard let source, slots[i] & Self.decodedTag == 0 else { return nil }
        let (offset, length) = EncodedContactStates.range(slots[i])
        return source.bytes[offset..<(offset + length)]
    }

    /// Records still encoded (for tests and memory accounting).
    var encodedRecordCount: Int { encodedCount }

    /// Decodes record `i` into `states` if it is encoded; returns its position there.
    private mutating func materialize(_ i: Int) -> Int {
        let slot = slots[i]
        if slot & Self.decodedTag != 0 { return Int(slot & 0xffff_ffff) }
        let k = states.count
        states.append(source!.decode(slot))
        owners.append(i)
        slots[i] = Self.decodedTag | UInt64(k)
        encodedCount -= 1
        return k
    }

    /// Once no record is encoded, puts the states back in record order and lets the state bytes go.
    mutating func compactIfDecoded() {
        guard source != nil, encodedCount == 0 else { return }
        var ordered: [ContactState] = []
        ordered.reserveCapacity(slots.count)
        for slot in slots { ordered.append(states[Int(slot & 0xffff_ffff)]) }
        states = ordered
        slots = []
        owners = []
        source = nil
    }

    mutating func reserveCapacity(_ n: Int) {
        if source == nil { states.reserveCapacity(n) } else { slots.reserveCapacity(n) }
    }

    mutating func append(_ state: ContactState) {
        guard source != nil else {
            states.append(state)
            return
        }
        slots.append(Self.decodedTag | UInt64(states.count))
        owners.append(slots.count - 1)
        states.append(state)
    }

    mutating func removeLast() {
        guard source != nil else {
            states.removeLast()
            return
        }
        let slot = slots.removeLast()
        if slot & Self.decodedTag != 0 {
            // Keep `states` dense: its last entry moves into the freed position.
            let k = Int(slot & 0xffff_ffff), last = states.count - 1
            if k != last {
                states.swapAt(k, last)
                owners[k] = owners[last]
                slots[owners[k]] = Self.decodedTag | UInt64(k)
            }
            states.removeLast()
            owners.removeLast()
        } else {
            encodedCount -= 1
        }
        compactIfDecoded()
    }

    mutating func swapAt(_ i: Int, _ j: Int) {
        guard source != nil else {
            states.swapAt(i, j)
            return
        }
        slots.swapAt(i, j)
        for r in [i, j] where slots[r] & Self.decodedTag != 0 { owners[Int(slots[r] & 0xffff_ffff)] = r }
    }

    /// Starts holding records encoded in `bytes` (appended with `appendEncoded`); only on an
    /// empty collection. False when `bytes` is too large to address this way (the caller then
    /// decodes every record).
    mutating func holdEncoded(in bytes: [UInt8], deviceCount: UInt32, capacity: Int) -> Bool {
        precondition(states.isEmpty && source == nil)
        guard bytes.count < Self.maxEncodedBytes else { return false }
        source = EncodedContactStates(bytes: bytes, deviceCount: deviceCount)
        slots.reserveCapacity(capacity)
        return true
    }

    /// Appends a record whose encoding (already checked by `ContactState.check`) is
    /// `bytes[offset ..< offset + length]` of `holdEncoded`'s bytes.
    mutating func appendEncoded(offset: Int, length: Int, visible: Bool) {
        precondition(source != nil && length > 0 && length < 1 << 32 && offset < Self.maxEncodedBytes)
        slots.append((visible ? Self.visibleBit : 0) | UInt64(offset) << 32 | UInt64(length))
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
        (Int((packed >> 32) & 0x3fff_ffff), Int(packed & 0xffff_ffff))
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

extension ContactState {
    /// `check(_:devices:)` on raw bytes: the same checks, in the same order and with the same
    /// limits (each count's limit from the bytes left before it), without slicing an array per
    /// text or retaining it per read — the pass runs over every record of a snapshot at open.
    /// `offset` moves past the record; `end` is where the reader's bytes end.
    static func check(_ buf: UnsafeRawBufferPointer, offset: inout Int, end: Int, devices: DeviceTable) throws(DecodeError) -> Bool {
        var r = RawRecordReader(buf: buf, offset: offset, end: end)
        let deviceCount = UInt32(devices.keys.count)
        let fieldCount = try r.count(max: r.remaining / 13)
        for _ in 0..<fieldCount {
            try r.stamp(deviceCount)
            guard Field(rawValue: try r.u8()) != nil else { throw DecodeError("unknown field") }
            try r.text()
        }
        let memberCount = try r.count(max: r.remaining / 14)
        for _ in 0..<memberCount {
            try r.stamp(deviceCount)
            guard SetKind(rawValue: try r.u8()) != nil else { throw DecodeError("unknown set kind") }
            try r.text()
            try r.text()
        }
        let removedCount = try r.count(max: r.remaining / 6)
        for _ in 0..<removedCount {
            guard SetKind(rawValue: try r.u8()) != nil else { throw DecodeError("unknown set kind") }
            try r.text()
            _ = try r.device(below: deviceCount)
            _ = try r.count(max: Int(UInt32.max))
            _ = try r.count(max: Int(UInt32.max))
            _ = try r.count(max: Int(UInt32.max))
        }
        let logCount = try r.count(max: r.remaining / 15)
        for _ in 0..<logCount {
            try r.stamp(deviceCount)
            _ = try r.count(max: Int(UInt32.max))
            guard Channel(rawValue: try r.u8()) != nil else { throw DecodeError("unknown channel") }
            try r.text()
            try r.text()
        }
        let flags = try r.u8()
        guard flags < 4 else { throw DecodeError("unknown record flags \(flags)") }
        var probe = ContactState()
        if flags & 1 != 0 { probe.deletedAt = try r.stamp(deviceCount) }
        if flags & 2 != 0 { probe.touchedAt = try r.stamp(deviceCount) }
        offset = r.offset
        return probe.isVisible(devices)
    }
}

/// `ByteReader`'s reads over raw bytes, for `ContactState.check`: same varint rules (minimal,
/// at most 10 bytes, within 64 bits), same bounds.
private struct RawRecordReader {
    let buf: UnsafeRawBufferPointer
    var offset: Int
    let end: Int

    var remaining: Int { end - offset }

    @inline(__always)
    mutating func u8() throws(DecodeError) -> UInt8 {
        guard offset < end else { throw DecodeError("unexpected end of data at byte \(offset)") }
        let v = buf[offset]
        offset += 1
        return v
    }

    @inline(__always)
    mutating func uvarint() throws(DecodeError) -> UInt64 {
        try ByteReader.uvarint(buf, offset: &offset, end: end)
    }

    @inline(__always)
    mutating func count(max limit: Int) throws(DecodeError) -> Int {
        let v = try uvarint()
        guard v <= UInt64(limit) else { throw DecodeError("a count is \(v), more than the limit \(limit)") }
        return Int(v)
    }

    @inline(__always)
    mutating func device(below count: UInt32) throws(DecodeError) -> UInt32 {
        let v = try uvarint()
        guard v < UInt64(count) else { throw DecodeError("device index \(v) is not below \(count)") }
        return UInt32(v)
    }

    @inline(__always)
    @discardableResult
    mutating func stamp(_ deviceCount: UInt32) throws(DecodeError) -> Stamp {
        guard remaining >= 8 else { throw DecodeError("unexpected end of data reading u64 at byte \(offset)") }
        var hlc: UInt64 = 0
        for i in 0..<8 { hlc = hlc << 8 | UInt64(buf[offset + i]) }
        offset += 8
        let device = try device(below: deviceCount)
        let seq = UInt32(try count(max: Int(UInt32.max)))
        let block = UInt32(try count(max: Int(UInt32.max)))
        let op = UInt16(try count(max: Int(UInt16.max)))
        return Stamp(hlc: hlc, device: device, seq: seq, block: block, op: op)
    }

    /// A length-prefixed text of at most `ContactState.maxText` bytes, valid UTF-8.
    @inline(__always)
    mutating func text() throws(DecodeError) {
        let n = try count(max: ContactState.maxText)
        guard remaining >= n else { throw DecodeError("need \(n) bytes at byte \(offset), only \(remaining) left") }
        let start = offset
        offset += n
        var i = start
        let stop = start + n
        // ASCII, 8 bytes at a time; anything else is validated as UTF-8.
        while i + 8 <= stop {
            if buf.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 { return try Self.utf8(buf, start, stop) }
            i += 8
        }
        while i < stop {
            if buf[i] >= 0x80 { return try Self.utf8(buf, start, stop) }
            i += 1
        }
    }

    private static func utf8(_ buf: UnsafeRawBufferPointer, _ start: Int, _ stop: Int) throws(DecodeError) {
        guard String(validating: UnsafeRawBufferPointer(rebasing: buf[start..<stop]), as: UTF8.self) != nil else {
            throw DecodeError("text is not valid UTF-8")
        }
    }
}
