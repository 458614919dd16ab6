import KithCrypto

/// A replica's materialized state as bytes (Protocol/store.md §Snapshots), so a store can open
/// by loading it and applying only the changes written after it, instead of replaying every
/// change. The changes themselves are not in it: the store reads them from its rows and hands
/// them to `restoring`, which checks that they are exactly the ones the state was built from.
///
/// The encoding is generic over fields and set kinds (their raw byte values), so new ones need
/// no change here; a new kind of per-contact state needs a new `stateFormat`.
extension Replica {
    /// Version of the state encoding. A reader MUST ignore a snapshot of another version.
    public static let stateFormat: UInt8 = 1

    /// Why a snapshot could not be used (the store then rebuilds from its changes).
    public struct SnapshotMismatch: Error, Sendable, CustomStringConvertible {
        public let reason: String
        public init(_ reason: String) { self.reason = reason }
        public var description: String { reason }
    }

    /// The state, without the changes (see the type's documentation).
    public func snapshotState() -> [UInt8] {
        var w = ByteWriter(capacity: 64 + records.count * 160)
        w.u8(Self.stateFormat)
        w.u8(mode.snapshotCode)
        w.lengthPrefixed(scope.bytes)
        w.u64(maxTimestamp.rawValue)
        w.uvarint(changeCount)
        w.uvarint(opCount)
        w.uvarint(devices.keys.count)
        for (i, key) in devices.keys.enumerated() {
            w.raw(key.bytes)
            let chain = i < chains.count ? chains[i].changes : HeldChanges()
            w.uvarint(chain.count)
            if let head = chain.last { w.raw(head.id.bytes) }
        }
        w.uvarint(forgotten.count)
        for id in forgotten.sorted() { w.raw(id.bytes) }
        w.uvarint(records.count)
        for i in records.indices {
            w.raw(contactIDs[i].bytes)
            // A record still as loaded is copied; its device indices are this replica's (the
            // device table only grows, in order).
            if let bytes = records.encodedBytes(i) { w.raw(bytes) } else { records[i].encode(into: &w) }
        }
        w.uvarint(awaiting.count)
        for a in awaiting {
            w.uvarint(UInt64(a.device))
            w.uvarint(a.seq)
            w.uvarint(a.blocks.count)
            for b in a.blocks { w.uvarint(b) }
        }
        w.uvarint(unreadableBlocks.count)
        for u in unreadableBlocks { w.text(u) }
        return w.bytes
    }

    /// A snapshot state parsed and checked before the store's changes are read (a store does it
    /// on another thread, beside reading its rows): everything but the match with the changes held.
    public struct SnapshotImage: Sendable {
        fileprivate var replica: Replica
        /// Per device of the state, in order: how many of its changes it covers, and the last one's id.
        fileprivate var chains: [(count: Int, head: ChangeID?)]
        /// Blocks waiting for an epoch key, checked against the held changes by `restoring`.
        fileprivate var awaiting: [(device: Int, seq: UInt64, blocks: [Int])]

        /// Every device of the state, in order, with how many of its changes the state covers.
        public var coveredChains: [(device: DeviceKey, count: Int)] {
            chains.indices.map { (replica.devices[UInt32($0)], chains[$0].count) }
        }
    }

    /// Rebuilds a replica from `snapshotState()` bytes and the changes held, per device in seq
    /// order from 1. Returns it with the held changes the state does not include yet (the tail,
    /// to be received in order). Throws `SnapshotMismatch` when the bytes do not parse or the
    /// held changes are not a superset of the ones the state was built from (a stale snapshot:
    /// a chain's head differs, is missing, or the scope or mode differs).
    public static func restoring(snapshot bytes: [UInt8], scope: ScopeID, mode: ScopeMode,
                                 epochKeys: [EpochRef: SymmetricKey] = [:], configuration: ReplicaConfiguration = .init(),
                                 held: [DeviceKey: [Change]]) throws(SnapshotMismatch) -> (replica: Replica, tail: [Change]) {
        try restoring(parsingSnapshot(bytes, scope: scope, mode: mode), epochKeys: epochKeys, configuration: configuration, held: held)
    }

