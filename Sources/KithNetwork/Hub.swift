import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
import KithStore
import KithSync
import Logging
import NIOCore
import NIOPosix

/// Where a hub keeps what it holds (rows of Protocol/consent.md §4.4, `HubStoreSchema`).
/// SQLite (`SQLiteHubStorage`) by default; PostgreSQL (`PostgresHubStorage`, in
/// KithHubPostgres) implements the same few calls.
///
/// Every write returns only once it is durable: the hub acknowledges a record (signs its
/// receipt) after `put` returns, so a write that throws is answered "unavailable, send it again".
/// Writes are idempotent (a retry of the same row writes the same row). `HubNode` makes one
/// call at a time, in order.
public protocol HubStorage: AnyObject, Sendable {
    func records() async throws -> [(record: [UInt8], answer: [UInt8], chapterName: String)]
    func closedGrants() async throws -> [(member: Ed25519.PublicKey?, grant: [UInt8], version: UInt64)]
    func decisions() async throws -> [[UInt8]]
    func chapterOps() async throws -> [ChapterID: [[UInt8]]]
    /// Record trails (`RecordTrail` rows, id `member ‖ grant id`).
    func trails() async throws -> [(id: [UInt8], bytes: [UInt8])]
    /// One page of held-record rows (id `member ‖ grant id`, bytes as `HubStoreSchema.encodeHeld`)
    /// in id order, the first `limit` with an id greater than `after`: what a streamed export reads.
    func heldPage(after: [UInt8]?, limit: Int) async throws -> [(id: [UInt8], bytes: [UInt8])]
    /// The held-record rows of these ids (those the store has), in id order: what a connector
    /// delivers (the ledger keeps only a few facts of each record, not its bytes).
    func heldRows(_ ids: [[UInt8]]) async throws -> [(id: [UInt8], bytes: [UInt8])]
    func put(_ key: GrantKey, record: [UInt8], answer: [UInt8], chapterName: String) async throws
    /// Deletes the held record, closes the grant and writes its trail, in one transaction.
    func close(_ key: GrantKey, version: UInt64, trail: [UInt8]) async throws
    /// Writes (replaces) record trails, in one transaction.
    func putTrails(_ trails: [(key: GrantKey, bytes: [UInt8])]) async throws
    func putDecision(_ decision: ChapterDecision) async throws
    func putChapterOps(_ chapter: ChapterID, _ ops: [(id: [UInt8], bytes: [UInt8])]) async throws
    /// Makes every write of `batch`, in order, in one transaction (the hub's group commit).
    func write(_ batch: [HubWrite]) async throws
    /// Whether `writeBeside` may run while a `write` runs (its own connection), so that a
    /// revocation's deletion does not wait for a batch of records to commit. `HubNode` never
    /// writes one grant's rows in both at once.
    var writesBeside: Bool { get }
    /// `write`, beside a running `write` (when `writesBeside`; else the same as `write`).
    func writeBeside(_ batch: [HubWrite]) async throws
    /// Releases the store (its lock, its connections); the storage is not used after.
    func shutdown() async
    /// Where the rows are, for `kithd hub status` (no password).
    var location: String { get }
}

extension HubStorage {
    public func shutdown() async {}
    public var writesBeside: Bool { false }
    public func writeBeside(_ batch: [HubWrite]) async throws { try await write(batch) }
}

/// One write of the hub's, as rows (`HubStoreSchema`): what `HubStorage.write` commits together.
public enum HubWrite: Sendable {
    /// `fields`: the record's fields as opened on arrival (kept in the sealed row: schema 4).
    case put(GrantKey, record: [UInt8], answer: [UInt8], chapterName: String, fields: [(String, String)]? = nil)
    case close(GrantKey, version: UInt64, trail: [UInt8])
    case trails([(key: GrantKey, bytes: [UInt8])])
    case decision(ChapterDecision)
    case chapterOps(ChapterID, [(id: [UInt8], bytes: [UInt8])])

    /// The rows it deletes and writes, in order.
    public var rows: (delete: [(ContactStore.RecordKind, [UInt8])], put: [(ContactStore.RecordKind, [UInt8], [UInt8])]) {
        switch self {
        case let .put(key, record, answer, name, fields):
            return ([], [(.hubRecord, key.bytes, HubStoreSchema.encodeHeld(record: record, answer: answer, chapterName: name, fields: fields))])
        case let .close(key, version, trail):
            var v: [UInt8] = []
            v.appendBigEndian(version)
            return ([(.hubRecord, key.bytes)], [(.hubClosed, key.bytes, v), (.hubTrail, key.bytes, trail)])
        case let .trails(list):
            return ([], list.map { (.hubTrail, $0.key.bytes, $0.bytes) })
        case let .decision(d):
            return ([], [(.hubDecision, d.chapter.bytes, d.encoded)])
        case let .chapterOps(chapter, ops):
            return ([], ops.map { (.hubChapterOp, chapter.bytes + $0.id, $0.bytes) })
        }
    }
}

