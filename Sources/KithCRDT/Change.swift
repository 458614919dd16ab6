import KithCrypto

/// The operations of one change about one contact.
public struct ContactEdit: Sendable, Hashable {
    public var contact: ContactID
    public var ops: [Operation]

    public init(contact: ContactID, ops: [Operation]) {
        self.contact = contact
        self.ops = ops
    }
}

extension ContactEdit {
    /// The author stand-in used when an edit travels without a change (the local control
    /// socket): op references are always written with their device key.
    static let noAuthor = try! DeviceKey(bytes: [UInt8](repeating: 0, count: 32))

    /// The edit as a block (data-model.md §6.1 `block`), for the local control socket.
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 16 + ops.count * 16)
        w.raw(contact.bytes)
        for op in ops { op.encode(into: &w, author: Self.noAuthor) }
        return w.bytes
    }

    /// Parses and validates an encoded edit.
    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        guard bytes.count >= 17 else { throw DecodeError("an edit is a contact id and at least one op") }
        contact = try ContactID(bytes: bytes[0..<16])
        var r = ByteReader(bytes, from: 16)
        var ops: [Operation] = []
        while !r.isAtEnd {
            guard ops.count < Change.maxOpsPerBlock else { throw DecodeError("more than \(Change.maxOpsPerBlock) ops") }
            ops.append(try Operation.decode(&r, author: Self.noAuthor))
        }
        self.ops = ops
    }
}

/// A signed batch of operations from one device in one scope: the unit of replication.
///
/// The signature covers the header, which commits to every block through a digest of the
/// blocks' hashes. A block can therefore be replaced by its hash ("erased") on every replica —
/// a contact asked to be forgotten — while the signature and hash chain still verify.
/// The signed header is kept verbatim, never re-serialized. See `Protocol/data-model.md`.
public struct Change: Sendable, Hashable {
    public static let format: UInt8 = 1
    public static let maxEncodedLength = 32 << 20
    public static let maxBlocks = 1 << 20
    public static let maxBlockLength = 1 << 20
    public static let maxOpsPerBlock = 4_096
    static let signatureDomain = Array("kith/change/v1\0".utf8)
    static let bodyDomain = Array("kith/body/v1".utf8)

    /// The parsed change, shared by every copy: a change is copied wherever it is held or
    /// passed, and one reference to count is cheaper than the nine arrays it holds.
    final class Parsed: Sendable {
        let scope: ScopeID
        let author: DeviceKey
        let seq: UInt64
        let previous: ChangeID
        let timestamp: HybridTimestamp
        let blockCount: Int
        let bodyDigest: [UInt8]
        let signature: [UInt8]
        let id: ChangeID
        let encoded: [UInt8]
        let headerLength: Int
        let blockRanges: [Range<Int>?]
        let erasedHashRanges: [Range<Int>?]

        init(scope: ScopeID, author: DeviceKey, seq: UInt64, previous: ChangeID, timestamp: HybridTimestamp, blockCount: Int,
             bodyDigest: [UInt8], signature: [UInt8], id: ChangeID, encoded: [UInt8], headerLength: Int,
             blockRanges: [Range<Int>?], erasedHashRanges: [Range<Int>?]) {
            self.scope = scope
            self.author = author
            self.seq = seq
            self.previous = previous
            self.timestamp = timestamp
            self.blockCount = blockCount
            self.bodyDigest = bodyDigest
            self.signature = signature
            self.id = id
            self.encoded = encoded
            self.headerLength = headerLength
            self.blockRanges = blockRanges
            self.erasedHashRanges = erasedHashRanges
        }
    }
    let parsed: Parsed

    public var scope: ScopeID { parsed.scope }
    public var author: DeviceKey { parsed.author }
    public var seq: UInt64 { parsed.seq }
    public var previous: ChangeID { parsed.previous }
    public var timestamp: HybridTimestamp { parsed.timestamp }
    public var blockCount: Int { parsed.blockCount }
    public var bodyDigest: [UInt8] { parsed.bodyDigest }
    public var signature: [UInt8] { parsed.signature }
    /// BLAKE2b-256 of the signed header.
    public var id: ChangeID { parsed.id }
    /// The complete encoding: signed header ‖ signature ‖ blocks.
    public var encoded: [UInt8] { parsed.encoded }
    var headerLength: Int { parsed.headerLength }
    /// Where each block's bytes are in `encoded`, or nil when the block is erased.
    var blockRanges: [Range<Int>?] { parsed.blockRanges }
    /// For erased blocks, where their 32-byte hash is in `encoded`.
    var erasedHashRanges: [Range<Int>?] { parsed.erasedHashRanges }
    /// Set only by `ChangeRun.decode` after checking the signature of the run's last change,
    /// whose header commits to this one through the hash chain: such a change may travel
    /// without its own signature (stored as 64 zero bytes). Never read from the wire.
    public internal(set) var authenticatedByChain = false
    /// Set only by `prepare` (before a replica takes a batch) after `verify()` passed on these
    /// very bytes, so the replica need not check again. Never read from the wire, never stored.
    var preverified = false
    /// Set only by `prepare` after `checkPlainBlocks()` passed on these very bytes, so a
    /// plaintext replica applies the blocks straight from them without checking again. Never
    /// read from the wire; cleared before the change is held.
    var plainChecked = false

