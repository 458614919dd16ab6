import KithCrypto

/// Where an operation sits in the total order: the change's hybrid timestamp, its author (an
/// index into the replica's device table; ties compare the keys), seq, block and op position.
///
/// 22 bytes: `op` fits 16 bits (at most 4,096 ops per block), so a slot that stores a stamp
/// first and a one-byte tag right after it packs into 24 bytes before its strings.
struct Stamp: Hashable, Sendable {
    var hlc: UInt64
    var device: UInt32
    var seq: UInt32
    var block: UInt32
    var op: UInt16

    /// The identity of the op, without its timestamp (what removes refer to).
    var key: OpKey { OpKey(device: device, seq: seq, block: block, op: UInt32(op)) }
}

/// An op's identity inside one replica (device interned).
struct OpKey: Hashable, Sendable {
    var device: UInt32
    var seq: UInt32
    var block: UInt32
    var op: UInt32
}

/// The replica's interned device keys, and the total order of stamps that needs them.
struct DeviceTable: Sendable {
    private(set) var keys: [DeviceKey] = []
    private var index: [DeviceKey: UInt32] = [:]

    func lookup(_ key: DeviceKey) -> UInt32? { index[key] }

    mutating func intern(_ key: DeviceKey) -> UInt32 {
        if let i = index[key] { return i }
        let i = UInt32(keys.count)
        keys.append(key)
        index[key] = i
        return i
    }

    subscript(_ i: UInt32) -> DeviceKey { keys[Int(i)] }

    /// The total order of operations: (hlc, device key, seq, block, op).
    @inline(__always)
    func less(_ a: Stamp, _ b: Stamp) -> Bool {
        if a.hlc != b.hlc { return a.hlc < b.hlc }
        if a.device != b.device { return keys[Int(a.device)] < keys[Int(b.device)] }
        if a.seq != b.seq { return a.seq < b.seq }
        if a.block != b.block { return a.block < b.block }
        return a.op < b.op
    }
}

/// The materialized state of one contact: every field's winning write, the live and removed
/// set members, the conversation log and the delete marker. Updated by `apply`, in any order.
struct ContactState: Sendable {
    // Stored properties are laid out in order: the stamp first lets the one-byte tag sit in
    // its tail padding (FieldSlot 40 bytes, Member 56, instead of 48 and 64).
    struct FieldSlot: Sendable {
        var stamp: Stamp
        var field: Field
        var value: String

        init(field: Field, value: String, stamp: Stamp) {
            self.stamp = stamp
            self.field = field
            self.value = value
        }
    }

    struct Member: Sendable {
        var stamp: Stamp
        var kind: SetKind
        var key: String
        var payload: String

        init(kind: SetKind, key: String, payload: String, stamp: Stamp) {
            self.stamp = stamp
            self.kind = kind
            self.key = key
            self.payload = payload
        }
    }

    struct LogEntry: Sendable {
        var entry: ConversationEntry
        var stamp: Stamp
    }

    var fields: [FieldSlot] = []
    var members: [Member] = []
    /// Adds (of this contact) that a remove observed, with the set and key the remove named —
    /// kept so a remove that arrives before its add still wins over it, and only over an add of
    /// that same set and key (as it would if it arrived after).
    var removed: Set<RemovedAdd> = []

    struct RemovedAdd: Hashable, Sendable {
        let kind: SetKind
        let key: String
        let op: OpKey
    }
    var log: [LogEntry] = []
    var deletedAt: Stamp?
    var touchedAt: Stamp?

    func isVisible(_ devices: DeviceTable) -> Bool {
        guard let d = deletedAt else { return true }
        guard let t = touchedAt else { return false }
        return devices.less(d, t)
    }

    mutating func apply(_ op: Operation, at stamp: Stamp, devices: DeviceTable) {
        switch op {
        case let .setField(field, value):
            setField(field, value, at: stamp, devices: devices)
        case let .add(kind, key, payload):
            add(kind, key: Self.keyText(kind, key), payload: { Self.payloadText(kind, payload) }, at: stamp, devices: devices)
        case let .remove(kind, key, observed):
            touch(stamp, devices)
            let keyText = Self.keyText(kind, key)
            var targets = Set<OpKey>()
            for ref in observed {
                // The replica interns every referenced device before applying a change.
                let d = devices.lookup(ref.device)!
                targets.insert(OpKey(device: d, seq: UInt32(ref.seq), block: ref.block, op: ref.op))
            }
            removed.formUnion(targets.map { RemovedAdd(kind: kind, key: keyText, op: $0) })
            members.removeAll { $0.kind == kind && $0.key == keyText && targets.contains($0.stamp.key) }
        case let .logConversation(entry):
            touch(stamp, devices)
            log.append(LogEntry(entry: entry, stamp: stamp))
        case .delete:
            if deletedAt == nil || devices.less(deletedAt!, stamp) { deletedAt = stamp }
        case .forget:
            break // handled by the replica
        }
    }

    /// `apply(.setField(field, value))`.
    @inline(__always)
    mutating func setField(_ field: Field, _ value: String, at stamp: Stamp, devices: DeviceTable) {
        touch(stamp, devices)
        // By index: a `firstIndex(where:)` closure copied (retained and released) every slot it passed.
        var i = 0
        while i < fields.count {
            if fields[i].field == field {
                if devices.less(fields[i].stamp, stamp) {
                    fields[i].value = value
                    fields[i].stamp = stamp
                }
                return
            }
            i += 1
        }
        fields.append(FieldSlot(field: field, value: value, stamp: stamp))
    }

    /// `apply(.add(kind, key, payload))`, with the key already as text (`keyText`); the payload's
    /// text is built only when the member is kept.
    @inline(__always)
    mutating func add(_ kind: SetKind, key: String, payload: () -> String, at stamp: Stamp, devices: DeviceTable) {
        touch(stamp, devices)
        guard removed.isEmpty || !removed.contains(RemovedAdd(kind: kind, key: key, op: stamp.key)) else { return }
        members.append(Member(kind: kind, key: key, payload: payload(), stamp: stamp))
    }

    @inline(__always)
    private mutating func touch(_ stamp: Stamp, _ devices: DeviceTable) {
        if touchedAt == nil || devices.less(touchedAt!, stamp) { touchedAt = stamp }
    }

    /// Set keys are kept as text: UTF-8 for the text sets; base64url for member keys, contact
    /// ids and match tokens.
    static func keyText(_ kind: SetKind, _ key: ArraySlice<UInt8>) -> String {
        key.withUnsafeBufferPointer { keyText(kind, $0) }
    }

    static func payloadText(_ kind: SetKind, _ payload: ArraySlice<UInt8>) -> String {
        payload.withUnsafeBufferPointer { payloadText(kind, $0) }
    }

    static func keyText(_ kind: SetKind, _ key: UnsafeBufferPointer<UInt8>) -> String {
        kind.isText ? String(decoding: key, as: UTF8.self) : Base64URL.encode(key)
    }

    static func payloadText(_ kind: SetKind, _ payload: UnsafeBufferPointer<UInt8>) -> String {
        kind == .knows ? String(payload.first ?? 0) : String(decoding: payload, as: UTF8.self)
    }
}