extension HubWrite {
    /// The grants whose rows it writes.
    public var grantKeys: [GrantKey] {
        switch self {
        case let .put(key, _, _, _, _), let .close(key, _, _): return [key]
        case let .trails(list): return list.map(\.key)
        case .decision, .chapterOps: return []
        }
    }

    /// A row of `HubStoreSchema` (kind and id).
    public struct RowID: Hashable, Sendable {
        public let kind: ContactStore.RecordKind
        public let id: [UInt8]

        public init(kind: ContactStore.RecordKind, id: [UInt8]) {
            self.kind = kind
            self.id = id
        }
    }

    /// `batch` as runs of (deletions, then writes) that, applied in order, leave the rows as the
    /// writes in order would: a deletion after a write of the same row starts a new run (it must
    /// win), and within a run only the last write of a row is kept (one statement may then
    /// write them all). Usually one run: a record and its revocation in one batch make two.
    public static func runs(_ batch: [HubWrite]) -> [(delete: [(kind: ContactStore.RecordKind, id: [UInt8])], put: [(kind: ContactStore.RecordKind, id: [UInt8], bytes: [UInt8])])] {
        var out: [(delete: [(kind: ContactStore.RecordKind, id: [UInt8])], put: [(kind: ContactStore.RecordKind, id: [UInt8], bytes: [UInt8])])] = []
        var delete: [(kind: ContactStore.RecordKind, id: [UInt8])] = [], put: [(kind: ContactStore.RecordKind, id: [UInt8], bytes: [UInt8])] = []
        var written: [RowID: Int] = [:] // row → its index in `put`
        func close() {
            out.append((delete, put.enumerated().filter { written[RowID(kind: $0.element.kind, id: $0.element.id)] == $0.offset }.map(\.element)))
            delete = []
            put = []
            written = [:]
        }
        for w in batch {
            let r = w.rows
            if r.delete.contains(where: { written[RowID(kind: $0.0, id: $0.1)] != nil }) { close() }
            delete += r.delete.map { ($0.0, $0.1) }
            for p in r.put {
                written[RowID(kind: p.0, id: p.1)] = put.count
                put.append((p.0, p.1, p.2))
            }
        }
        close()
        return out
    }
}

/// The default hub storage: the sealed-records table of a Kith store in the hub's directory.
/// Opening it migrates older rows to the current `HubStoreSchema` in one transaction.
///
/// Sendable because every use of the (single-owner) store holds `lock`.
public final class SQLiteHubStorage: HubStorage, @unchecked Sendable {
    private let store: ContactStore
    private let lock = NSLock()
    public var location: String { "sqlite:" + store.path }
    static let schemaID = Array("schema".utf8)
    /// Held records of schema 1 that could not be read during migration (dropped).
    public let migratedFrom: UInt64?

    public init(directory: String, keys: OrganizationKeys, storageKey: SymmetricKey, nowMilliseconds now: UInt64 = ContactStore.systemClock()) throws {
        store = try ContactStore(directory: directory, scope: ScopeID(name: "hub"), deviceKey: keys.signing, storageKey: storageKey, mode: .opaque)
        let version = try store.records(.hubMeta).first { $0.id == Self.schemaID }.map { UInt64(bigEndianBytes: $0.bytes) } ?? 1
        guard version <= HubStoreSchema.current else {
            throw StoreError(.tooNew, "the hub store in \(directory) is schema \(version), newer than this build's \(HubStoreSchema.current); upgrade Kith")
        }
        guard version < HubStoreSchema.current else {
            migratedFrom = nil
            return
        }
        let m = HubStoreSchema.migrateFrom1(records: try store.records(.hubRecord), closed: try store.records(.hubClosed), keys: keys, nowMilliseconds: now)
        var v: [UInt8] = []
        v.appendBigEndian(HubStoreSchema.current)
        try store.replaceRecords(
            delete: m.deleteRecords.map { (.hubRecord, $0) } + m.deleteClosed.map { (.hubClosed, $0) },
            put: m.putRecords.map { (.hubRecord, $0.id, $0.bytes) } + m.putClosed.map { (.hubClosed, $0.id, $0.bytes) } + [(.hubMeta, Self.schemaID, v)])
        migratedFrom = version
    }

    private func locked<T>(_ body: (ContactStore) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(store)
    }

    public func records() throws -> [(record: [UInt8], answer: [UInt8], chapterName: String)] {
        try locked { try $0.records(.hubRecord) }.compactMap { HubStoreSchema.decodeHeld($0.bytes) }
    }

    public func closedGrants() throws -> [(member: Ed25519.PublicKey?, grant: [UInt8], version: UInt64)] {
        try locked { try $0.records(.hubClosed) }.compactMap(HubStoreSchema.decodeClosed)
    }

