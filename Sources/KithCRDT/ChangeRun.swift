import KithCrypto

/// A run of consecutive changes of one device in one scope, encoded compactly for the wire
/// (data-model.md §6.4): the fields every header repeats (scope, author, seq, previous id, block
/// digest) are implied, timestamps are deltas, and only the last change carries its signature.
/// Each header commits to its predecessor's id, so the last signature authenticates the whole
/// run; the other changes are kept with their signature omitted and are only ever forwarded in
/// runs that end at a signed change.
///
/// `author[32] ‖ uvarint first_seq ‖ previous[32] ‖ u64 first_timestamp ‖ uvarint n ‖
///  n × (uvarint ms_delta ‖ uvarint head ‖ [uvarint counter] ‖ blocks) ‖ signature[64]`, where
/// `head = (block_count - 1) << 1 | counter_present` and the blocks are as in a change.
public enum ChangeRun {
    public static let maxChanges = 1 << 20

    /// Encodes consecutive changes of one author whose last change is signed.
    public static func encode(_ changes: ArraySlice<Change>) -> [UInt8] {
        precondition(!changes.isEmpty && changes.last!.isSigned, "a run ends with a signed change")
        let first = changes.first!
        var w = ByteWriter(capacity: changes.reduce(120) { $0 + $1.blockSection.count + 8 })
        w.raw(first.author.bytes)
        w.uvarint(first.seq)
        w.raw(first.previous.bytes)
        w.u64(first.timestamp.rawValue)
        w.uvarint(changes.count)
        var lastMs = first.timestamp.milliseconds
        for c in changes {
            w.uvarint(c.timestamp.milliseconds &- lastMs)
            lastMs = c.timestamp.milliseconds
            let counter = c.timestamp.counter
            w.uvarint(UInt64(c.blockCount - 1) << 1 | (counter != 0 ? 1 : 0))
            if counter != 0 { w.uvarint(UInt64(counter)) }
            w.raw(c.blockSection)
        }
        w.raw(changes.last!.signature)
        return w.bytes
    }

    /// True when `changes` can travel as one run: one author, consecutive seqs, last signed.
    public static func canEncode(_ changes: ArraySlice<Change>) -> Bool {
        guard let first = changes.first, changes.last!.isSigned else { return false }
        for (i, c) in changes.enumerated() where c.author != first.author || c.seq != first.seq + UInt64(i) { return false }
        return true
    }

    /// Rebuilds and authenticates a run of `scope`. Throws if it does not parse or the last
    /// signature does not verify; every change returned is marked authenticated.
    public static func decode(_ r: inout ByteReader, scope: ScopeID) throws(ChangeRejection) -> [Change] {
        let pieces: [(header: [UInt8], section: ArraySlice<UInt8>)]
        let signature: [UInt8]
        do throws(DecodeError) {
            let author: DeviceKey
            do { author = try DeviceKey(bytes: try r.raw(32)) } catch { throw DecodeError("bad author key") }
            var seq = try r.uvarint()
            // Checked here, not only by each change's decoding: `seq += 1` below trapped on 2^64-1.
            guard seq >= 1, seq <= UInt64(UInt32.max) else { throw DecodeError("first seq \(seq) is outside 1...2^32-1") }
            var previous = try ChangeID(bytes: try r.raw(32))
            var timestamp = try r.u64()
            let n = try r.count(max: maxChanges, "run length")
            guard n >= 1 else { throw DecodeError("an empty run") }
            var parsed: [(header: [UInt8], section: ArraySlice<UInt8>)] = []
            parsed.reserveCapacity(n)
            let firstTimestamp = timestamp
            var ms = HybridTimestamp(rawValue: timestamp).milliseconds
            for i in 0..<n {
                let msDelta = try r.uvarint()
                guard i > 0 || msDelta == 0 else { throw DecodeError("the first change of a run has delta 0") }
                ms &+= msDelta
                let head = try r.uvarint()
                guard head >> 1 < UInt64(Change.maxBlocks) else { throw DecodeError("too many blocks") }
                var counter: UInt64 = 0
                if head & 1 == 1 {
                    counter = try r.uvarint()
                    guard counter >= 1, counter <= UInt64(UInt16.max) else { throw DecodeError("bad clock counter") }
                }
                let next = ms << 16 | counter
                if i == 0 {
                    guard next == firstTimestamp else { throw DecodeError("the first change's timestamp does not match the run's") }
                } else {
                    guard next > timestamp else { throw DecodeError("timestamps in a run must increase") }
                }
                timestamp = next
                let start = r.offset
                let hashes = try blockHashes(&r, count: Int(head >> 1) + 1)
                let section = r.bytes[start..<r.offset]
                let header = Change.header(scope: scope, author: author, seq: seq, previous: previous,
                                           timestamp: HybridTimestamp(rawValue: timestamp), blockCount: hashes.count,
                                           digest: Change.bodyDigest(blockHashes: hashes))
                parsed.append((header, section))
                previous = ChangeID(unchecked: BLAKE2b.hash(header))
                seq += 1
            }
            signature = Array(try r.raw(64))
            pieces = parsed
        } catch {
            throw ChangeRejection(.malformed, "malformed change run: \(error.reason)")
        }
        var out: [Change] = []
        out.reserveCapacity(pieces.count)
        let zero = [UInt8](repeating: 0, count: 64)
        for (i, p) in pieces.enumerated() {
            let last = i == pieces.count - 1
            var c = try Change(decoding: p.header + (last ? signature : zero) + p.section)
            if last { try c.verifySignature() }
            c.authenticatedByChain = true
            out.append(c)
        }
        return out
    }

    /// Reads `count` blocks (tag-length encoded as in a change) and returns each one's hash
    /// (present blocks hashed, erased ones as given).
    static func blockHashes(_ r: inout ByteReader, count: Int) throws(DecodeError) -> [[UInt8]] {
        var out: [[UInt8]] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let tag = try r.uvarint()
            if tag == 1 {
                out.append(Array(try r.raw(32)))
            } else if tag & 1 == 0 {
                guard tag >> 1 >= 17, tag >> 1 <= UInt64(Change.maxBlockLength) else { throw DecodeError("bad block length") }
                out.append(BLAKE2b.hash(try r.raw(Int(tag >> 1))))
            } else {
                throw DecodeError("unknown block tag \(tag)")
            }
        }
        return out
    }
}
