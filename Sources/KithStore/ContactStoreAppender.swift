import KithCRDT
import KithCrypto
#if canImport(Glibc)
import Glibc
#endif

extension ContactStore {
    /// The associated data a change row is sealed with (store.md §2).
    static func changeAssociatedData(scope: ScopeID, device: DeviceKey, seq: UInt64) -> [UInt8] {
        var ad = sealDomain
        ad.append(UInt8(scope.bytes.count))
        ad += scope.bytes
        ad += device.bytes
        ad.appendBigEndian(seq)
        return ad
    }

    /// What an import index built from this store's replica now is built over (store.md
    /// §Import index): the heads of its change rows, its change count and latest timestamp.
    public func importIndexState() throws(StoreError) -> ImportIndexState {
        let heads: ChangeHeads
        do { heads = try ChangeHeads(db, scope: replica.scope) } catch { throw StoreError.from(error, "reading \(path)") }
        return ImportIndexState(heads: heads.digest, changeCount: UInt64(replica.changeCount), maxTimestamp: replica.maxTimestamp)
    }
}

/// What a stored import index was built over: the digest of the store's change heads when it
/// was saved, the replica's change count and latest timestamp then. An index whose `heads`
/// differ from the store's present heads is stale (the store was changed by kithd, a sync or
/// another command since) and is never used.
public struct ImportIndexState: Sendable, Equatable {
    public var heads: [UInt8]
    public var changeCount: UInt64
    public var maxTimestamp: HybridTimestamp

    public init(heads: [UInt8], changeCount: UInt64, maxTimestamp: HybridTimestamp) {
        self.heads = heads
        self.changeCount = changeCount
        self.maxTimestamp = maxTimestamp
    }
}

/// The import index's header record (store.md §Import index): the state it was built over, and
/// how many parts follow, their joined length and BLAKE2b-256 digest, so parts cannot be dropped,
/// added or swapped for an older index's under this header.
enum IndexHeader {
    static let version: UInt8 = 2

    struct Parts: Equatable {
        var count: Int
        var length: UInt64
        var digest: [UInt8]
    }

    static func encode(_ state: ImportIndexState, _ parts: Parts) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.u8(version)
        w.raw(state.heads)
        w.u64(state.changeCount)
        w.u64(state.maxTimestamp.rawValue)
        w.u64(UInt64(parts.count))
        w.u64(parts.length)
        w.raw(parts.digest)
        return w.bytes
    }

    static func decode(_ bytes: [UInt8]) -> (ImportIndexState, Parts)? {
        var r = ByteReader(bytes)
        guard let v = try? r.u8(), v == version, let h = try? r.raw(32), let n = try? r.u64(), let t = try? r.u64(),
              let count = try? r.u64(), count <= UInt64(Int32.max), let length = try? r.u64(), let digest = try? r.raw(32), r.isAtEnd else { return nil }
        return (ImportIndexState(heads: Array(h), changeCount: n, maxTimestamp: HybridTimestamp(rawValue: t)),
                Parts(count: Int(count), length: length, digest: Array(digest)))
    }
}

/// The last change of each device's chain in a store (device ‖ seq ‖ change id), read from the
/// rows' clear columns without opening any change.
struct ChangeHeads {
    static let domain = Array("kith/store/import-index/heads/v1".utf8)
    var heads: [(device: [UInt8], seq: UInt64, id: [UInt8])] = []

    init(_ db: SQLiteDatabase, scope: ScopeID) throws(SQLiteError) {
        // SQLite returns the bare column change_id from the row holding MAX(seq).
        let s = try db.prepare("SELECT device, MAX(seq), change_id FROM changes WHERE scope = ? GROUP BY device ORDER BY device")
        s.bind(1, scope.bytes)
        while try s.step() { heads.append((s.blob(0), UInt64(s.int(1)), s.blob(2))) }
    }

    func head(of device: DeviceKey) -> (seq: UInt64, id: ChangeID)? {
        guard let h = heads.first(where: { $0.device == device.bytes }), let id = try? ChangeID(bytes: h.id) else { return nil }
        return (h.seq, id)
    }

    mutating func set(_ device: DeviceKey, seq: UInt64, id: ChangeID) {
        if let i = heads.firstIndex(where: { $0.device == device.bytes }) {
            heads[i].seq = seq
            heads[i].id = id.bytes
        } else {
            heads.append((device.bytes, seq, id.bytes))
            heads.sort { $0.device.lexicographicallyPrecedes($1.device) }
        }
    }

    /// BLAKE2b-256 of the domain and every head in device order.
    var digest: [UInt8] {
        var bytes = Self.domain
        for h in heads {
            bytes += h.device
            bytes.appendBigEndian(h.seq)
            bytes += h.id
        }
        return BLAKE2b.hash(bytes)
    }
}