    public func decisions() throws -> [[UInt8]] { try locked { try $0.records(.hubDecision) }.map(\.bytes) }

    public func chapterOps() throws -> [ChapterID: [[UInt8]]] {
        HubStoreSchema.groupChapterOps(try locked { try $0.records(.hubChapterOp) })
    }

    public func put(_ key: GrantKey, record: [UInt8], answer: [UInt8], chapterName: String) throws {
        try locked { try $0.putRecords(.hubRecord, [(key.bytes, HubStoreSchema.encodeHeld(record: record, answer: answer, chapterName: chapterName))]) }
    }

    public func trails() throws -> [(id: [UInt8], bytes: [UInt8])] { try locked { try $0.records(.hubTrail) } }

    public func heldPage(after: [UInt8]?, limit: Int) throws -> [(id: [UInt8], bytes: [UInt8])] {
        try locked { try $0.records(.hubRecord, after: after, limit: limit) }
    }

    public func heldRows(_ ids: [[UInt8]]) throws -> [(id: [UInt8], bytes: [UInt8])] {
        try locked { try $0.records(.hubRecord, ids: ids) }
    }

    public func close(_ key: GrantKey, version: UInt64, trail: [UInt8]) throws {
        var v: [UInt8] = []
        v.appendBigEndian(version)
        try locked { try $0.replaceRecords(delete: [(.hubRecord, key.bytes)], put: [(.hubClosed, key.bytes, v), (.hubTrail, key.bytes, trail)]) }
    }

    public func putTrails(_ trails: [(key: GrantKey, bytes: [UInt8])]) throws {
        guard !trails.isEmpty else { return }
        try locked { try $0.putRecords(.hubTrail, trails.map { ($0.key.bytes, $0.bytes) }) }
    }

    /// One transaction (see `HubWrite.runs`).
    public func write(_ batch: [HubWrite]) throws {
        let runs = HubWrite.runs(batch)
        try locked { store in
            if runs.count == 1 {
                try store.replaceRecords(delete: runs[0].delete, put: runs[0].put)
            } else {
                // Rare (a record and its revocation in one batch): one transaction per run, in order.
                for run in runs { try store.replaceRecords(delete: run.delete, put: run.put) }
            }
        }
    }

    public func putDecision(_ decision: ChapterDecision) throws {
        try locked { try $0.putRecords(.hubDecision, [(decision.chapter.bytes, decision.encoded)]) }
    }

    public func putChapterOps(_ chapter: ChapterID, _ ops: [(id: [UInt8], bytes: [UInt8])]) throws {
        try locked { try $0.putRecords(.hubChapterOp, ops.map { (chapter.bytes + $0.id, $0.bytes) }) }
    }
}

