import KithCRDT
import KithCrypto
#if canImport(Glibc)
import Glibc
#endif

/// A member's durable, encrypted replica on disk: SQLite (WAL) holding every change of the
/// member's private scope, each sealed with XChaCha20-Poly1305 under the device's storage key.
///
/// Nothing personal is stored in the clear: rows hold the scope id, the author device key, the
/// seq, the change id and the sealed change. The contact map and the search index are rebuilt in
/// memory when the store opens (see SECURITY.md). A write returns only after SQLite has committed
/// it durably (`synchronous=FULL`), so anything acknowledged survives `kill -9` and power loss.
///
/// Not Sendable: one owner (the CLI process, or the daemon's store actor) uses it at a time; the
/// `StoreLock` keeps other processes out.
public final class ContactStore {
    public static let schemaVersion: Int64 = 2
    static let sealDomain = Array("kith/store/change/v1".utf8)

    public let path: String
    public internal(set) var replica: Replica
    public private(set) var author: ChangeAuthor
    let db: SQLiteDatabase
    private let lock: StoreLock
    let storageKey: SymmetricKey
    let clock: @Sendable () -> UInt64
    private var poisoned: String?
    private var insert: SQLiteStatement
    private var update: SQLiteStatement
    /// The snapshot of the replica beside the database (StoreSnapshot.swift).
    lazy var snapshotFile = StoreSnapshotFile(directory: String(path.dropLast("/store.sqlite".count)), scope: replica.scope, key: storageKey)
    /// What opening did with the snapshot.
    public internal(set) var snapshotStatus = SnapshotStatus.absent
    /// When snapshots are written (tests lower it).
    public var snapshotPolicy = SnapshotPolicy()
    /// Set by the owner while a peer is still sending what this store lacked (an initial sync):
    /// background snapshots then follow `SnapshotPolicy.catchUpMinimumOps`; the owner calls
    /// `snapshotIfDue()` once the peer is caught up.
    public var catchingUp = false
    /// Set by the store's owner to save its index in the snapshot (Protocol/store.md §Snapshots,
    /// index section): called on the owner's thread when a snapshot starts, it brings the index
    /// up to date with `replica` (through `takeChangedContacts()`) and returns an encoder of that
    /// index, which the snapshot writer runs (possibly in the background). Nil: no index section.
    public var snapshotIndexSource: ((ContactStore) -> (@Sendable () -> [UInt8])?)?
    /// The index section loaded at open, until the owner takes it (`takeSnapshotIndex`).
    var loadedIndex: [UInt8]?
    /// Why the snapshot's index section was not used, when it was there but damaged.
    public internal(set) var indexIgnoredReason: String?
    var isPoisoned: Bool { poisoned != nil }
    /// Reads the changes the snapshot covers from the rows when they are asked for (nil after a
    /// replay: every change is in memory).
    var changeReader: StoreChangeReader?
    /// Why a change kept in the rows could not be read when a peer or an erasure asked for it
    /// (a damaged or missing row: `kith repair` and a backup are the remedies); nil if none failed.
    public var heldChangeFailure: String? { changeReader?.failure }
    /// Change rows read on demand since the store opened (a peer catching up reads them).
    public var changesReadOnDemand: Int { changeReader?.rowsReadCount ?? 0 }

    /// Milliseconds since the Unix epoch from the system clock.
    public static let systemClock: @Sendable () -> UInt64 = {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }

