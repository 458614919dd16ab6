import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
import KithNetwork
import KithStore
import Logging
import PostgresNIO

/// The hub's storage in PostgreSQL, for an organization that runs one (`kithd hub run --store
/// postgres://…`). It keeps exactly the rows `SQLiteHubStorage` keeps (`HubStoreSchema`), sealed
/// exactly as the SQLite store seals them (`ContactStore.sealRecord`: XChaCha20-Poly1305 under
/// the hub's storage key, bound to kind and id), so the database holds ids and ciphertext only
/// and a row can move between the two back ends byte for byte.
///
/// One connection, which holds a session advisory lock for as long as the hub runs: one hub per
/// database, as the SQLite store's lock file allows one process per directory. A second
/// connection (fenced by `sideFenceKey`; used only while the first is up) writes revocations'
/// deletions beside a running batch of records (`writeBeside`; the hub never writes one grant on
/// both). One call at a time uses the first connection, so no statement runs inside another
/// call's transaction. Every write is a
/// single statement or one transaction, committed before the call returns (the hub signs a
/// receipt only then). When the connection drops (server restart, `pg_terminate_backend`, a
/// network cut) the call reconnects, takes the lock again and repeats the write: writes are
/// idempotent, and a transaction cut before its COMMIT was rolled back by the server. After
/// `retryWindow` without success the call throws and the hub answers "unavailable, send it
/// again" — nothing acknowledged is lost.
public actor PostgresHubStorage: HubStorage {
    public nonisolated let url: PostgresStoreURL
    public nonisolated var location: String { url.description }
    private let keys: OrganizationKeys
    private let storageKey: SymmetricKey
    private let logger: Logger
    private let retryWindow: Duration
    private let attemptTimeout: Duration
    private var connection: PostgresConnection?
    /// The second connection, for revocations' deletions (`writeBeside`): they do not queue
    /// behind a batch of records on `connection`. It holds no lock: it is used only while
    /// `connection` (which holds the database's lock) is up.
    private var side: PostgresConnection?
    private var nextConnectionID = 1
    private var closed = false
    /// The database's schema version before this open, when it was migrated (nil: fresh or current).
    public private(set) var migratedFrom: Int?
    /// Times the storage re-established its connection after losing it.
    public private(set) var reconnects = 0

    /// How long opening waits for another session's lock to go (a restarting hub's old backend).
    static let lockWait: Duration = .seconds(3)

    /// Session advisory lock key of a hub's database ("kithhub1").
    static let lockKey: Int64 = 0x6B69_7468_6875_6231
    /// The fence of side connections (`lockKey + 1` is the migration's): each side connection
    /// holds it shared, and only after checking that its hub's main connection holds `lockKey`;
    /// a hub taking `lockKey` must then get this one exclusively (and lets it go at once). So a
    /// side connection of a hub that lost its lock can never write beside a new hub.
    static let sideFenceKey: Int64 = lockKey + 2
    /// The main connection's server process, which holds `lockKey` (checked by side connections).
    private var mainBackend: Int32 = 0
    /// Whether a call is using the main connection; others wait in `mainWaiters`. One connection
    /// runs one thing at a time: a statement sent while a transaction is open would run inside
    /// it (and be rolled back with it after its caller was told it was stored).
    private var mainBusy = false
    private var mainWaiters: [CheckedContinuation<Void, Never>] = []

    public init(url: PostgresStoreURL, keys: OrganizationKeys, storageKey: SymmetricKey, logger: Logger, retryWindow: Duration = .seconds(15),
                attemptTimeout: Duration = .seconds(5)) {
        self.url = url
        self.attemptTimeout = attemptTimeout
        self.keys = keys
        self.storageKey = storageKey
        self.logger = logger
        self.retryWindow = retryWindow
    }

    /// Connects, takes the database's lock (fails with `.locked` when another hub holds it) and
    /// migrates the schema (`PostgresHubSchema`) to the current version in one transaction.
    public static func open(_ url: PostgresStoreURL, keys: OrganizationKeys, storageKey: SymmetricKey, logger: Logger,
                            retryWindow: Duration = .seconds(15)) async throws -> PostgresHubStorage {
        let s = PostgresHubStorage(url: url, keys: keys, storageKey: storageKey, logger: logger, retryWindow: retryWindow)
        do {
            try await s.start()
        } catch {
            await s.shutdown()
            throw error
        }
        return s
    }

    private func start() async throws {
        let c = try await connect()
        migratedFrom = try await PostgresHubSchema.migrate(c, keys: keys, storageKey: storageKey, logger: logger)
    }

    public func shutdown() async {
        closed = true
        for c in [connection, side].compactMap({ $0 }) { _ = try? await Self.within(.seconds(2)) { try await c.close() } }
        connection = nil
        side = nil
    }

    // MARK: Connection

    /// A new connection holding the lock; throws `.locked` if another session has it.
    /// `forSide`: the side connection instead (no lock).
    private func connect(forSide: Bool = false) async throws -> PostgresConnection {
        let id = nextConnectionID
        nextConnectionID += 1
        let c: PostgresConnection
        let configuration = try url.configuration, logger = logger
        do {
            c = try await Self.within(attemptTimeout, late: { try? await $0.close() }) { try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger) }
        } catch {
            throw StoreError(.io, "cannot connect to the hub's database \(url): \(Self.describe(error))")
        }
        if forSide {
            // Writes beside only while this hub's main connection holds the database's lock.
            let hi = UInt32(truncatingIfNeeded: Self.lockKey >> 32), lo = UInt32(truncatingIfNeeded: Self.lockKey)
            let backend = mainBackend, logger = logger
            var fenced = false
            do {
                fenced = try await Self.within(attemptTimeout) {
                    var ok = false
                    let q: PostgresQuery = """
                        SELECT pg_try_advisory_lock_shared(\(Self.sideFenceKey)) AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                        AND granted AND mode = 'ExclusiveLock' AND pid = \(backend) AND classid::int8 = \(Int64(hi)) AND objid::int8 = \(Int64(lo)) AND objsubid = 1)
                        """
                    for try await b in try await c.query(q, logger: logger).decode(Bool.self) { ok = b }
                    return ok
                }
            } catch {
                try? await c.close()
                throw StoreError(.io, "cannot connect to the hub's database \(url): \(Self.describe(error))")
            }
            guard fenced else {
                try? await c.close()
                throw StoreError(.locked, "this hub's main connection to \(url) does not hold the database's lock; not writing beside it")
            }
            side = c
            return c
        }
        // A hub that just stopped (a restart) may still hold the lock for a moment: its backend
        // ends after the client has gone. Wait a little before calling the database taken.
        // The lock, then the side fence exclusively for a moment: a side connection of a hub
        // that held the lock before (still running, its main connection cut) keeps it shared.
        var got = false
        let lockDeadline = ContinuousClock.now + Self.lockWait
        do {
            while true {
                got = try await Self.within(attemptTimeout) {
                    var got = false
                    let q: PostgresQuery = """
                        SELECT CASE WHEN pg_try_advisory_lock(\(Self.lockKey)) THEN \
                        (CASE WHEN pg_try_advisory_lock(\(Self.sideFenceKey)) THEN pg_advisory_unlock(\(Self.sideFenceKey)) \
                        ELSE NOT pg_advisory_unlock(\(Self.lockKey)) END) ELSE false END
                        """
                    for try await b in try await c.query(q, logger: logger).decode(Bool.self) { got = b }
                    return got
                }
                if got || ContinuousClock.now >= lockDeadline { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            if got {
                mainBackend = try await Self.within(attemptTimeout) {
                    var pid: Int32 = 0
                    for try await p in try await c.query("SELECT pg_backend_pid()", logger: logger).decode(Int32.self) { pid = p }
                    return pid
                }
            }
        } catch {
            try? await c.close()
            throw error
        }
        guard got else {
            try? await c.close()
            throw StoreError(.locked, "another hub has the database \(url) open (one hub per database)")
        }
        connection = c
        return c
    }

    /// Runs `body` on the connection; when the connection is lost, reconnects (backing off) and
    /// runs it again, for at most `retryWindow`. `body` must be idempotent and atomic.
    private func withConnection<T: Sendable>(_ what: String, side onSide: Bool = false,
                                             _ body: @escaping @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        guard !closed else { throw StoreError(.io, "the hub's database connection is closed") }
        if !onSide { await takeMain() }
        defer { if !onSide { releaseMain() } }
        let deadline = ContinuousClock.now + retryWindow
        var delay = Duration.milliseconds(20)
        var failing = false
        while true {
            do {
                let c: PostgresConnection
                if let existing = onSide ? side : connection, !existing.isClosed {
                    c = existing
                } else if onSide {
                    side = nil
                    c = try await connect(forSide: true)
                } else {
                    connection = nil
                    // This hub's own side connection holds the fence shared: let it go first.
                    if let s = side { try? await s.close() }
                    side = nil
                    c = try await connect()
                    reconnects += 1
                    logger.notice("reconnected to the hub's database", metadata: ["store": "\(url)"])
                }
                // A connection cut at the wrong moment can leave a query unanswered for good
                // (seen with pg_terminate_backend mid-query): past `attemptTimeout` the attempt
                // is abandoned, the connection closed, and the write made again on a new one.
                return try await Self.within(attemptTimeout) { try await body(c) }
            } catch {
                guard Self.isConnectionFailure(error, connection: onSide ? side : connection), !closed else {
                    throw error as? StoreError ?? StoreError(.io, "\(what) in \(url): \(Self.describe(error))")
                }
                guard ContinuousClock.now < deadline else {
                    logger.error("gave up on the hub's database", metadata: ["what": "\(what)", "reason": "\(Self.describe(error))"])
                    throw StoreError(.io, "\(what) in \(url): \(Self.describe(error))")
                }
                if !failing {
                    logger.warning("lost the hub's database connection; reconnecting", metadata: ["what": "\(what)", "reason": "\(Self.describe(error))"])
                    failing = true
                }
                if onSide {
                    if let c = side { try? await c.close() }
                    side = nil
                } else {
                    if let c = connection { try? await c.close() }
                    connection = nil
                }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(1))
            }
        }
    }

    private func takeMain() async {
        if !mainBusy {
            mainBusy = true
            return
        }
        await withCheckedContinuation { mainWaiters.append($0) }
    }

    private func releaseMain() {
        if mainWaiters.isEmpty { mainBusy = false } else { mainWaiters.removeFirst().resume() }
    }

    struct AttemptTimedOut: Error, CustomStringConvertible {
        var description: String { "the database did not answer in time" }
    }

    /// `op`'s result, or `AttemptTimedOut` after `limit` (then `op` is cancelled and left to end on its own).
    static func within<T: Sendable>(_ limit: Duration, late: (@Sendable (T) async -> Void)? = nil,
                                    _ op: @escaping @Sendable () async throws -> T) async throws -> T {
        let once = Once()
        return try await withCheckedThrowingContinuation { (k: CheckedContinuation<T, any Error>) in
            let work = Task {
                do {
                    let v = try await op()
                    if once.claim() { k.resume(returning: v) } else { await late?(v) }
                } catch {
                    if once.claim() { k.resume(throwing: error) }
                }
            }
            Task {
                try? await Task.sleep(for: limit)
                if once.claim() {
                    work.cancel()
                    k.resume(throwing: AttemptTimedOut())
                }
            }
        }
    }

    /// Whether `error` is the connection failing (retry on a new one) rather than the query.
    static func isConnectionFailure(_ error: any Error, connection: PostgresConnection?) -> Bool {
        if connection?.isClosed == true { return true }
        if let e = error as? StoreError { return e.code == .io || e.code == .locked }
        if error is AttemptTimedOut { return true }
        if let t = error as? PostgresTransactionError {
            return [t.beginError, t.closureError, t.commitError].contains { $0.map { isConnectionFailure($0, connection: nil) } ?? false }
        }
        guard let p = error as? PSQLError else { return error is IOError || error is ChannelError }
        switch p.code {
        case .serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown:
            return true
        case .server:
            // Class 57 (operator intervention: admin shutdown, terminated backend, crash
            // shutdown) and 08 (connection exception) end the session; others are the query's.
            let state = p.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("57") || state.hasPrefix("08")
        default:
            return false
        }
    }

    static func describe(_ error: any Error) -> String {
        if let p = error as? PSQLError {
            if let m = p.serverInfo?[.message] { return "\(m) (\(p.serverInfo?[.sqlState] ?? "?"))" }
            return "\(p.code)"
        }
        if let t = error as? PostgresTransactionError {
            return [t.beginError, t.closureError, t.rollbackError, t.commitError].compactMap { $0.map(describe) }.joined(separator: "; ")
        }
        return "\(error)"
    }

    // MARK: Rows

    private func rows(_ kind: ContactStore.RecordKind) async throws -> [(id: [UInt8], bytes: [UInt8])] {
        let key = storageKey, url = url, logger = logger
        return try await withConnection("reading \(kind) rows") { c in
            try await PostgresHubSchema.rows(c, kind, key: key, logger: logger, place: "\(url)")
        }
    }

    private func write(_ what: String, delete: [(ContactStore.RecordKind, [UInt8])] = [], put: [(ContactStore.RecordKind, [UInt8], [UInt8])]) async throws {
        let key = storageKey, logger = logger
        let sealed = put.map { (k, id, bytes) in (Int16(k.rawValue), ByteBuffer(bytes: id), ByteBuffer(bytes: ContactStore.sealRecord(k, id: id, bytes, key: key))) }
        let deletions = delete.map { (Int16($0.0.rawValue), ByteBuffer(bytes: $0.1)) }
        try await withConnection(what) { c in
            if deletions.isEmpty && sealed.count == 1 {
                let (k, id, s) = sealed[0]
                try await c.query(PostgresHubSchema.upsert(k, id, s), logger: logger)
                return
            }
            try await c.withTransaction(logger: logger) { t in
                for (k, id) in deletions {
                    try await t.query("DELETE FROM kith_hub_rows WHERE kind = \(k) AND id = \(id)", logger: logger)
                }
                for (k, id, s) in sealed {
                    try await t.query(PostgresHubSchema.upsert(k, id, s), logger: logger)
                }
            }
        }
    }

    // MARK: HubStorage

    public func records() async throws -> [(record: [UInt8], answer: [UInt8], chapterName: String)] {
        try await rows(.hubRecord).compactMap { HubStoreSchema.decodeHeld($0.bytes) }
    }

    public func closedGrants() async throws -> [(member: Ed25519.PublicKey?, grant: [UInt8], version: UInt64)] {
        try await rows(.hubClosed).compactMap(HubStoreSchema.decodeClosed)
    }

    public func decisions() async throws -> [[UInt8]] { try await rows(.hubDecision).map(\.bytes) }

    public func chapterOps() async throws -> [ChapterID: [[UInt8]]] {
        HubStoreSchema.groupChapterOps(try await rows(.hubChapterOp))
    }

    public func put(_ key: GrantKey, record: [UInt8], answer: [UInt8], chapterName: String) async throws {
        try await write("storing a record", put: [(.hubRecord, key.bytes, HubStoreSchema.encodeHeld(record: record, answer: answer, chapterName: chapterName))])
    }

    public func trails() async throws -> [(id: [UInt8], bytes: [UInt8])] { try await rows(.hubTrail) }

    /// A short query per page (reconnecting like every read), so the hub's writes run between pages.
    public func heldPage(after: [UInt8]?, limit: Int) async throws -> [(id: [UInt8], bytes: [UInt8])] {
        let key = storageKey, url = url, logger = logger
        return try await withConnection("reading held records") { c in
            try await PostgresHubSchema.page(c, .hubRecord, after: after, limit: limit, key: key, logger: logger, place: "\(url)")
        }
    }

    public func heldRows(_ ids: [[UInt8]]) async throws -> [(id: [UInt8], bytes: [UInt8])] {
        guard !ids.isEmpty else { return [] }
        let key = storageKey, url = url, logger = logger
        return try await withConnection("reading held records") { c in
            try await PostgresHubSchema.rows(c, .hubRecord, ids: ids, key: key, logger: logger, place: "\(url)")
        }
    }

    public func close(_ key: GrantKey, version: UInt64, trail: [UInt8]) async throws {
        var v: [UInt8] = []
        v.appendBigEndian(version)
        try await write("deleting a record", delete: [(.hubRecord, key.bytes)], put: [(.hubClosed, key.bytes, v), (.hubTrail, key.bytes, trail)])
    }

    /// One transaction, every write in order (`HubWrite.runs`): per run, one statement deletes
    /// and one writes all its rows (arrays bound as parameters), so a group commit of many
    /// records costs a few round trips, not one per row.
    public func write(_ batch: [HubWrite]) async throws {
        try await write(batch, side: false)
    }

    public nonisolated var writesBeside: Bool { true }

    /// `write` on the side connection, while the lock-holding connection is up (else on that one,
    /// after whatever runs on it: never inside another call's transaction).
    public func writeBeside(_ batch: [HubWrite]) async throws {
        try await write(batch, side: connection.map { !$0.isClosed } ?? false)
    }

    private func write(_ batch: [HubWrite], side onSide: Bool) async throws {
        let key = storageKey, logger = logger
        let plan = HubWrite.runs(batch)
        let runs: [(kinds: [Int16], ids: [ByteBuffer], putKinds: [Int16], putIDs: [ByteBuffer], sealed: [ByteBuffer])] = plan.map { run in
            (run.delete.map { Int16($0.kind.rawValue) }, run.delete.map { ByteBuffer(bytes: $0.id) },
             run.put.map { Int16($0.kind.rawValue) }, run.put.map { ByteBuffer(bytes: $0.id) },
             run.put.map { ByteBuffer(bytes: ContactStore.sealRecord($0.kind, id: $0.id, $0.bytes, key: key)) })
        }
        guard runs.contains(where: { !$0.ids.isEmpty || !$0.putIDs.isEmpty }) else { return }
        // One run whose deletions and writes are different rows (a revocation's deletion; a batch
        // of records): one statement, one round trip, no BEGIN/COMMIT.
        let single = plan.count == 1 && Set(plan[0].delete.map { HubWrite.RowID(kind: $0.kind, id: $0.id) })
            .isDisjoint(with: plan[0].put.map { HubWrite.RowID(kind: $0.kind, id: $0.id) })
        try await withConnection("storing \(batch.count) writes", side: onSide) { c in
            if single {
                let run = runs[0]
                try await c.query(PostgresHubSchema.deleteAndUpsertAll(run.kinds, run.ids, run.putKinds, run.putIDs, run.sealed), logger: logger)
                return
            }
            try await c.withTransaction(logger: logger) { t in
                for run in runs {
                    if !run.ids.isEmpty { try await t.query(PostgresHubSchema.deleteAll(run.kinds, run.ids), logger: logger) }
                    if !run.putIDs.isEmpty { try await t.query(PostgresHubSchema.upsertAll(run.putKinds, run.putIDs, run.sealed), logger: logger) }
                }
            }
        }
    }

    public func putTrails(_ trails: [(key: GrantKey, bytes: [UInt8])]) async throws {
        guard !trails.isEmpty else { return }
        try await write("storing record trails", put: trails.map { (.hubTrail, $0.key.bytes, $0.bytes) })
    }

    public func putDecision(_ decision: ChapterDecision) async throws {
        try await write("storing a decision", put: [(.hubDecision, decision.chapter.bytes, decision.encoded)])
    }

    public func putChapterOps(_ chapter: ChapterID, _ ops: [(id: [UInt8], bytes: [UInt8])]) async throws {
        guard !ops.isEmpty else { return }
        try await write("storing a chapter log", put: ops.map { (.hubChapterOp, chapter.bytes + $0.id, $0.bytes) })
    }

    /// Counts of rows by kind (for `kithd hub status`), read from the database.
    public func rowCounts() async throws -> [String: Int] {
        let logger = logger
        return try await withConnection("counting rows") { c in
            var out: [String: Int] = [:]
            for try await (kind, n) in try await c.query("SELECT kind, count(*) FROM kith_hub_rows GROUP BY kind", logger: logger).decode((Int16, Int64).self) {
                out[ContactStore.RecordKind(rawValue: Int64(kind)).map { "\($0)" } ?? "kind \(kind)"] = Int(n)
            }
            return out
        }
    }
}

/// Claimed once, by whichever of two racing tasks gets there first.
final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var claimed = false

    func claim() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if claimed { return false }
        claimed = true
        return true
    }
}