    /// False when the signature was omitted (a change received inside a run).
    public var isSigned: Bool { signature.contains { $0 != 0 } }

    /// The block section: every block's tag and bytes (or hash), after header and signature.
    var blockSection: ArraySlice<UInt8> { encoded[(headerLength + 64)...] }

    public static func == (a: Change, b: Change) -> Bool { a.encoded == b.encoded }
    public func hash(into h: inout Hasher) { h.combine(id) }

    /// The header bytes the signature covers (verbatim).
    public var signedHeader: ArraySlice<UInt8> { encoded[0..<headerLength] }

    /// True when at least one block has been erased.
    public var hasErasedBlocks: Bool { blockRanges.contains(where: { $0 == nil }) }

    /// The contact each present block is about (nil for erased blocks).
    public var blockContacts: [ContactID?] {
        blockRanges.map { r in r.map { try! ContactID(bytes: encoded[$0.lowerBound..<($0.lowerBound + 16)]) } }
    }

    // MARK: Building

    /// Builds and signs a change. Refuses (before signing anything) edits that a replica would
    /// refuse: no edits, an empty edit, a `forget` that is not alone in its edit, a value that
    /// breaks its field's grammar, a seq outside 1...2^32-1.
    public static func make(
        scope: ScopeID, signer: Ed25519.PrivateKey, seq: UInt64, previous: ChangeID,
        timestamp: HybridTimestamp, edits: [ContactEdit], sealer: BlockSealer? = nil
    ) throws(ChangeRejection) -> Change {
        try build(scope: scope, signer: signer, seq: seq, previous: previous, timestamp: timestamp, edits: edits,
                  sealer: sealer, validate: true)
    }

    /// Checks edits the way `make` does before signing (empty edits, a `forget` not alone or in
    /// an encrypted scope, field grammar and limits), without building anything: a store checks
    /// every batch of a commit before it applies the first.
    public static func validate(_ edits: [ContactEdit], author: Ed25519.PublicKey, sealed: Bool) throws(ChangeRejection) {
        guard !edits.isEmpty, edits.allSatisfy({ !$0.ops.isEmpty }) else {
            throw ChangeRejection(.malformed, "a change needs at least one edit and every edit at least one op")
        }
        for e in edits { _ = try plainBlock(e, author: author, sealed: sealed, validate: true) }
    }

    /// One edit as a plaintext block, refused when a replica would refuse it.
    static func plainBlock(_ e: ContactEdit, author: Ed25519.PublicKey, sealed: Bool, validate: Bool) throws(ChangeRejection) -> [UInt8] {
        guard !e.ops.contains(.forget) || e.ops.count == 1 else {
            throw ChangeRejection(.malformed, "forget must be the only op of its edit (contact \(e.contact))")
        }
        if sealed, e.ops.contains(.forget) {
            throw ChangeRejection(.malformed, "forget is not used in encrypted scopes: retract the contact with delete")
        }
        var w = ByteWriter(capacity: 16 + e.ops.count * 16)
        w.raw(e.contact.bytes)
        for op in e.ops { op.encode(into: &w, author: author) }
        if validate {
            // Field grammar and limits, checked on the plaintext before anything is signed.
            do throws(DecodeError) {
                _ = try decodePlainBlock(w.bytes, w.bytes.indices, author: author)
            } catch {
                throw ChangeRejection(.malformed, "contact \(e.contact): \(error.reason)")
            }
        }
        return w.bytes
    }