    /// Opens (creating if needed) the store in `directory` for the device whose keys are given.
    /// Fails with `.locked` when another process has it open, `.corrupt` when any record does
    /// not authenticate, `.tooNew` for a newer schema.
    /// `acceptLoss` (`kith repair`) opens a store that is behind what it acknowledged, or creates
    /// a missing one, and records its present state as acknowledged.
    public init(directory: String, scope: ScopeID, deviceKey: Ed25519.PrivateKey, storageKey: SymmetricKey,
                mode: ScopeMode = .plain, epochKeys: [EpochRef: SymmetricKey] = [:],
                clock: @escaping @Sendable () -> UInt64 = ContactStore.systemClock, acceptLoss: Bool = false,
                readOnly: Bool = false) throws(StoreError) {
        path = directory + "/store.sqlite"
        ackPath = directory + "/store.ack"
        self.readOnly = readOnly
        lock = try StoreLock(path: directory + "/store.lock", readOnly: readOnly)
        self.storageKey = storageKey
        self.clock = clock
        let acknowledged = StoreAcknowledgement.read(ackPath, scope: scope, key: storageKey)
        if case let .valid(ack) = acknowledged, !acceptLoss, ack.changes > 0, access(path, F_OK) != 0 {
            throw StoreError(.behind, "the store \(path) is missing, but \(ackPath) records \(ack.changes) acknowledged changes: restore the data directory from a backup, or run `kith repair` to start an empty store that fetches this device's changes back from its peers")
        }
        if readOnly && access(path, F_OK) != 0 {
            throw StoreError(.readOnly, "the data directory \(directory) is read-only and holds no store yet")
        }
        do throws(SQLiteError) {
            db = try SQLiteDatabase(path: path, readOnly: readOnly)
            if readOnly {
                guard try db.scalarInt("PRAGMA user_version") == Self.schemaVersion else {
                    throw SQLiteError(code: -1, message: "the store needs an upgrade, which a read-only data directory does not allow", context: "opening read-only")
                }
                try db.execute("PRAGMA temp_store=MEMORY")
            } else {
                try Self.prepareWritable(db, path: path)
            }
            insert = try db.prepare("INSERT OR IGNORE INTO changes(scope, device, seq, change_id, sealed) VALUES (?, ?, ?, ?, ?)")
            update = try db.prepare("UPDATE changes SET sealed = ? WHERE scope = ? AND device = ? AND seq = ?")
        } catch {
            throw StoreError.from(error, "opening the store \(path)")
        }
        if !readOnly { for suffix in ["-wal", "-shm"] { _ = chmod(path + suffix, 0o600) } }
        replica = Replica(scope: scope, mode: mode, epochKeys: epochKeys)
        author = ChangeAuthor(signer: deviceKey)
        try loadChecked(acknowledged: acknowledged, acceptLoss: acceptLoss)
    }

    /// Opened read-only (a read-only data directory): every write is refused.
    public let readOnly: Bool

    static func prepareWritable(_ db: SQLiteDatabase, path: String) throws(SQLiteError) {
        _ = chmod(path, 0o600)
        try db.execute("PRAGMA journal_mode=WAL")
        try db.execute("PRAGMA synchronous=FULL")
        try db.execute("PRAGMA secure_delete=ON")
        try db.execute("PRAGMA temp_store=MEMORY")
        try db.execute("PRAGMA journal_size_limit=8388608")
        try Self.migrate(db)
    }

    /// Loads the changes and checks them against what was acknowledged (`store.ack`).
    private func loadChecked(acknowledged: StoreAcknowledgement.Read, acceptLoss: Bool) throws(StoreError) {
        do {
            try load()
        } catch let e where e.code == .corrupt {
            if case .unreadable = acknowledged {
                throw StoreError(.keyRing, "the storage key in the key ring opens neither this store's records nor \(ackPath): the key ring file is damaged or belongs to another data directory. Restore the key ring (keyring) from a backup; do not delete the store, it is probably intact")
            }
            throw e
        }
        author.resume(from: replica)
        let now = StoreAcknowledgement(replica, device: author.device)
        if case let .valid(ack) = acknowledged, !acceptLoss {
            if now.changes < ack.changes || now.ownSeq < ack.ownSeq {
                throw StoreError(.behind, "the store \(path) holds \(now.changes) changes (\(now.ownSeq) of this device's), but \(ack.changes) (\(ack.ownSeq)) were acknowledged: its write-ahead log was lost or it was replaced by an older copy. Run `kith repair` to keep what it holds and fetch the rest back from peers, or restore the data directory from a backup")
            }
            if now == ack || readOnly { return }
        }
        if readOnly { return }
        if !acceptLoss, case .unreadable = acknowledged, replica.changeCount == 0 {
            throw StoreError(.keyRing, "\(ackPath) does not open with the key ring's storage key and the store holds no changes: the key ring is damaged or belongs to another data directory (restore it from a backup), or the store was emptied (`kith repair`)")
        }
        writeAcknowledgement()
    }