/// An organization's hub: receives sealed upward records from members of chapters whose
/// affiliation it approved, keeps them, deletes them on revocation or expiry, signs every
/// answer, and exports what it holds.
public actor HubNode {
    public nonisolated let keys: OrganizationKeys
    var ledger: HubLedger
    private var chapters: [ChapterID: MembershipLog] = [:]
    let storage: any HubStorage
    let logger: Logger
    let clock: @Sendable () -> UInt64
    /// Where records go beyond the hub (Hub+Connectors.swift), and how each is doing.
    let connectors: [any HubConnector]
    var health: [String: ConnectorHealth] = [:]
    /// Records a connector is sending now (Hub+Connectors.swift), by the connectors sending them.
    var inFlight: [GrantKey: Set<String>] = [:]
    /// Why the latest write to the store failed (a full disk…), until one succeeds: `kithd hub status` is unhealthy meanwhile.
    var storeFailure: String?
    /// A deletion outstanding longer than this is "overdue" in `kithd hub status`.
    let overdueAfter: UInt64
    /// Chapters the hub keeps logs of without a decision yet (each is a request the organization
    /// sees in `kithd hub chapters`); beyond this, new requests are ignored.
    public static let maxUndecidedChapters = 1_000
    /// Storage calls suspend (PostgreSQL), and an actor is reentrant: every operation that
    /// changes the ledger and writes it runs whole, one at a time, in arrival order
    /// (`enter`/`leave`), so the store sees writes in the order the ledger made them.
    private var busy = false
    private var queue: [CheckedContinuation<Void, Never>] = []
    /// Revocations waiting to enter: they go before the records waiting (`enter(urgent:)`).
    private var urgent: [CheckedContinuation<Void, Never>] = []
    /// Certificates and grants already verified, shared by every member connection (bounded).
    public nonisolated let verified: VerificationCache
    /// Writes per transaction at most: a transaction stays short, so a revocation that arrives
    /// during a big ingest waits for little more than one small commit.
    static let maxWritesPerTransaction = 256
    /// Held-record rows read per page when the hub starts.
    static let restorePage = 2_000

    public init(keys: OrganizationKeys, storage: any HubStorage, limits: HubLimits = .defaults, logger: Logger,
                connectors: [any HubConnector] = [], overdueAfterMilliseconds: UInt64 = 72 * 3_600_000,
                clock: @escaping @Sendable () -> UInt64 = ContactStore.systemClock) async throws {
        self.keys = keys
        self.storage = storage
        self.logger = logger
        self.clock = clock
        self.connectors = connectors
        self.overdueAfter = overdueAfterMilliseconds
        verified = VerificationCache()
        var ledger = HubLedger(keys: keys, limits: limits, verified: verified)
        try ledger.restore(records: [], closed: try await storage.closedGrants(), decisions: try await storage.decisions(),
                           trails: try await storage.trails(), nowMilliseconds: clock())
        // Held records a page at a time: a restart never holds the whole store in memory.
        var after: [UInt8]?
        while true {
            let page = try await storage.heldPage(after: after, limit: Self.restorePage)
            try ledger.restoreHeld(page.compactMap { HubStoreSchema.decodeHeld($0.bytes) })
            guard page.count == Self.restorePage, let last = page.last else { break }
            after = last.id
        }
        self.ledger = ledger
        for (id, ops) in try await storage.chapterOps() {
            if let log = try? MembershipLog(chapter: id, ops: ops) { chapters[id] = log }
        }
    }

    /// `urgent`: a revocation, which goes before every record waiting (its decision does not
    /// depend on theirs, and its deletion receipt should not wait behind a whole ingest).
    func enter(urgent isUrgent: Bool = false) async {
        if busy {
            await withCheckedContinuation { if isUrgent { urgent.append($0) } else { queue.append($0) } }
        } else {
            busy = true
        }
    }

    func leave() {
        if !urgent.isEmpty {
            urgent.removeFirst().resume()
        } else if !queue.isEmpty {
            queue.removeFirst().resume()
        } else {
            busy = false
        }
    }

    // MARK: Group commit

    /// Writes waiting for the next transaction, in the order the ledger made them: the main lane
    /// (every write), and the side lane (revocations' deletions on a store that `writesBeside`).
    private var lanes: [Lane] = [Lane(), Lane()]
    private enum LaneID: Int { case main = 0, side = 1 }
    private struct Lane {
        var pending: [(writes: [HubWrite], urgent: Bool, done: CheckedContinuation<Void, any Error>)] = []
        var flushing = false
        /// Grants with a write queued or being written in this lane (how many).
        var keys: [GrantKey: Int] = [:]
    }

    /// Queues `writes` behind every write the ledger made before them and returns once they are
    /// durable (throws when their transaction failed). Writes queued while a transaction runs
    /// go together in the next one, so many members' records share one commit. Call it before
    /// any suspension after the ledger change it persists (to keep the order), and after
    /// `leave()` to let the next operation join the batch.
    /// `urgent`: a revocation's; its transaction runs at high priority (not the records', which
    /// would then crowd out the verification of the next ones). On a store that writes beside
    /// its batches (PostgreSQL: a second connection), a revocation's deletion goes in the side
    /// lane unless a write of the same grant is queued or running in the main lane (then it
    /// must follow it): it does not wait for the records' transaction to commit. A main-lane
    /// batch that touches a grant the side lane is writing waits for that write first, so each
    /// grant's rows are written in the order the ledger made them.
    func commit(_ writes: [HubWrite], urgent: Bool = false) async throws {
        guard !writes.isEmpty else { return }
        let keys = writes.flatMap(\.grantKeys)
        let lane: LaneID = urgent && storage.writesBeside && !keys.isEmpty && keys.allSatisfy({ lanes[LaneID.main.rawValue].keys[$0] == nil }) ? .side : .main
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            lanes[lane.rawValue].pending.append((writes, urgent, c))
            for k in keys { lanes[lane.rawValue].keys[k, default: 0] += 1 }
            if !lanes[lane.rawValue].flushing {
                lanes[lane.rawValue].flushing = true
                Task { await self.flush(lane) }
            }
        }
    }

    private func flush(_ lane: LaneID) async {
        let l = lane.rawValue
        while !lanes[l].pending.isEmpty {
            // At most `maxWritesPerTransaction` writes (and whole operations) per transaction.
            var n = 0, count = 0
            while n < lanes[l].pending.count && (n == 0 || count + lanes[l].pending[n].writes.count <= Self.maxWritesPerTransaction) {
                count += lanes[l].pending[n].writes.count
                n += 1
            }
            let batch = Array(lanes[l].pending[..<n])
            lanes[l].pending.removeFirst(n)
            let writes = batch.flatMap(\.writes), storage = storage
            let keys = writes.flatMap(\.grantKeys)
            if lane == .main {
                // The side lane's deletions of these grants were ordered before these writes.
                while keys.contains(where: { lanes[LaneID.side.rawValue].keys[$0] != nil }) {
                    await withCheckedContinuation { sideDone.append($0) }
                }
            }
            do {
                if batch.contains(where: \.urgent) {
                    try await Task(priority: .high) {
                        if lane == .side { try await Self.writeBeside(writes, to: storage) } else { try await Self.write(writes, to: storage) }
                    }.value
                } else {
                    try await Self.write(writes, to: storage)
                }
                noteStore(failure: nil)
                release(keys, in: lane)
                for b in batch { b.done.resume() }
            } catch {
                noteStore(failure: error)
                release(keys, in: lane)
                for b in batch { b.done.resume(throwing: error) }
            }
        }
        lanes[l].flushing = false
    }

    /// Main-lane flushes waiting for side-lane writes of their grants to end.
    private var sideDone: [CheckedContinuation<Void, Never>] = []

    private func release(_ keys: [GrantKey], in lane: LaneID) {
        for k in keys {
            let left = (lanes[lane.rawValue].keys[k] ?? 1) - 1
            lanes[lane.rawValue].keys[k] = left > 0 ? left : nil
        }
        if lane == .side, !sideDone.isEmpty {
            let waiting = sideDone
            sideDone = []
            for w in waiting { w.resume() } // each checks its grants again
        }
    }

    private nonisolated static func writeBeside(_ batch: [HubWrite], to storage: any HubStorage) async throws {
        try await storage.writeBeside(batch)
    }

    /// Runs a transaction off the actor (a nonisolated async function runs on the global
    /// executor): SQLite's synchronous commit and its fsync do not hold up the ledger's
    /// decisions on the records and revocations arriving meanwhile.
    private nonisolated static func write(_ batch: [HubWrite], to storage: any HubStorage) async throws {
        try await storage.write(batch)
    }

    /// Records held now (for status and tests).
    public var heldCount: Int { ledger.held.count }

    /// The hub's own certificate for the handshake: its organization key certifies its X25519 key.
    public nonisolated var certificate: DeviceCertificate {
        DeviceCertificate.issue(member: keys.signing, deviceSigningKey: keys.signing.publicKey, deviceAgreementKey: keys.agreement.publicKey,
                                createdAt: 1_700_000_000)
    }

    /// Merges a chapter's log a member sent; kept only if the chapter is affiliated with this
    /// hub. A new chapter is a request for the organization's approval.
    public func receiveLog(chapter bytes: [UInt8], ops encoded: [[UInt8]]) async {
        guard let id = try? ChapterID(bytes: bytes) else { return }
        await enter()
        defer { leave() }
        do {
            var log = try chapters[id] ?? MembershipLog(chapter: id, ops: encoded, nowMilliseconds: clock())
            let added = try log.receive(encoded.map { try MembershipOp(decoding: $0) }, nowMilliseconds: clock())
            guard log.state.affiliation?.signingKey == keys.signing.publicKey else { return }
            if chapters[id] == nil {
                let undecided = chapters.keys.filter { ledger.decisions[$0] == nil }.count
                guard undecided < Self.maxUndecidedChapters else {
                    logger.warning("ignored a chapter's affiliation request: too many undecided", metadata: ["chapter": "\(id)"])
                    return
                }
                logger.info("a chapter asks to affiliate", metadata: ["chapter": "\(id)", "name": "\(log.state.name)"])
            }
            let new = chapters[id] == nil ? log.allOps : added
            chapters[id] = log
            if !new.isEmpty { try await commit([.chapterOps(id, new.map { ($0.id.bytes, $0.encoded) })]) }
        } catch {
            logger.warning("refused a chapter log", metadata: ["reason": "\(error)"])
        }
    }

    /// Answers a record (always with a signed answer) and stores what it accepted. Its
    /// signatures are checked, its fields opened and its receipt signed first, on the caller's
    /// task (`HubLedger.prepare`), so that many members' connections do that in parallel; only
    /// the ledger's decision and the write run one at a time.
    public nonisolated func accept(_ record: [UInt8]) async -> [UInt8] {
        await accept(HubLedger.prepare(record, keys: keys, now: clock(), cache: verified))
    }

    private func accept(_ prepared: HubLedger.Prepared) async -> [UInt8] {
        await enter()
        let now = clock(), record = prepared.bytes
        let parsed = try? prepared.parsed.get()
        let answer = ledger.answer(prepared: prepared, chapter: parsed.flatMap { chapters[$0.grant.chapter]?.state }, nowMilliseconds: now)
        guard answer.kind == .stored, let parsed else {
            leave()
            logger.warning("record not taken", metadata: ["kind": "\(answer.kind)", "reason": "\(answer.reason)"])
            return answer.encoded
        }
        let key = GrantKey(member: parsed.grant.member, grant: parsed.grant.id)
        guard let held = ledger.held[key], held.requestHash.elementsEqual(answer.requestHash), held.storedAt == answer.at else {
            leave()
            return answer.encoded
        }
        leave() // the next record may join this one's transaction; the write is queued before anything else runs
        do {
            // Written on every stored answer (also an identical retry): a write that failed once is made again.
            // The fields opened while preparing it go into the sealed row, so an export need not open the record again.
            try await commit([.put(key, record: record, answer: answer.encoded, chapterName: held.chapterName,
                                   fields: try? prepared.values?.get())])
        } catch {
            logger.error("could not store a record", metadata: ["reason": "\(error)"])
            return HubAnswer.make(for: ConsentError(.unavailable, "the hub could not store the record; send it again later"), request: record,
                                  member: key.member, grantID: key.grant, at: now, signer: keys.signing).encoded
        }
        logger.info("record stored", metadata: ["grant": "\(Base64URL.encode(key.grant))", "version": "\(held.version)"])
        return answer.encoded
    }

    /// Answers a revocation (always with a signed answer) and deletes what it names. Verified on
    /// the caller's task; it then goes before the records waiting, and its deletion shares the
    /// next (short) transaction.
    public nonisolated func revoke(_ revocation: [UInt8]) async -> [UInt8] {
        // At high priority: its deletion receipt should not wait for the records being verified.
        let hub = self
        return await Task(priority: .high) {
            await hub.revoke(revocation, parsed: HubLedger.parseRevocation(revocation, now: hub.clock(), cache: hub.verified))
        }.value
    }

    private func revoke(_ revocation: [UInt8], parsed: Result<GrantRevocation, ConsentError>) async -> [UInt8] {
        await enter(urgent: true)
        let now = clock()
        let answer = reportingDeliveriesInFlight(ledger.answer(revocation: revocation, parsed: parsed, nowMilliseconds: now), request: revocation, now: now)
        guard answer.kind == .deleted, let member = try? Ed25519.PublicKey(bytes: answer.memberKey) else {
            leave()
            return answer.encoded
        }
        let key = GrantKey(member: member, grant: answer.grantID)
        let close = HubWrite.close(key, version: answer.version, trail: ledger.trails[key]?.encoded ?? RecordTrail().encoded)
        leave()
        do { try await commit([close], urgent: true) } catch {
            logger.error("could not delete a record", metadata: ["reason": "\(error)"])
            return HubAnswer.make(for: ConsentError(.unavailable, "the hub could not delete the record; send the revocation again later"),
                                  request: revocation, member: member, grantID: key.grant, at: now, signer: keys.signing).encoded
        }
        logger.info("record deleted on revocation", metadata: ["grant": "\(Base64URL.encode(key.grant))",
                                                               "places": "\(PlaceReport.summary(answer.places))"])
        return answer.encoded
    }

    /// Deletes expired records (called periodically).
    public func expire() async {
        await enter()
        defer { leave() }
        let gone = ledger.expire(nowMilliseconds: clock())
        do {
            try await commit(gone.map { .close($0, version: ledger.highestVersion(of: $0) ?? 0, trail: ledger.trails[$0]?.encoded ?? RecordTrail().encoded) })
            for key in gone { logger.info("record deleted on expiry", metadata: ["grant": "\(Base64URL.encode(key.grant))"]) }
        } catch {
            logger.error("could not delete expired records (the store still holds them until the next start)", metadata: ["reason": "\(error)"])
        }
    }

    // MARK: Chapters

    /// Every chapter that asked to affiliate (its log reached the hub), with the organization's
    /// decision: what `kithd hub chapters` prints.
    func chapterList() -> [[String: Any]] {
        chapters.sorted { $0.key < $1.key }.map { id, log in summary(id, log.state) }
    }

    private func summary(_ id: ChapterID, _ state: ChapterState) -> [String: Any] {
        let usage = ledger.usage[id] ?? HubLedger.Usage()
        let lim = ledger.limits(of: id)
        var row: [String: Any] = [
            "chapter": id.description, "name": state.name, "admins": state.admins.map(\.description),
            "relaxesContactConsent": state.affiliation?.allowsWithoutContactConsent ?? false,
            "status": ledger.standing(of: id, affiliation: state.affiliation).rawValue,
            "records": usage.records, "bytes": usage.bytes, "waiting": ledger.waiting[id]?.count ?? 0,
            "maxRecords": lim.maxRecordsPerChapter, "maxBytes": lim.maxBytesPerChapter, "members": state.members.count,
        ]
        if let d = ledger.decisions[id] {
            row["decidedAt"] = d.at
            row["approvedWithoutContactConsent"] = d.allowsWithoutContactConsent
        }
        return row
    }

    /// `kithd hub status`: the organization, where its rows are, chapters by standing, records
    /// and bytes held (in all and per chapter), requests waiting.
    func status() -> [String: Any] {
        let list = chapterList()
        var byStatus: [String: Int] = [:]
        for c in list { byStatus[c["status"] as? String ?? "?", default: 0] += 1 }
        return [
            "connectors": connectorStatus(), "deletions": deletionStatus(), "healthy": healthProblems().isEmpty, "problems": healthProblems(),
            "organization": keys.name, "key": keys.signing.publicKey.description, "store": storage.location,
            "records": ledger.held.count, "bytes": ledger.usage.values.reduce(UInt64(0)) { $0 + $1.bytes },
            "chapters": byStatus, "perChapter": list.map { c in
                ["chapter": c["chapter"] ?? "", "name": c["name"] ?? "", "status": c["status"] ?? "", "records": c["records"] ?? 0, "bytes": c["bytes"] ?? 0,
                 "waiting": c["waiting"] ?? 0]
            },
        ]
    }

    /// Finds a chapter by its id, a unique prefix of it, or its exact (unique) name.
    private func chapter(_ reference: String) throws(ConsentError) -> (ChapterID, ChapterState) {
        let matches = chapters.filter { $0.key.description == reference }.isEmpty
            ? chapters.filter { $0.key.description.hasPrefix(reference) || $0.value.state.name == reference }
            : chapters.filter { $0.key.description == reference }
        guard matches.count == 1, let (id, log) = matches.first else {
            throw ConsentError(.notAffiliated, matches.isEmpty
                ? "no chapter \"\(reference)\" has asked to affiliate with \(keys.name) (kithd hub chapters lists them)"
                : "\"\(reference)\" names several chapters; give more of the id")
        }
        return (id, log.state)
    }

    /// `kithd hub approve` / `refuse`: signs and stores the organization's decision.
    func decide(_ reference: String, approve: Bool, allowWithoutContactConsent: Bool, maxRecords: UInt64, maxBytes: UInt64) async throws(ConsentError) -> [String: Any] {
        await enter()
        defer { leave() }
        let (id, state) = try chapter(reference)
        var next = ledger
        let d = try next.decide(id, state: state, approve: approve, allowWithoutContactConsent: allowWithoutContactConsent,
                                maxRecords: maxRecords, maxBytes: maxBytes, nowMilliseconds: clock())
        do { try await commit([.decision(d)]) } catch { throw ConsentError(.unavailable, "the hub could not store its decision: \(error)") }
        ledger = next
        logger.info(approve ? "chapter approved" : "chapter refused", metadata: ["chapter": "\(id)", "name": "\(state.name)"])
        return summary(id, state)
    }

    /// Serves one member connection: logs, records and revocations in, receipts out.
    nonisolated func serve(_ link: NoiseLink, label: String) async {
        do {
            while true {
                switch try await link.receive() {
                case let .membership(chapter, ops):
                    await receiveLog(chapter: chapter, ops: ops)
                case let .upward(record):
                    try await link.send(.hubAnswer(await accept(record)))
                case let .revokeGrant(revocation):
                    try await link.send(.hubAnswer(await revoke(revocation)))
                case .hello:
                    continue
                default:
                    throw NoiseLink.Failure(message: "unexpected message for a hub")
                }
            }
        } catch {
            logger.debug("hub connection ended", metadata: ["peer": "\(label)", "reason": "\(error)"])
        }
    }

    /// Listens for member connections on `host:port`; returns the bound port and the accept loop.
    public nonisolated func listen(host: String, port: Int) async throws -> (port: Int, serve: @Sendable () async -> Void) {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let bound = server.channel.localAddress?.port ?? port
        let hub = self, logger = self.logger, cert = certificate, agreement = keys.agreement
        // The same limits as kithd's peer port: a handshake deadline, a connection cap that
        // evicts unauthenticated connections first, a per-address cap, rate-limited warnings.
        let gate = ConnectionGate(maxTotal: SyncNode.maxInboundConnections, maxPerAddress: SyncNode.maxInboundPerAddress)
        let limiter = LogRateLimiter()
        return (bound, {
            do {
                try await server.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await child in inbound {
                            let label = child.channel.remoteAddress?.hostAndPort ?? "member"
                            guard let ticket = ConnectionGate.admitLogging(child.channel, to: gate, limiter: limiter, logger: logger, what: "hub port") else {
                                try? await child.channel.close()
                                continue
                            }
                            group.addTask {
                                defer { gate.release(ticket) }
                                let channel = child.channel
                                let deadline = Task {
                                    try await Task.sleep(nanoseconds: 10_000_000_000)
                                    logger.warning(limitedBy: limiter, "hub-handshake-deadline", "closed a hub connection that did not complete its handshake within 10 seconds", metadata: ["peer": "\(label)"])
                                    channel.close(promise: nil)
                                }
                                try? await child.executeThenClose { i, o in
                                    let link = NoiseLink(inbound: i, outbound: o)
                                    do {
                                        try await link.handshake(role: .responder, staticKey: agreement, certificate: cert, now: ContactStore.systemClock() / 1000)
                                    } catch {
                                        deadline.cancel()
                                        throw error
                                    }
                                    deadline.cancel()
                                    gate.authenticated(ticket)
                                    await hub.serve(link, label: label)
                                }
                            }
                        }
                    }
                }
            } catch {
                if !Task.isCancelled { logger.error("hub listener stopped", metadata: ["reason": "\(error)"]) }
            }
        })
    }
}