    /// Parses and checks `snapshotState()` bytes of `scope` in `mode`. Records are checked, not
    /// decoded: they stay encoded in `bytes` until read (`ContactRecords`).
    public static func parsingSnapshot(_ bytes: [UInt8], scope: ScopeID, mode: ScopeMode) throws(SnapshotMismatch) -> SnapshotImage {
        var r = Replica(scope: scope, mode: mode)
        var chains: [(count: Int, head: ChangeID?)] = []
        var awaiting: [(device: Int, seq: UInt64, blocks: [Int])] = []
        do {
            var reader = ByteReader(bytes)
            guard try reader.u8() == stateFormat else { throw SnapshotMismatch("snapshot state format is not \(stateFormat)") }
            guard try reader.u8() == mode.snapshotCode else { throw SnapshotMismatch("snapshot is of another scope mode") }
            guard Array(try reader.lengthPrefixed(max: ScopeID.maxLength)) == scope.bytes else {
                throw SnapshotMismatch("snapshot is of another scope")
            }
            r.maxTimestamp = HybridTimestamp(rawValue: try reader.u64())
            r.changeCount = try reader.count(max: Int(Int32.max), "change count")
            r.opCount = try reader.count(max: Int.max / 2, "op count")
            let deviceCount = try reader.count(max: reader.remaining / 33, "device count")
            var counted = 0
            for d in 0..<deviceCount {
                let key = try DeviceKey(bytes: try reader.raw(32))
                guard Int(r.devices.intern(key)) == d else { throw SnapshotMismatch("snapshot lists a device twice") }
                let count = try reader.count(max: Int(UInt32.max), "chain length")
                chains.append((count, count > 0 ? try ChangeID(bytes: try reader.raw(32)) : nil))
                counted += count
            }
            guard counted == r.changeCount else { throw SnapshotMismatch("snapshot counts \(r.changeCount) changes, its chains \(counted)") }

            let forgottenCount = try reader.count(max: reader.remaining / 16, "forgotten count")
            r.forgotten.reserveCapacity(forgottenCount)
            for _ in 0..<forgottenCount { r.forgotten.insert(try ContactID(bytes: try reader.raw(16))) }
            let recordCount = try reader.count(max: reader.remaining / 21, "record count")
            r.contactIDs.reserveCapacity(recordCount)
            r.contactIndex.reserveCapacity(recordCount)
            // Records stay encoded in `bytes` until read (ContactRecords); each is checked here.
            let lazy = r.records.holdEncoded(in: bytes, deviceCount: UInt32(deviceCount), capacity: recordCount)
            if lazy {
                // One pass over raw bytes: ids read, records checked (not decoded).
                var offset = reader.offset
                let end = reader.end
                let failure = bytes.withUnsafeBytes { (buf: UnsafeRawBufferPointer) -> SnapshotMismatch? in
                    do {
                        for i in 0..<recordCount {
                            guard end - offset >= 16 else { throw DecodeError("need 16 bytes at byte \(offset), only \(end - offset) left") }
                            var high: UInt64 = 0, low: UInt64 = 0
                            for k in 0..<8 { high = high << 8 | UInt64(buf[offset + k]) }
                            for k in 8..<16 { low = low << 8 | UInt64(buf[offset + k]) }
                            offset += 16
                            let id = ContactID(high: high, low: low)
                            guard r.contactIndex.updateValue(i, forKey: id) == nil, !r.forgotten.contains(id) else {
                                throw SnapshotMismatch("snapshot holds contact \(id) twice, or forgotten")
                            }
                            r.contactIDs.append(id)
                            let start = offset
                            let visible = try ContactState.check(buf, offset: &offset, end: end, devices: r.devices)
                            r.records.appendEncoded(offset: start, length: offset - start, visible: visible)
                        }
                        return nil
                    } catch let e as SnapshotMismatch {
                        return e
                    } catch {
                        return SnapshotMismatch("snapshot state does not parse: \(error)")
                    }
                }
                if let failure { throw failure }
                try reader.skip(offset - reader.offset)
            } else {
                r.records.reserveCapacity(recordCount)
                for i in 0..<recordCount {
                    let id = try ContactID(bytes: try reader.raw(16))
                    guard r.contactIndex.updateValue(i, forKey: id) == nil, !r.forgotten.contains(id) else {
                        throw SnapshotMismatch("snapshot holds contact \(id) twice, or forgotten")
                    }
                    r.contactIDs.append(id)
                    r.records.append(try ContactState(decoding: &reader, deviceCount: UInt32(deviceCount)))
                }
            }
            r.records.compactIfDecoded() // a state without records holds nothing encoded
            let awaitingCount = try reader.count(max: reader.remaining / 3, "awaiting count")
            for _ in 0..<awaitingCount {
                let d = Int(try reader.deviceIndex(below: UInt32(deviceCount)))
                let seq = try reader.uvarint()
                guard seq >= 1, seq <= UInt64(chains[d].count) else { throw SnapshotMismatch("an awaiting block names a change not held") }
                let n = try reader.count(max: Change.maxBlocks, "block count")
                var blocks: [Int] = []
                for _ in 0..<n { blocks.append(try reader.count(max: Change.maxBlocks, "block index")) }
                awaiting.append((d, seq, blocks))
            }
            let unreadableCount = try reader.count(max: 1000, "unreadable count")
            for _ in 0..<unreadableCount { r.unreadableBlocks.append(try reader.text(max: 1 << 16)) }
            guard reader.isAtEnd else { throw SnapshotMismatch("\(reader.remaining) trailing bytes after the snapshot state") }
        } catch let e as SnapshotMismatch {
            throw e
        } catch {
            throw SnapshotMismatch("snapshot state does not parse: \(error)")
        }
        return SnapshotImage(replica: r, chains: chains, awaiting: awaiting)
    }