/// Appends this device's changes to a store without materializing its replica: what `kith
/// import` writes through when no kithd runs, so that memory holds only the import's matching
/// index, however many contacts the store holds. It takes the store's lock like `ContactStore`,
/// continues this device's chain (seq, previous change id) from the rows, stamps changes after
/// the latest timestamp the replica held (`ImportIndexState.maxTimestamp`), and writes each
/// batch in one durable transaction, then the store's acknowledgement, exactly as
/// `ContactStore.commit` does; the next open of the store applies the appended rows.
///
/// It writes only with an `ImportIndexState` matching the store's present heads (from the
/// stored index, or from a `ContactStore` just opened and closed: `adopt`), so its change
/// count and timestamp are those of the store it appends to. Not Sendable: one owner.
public final class ContactStoreAppender {
    public let path: String
    let ackPath: String
    let scope: ScopeID
    let db: SQLiteDatabase
    private let lock: StoreLock
    private let storageKey: SymmetricKey
    private let signer: Ed25519.PrivateKey
    private let clock: @Sendable () -> UInt64
    private var heads: ChangeHeads
    private var hybrid = HybridClock()
    private var insert: SQLiteStatement
    /// Nil until the state the store is at is known (a fresh stored index or `adopt`).
    public private(set) var state: ImportIndexState?
    /// The stored index's parts, joined, when its header matches the store (else nil).
    public private(set) var storedIndex: [UInt8]?

    /// Opens the store in `directory` for appending. Fails with `.locked` when another process
    /// has it open, `.readOnly` when the directory cannot be written.
    public init(directory: String, scope: ScopeID, deviceKey: Ed25519.PrivateKey, storageKey: SymmetricKey,
                clock: @escaping @Sendable () -> UInt64 = ContactStore.systemClock) throws(StoreError) {
        path = directory + "/store.sqlite"
        ackPath = directory + "/store.ack"
        guard access(directory, W_OK) == 0 else { throw StoreError(.readOnly, "the data directory \(directory) is read-only") }
        lock = try StoreLock(path: directory + "/store.lock")
        self.scope = scope
        self.storageKey = storageKey
        self.signer = deviceKey
        self.clock = clock
        do throws(SQLiteError) {
            db = try SQLiteDatabase(path: path, readOnly: false)
            try ContactStore.prepareWritable(db, path: path)
            insert = try db.prepare("INSERT INTO changes(scope, device, seq, change_id, sealed) VALUES (?, ?, ?, ?, ?)")
            heads = try ChangeHeads(db, scope: scope)
        } catch {
            throw StoreError.from(error, "opening the store \(path)")
        }
        try readStoredIndex()
    }

    private var device: DeviceKey { signer.publicKey }

    /// Reads the stored index when its header matches the store's heads and the store's
    /// acknowledgement (a store behind what it acknowledged is left to `ContactStore`, which
    /// refuses it with the reason).
    private func readStoredIndex() throws(StoreError) {
        let rows: [(id: [UInt8], sealed: [UInt8])]
        do {
            let s = try db.prepare("SELECT id, sealed FROM records WHERE kind = ? ORDER BY id")
            s.bind(1, ContactStore.RecordKind.importIndex.rawValue)
            var out: [(id: [UInt8], sealed: [UInt8])] = []
            while try s.step() { out.append((s.blob(0), s.blob(1))) }
            rows = out
        } catch {
            throw StoreError.from(error, "reading \(path)")
        }
        guard let header = rows.first, header.id == [0],
              let plain = ContactStore.openRecord(.importIndex, id: header.id, header.sealed, key: storageKey),
              let (stored, parts) = IndexHeader.decode(plain), stored.heads == heads.digest,
              case let .valid(ack) = StoreAcknowledgement.read(ackPath, scope: scope, key: storageKey),
              ack.changes == stored.changeCount, ack.ownSeq == (heads.head(of: device)?.seq ?? 0), ack.ownHead == (heads.head(of: device)?.id ?? .zero)
        else { return }
        // Parts are numbered 0, 1, 2… without a gap, as many as the header says, and their bytes
        // joined are the ones it hashed: a damaged, dropped, added or older part (each opens on
        // its own) makes the index unusable.
        guard rows.count - 1 == parts.count else { return }
        var joined: [UInt8] = []
        joined.reserveCapacity(Int(clamping: parts.length))
        for (i, row) in rows.dropFirst().enumerated() {
            guard row.id == Self.partID(i), let part = ContactStore.openRecord(.importIndex, id: row.id, row.sealed, key: storageKey) else { return }
            joined += part
        }
        guard UInt64(joined.count) == parts.length, BLAKE2b.hash(joined) == parts.digest else { return }
        state = stored
        storedIndex = joined
        hybrid.observe(stored.maxTimestamp)
    }