    /// Where `StoreAcknowledgement` is kept.
    public let ackPath: String

    /// Records the present state as acknowledged (best effort: a stale record is only lower).
    private func writeAcknowledgement() {
        try? StoreAcknowledgement(replica, device: author.device).write(ackPath, scope: replica.scope, key: storageKey)
    }

    // MARK: Schema

    static func migrate(_ db: SQLiteDatabase) throws(SQLiteError) {
        let version = try db.scalarInt("PRAGMA user_version")
        if version > schemaVersion {
            throw SQLiteError(code: -1, message: "schema version \(version) is newer than this build's \(schemaVersion); upgrade Kith", context: "migrating")
        }
        if version < 1 {
            try db.execute("""
                BEGIN IMMEDIATE;
                CREATE TABLE IF NOT EXISTS changes (
                    scope     BLOB NOT NULL,
                    device    BLOB NOT NULL,
                    seq       INTEGER NOT NULL,
                    change_id BLOB NOT NULL,
                    sealed    BLOB NOT NULL,
                    PRIMARY KEY (scope, device, seq)
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS evidence (
                    device    BLOB NOT NULL,
                    seq       INTEGER NOT NULL,
                    sealed    BLOB NOT NULL,
                    PRIMARY KEY (device, seq, sealed)
                ) WITHOUT ROWID;
                PRAGMA user_version = 1;
                COMMIT;
                """)
        }
        if version < 2 {
            // Small sealed records beside the changes: membership ops, shares, peer hints.
            try db.execute("""
                BEGIN IMMEDIATE;
                CREATE TABLE IF NOT EXISTS records (
                    kind   INTEGER NOT NULL,
                    id     BLOB NOT NULL,
                    sealed BLOB NOT NULL,
                    PRIMARY KEY (kind, id)
                ) WITHOUT ROWID;
                PRAGMA user_version = 2;
                COMMIT;
                """)
        }
    }

    // MARK: Records

    /// Kinds of sealed records kept beside the changes.
    public enum RecordKind: Int64, Sendable {
        case membershipOp = 1
        case share = 2
        case peerHint = 3
        case deviceRevocation = 4
        case joinRequest = 5
        case pendingJoin = 6
        /// Member side: id = grant id; bytes = grant state (consent.md §6).
        case grant = 7
        /// Member side: id = u64 time ‖ random; bytes = an audit entry (JSON).
        case audit = 8
        /// Hub side (consent.md §4.4): id = member ‖ grant id; bytes = record ‖ answer ‖ chapter name.
        case hubRecord = 9
        /// Hub side: id = member ‖ grant id of a revoked or expired grant; bytes = u64 highest version.
        case hubClosed = 10
        /// Hub side: id = chapter id ‖ op id; bytes = a chapter membership op.
        case hubChapterOp = 11
        /// Hub side: id = chapter id; bytes = the organization's signed decision on its affiliation.
        case hubDecision = 12
        /// Hub side: id = "schema"; bytes = u64 version of the hub's rows.
        case hubMeta = 13
        /// Hub side: id = member ‖ grant id; bytes = where the record went and, once the grant
        /// closed, its deletion at each place (consent.md §4.5, `RecordTrail`).
        case hubTrail = 14
        /// id = empty; bytes = u64 big-endian: the highest seq of this device's own chain that a
        /// peer has sent back identical (sync.md §5.3). Own changes above it may have forked.
        case ownConfirmed = 15
        /// `kith import`'s matching index (store.md §Import index): id = [0] for the header
        /// (what the index was built over), [1] ‖ u32 part number for its parts.
        case importIndex = 16
    }

    private func recordAD(_ kind: RecordKind, _ id: [UInt8]) -> [UInt8] {
        Self.recordAssociatedData(kind, id)
    }