    /// Builds and signs without checking field grammar: only tests use it, to forge changes a
    /// replica must refuse.
    static func build(
        scope: ScopeID, signer: Ed25519.PrivateKey, seq: UInt64, previous: ChangeID,
        timestamp: HybridTimestamp, edits: [ContactEdit], sealer: BlockSealer? = nil, validate: Bool = false
    ) throws(ChangeRejection) -> Change {
        guard seq >= 1, seq <= UInt64(UInt32.max) else { throw ChangeRejection(.malformed, "seq \(seq) is outside 1...2^32-1") }
        guard !edits.isEmpty, edits.allSatisfy({ !$0.ops.isEmpty }) else {
            throw ChangeRejection(.malformed, "a change needs at least one edit and every edit at least one op")
        }
        let author = signer.publicKey
        var blockBytes: [[UInt8]] = []
        blockBytes.reserveCapacity(edits.count)
        for e in edits {
            let plain = try plainBlock(e, author: author, sealed: sealer != nil, validate: validate)
            if let sealer {
                blockBytes.append(SealedBlock.seal(plain, with: sealer, ad: SealedBlock.associatedData(scope: scope, author: author)))
            } else {
                blockBytes.append(plain)
            }
        }
        let digest = bodyDigest(blockHashes: blockBytes.map { BLAKE2b.hash($0) })
        let header = Self.header(scope: scope, author: author, seq: seq, previous: previous, timestamp: timestamp,
                                 blockCount: edits.count, digest: digest)
        let sig = signer.signature(for: signatureDomain + header)
        var all = header + sig
        all.reserveCapacity(all.count + blockBytes.reduce(0) { $0 + $1.count + 3 })
        var w = ByteWriter()
        for b in blockBytes {
            w.uvarint(UInt64(b.count) << 1)
            w.raw(b)
        }
        all += w.bytes
        return try Change(decoding: all)
    }

    /// The signed header (data-model.md §6).
    static func header(scope: ScopeID, author: DeviceKey, seq: UInt64, previous: ChangeID, timestamp: HybridTimestamp,
                       blockCount: Int, digest: [UInt8]) -> [UInt8] {
        var h = ByteWriter(capacity: 160)
        h.u8(format)
        h.u8(UInt8(scope.bytes.count))
        h.raw(scope.bytes)
        h.raw(author.bytes)
        h.uvarint(seq)
        h.raw(previous.bytes)
        h.u64(timestamp.rawValue)
        h.uvarint(blockCount)
        h.raw(digest)
        return h.bytes
    }

    static func bodyDigest(blockHashes: [[UInt8]]) -> [UInt8] {
        let hasher = BLAKE2b.Hasher(outputLength: 32)
        hasher.update(bodyDomain)
        for h in blockHashes { hasher.update(h) }
        return hasher.finalize()
    }

    // MARK: Decoding

    /// Parses the framing of a change. Does not verify the signature or the digest
    /// (`verify()`), nor decode the operations (the replica does, before applying anything).
    public init(decoding bytes: [UInt8]) throws(ChangeRejection) {
        guard bytes.count <= Self.maxEncodedLength else {
            throw ChangeRejection(.malformed, "change is \(bytes.count) bytes, more than \(Self.maxEncodedLength)")
        }
        var r = ByteReader(bytes)
        let scope: ScopeID, author: DeviceKey, seq: UInt64, previous: ChangeID, timestamp: HybridTimestamp
        let blockCount: Int, bodyDigest: [UInt8], headerLength: Int, signature: [UInt8]
        let blockRanges: [Range<Int>?], erasedHashRanges: [Range<Int>?]
        do {
            let format = try r.u8()
            guard format == Self.format else {
                throw ChangeRejection(.unsupportedVersion, "change format \(format) is not supported (this build reads \(Self.format))")
            }
            let scopeLength = Int(try r.u8())
            scope = try ScopeID(bytes: try r.raw(scopeLength))
            author = try DeviceKey(bytes: try r.raw(32))
            seq = try r.uvarint()
            guard seq >= 1, seq <= UInt64(UInt32.max) else { throw DecodeError("seq \(seq) is outside 1...2^32-1") }
            previous = try ChangeID(bytes: try r.raw(32))
            if seq == 1 && previous != .zero { throw DecodeError("the first change of a device must have an all-zero previous id") }
            timestamp = HybridTimestamp(rawValue: try r.u64())
            blockCount = try r.count(max: Self.maxBlocks, "block count")
            guard blockCount >= 1 else { throw DecodeError("a change has at least one block") }
            bodyDigest = Array(try r.raw(32))
            headerLength = r.offset
            signature = Array(try r.raw(64))
            var ranges: [Range<Int>?] = []
            var hashes: [Range<Int>?] = []
            ranges.reserveCapacity(blockCount)
            hashes.reserveCapacity(blockCount)
            for i in 0..<blockCount {
                let tag = try r.uvarint()
                if tag == 1 {
                    let start = r.offset
                    try r.skip(32)
                    ranges.append(nil)
                    hashes.append(start..<(start + 32))
                } else if tag & 1 == 0 {
                    let length = Int(tag >> 1)
                    guard length >= 17, length <= Self.maxBlockLength else {
                        throw DecodeError("block \(i) is \(length) bytes; a block is a 16-byte contact id and at least one op, at most \(Self.maxBlockLength) bytes")
                    }
                    let start = r.offset
                    try r.skip(length)
                    ranges.append(start..<(start + length))
                    hashes.append(nil)
                } else {
                    throw DecodeError("block \(i) has unknown tag \(tag)")
                }
            }
            guard r.isAtEnd else { throw DecodeError("\(r.remaining) trailing bytes after the last block") }
            blockRanges = ranges
            erasedHashRanges = hashes
        } catch let e as DecodeError {
            throw ChangeRejection(.malformed, "malformed change: \(e.reason)")
        } catch let e as ChangeRejection {
            throw e
        } catch {
            throw ChangeRejection(.malformed, "malformed change: \(error)")
        }
        parsed = Parsed(scope: scope, author: author, seq: seq, previous: previous, timestamp: timestamp, blockCount: blockCount,
                        bodyDigest: bodyDigest, signature: signature, id: ChangeID(unchecked: BLAKE2b.hash(bytes[0..<headerLength])),
                        encoded: bytes, headerLength: headerLength, blockRanges: blockRanges, erasedHashRanges: erasedHashRanges)
    }