extension HubNode {
    /// Handles one control request (the socket's, or the CLI's on a stopped hub's store):
    /// `{"op":"chapters"}` (an export streams: `bindControl`, Hub+Export.swift),
    /// `{"op":"approve","chapter":…,"allowWithoutContactConsent":bool,"maxRecords":n,"maxBytes":n}`,
    /// `{"op":"refuse","chapter":…}`, `{"op":"retractions"}`, `{"op":"confirm-file","file":…}`. Answers `{"ok":true,…}` or `{"ok":false,"error":…}`.
    public func control(json data: Data) async -> Data {
        Self.json(await control((try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]))
    }

    private func control(_ request: [String: Any]) async -> [String: Any] {
        let number = { (k: String) -> UInt64 in (request[k] as? NSNumber).map { UInt64(max(0, $0.int64Value)) } ?? 0 }
        switch request["op"] as? String {
        case "export":
            return ["ok": false, "error": "an export streams: send {\"op\":\"export\",\"format\":\"json|jsonl|csv\"} alone on the control socket (Hub+Export.swift)"]
        case "chapters":
            return ["ok": true, "chapters": chapterList()]
        case "status":
            return ["ok": true, "status": status()]
        case "retractions":
            return ["ok": true, "retractions": retractionList()]
        case "confirm-file":
            guard let file = request["file"] as? String, !file.isEmpty else { return ["ok": false, "error": "name the exported file"] }
            do { return ["ok": true, "confirmed": try await confirmFile(file)] } catch { return ["ok": false, "error": error.detail] }
        case let op? where op == "approve" || op == "refuse":
            guard let reference = request["chapter"] as? String, !reference.isEmpty else { return ["ok": false, "error": "name the chapter"] }
            do {
                let row = try await decide(reference, approve: op == "approve", allowWithoutContactConsent: request["allowWithoutContactConsent"] as? Bool ?? false,
                                     maxRecords: number("maxRecords"), maxBytes: number("maxBytes"))
                return ["ok": true, "chapter": row]
            } catch {
                return ["ok": false, "error": error.detail]
            }
        default:
            return ["ok": false, "error": "the hub's control socket knows the ops export, chapters, status, retractions, confirm-file, approve and refuse"]
        }
    }