    static func recordAssociatedData(_ kind: RecordKind, _ id: [UInt8]) -> [UInt8] {
        Array("kith/store/record/v1".utf8) + [UInt8(kind.rawValue)] + id
    }

    /// A record sealed exactly as this store seals it (XChaCha20-Poly1305 under the storage key,
    /// bound to its kind and id), for another back end that keeps the same rows (the hub's
    /// PostgreSQL storage): the sealed bytes are interchangeable between the two.
    public static func sealRecord(_ kind: RecordKind, id: [UInt8], _ bytes: [UInt8], key: SymmetricKey) -> [UInt8] {
        XChaCha20Poly1305.seal(bytes, key: key, associatedData: recordAssociatedData(kind, id))
    }

    /// Opens a record sealed by `sealRecord` (or by this store); nil when it does not authenticate.
    public static func openRecord(_ kind: RecordKind, id: [UInt8], _ sealed: [UInt8], key: SymmetricKey) -> [UInt8]? {
        try? XChaCha20Poly1305.open(sealed, key: key, associatedData: recordAssociatedData(kind, id))
    }

    /// Writes (or replaces) records, sealed like changes: durably (the commit waits for the disk)
    /// unless `durable` is false. Then the commit only reaches the operating system: the records
    /// survive the process being killed and become durable with the store's next durable write
    /// (the write-ahead log is synced as a whole) or checkpoint, but a power loss before that may
    /// drop them. Only for records the node gets back anyway (what peers resend), where waiting
    /// for the disk on every one would hold up the node.
    public func putRecords(_ kind: RecordKind, _ records: [(id: [UInt8], bytes: [UInt8])], durable: Bool = true) throws(StoreError) {
        try checkUsable()
        guard !records.isEmpty else { return }
        do {
            if !durable {
                try db.execute("PRAGMA synchronous=NORMAL")
                synchronousLowered = true
            }
            defer { if synchronousLowered { restoreFullSync() } }
            let s = try db.prepare("INSERT OR REPLACE INTO records(kind, id, sealed) VALUES (?, ?, ?)")
            try db.transaction {
                for r in records {
                    s.bind(1, kind.rawValue)
                    s.bind(2, r.id)
                    s.bind(3, XChaCha20Poly1305.seal(r.bytes, key: storageKey, associatedData: recordAD(kind, r.id)))
                    try s.run()
                }
            }
        } catch {
            let failure = (error as? SQLiteError).map { StoreError.from($0, "writing \(path)") } ?? StoreError(.io, "writing \(path): \(error)")
            writeFailure = failure.detail
            throw failure
        }
        writeFailure = nil
    }

    /// Set while the connection runs with `synchronous=NORMAL` (a write that was not durable).
    private var synchronousLowered = false

    /// Puts the connection back to `synchronous=FULL` after a write that was not durable. Should
    /// that fail, every later write tries again first and is refused while it fails, rather
    /// than written without syncing (`checkUsable`).
    private func restoreFullSync() {
        if (try? db.execute("PRAGMA synchronous=FULL")) != nil { synchronousLowered = false }
    }

    /// Deletes and writes records of any kinds in one transaction (deletions first): a
    /// migration either happens whole or not at all.
    public func replaceRecords(delete: [(kind: RecordKind, id: [UInt8])], put: [(kind: RecordKind, id: [UInt8], bytes: [UInt8])]) throws(StoreError) {
        try checkUsable()
        do {
            let d = try db.prepare("DELETE FROM records WHERE kind = ? AND id = ?")
            let s = try db.prepare("INSERT OR REPLACE INTO records(kind, id, sealed) VALUES (?, ?, ?)")
            try db.transaction {
                for r in delete {
                    d.bind(1, r.kind.rawValue)
                    d.bind(2, r.id)
                    try d.run()
                }
                for r in put {
                    s.bind(1, r.kind.rawValue)
                    s.bind(2, r.id)
                    s.bind(3, XChaCha20Poly1305.seal(r.bytes, key: storageKey, associatedData: recordAD(r.kind, r.id)))
                    try s.run()
                }
            }
        } catch {
            if let e = error as? SQLiteError { throw StoreError.from(e, "writing \(path)") }
            throw StoreError(.io, "writing \(path): \(error)")
        }
    }

