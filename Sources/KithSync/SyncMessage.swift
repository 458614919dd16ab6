import KithCRDT
import KithCrypto

/// The application messages of a sync session (Protocol/sync.md §4).
public enum SyncMessage: Equatable, Sendable {
    /// First message of each side: the protocol version and the scopes it holds.
    case hello(version: UInt64, scopes: [ScopeID])
    /// "For this scope, I hold these contiguous seqs": send me what I lack.
    case vector(scope: ScopeID, VersionVector)
    /// Changes of one scope, per device in seq order.
    case changes(scope: ScopeID, [Change])
    /// Consecutive changes of one device in compact form, authenticated by the last one's
    /// signature (data-model.md §6.4).
    case run(scope: ScopeID, [Change])
    /// Every change the peer lacked at its vector has been sent.
    case caughtUp(scope: ScopeID)
    /// Membership ops of a chapter (16-byte chapter id), each an encoded signed op.
    case membership(chapter: [UInt8], ops: [[UInt8]])
    /// A joiner's proof of holding an invite to the chapter (Protocol/chapters.md §4).
    case join(chapter: [UInt8], proof: [UInt8])
    /// The join was refused, with a reason for the joiner.
    case joinRefused(reason: String)
    /// Signed device revocations of the member (only between one member's devices).
    case revocations([[UInt8]])
    /// A new device's proof of holding a pairing code (identity.md §5).
    case pair(proof: [UInt8])
    /// The member's answer to a pairing: the new device's certificate (177 bytes).
    case paired(certificate: [UInt8])
    /// The join proof was good and the join is held until an admin approves it.
    case joinHeld(reason: String)
    /// To an organization hub: an upward record (consent.md §3).
    case upward(record: [UInt8])
    /// To an organization hub: a grant revocation.
    case revokeGrant(revocation: [UInt8])
    /// From the hub: its answer to an `upward` or `revoke-grant`, signed by the organization
    /// (stored, deleted, refused or pending; consent.md §5). Replaces `receipt` (0x0F).
    case hubAnswer([UInt8])
    /// From a forwarding peer, unsigned: the message did not reach the hub (consent.md §7). Never
    /// final: the member keeps the record or revocation pending. (Until consent v2 this was the
    /// hub's own `hub-refused`; the hub now always answers with a signed `hub-answer`.)
    case notDelivered(reason: String)
    /// To a chapter peer: please deliver this (an encoded `upward` or `revoke-grant`) to the
    /// chapter's hub and send back its answer (consent.md §7).
    case forwardUpward(id: UInt64, chapter: [UInt8], message: [UInt8])
    /// The answer (an encoded `hub-answer`, or `not-delivered`) to a forwarded message.
    case forwardAnswer(id: UInt64, message: [UInt8])
    /// The sender's wall clock (ms since the Unix epoch) when it sent this, right after its
    /// `hello` (sync.md §5.4): the receiver estimates the clock skew between them.
    case clock(wallMilliseconds: UInt64)
    /// Peer exchange for a chapter's overlay (sync.md §9): encoded address records, each signed
    /// by the device it names and sealed under the chapter's current epoch.
    case addresses(chapter: [UInt8], records: [[UInt8]])
    /// A message type this build does not know (ignored, for forward compatibility).
    case unknown(type: UInt8)

    public static let protocolVersion: UInt64 = 1
    /// Most records in one `addresses` message.
    public static let maxAddressRecords = 4_096