    static func partID(_ i: Int) -> [UInt8] {
        [1, UInt8(truncatingIfNeeded: i >> 24), UInt8(truncatingIfNeeded: i >> 16), UInt8(truncatingIfNeeded: i >> 8), UInt8(truncatingIfNeeded: i)]
    }

    /// The stored index's bytes, handed over once (not kept beside the matcher made from them).
    public func takeStoredIndex() -> [UInt8]? {
        defer { storedIndex = nil }
        return storedIndex
    }

    /// Takes the state of a `ContactStore` opened (and closed) just before: true when the store
    /// is still at it (no other process wrote in between).
    public func adopt(_ s: ImportIndexState) -> Bool {
        guard s.heads == heads.digest else { return false }
        state = s
        hybrid.observe(s.maxTimestamp)
        return true
    }

    /// Authors one change per batch (checked, signed) and writes them all in one durable
    /// transaction; nothing is written when any batch is refused. Returns the changes written.
    @discardableResult
    public func append(_ batches: [[ContactEdit]]) throws(StoreError) -> [Change] {
        guard var next = state else { throw StoreError(.rejected, "refused: the store's state is not known (no matching import index)") }
        var clockAfter = hybrid
        var head = heads.head(of: device) ?? (0, .zero)
        var made: [Change] = []
        for edits in batches where !edits.isEmpty {
            let ts = clockAfter.tick(wallMilliseconds: clock())
            do {
                let c = try Change.make(scope: scope, signer: signer, seq: head.seq + 1, previous: head.id, timestamp: ts, edits: edits)
                made.append(c)
                head = (c.seq, c.id)
            } catch {
                throw StoreError(.rejected, "refused: \(error.detail)")
            }
        }
        guard !made.isEmpty else { return [] }
        do {
            try db.transaction {
                for c in made {
                    insert.bind(1, scope.bytes)
                    insert.bind(2, device.bytes)
                    insert.bind(3, Int64(c.seq))
                    insert.bind(4, c.id.bytes)
                    insert.bind(5, XChaCha20Poly1305.seal(c.encoded, key: storageKey,
                                                          associatedData: ContactStore.changeAssociatedData(scope: scope, device: device, seq: c.seq)))
                    try insert.run()
                }
            }
        } catch {
            throw (error as? SQLiteError).map { StoreError.from($0, "writing \(path)") } ?? StoreError(.io, "writing \(path): \(error)")
        }
        hybrid = clockAfter
        heads.set(device, seq: head.seq, id: head.id)
        next.changeCount += UInt64(made.count)
        next.maxTimestamp = max(next.maxTimestamp, made[made.count - 1].timestamp)
        next.heads = heads.digest
        state = next
        // Best effort like ContactStore's: a stale acknowledgement is only lower.
        try? StoreAcknowledgement(changes: next.changeCount, ownSeq: head.seq, ownHead: head.id).write(ackPath, scope: scope, key: storageKey)
        return made
    }

    /// Replaces the stored import index with `index` (opaque bytes: KithQuery's encoding),
    /// recorded as built over the store's present state, in one transaction.
    public func saveIndex(_ index: [UInt8], partSize: Int = 1 << 20) throws(StoreError) {
        guard let state else { throw StoreError(.rejected, "refused: the store's state is not known") }
        do {
            try db.transaction {
                let d = try db.prepare("DELETE FROM records WHERE kind = ?")
                d.bind(1, ContactStore.RecordKind.importIndex.rawValue)
                try d.run()
                let s = try db.prepare("INSERT INTO records(kind, id, sealed) VALUES (?, ?, ?)")
                func put(_ id: [UInt8], _ bytes: some Collection<UInt8>) throws {
                    s.bind(1, ContactStore.RecordKind.importIndex.rawValue)
                    s.bind(2, id)
                    s.bind(3, ContactStore.sealRecord(.importIndex, id: id, Array(bytes), key: storageKey))
                    try s.run()
                }
                let count = (index.count + partSize - 1) / partSize
                try put([0], IndexHeader.encode(state, IndexHeader.Parts(count: count, length: UInt64(index.count), digest: BLAKE2b.hash(index))))
                var i = 0, at = 0
                while at < index.count {
                    try put(Self.partID(i), index[at..<min(index.count, at + partSize)])
                    at += partSize
                    i += 1
                }
            }
        } catch {
            throw (error as? SQLiteError).map { StoreError.from($0, "writing \(path)") } ?? StoreError(.io, "writing \(path): \(error)")
        }
        storedIndex = nil
    }
}