    /// Deletes records by id.
    public func deleteRecords(_ kind: RecordKind, ids: [[UInt8]]) throws(StoreError) {
        try checkUsable()
        do {
            let s = try db.prepare("DELETE FROM records WHERE kind = ? AND id = ?")
            try db.transaction {
                for id in ids {
                    s.bind(1, kind.rawValue)
                    s.bind(2, id)
                    try s.run()
                }
            }
        } catch {
            if let e = error as? SQLiteError { throw StoreError.from(e, "writing \(path)") }
            throw StoreError(.io, "writing \(path): \(error)")
        }
    }

    /// Every record of a kind (id, plaintext), ordered by id. A record that does not
    /// authenticate is corruption.
    public func records(_ kind: RecordKind) throws(StoreError) -> [(id: [UInt8], bytes: [UInt8])] {
        try openedRows(kind, capacity: 0) {
            let s = try db.prepare("SELECT id, sealed FROM records WHERE kind = ? ORDER BY id")
            s.bind(1, kind.rawValue)
            return s
        }
    }

    /// One page of a kind's records (id, plaintext) in id order: the first `limit` whose id is
    /// greater than `after` (from the first when nil). Keyset pagination on the primary key, so
    /// a reader walks any number of records holding one page at a time, and writers run between
    /// pages. A record that does not authenticate is corruption.
    public func records(_ kind: RecordKind, after: [UInt8]?, limit: Int) throws(StoreError) -> [(id: [UInt8], bytes: [UInt8])] {
        try openedRows(kind, capacity: max(0, limit)) {
            let s = try db.prepare("SELECT id, sealed FROM records WHERE kind = ? AND id > ? ORDER BY id LIMIT ?")
            s.bind(1, kind.rawValue)
            s.bind(2, after ?? [])
            s.bind(3, Int64(max(0, limit)))
            return s
        }
    }

    /// The records of a kind with these ids (id, plaintext), in id order; an id with no record is
    /// left out. A record that does not authenticate is corruption.
    public func records(_ kind: RecordKind, ids: [[UInt8]]) throws(StoreError) -> [(id: [UInt8], bytes: [UInt8])] {
        guard !ids.isEmpty else { return [] }
        var out: [(id: [UInt8], bytes: [UInt8])] = []
        // At most 500 ids per statement (SQLite's bound parameters are limited).
        for start in stride(from: 0, to: ids.count, by: 500) {
            let part = ids[start..<min(ids.count, start + 500)]
            out += try openedRows(kind, capacity: part.count) {
                let s = try db.prepare("SELECT id, sealed FROM records WHERE kind = ? AND id IN (" + Array(repeating: "?", count: part.count).joined(separator: ",") + ") ORDER BY id")
                s.bind(1, kind.rawValue)
                for (i, id) in part.enumerated() { s.bind(Int32(i + 2), id) }
                return s
            }
        }
        return out.sorted { $0.id.lexicographicallyPrecedes($1.id) }
    }

    /// The rows of `query` (id, sealed) opened with the storage key; a row that does not
    /// authenticate is corruption.
    private func openedRows(_ kind: RecordKind, capacity: Int, _ query: () throws -> SQLiteStatement) throws(StoreError) -> [(id: [UInt8], bytes: [UInt8])] {
        do {
            let s = try query()
            var out: [(id: [UInt8], bytes: [UInt8])] = []
            out.reserveCapacity(capacity)
            while try s.step() {
                let id = s.blob(0)
                guard let plain = try? XChaCha20Poly1305.open(s.blob(1), key: storageKey, associatedData: recordAD(kind, id)) else {
                    throw StoreError(.corrupt, "a \(kind) record in \(path) failed authentication: the database was modified or damaged")
                }
                out.append((id, plain))
            }
            return out
        } catch let e as StoreError {
            throw e
        } catch let e as SQLiteError {
            throw StoreError.from(e, "reading \(path)")
        } catch {
            throw StoreError(.io, "reading \(path): \(error)")
        }
    }