    // MARK: Verification

    /// The 32-byte hash of each block (computed for present blocks, stored for erased ones).
    public func blockHashes() -> [[UInt8]] {
        (0..<blockCount).map { i in
            if let r = blockRanges[i] { return BLAKE2b.hash(encoded[r]) }
            return Array(encoded[erasedHashRanges[i]!])
        }
    }

    /// Checks that the blocks match the signed digest and the author's signature is valid.
    public func verify() throws(ChangeRejection) {
        guard Self.bodyDigest(blockHashes: blockHashes()) == bodyDigest else {
            throw ChangeRejection(.tampered, "change \(id) (device \(author), seq \(seq)): blocks do not match the signed digest")
        }
        try verifySignature()
    }

    /// Checks only the signature over the header.
    public func verifySignature() throws(ChangeRejection) {
        guard author.isValidSignature(signature, for: Self.signatureDomain + Array(signedHeader)) else {
            throw ChangeRejection(.badSignature, "change \(id) (device \(author), seq \(seq)): signature does not verify")
        }
    }

    /// Parses a plaintext block (`contact id ‖ ops`) found at `range` of `bytes`.
    static func decodePlainBlock(_ bytes: [UInt8], _ range: Range<Int>, author: DeviceKey) throws(DecodeError) -> ContactEdit {
        var ops: [Operation] = []
        // Sized for ~12 bytes an op (a contact's fields and set members): growth by doubling
        // reallocated the array four or five times per block.
        ops.reserveCapacity(min(max(range.count - 16, 0) / 12 + 1, Self.maxOpsPerBlock))
        let contact = try scanPlainBlock(bytes, range, author: author) { ops.append($0) }
        return ContactEdit(contact: contact, ops: ops)
    }

    /// Parses and checks a plaintext block (`contact id ‖ ops`) at `range` of `bytes`, handing
    /// each op to `body` in order; returns the block's contact.
    static func scanPlainBlock(_ bytes: [UInt8], _ range: Range<Int>, author: DeviceKey,
                               _ body: (Operation) -> Void) throws(DecodeError) -> ContactID {
        guard range.count >= 17 else { throw DecodeError("a block is a 16-byte contact id and at least one op") }
        let contact = try ContactID(bytes: bytes[range.lowerBound..<(range.lowerBound + 16)])
        var r = ByteReader(bytes, from: range.lowerBound + 16, to: range.upperBound)
        var count = 0
        var forget = false
        while !r.isAtEnd {
            guard count < Self.maxOpsPerBlock else { throw DecodeError("more than \(Self.maxOpsPerBlock) ops") }
            let op = try Operation.decode(&r, author: author)
            if case .forget = op { forget = true }
            count += 1
            body(op)
        }
        if forget && count != 1 { throw DecodeError("forget must be the only op of its block") }
        return contact
    }

