/// Applying a plaintext change straight from its encoded blocks.
///
/// The blocks were checked first by `Change.checkPlainBlocks()` (the one parser, with every field
/// grammar), so this second pass reads them without checking: it builds no `Operation`, no array
/// of ops and no slice of the change's bytes, only the strings the contact's state keeps. The
/// result is exactly `apply(change.decodeEdits(), …)`: fields and set members go through the same
/// `ContactState` methods, and the rare ops (remove, conversation log, delete, forget) through
/// `Operation.decode` and `ContactState.apply` themselves.
extension Replica {
    /// `integrate` for a plaintext change whose blocks passed `checkPlainBlocks()`.
    mutating func integratePlain(_ incoming: Change, device d: UInt32) {
        var change = incoming
        let encoded = change.encoded
        var newlyForgotten = Set<ContactID>()
        var forgetBlocks = 0
        for case let r? in change.blockRanges where Self.isForgetBlock(encoded, r) {
            forgetBlocks += 1
            let contact = Self.contact(encoded, r)
            if !forgotten.contains(contact) { newlyForgotten.insert(contact) }
        }
        if !newlyForgotten.isEmpty { forget(newlyForgotten) }
        if !forgotten.isEmpty, change.blockRanges.contains(where: { r in
            r.map { !Self.isForgetBlock(encoded, $0) && forgotten.contains(Self.contact(encoded, $0)) } ?? false
        }) {
            change = change.erasing(forgotten)
        }
        applyPlain(change, device: d)
        hold(change, device: d)
    }

    /// A block holding only a `forget` op (which must be alone in its block).
    @inline(__always)
    private static func isForgetBlock(_ encoded: [UInt8], _ r: Range<Int>) -> Bool {
        r.count == 17 && encoded[r.lowerBound + 16] == Operation.forgetOpcode
    }

    @inline(__always)
    private static func contact(_ encoded: [UInt8], _ r: Range<Int>) -> ContactID {
        try! ContactID(bytes: encoded[r.lowerBound..<(r.lowerBound + 16)])
    }

    /// `apply(edits, of: change, device: d)` for the present blocks of a checked plaintext change,
    /// skipping forgotten contacts.
    private mutating func applyPlain(_ change: Change, device d: UInt32) {
        let seq = UInt32(change.seq)
        let hlc = change.timestamp.rawValue
        let encoded = change.encoded
        let ranges = change.blockRanges
        encoded.withUnsafeBufferPointer { p in
            for (block, range) in ranges.enumerated() {
                guard let range else { continue }
                let contact = Self.contact(encoded, range)
                if !forgotten.isEmpty && forgotten.contains(contact) { continue }
                noteChanged(contact)
                let opsStart = range.lowerBound + 16
                let next = records.count
                let idx = Self.value(&contactIndex[contact, default: next])
                if idx == next {
                    contactIDs.append(contact)
                    // Sized for what this first edit writes, as `apply` does.
                    var record = ContactState()
                    var fieldCount = 0, memberCount = 0
                    var o = opsStart
                    while o < range.upperBound {
                        switch PlainOp.read(p, &o) {
                        case .setField: fieldCount += 1
                        case .add: memberCount += 1
                        case .other: break
                        }
                    }
                    record.fields.reserveCapacity(fieldCount)
                    record.members.reserveCapacity(memberCount)
                    records.append(record)
                }
                var opIndex: UInt16 = 0
                var o = opsStart
                while o < range.upperBound {
                    let start = o
                    let stamp = Stamp(hlc: hlc, device: d, seq: seq, block: UInt32(block), op: opIndex)
                    switch PlainOp.read(p, &o) {
                    case let .setField(field, value):
                        records[idx].setField(field, String(decoding: UnsafeBufferPointer(rebasing: p[value]), as: UTF8.self),
                                              at: stamp, devices: devices)
                    case let .add(kind, key, payload):
                        records[idx].add(kind, key: ContactState.keyText(kind, UnsafeBufferPointer(rebasing: p[key])),
                                         payload: { ContactState.payloadText(kind, UnsafeBufferPointer(rebasing: p[payload])) },
                                         at: stamp, devices: devices)
                    case .other:
                        var r = ByteReader(encoded, from: start, to: o)
                        // Checked by `checkPlainBlocks()` with this very parser.
                        let op = try! Operation.decode(&r, author: change.author)
                        if case let .remove(_, _, observed) = op {
                            // The state compares stamps through the device table: intern first.
                            for ref in observed { _ = devices.intern(ref.device) }
                            while chains.count < devices.keys.count { chains.append(Chain()) }
                        }
                        records[idx].apply(op, at: stamp, devices: devices)
                    }
                    opIndex += 1
                }
                opCount += Int(opIndex)
            }
        }
    }
}

/// One op of a checked plaintext block, read without checking (`Operation.decode`'s grammar):
/// where a field's value or a set member's key and payload are, or just its extent.
private enum PlainOp {
    case setField(Field, value: Range<Int>)
    case add(SetKind, key: Range<Int>, payload: Range<Int>)
    /// Remove, conversation log, delete or forget: decoded by `Operation.decode`.
    case other

    /// Reads the op at `o` and moves `o` past it.
    @inline(__always)
    static func read(_ p: UnsafeBufferPointer<UInt8>, _ o: inout Int) -> PlainOp {
        let code = p[o]
        o += 1
        switch code {
        case 0x11...0x1F:
            return .setField(Field(rawValue: code & 0x0f)!, value: bytes(p, &o))
        case Operation.setExtendedFieldOpcode:
            let field = Field(rawValue: p[o])!
            o += 1
            return .setField(field, value: bytes(p, &o))
        case 0x21...0x2A:
            let key = bytes(p, &o)
            return .add(SetKind(rawValue: code & 0x0f)!, key: key, payload: bytes(p, &o))
        case 0x31...0x3A:
            _ = bytes(p, &o)
            let n = varint(p, &o)
            for _ in 0..<n {
                let flag = p[o]
                o += flag == 1 ? 33 : 1
                _ = varint(p, &o) // seq
                _ = varint(p, &o) // block
                _ = varint(p, &o) // op
            }
            return .other
        case Operation.logOpcode:
            _ = varint(p, &o) // day
            o += 1 // channel
            _ = bytes(p, &o) // outcome
            _ = bytes(p, &o) // note
            return .other
        default: // delete, forget: the opcode alone
            return .other
        }
    }

    /// A length-prefixed byte string's range.
    @inline(__always)
    private static func bytes(_ p: UnsafeBufferPointer<UInt8>, _ o: inout Int) -> Range<Int> {
        let n = varint(p, &o)
        defer { o += n }
        return o..<(o + n)
    }

    @inline(__always)
    private static func varint(_ p: UnsafeBufferPointer<UInt8>, _ o: inout Int) -> Int {
        var result = 0, shift = 0
        while true {
            let b = p[o]
            o += 1
            result |= Int(b & 0x7f) << shift
            if b < 0x80 { return result }
            shift += 7
        }
    }
}