    /// Adds chapter epoch keys (encrypted scopes); blocks waiting for them are applied.
    public func addEpochKeys(_ keys: [EpochRef: SymmetricKey]) {
        replica.addEpochKeys(keys) // blocks applied now are listed by takeChangedContacts
    }

    // MARK: Sealing

    private func associatedData(scope: ScopeID, device: DeviceKey, seq: UInt64) -> [UInt8] {
        Self.changeAssociatedData(scope: scope, device: device, seq: seq)
    }

    private func seal(_ c: Change) -> [UInt8] {
        XChaCha20Poly1305.seal(c.encoded, key: storageKey, associatedData: associatedData(scope: c.scope, device: c.author, seq: c.seq))
    }

    // MARK: Loading

    /// Opens the replica: from the snapshot (read beside the rows' clear columns) with only
    /// each chain's head and the rows after the snapshot read, or by replaying every row.
    private func load() throws(StoreError) {
        let started = replica.configuration
        replica.configuration = ReplicaConfiguration(maxFutureSkewMilliseconds: .max / 2, verifySignatures: false)
        defer { replica.configuration = started }
        let snapshot = prefetchSnapshot(snapshotFile, scope: replica.scope, mode: replica.mode) // joined on every path
        let extents = try chainExtents()
        try restore(snapshot: snapshot.wait(), extents: extents)
        _ = replica.takeRewrittenChanges()
    }

    // MARK: Writing

    private func checkUsable() throws(StoreError) {
        if readOnly {
            throw StoreError(.readOnly, "the data directory of \(path) is read-only: only reading commands work (export, contact show, list and search)")
        }
        if poisoned != nil { reloadAfterFailedWrite() }
        if let poisoned { throw StoreError(.poisoned, "an earlier write failed (\(poisoned)); reopen the store") }
        if synchronousLowered { restoreFullSync() }
        if synchronousLowered { throw StoreError(.io, "writing \(path): cannot switch SQLite back to synchronous (durable) writes") }
    }

    /// Why the latest write failed (a full disk…), until a write succeeds again.
    public private(set) var writeFailure: String?

    /// After a failed write the replica in memory may be ahead of the disk: read it back from
    /// the database (whose transaction was rolled back), so the store goes on working once the
    /// cause (a full disk) is gone, without a restart.
    private func reloadAfterFailedWrite() {
        let keys = replica.epochKeys
        let saved = replica, savedAuthor = author
        replica = Replica(scope: saved.scope, configuration: saved.configuration, mode: saved.mode, epochKeys: keys)
        author = ChangeAuthor(signer: savedAuthor.signer, clock: savedAuthor.clock)
        do {
            try load()
            author.resume(from: replica)
            poisoned = nil
        } catch {
            replica = saved
            author = savedAuthor
        }
    }

    /// Tries a small durable write (the own-confirmed record, unchanged): clears
    /// `writeFailure` when it succeeds.
    public func probeWrite() {
        guard let seq = try? ownConfirmedSeq() else { return }
        try? setOwnConfirmedSeq(seq)
    }

    /// Authors one change from `edits`, applies it and writes it durably. Returns when committed.
    @discardableResult
    public func commit(_ edits: [ContactEdit]) throws(StoreError) -> Change {
        try commit(batches: [edits]).first!
    }