    /// Checks every present block exactly as `decodeEdits()` does (the same parser and field
    /// grammar), keeping nothing: a plaintext replica then applies the blocks from the bytes.
    func checkPlainBlocks() throws(ChangeRejection) {
        for i in 0..<blockCount {
            guard let range = blockRanges[i] else { continue }
            do throws(DecodeError) {
                _ = try Self.scanPlainBlock(encoded, range, author: author) { _ in }
            } catch {
                throw ChangeRejection(.malformed, "change \(id) (device \(author), seq \(seq)), block \(i): \(error.reason)")
            }
        }
    }

    /// Decodes the ops of present block `i`.
    func decodeBlock(_ i: Int) throws(ChangeRejection) -> ContactEdit? {
        guard let range = blockRanges[i] else { return nil }
        do throws(DecodeError) {
            return try Self.decodePlainBlock(encoded, range, author: author)
        } catch {
            throw ChangeRejection(.malformed, "change \(id) (device \(author), seq \(seq)), block \(i): \(error.reason)")
        }
    }

    /// What opening the sealed blocks of a change of an encrypted scope gave.
    struct OpenedBlocks {
        var edits: [(block: Int, edit: ContactEdit)] = []
        /// Blocks sealed under an epoch key not held yet.
        var missing: [Int] = []
        /// Blocks that do not authenticate or do not parse: skipped for good.
        var unreadable: [String] = []
    }

    /// The plaintext of every block of a change of an encrypted scope (nil where the key is not
    /// held, the block does not authenticate, or it is erased): for audits and tests.
    public func plaintextBlocks(keys: [EpochRef: SymmetricKey]) -> [[UInt8]?] {
        let ad = SealedBlock.associatedData(scope: scope, author: author)
        return blockRanges.map { range in
            guard let range, case let .plain(p) = SealedBlock.open(encoded[range], keys: keys, ad: ad) else { return nil }
            return p
        }
    }

    /// Opens and decodes the sealed blocks `which` (default: all) with the epoch keys held.
    func openBlocks(_ which: [Int]? = nil, keys: [EpochRef: SymmetricKey]) -> OpenedBlocks {
        var out = OpenedBlocks()
        let ad = SealedBlock.associatedData(scope: scope, author: author)
        for i in which ?? Array(0..<blockCount) {
            guard let range = blockRanges[i] else { continue }
            switch SealedBlock.open(encoded[range], keys: keys, ad: ad) {
            case let .plain(p):
                do throws(DecodeError) {
                    out.edits.append((i, try Self.decodePlainBlock(p, p.indices, author: author)))
                } catch {
                    out.unreadable.append("change \(id) block \(i): \(error.reason)")
                }
            case .missingKey:
                out.missing.append(i)
            case let .unreadable(reason):
                out.unreadable.append("change \(id) block \(i): \(reason)")
            }
        }
        return out
    }

    /// Decodes every present block (erased ones are skipped).
    public func decodeEdits() throws(ChangeRejection) -> [(block: Int, edit: ContactEdit)] {
        var out: [(Int, ContactEdit)] = []
        out.reserveCapacity(blockCount)
        for i in 0..<blockCount {
            if let e = try decodeBlock(i) { out.append((i, e)) }
        }
        return out
    }

    // MARK: Erasure

    /// A copy with every block about a contact in `forgotten` replaced by its hash, except the
    /// blocks holding the `forget` ops themselves. Signature and id are unchanged.
    public func erasing(_ forgotten: Set<ContactID>) -> Change {
        var w = ByteWriter(capacity: encoded.count)
        w.raw(encoded[0..<(headerLength + 64)])
        var changed = false
        for i in 0..<blockCount {
            if let r = blockRanges[i] {
                let contact = try! ContactID(bytes: encoded[r.lowerBound..<(r.lowerBound + 16)])
                let isForgetBlock = r.count == 17 && encoded[r.lowerBound + 16] == Operation.forgetOpcode
                if forgotten.contains(contact) && !isForgetBlock {
                    w.uvarint(1)
                    w.raw(BLAKE2b.hash(encoded[r]))
                    changed = true
                } else {
                    w.uvarint(UInt64(r.count) << 1)
                    w.raw(encoded[r])
                }
            } else {
                w.uvarint(1)
                w.raw(encoded[erasedHashRanges[i]!])
            }
        }
        return changed ? try! Change(decoding: w.bytes) : self
    }
}