    /// The replica of a parsed snapshot and the changes held (see `restoring(snapshot:…)`).
    public static func restoring(_ image: SnapshotImage, epochKeys: [EpochRef: SymmetricKey] = [:], configuration: ReplicaConfiguration = .init(),
                                 held: [DeviceKey: [Change]]) throws(SnapshotMismatch) -> (replica: Replica, tail: [Change]) {
        var tail: [Change] = []
        let r = try restoring(image, epochKeys: epochKeys, configuration: configuration) { key, count throws(SnapshotMismatch) in
            var chain = HeldChanges()
            guard let list = held[key] else {
                if count > 0 { throw SnapshotMismatch("stale snapshot: the store does not hold change \(count) of device \(key) it was built from") }
                return chain
            }
            // The head's id commits to its predecessors (each header names the previous id), so
            // a matching head (checked by the caller) means the whole prefix matches; the seqs
            // are checked here.
            for (i, c) in list.enumerated() where c.seq != UInt64(i + 1) {
                throw SnapshotMismatch("the held changes of device \(key) skip from seq \(i) to \(c.seq)")
            }
            guard list.count >= count else {
                throw SnapshotMismatch("stale snapshot: the store does not hold change \(count) of device \(key) it was built from")
            }
            for c in list[0..<count] { chain.append(c) }
            tail += list[count...]
            return chain
        }
        let seen = Set(r.devices.keys)
        for (key, list) in held where !seen.contains(key) { tail += list }
        return (r, tail)
    }

    /// The replica of a parsed snapshot whose changes stay in the store (Protocol/store.md
    /// §Snapshots, "Changes on demand"): `heads` holds, for every device of the snapshot with
    /// changes, the held change at the seq the snapshot covers (read and authenticated by the
    /// store, which also checked that seqs 1… up to it are all there); the rest are read from
    /// `source` when asked for. The changes after the snapshot are the caller's to receive.
    public static func restoring(_ image: SnapshotImage, epochKeys: [EpochRef: SymmetricKey] = [:], configuration: ReplicaConfiguration = .init(),
                                 heads: [DeviceKey: Change], source: any HeldChangeSource) throws(SnapshotMismatch) -> Replica {
        try restoring(image, epochKeys: epochKeys, configuration: configuration) { key, count throws(SnapshotMismatch) in
            guard count > 0 else { return HeldChanges() }
            guard let head = heads[key], head.seq == UInt64(count) else {
                throw SnapshotMismatch("stale snapshot: the store does not hold change \(count) of device \(key) it was built from")
            }
            return HeldChanges(count: count, head: head, source: source)
        }
    }