    /// Authors one change per batch and writes them all in one durable transaction.
    @discardableResult
    public func commit(batches: [[ContactEdit]], sealer: BlockSealer? = nil) throws(StoreError) -> [Change] {
        try checkUsable()
        defer { snapshotIfDue() }
        if replica.mode == .encrypted && sealer == nil { throw StoreError(.rejected, "refused: this scope is encrypted and no epoch key was given") }
        if replica.mode == .opaque { throw StoreError(.rejected, "refused: this node only relays this scope") }
        // Every batch is checked before the first is applied: a refused batch must not leave the
        // ones before it applied in memory but never written (they would be handed to peers, and
        // the next commit would sign a different change with the same seq).
        for edits in batches where !edits.isEmpty {
            do {
                try Change.validate(edits, author: author.device, sealed: sealer != nil)
            } catch {
                throw StoreError(.rejected, "refused: \(error.detail)")
            }
        }
        var made: [Change] = []
        for edits in batches where !edits.isEmpty {
            do {
                made.append(try author.commit(edits, to: &replica, wallMilliseconds: clock(), sealer: sealer))
            } catch {
                if made.isEmpty { throw StoreError(.rejected, "refused: \(error.detail)") }
                poisoned = error.detail
                throw StoreError(.rejected, "refused: \(error.detail)")
            }
        }
        try persist(made)
        return made
    }

    /// Receives changes from a peer (or another device) and writes the applied ones durably.
    /// Each change's outcome, or the reason it was refused, is returned in order.
    public func receive(_ changes: [Change]) throws(StoreError) -> [Result<ReceiveOutcome, ChangeRejection>] {
        try checkUsable()
        defer { snapshotIfDue() }
        var toWrite: [Change] = []
        let before = replica.versionVector()
        // Signatures and decoding of the batch run across cores, then it applies in order.
        let results = replica.receive(changes, nowMilliseconds: clock())
        // Everything that became contiguous (including buffered changes now applied).
        toWrite = replica.changes(missingFrom: before)
        try persist(toWrite)
        // This device's own changes may have come back from a peer (the store was behind it):
        // the next change continues after them, never reusing a seq.
        author.resume(from: replica)
        return results
    }

    /// A peer is about to send `count` changes this store lacks: the replica sizes its tables
    /// once for them (`Replica.expectChanges`).
    public func expectChanges(_ count: Int) {
        replica.expectChanges(count)
    }

    /// What `reauthorOwnFork` did.
    public struct OwnFork: Sendable {
        /// The first seq at which this device's held chain differed from the peer's.
        public let seq: UInt64
        /// This device's changes that were dropped (from `seq` on).
        public let dropped: [Change]
        /// The same edits authored again after the real tail.
        public let reauthored: [Change]
    }

    /// This device's own chain here forked from the one in `real` (changes a peer sent, its
    /// own among them): the store was restored from an older copy and written again. Drops its
    /// changes from the first differing seq on, takes the peer's changes, and authors the
    /// dropped edits again after the real tail, all in one durable transaction. Returns nil
    /// when `real` holds no own change that differs from the one held.
    public func reauthorOwnFork(real: [Change], sealer: BlockSealer? = nil) throws(StoreError) -> OwnFork? {
        try checkUsable()
        let me = author.device
        let forkSeq = real.filter { c in
            c.author == me && replica.change(device: me, seq: c.seq).map { $0.id != c.id } == true
        }.map(\.seq).min()
        guard let forkSeq, let head = replica.head(of: me) else { return nil }
        let dropped = (forkSeq...head.seq).compactMap { replica.change(device: me, seq: $0) }
        var fresh = replica.dropping(device: me, from: forkSeq)
        let base = fresh.versionVector()
        for c in real.sorted(by: { $0.author != $1.author ? $0.author < $1.author : $0.seq < $1.seq }) {
            _ = try? fresh.receive(c, nowMilliseconds: clock())
        }
        guard fresh.versionVector()[me] >= forkSeq else {
            throw StoreError(.rejected, "the peer's changes of this device from seq \(forkSeq) do not chain onto the ones held before it")
        }
        var newAuthor = ChangeAuthor(signer: author.signer, clock: author.clock)
        newAuthor.resume(from: fresh)
        var reauthored: [Change] = []
        for c in dropped {
            let edits = replica.readableEdits(of: c)
            guard !edits.isEmpty else { continue }
            do {
                reauthored.append(try newAuthor.commit(edits, to: &fresh, wallMilliseconds: clock(), sealer: sealer))
            } catch {
                throw StoreError(.rejected, "could not author again the edits of this device's change \(c.seq): \(error.detail)")
            }
        }
        let old = replica, oldAuthor = author
        replica = fresh
        author = newAuthor
        do {
            try persist(replica.changes(missingFrom: base), droppingOwnFrom: forkSeq)
        } catch {
            replica = old
            author = oldAuthor
            poisoned = nil
            throw error
        }
        return OwnFork(seq: forkSeq, dropped: dropped, reauthored: reauthored)
    }