    /// The hub's local control socket (`<hub-dir>/hub.sock`, 0600): one JSON line in, one JSON
    /// line out (see `control`), so a running hub is exported and decides on chapters without
    /// stopping it.
    public nonisolated func bindControl(path: String) async throws -> @Sendable () async -> Void {
        let hub = self
        return try await LocalSocket.bind(path: path, logger: logger, what: "hub control socket") { client in
            try? await client.executeThenClose { i, o in
                var buffer: [UInt8] = []
                for try await chunk in i {
                    buffer += chunk.readableBytesView
                    guard buffer.contains(0x0A) else { continue }
                    if let format = HubNode.exportRequest(Data(buffer)) { return try await hub.streamExport(format, to: o) }
                    let data = await hub.control(json: Data(buffer))
                    try await o.write(ByteBuffer(bytes: Array(data) + [0x0A]))
                    return
                }
            }
        }
    }

    /// A connection to a running hub's control socket; nil when no hub answers there.
    static func connectControl(socket path: String) async -> NIOAsyncChannel<ByteBuffer, ByteBuffer>? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(unixDomainSocketPath: path) { ch in
                ch.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch) }
            }
    }

    nonisolated static func json(_ answer: [String: Any]) -> Data {
        (try? JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys])) ?? Data("{\"ok\":false}".utf8)
    }

    /// Sends one request (a JSON object) to a running hub's control socket; its JSON answer, or
    /// nil when no hub answers there.
    public static func requestRunningHub(socket path: String, _ request: Data) async -> Data? {
        guard let channel = await connectControl(socket: path) else { return nil }
        let line = Array(request) + [0x0A]
        let data: Data? = try? await channel.executeThenClose { i, o in
            try await o.write(ByteBuffer(bytes: line))
            var buffer: [UInt8] = []
            for try await chunk in i {
                buffer += chunk.readableBytesView
                if buffer.last == 0x0A { break }
            }
            return Data(buffer)
        }
        return data
    }
}