    /// Shared by both `restoring`s: `chain(key, count)` gives the device's first `count` changes.
    private static func restoring(_ image: SnapshotImage, epochKeys: [EpochRef: SymmetricKey], configuration: ReplicaConfiguration,
                                  chain: (DeviceKey, Int) throws(SnapshotMismatch) -> HeldChanges) throws(SnapshotMismatch) -> Replica {
        let parsed = image.replica
        var r = Replica(scope: parsed.scope, configuration: configuration, mode: parsed.mode,
                        epochKeys: parsed.mode == .encrypted ? [:] : epochKeys)
        r.devices = parsed.devices
        r.maxTimestamp = parsed.maxTimestamp
        r.changeCount = parsed.changeCount
        r.opCount = parsed.opCount
        r.forgotten = parsed.forgotten
        r.contactIDs = parsed.contactIDs
        r.contactIndex = parsed.contactIndex
        r.records = parsed.records
        r.unreadableBlocks = parsed.unreadableBlocks
        for (d, entry) in image.chains.enumerated() {
            let key = r.devices[UInt32(d)]
            var held = Chain()
            held.changes = try chain(key, entry.count)
            if let head = entry.head {
                guard let last = held.changes.last, held.changes.count == entry.count, last.id == head else {
                    throw SnapshotMismatch("stale snapshot: the store does not hold change \(entry.count) of device \(key) it was built from")
                }
                held.lastTimestamp = last.timestamp
            }
            r.chains.append(held)
        }
        for a in image.awaiting {
            guard let change = r.chains[a.device].changes.at(Int(a.seq) - 1) else {
                throw SnapshotMismatch("the change of device \(r.devices[UInt32(a.device)]) seq \(a.seq) whose blocks wait for a key cannot be read")
            }
            guard a.blocks.allSatisfy({ $0 < change.blockCount }) else { throw SnapshotMismatch("snapshot state does not parse: an awaiting block index is out of range") }
            r.awaiting.append((UInt32(a.device), a.seq, a.blocks))
        }
        r.changed = nil // indexes kept beside the replica rebuild
        // Blocks that waited for keys given now are applied (addEpochKeys needs keys it lacks).
        r.addEpochKeys(epochKeys)
        return r
    }
}

extension ByteReader {
    /// A varint index into a device table of `count` entries.
    mutating func deviceIndex(below count: UInt32) throws(DecodeError) -> UInt32 {
        let v = try uvarint()
        guard v < UInt64(count) else { throw DecodeError("device index \(v) is not below \(count)") }
        return UInt32(v)
    }
}

extension ScopeMode {
    var snapshotCode: UInt8 {
        switch self {
        case .plain: 0
        case .encrypted: 1
        case .opaque: 2
        }
    }
}

extension Stamp {
    func encode(into w: inout ByteWriter) {
        w.u64(hlc)
        w.uvarint(UInt64(device))
        w.uvarint(UInt64(seq))
        w.uvarint(UInt64(block))
        w.uvarint(UInt64(op))
    }

    init(decoding r: inout ByteReader, deviceCount: UInt32) throws(DecodeError) {
        hlc = try r.u64()
        device = try r.deviceIndex(below: deviceCount)
        seq = UInt32(try r.count(max: Int(UInt32.max), "stamp seq"))
        block = UInt32(try r.count(max: Int(UInt32.max), "stamp block"))
        op = UInt16(try r.count(max: Int(UInt16.max), "stamp op"))
    }
}

extension ContactState {
    static let maxText = 1 << 20