    /// The highest seq of this device's own chain a peer has sent back identical (0 if none).
    public func ownConfirmedSeq() throws(StoreError) -> UInt64 {
        guard let r = try records(.ownConfirmed).first, r.bytes.count == 8 else { return 0 }
        return r.bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Records that a peer holds this device's own chain up to `seq`, identical.
    public func setOwnConfirmedSeq(_ seq: UInt64) throws(StoreError) {
        var bytes: [UInt8] = []
        bytes.appendBigEndian(seq)
        try putRecords(.ownConfirmed, [([], bytes)])
    }

    private func persist(_ changes: [Change], droppingOwnFrom dropSeq: UInt64? = nil) throws(StoreError) {
        let rewrites = replica.takeRewrittenChanges()
        guard !changes.isEmpty || !rewrites.isEmpty || dropSeq != nil else { return }
        do {
            // A forget must not survive in the snapshot; a restored block would not show in it.
            if !rewrites.isEmpty { snapshotFile.invalidate() }
            try db.transaction {
                if let dropSeq {
                    let d = try db.prepare("DELETE FROM changes WHERE scope = ? AND device = ? AND seq >= ?")
                    d.bind(1, replica.scope.bytes)
                    d.bind(2, author.device.bytes)
                    d.bind(3, Int64(dropSeq))
                    try d.run()
                }
                for c in changes {
                    let held = replica.change(device: c.author, seq: c.seq) ?? c
                    insert.bind(1, held.scope.bytes)
                    insert.bind(2, held.author.bytes)
                    insert.bind(3, Int64(held.seq))
                    insert.bind(4, held.id.bytes)
                    insert.bind(5, seal(held))
                    try insert.run()
                }
                if !rewrites.isEmpty {
                    // `kith import`'s matching index holds names, postal codes and hashes of
                    // every value: a forget drops it (the next import rebuilds it).
                    let d = try db.prepare("DELETE FROM records WHERE kind = ?")
                    d.bind(1, RecordKind.importIndex.rawValue)
                    try d.run()
                }
                for c in rewrites {
                    update.bind(1, seal(c))
                    update.bind(2, c.scope.bytes)
                    update.bind(3, c.author.bytes)
                    update.bind(4, Int64(c.seq))
                    try update.run()
                }
            }
            if !rewrites.isEmpty {
                // Push the erased versions out of the WAL into the zeroing main file now.
                try? db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            }
            writeAcknowledgement()
        } catch {
            let failure = (error as? SQLiteError).map { StoreError.from($0, "writing \(path)") } ?? StoreError(.io, "writing \(path): \(error)")
            writeFailure = failure.detail
            poisoned = failure.detail
            reloadAfterFailedWrite()
            throw failure
        }
        writeFailure = nil
    }

    // MARK: Reading

    /// Contacts whose view may have changed since the last call (for indexes kept beside the
    /// store, see `Replica.takeChangedContacts`).
    public func takeChangedContacts() -> Replica.ChangedContacts {
        replica.takeChangedContacts()
    }

    /// Resolves a contact reference: a full id or a unique prefix of at least 4 characters.
    public func resolve(_ reference: String) throws(StoreError) -> ContactID {
        try replica.resolve(reference)
    }

    deinit { closeSnapshot() }

    /// Bytes of the database and its WAL on disk.
    public var sizeOnDisk: Int {
        var total = 0
        for suffix in ["", "-wal"] {
            var st = stat()
            if stat(path + suffix, &st) == 0 { total += Int(st.st_size) }
        }
        return total
    }
}