    public var encoded: [UInt8] {
        var w = ByteWriter()
        switch self {
        case let .hello(version, scopes):
            w.u8(0x01)
            w.uvarint(version)
            w.uvarint(scopes.count)
            for s in scopes { w.lengthPrefixed(s.bytes) }
        case let .vector(scope, vv):
            w.u8(0x02)
            w.lengthPrefixed(scope.bytes)
            let entries = vv.entries.sorted { $0.key < $1.key }
            w.uvarint(entries.count)
            for (d, seq) in entries {
                w.raw(d.bytes)
                w.uvarint(seq)
            }
        case let .changes(scope, changes):
            w.u8(0x03)
            w.lengthPrefixed(scope.bytes)
            w.uvarint(changes.count)
            for c in changes { w.lengthPrefixed(c.encoded) }
        case let .run(scope, changes):
            w.u8(0x0C)
            w.lengthPrefixed(scope.bytes)
            w.raw(ChangeRun.encode(changes[...]))
        case let .caughtUp(scope):
            w.u8(0x04)
            w.lengthPrefixed(scope.bytes)
        case let .membership(chapter, ops):
            w.u8(0x05)
            w.raw(chapter)
            w.uvarint(ops.count)
            for op in ops { w.lengthPrefixed(op) }
        case let .join(chapter, proof):
            w.u8(0x06)
            w.raw(chapter)
            w.raw(proof)
        case let .joinRefused(reason):
            w.u8(0x07)
            w.text(String(reason.prefix(500)))
        case let .revocations(list):
            w.u8(0x08)
            w.uvarint(list.count)
            for r in list { w.lengthPrefixed(r) }
        case let .pair(proof):
            w.u8(0x09)
            w.raw(proof)
        case let .paired(cert):
            w.u8(0x0A)
            w.raw(cert)
        case let .joinHeld(reason):
            w.u8(0x0B)
            w.text(String(reason.prefix(500)))
        case let .upward(record):
            w.u8(0x0D)
            w.lengthPrefixed(record)
        case let .revokeGrant(revocation):
            w.u8(0x0E)
            w.lengthPrefixed(revocation)
        case let .hubAnswer(bytes):
            w.u8(0x13)
            w.lengthPrefixed(bytes)
        case let .notDelivered(reason):
            w.u8(0x10)
            w.text(String(reason.prefix(500)))
        case let .forwardUpward(id, chapter, message):
            w.u8(0x11)
            w.u64(id)
            w.raw(chapter)
            w.lengthPrefixed(message)
        case let .forwardAnswer(id, message):
            w.u8(0x12)
            w.u64(id)
            w.lengthPrefixed(message)
        case let .clock(ms):
            w.u8(0x14)
            w.u64(ms)
        case let .addresses(chapter, records):
            w.u8(0x15)
            w.raw(chapter)
            w.uvarint(records.count)
            for r in records { w.lengthPrefixed(r) }
        case let .unknown(t):
            w.u8(t)
        }
        return w.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var r = ByteReader(bytes)
        let type = try r.u8()
        func scope() throws(DecodeError) -> ScopeID { try ScopeID(bytes: try r.lengthPrefixed(max: ScopeID.maxLength)) }
        switch type {
        case 0x01:
            let v = try r.uvarint()
            let n = try r.count(max: 4_096, "scope count")
            var scopes: [ScopeID] = []
            for _ in 0..<n { scopes.append(try scope()) }
            self = .hello(version: v, scopes: scopes)
        case 0x02:
            let s = try scope()
            let n = try r.count(max: 1 << 20, "vector entries")
            var vv = VersionVector()
            for _ in 0..<n {
                let d: DeviceKey
                do { d = try DeviceKey(bytes: try r.raw(32)) } catch { throw DecodeError("bad device key in vector") }
                vv[d] = try r.uvarint()
            }
            self = .vector(scope: s, vv)
        case 0x03:
            let s = try scope()
            let n = try r.count(max: 1 << 20, "change count")
            var changes: [Change] = []
            for _ in 0..<n {
                let bytes = Array(try r.lengthPrefixed(max: Change.maxEncodedLength))
                do { changes.append(try Change(decoding: bytes)) } catch { throw DecodeError("bad change: \(error.detail)") }
            }
            self = .changes(scope: s, changes)
        case 0x04:
            self = .caughtUp(scope: try scope())
        case 0x0C:
            let s = try scope()
            do { self = .run(scope: s, try ChangeRun.decode(&r, scope: s)) } catch { throw DecodeError("bad run: \(error.detail)") }
        case 0x05:
            let chapter = Array(try r.raw(16))
            let n = try r.count(max: 100_000, "op count")
            var ops: [[UInt8]] = []
            for _ in 0..<n { ops.append(Array(try r.lengthPrefixed(max: 1 << 20))) }
            self = .membership(chapter: chapter, ops: ops)
        case 0x06:
            self = .join(chapter: Array(try r.raw(16)), proof: Array(try r.raw(64)))
        case 0x07:
            self = .joinRefused(reason: try r.text(max: 2_000))
        case 0x08:
            let n = try r.count(max: 10_000, "revocation count")
            var list: [[UInt8]] = []
            for _ in 0..<n { list.append(Array(try r.lengthPrefixed(max: 1_024))) }
            self = .revocations(list)
        case 0x09:
            self = .pair(proof: Array(try r.raw(32)))
        case 0x0A:
            self = .paired(certificate: Array(try r.raw(177)))
        case 0x0B:
            self = .joinHeld(reason: try r.text(max: 2_000))
        case 0x0D:
            self = .upward(record: Array(try r.lengthPrefixed(max: 1 << 20)))
        case 0x0E:
            self = .revokeGrant(revocation: Array(try r.lengthPrefixed(max: 4_096)))
        case 0x13:
            self = .hubAnswer(Array(try r.lengthPrefixed(max: 4_096)))
        case 0x10:
            self = .notDelivered(reason: try r.text(max: 2_000))
        case 0x11:
            let id = try r.u64()
            let chapter = Array(try r.raw(16))
            self = .forwardUpward(id: id, chapter: chapter, message: Array(try r.lengthPrefixed(max: 1 << 20)))
        case 0x14:
            self = .clock(wallMilliseconds: try r.u64())
        case 0x12:
            let id = try r.u64()
            self = .forwardAnswer(id: id, message: Array(try r.lengthPrefixed(max: 1 << 16)))
        case 0x15:
            let chapter = Array(try r.raw(16))
            let n = try r.count(max: SyncMessage.maxAddressRecords, "address record count")
            var records: [[UInt8]] = []
            for _ in 0..<n { records.append(Array(try r.lengthPrefixed(max: 512))) }
            self = .addresses(chapter: chapter, records: records)
        default:
            self = .unknown(type: type)
            return
        }
        guard r.isAtEnd else { throw DecodeError("\(r.remaining) trailing bytes in sync message \(type)") }
    }
}