    func encode(into w: inout ByteWriter) {
        w.uvarint(fields.count)
        for f in fields {
            f.stamp.encode(into: &w)
            w.u8(f.field.rawValue)
            w.text(f.value)
        }
        w.uvarint(members.count)
        for m in members {
            m.stamp.encode(into: &w)
            w.u8(m.kind.rawValue)
            w.text(m.key)
            w.text(m.payload)
        }
        w.uvarint(removed.count)
        for x in removed {
            w.u8(x.kind.rawValue)
            w.text(x.key)
            w.uvarint(UInt64(x.op.device))
            w.uvarint(UInt64(x.op.seq))
            w.uvarint(UInt64(x.op.block))
            w.uvarint(UInt64(x.op.op))
        }
        w.uvarint(log.count)
        for l in log {
            l.stamp.encode(into: &w)
            w.uvarint(UInt64(l.entry.day))
            w.u8(l.entry.channel.rawValue)
            w.text(l.entry.outcome)
            w.text(l.entry.note)
        }
        w.u8((deletedAt == nil ? 0 : 1) | (touchedAt == nil ? 0 : 2))
        deletedAt?.encode(into: &w)
        touchedAt?.encode(into: &w)
    }

    init(decoding r: inout ByteReader, deviceCount: UInt32) throws(DecodeError) {
        func kind(_ raw: UInt8) throws(DecodeError) -> SetKind {
            guard let k = SetKind(rawValue: raw) else { throw DecodeError("unknown set kind \(raw)") }
            return k
        }
        let fieldCount = try r.count(max: r.remaining / 13, "field count")
        fields.reserveCapacity(fieldCount)
        for _ in 0..<fieldCount {
            let stamp = try Stamp(decoding: &r, deviceCount: deviceCount)
            let raw = try r.u8()
            guard let field = Field(rawValue: raw) else { throw DecodeError("unknown field \(raw)") }
            fields.append(FieldSlot(field: field, value: try r.text(max: Self.maxText), stamp: stamp))
        }
        let memberCount = try r.count(max: r.remaining / 14, "member count")
        members.reserveCapacity(memberCount)
        for _ in 0..<memberCount {
            let stamp = try Stamp(decoding: &r, deviceCount: deviceCount)
            let k = try kind(try r.u8())
            let key = try r.text(max: Self.maxText)
            members.append(Member(kind: k, key: key, payload: try r.text(max: Self.maxText), stamp: stamp))
        }
        let removedCount = try r.count(max: r.remaining / 6, "removed count")
        for _ in 0..<removedCount {
            let k = try kind(try r.u8())
            let key = try r.text(max: Self.maxText)
            let op = OpKey(device: try r.deviceIndex(below: deviceCount),
                           seq: UInt32(try r.count(max: Int(UInt32.max), "op seq")),
                           block: UInt32(try r.count(max: Int(UInt32.max), "op block")),
                           op: UInt32(try r.count(max: Int(UInt32.max), "op index")))
            removed.insert(RemovedAdd(kind: k, key: key, op: op))
        }
        let logCount = try r.count(max: r.remaining / 15, "log count")
        log.reserveCapacity(logCount)
        for _ in 0..<logCount {
            let stamp = try Stamp(decoding: &r, deviceCount: deviceCount)
            let day = UInt32(try r.count(max: Int(UInt32.max), "day"))
            let rawChannel = try r.u8()
            guard let channel = Channel(rawValue: rawChannel) else { throw DecodeError("unknown channel \(rawChannel)") }
            let outcome = try r.text(max: Self.maxText)
            let note = try r.text(max: Self.maxText)
            log.append(LogEntry(entry: ConversationEntry(day: day, channel: channel, outcome: outcome, note: note), stamp: stamp))
        }
        let flags = try r.u8()
        guard flags < 4 else { throw DecodeError("unknown record flags \(flags)") }
        if flags & 1 != 0 { deletedAt = try Stamp(decoding: &r, deviceCount: deviceCount) }
        if flags & 2 != 0 { touchedAt = try Stamp(decoding: &r, deviceCount: deviceCount) }
    }
}
