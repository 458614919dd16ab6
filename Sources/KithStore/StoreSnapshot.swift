import KithCRDT
import KithCrypto
#if canImport(Glibc)
import Glibc
#endif

/// What the store did with its snapshot when it opened (Protocol/store.md §Snapshots).
public enum SnapshotStatus: Sendable, Equatable {
    /// No snapshot file: every change was replayed.
    case absent
    /// Loaded; `tail` changes written after it were applied on top.
    case loaded(tail: Int)
    /// Present but not used (damaged, of another key or scope, or stale): every change was
    /// replayed, and the file will be replaced.
    case ignored(reason: String)
}

/// When a store writes a snapshot: after `minimumOps` new ops and at least `1/fraction` of all
/// ops since the last one (in the background), and at close when anything is new.
public struct SnapshotPolicy: Sendable {
    public var minimumOps: Int
    public var fraction: Int

    public init(minimumOps: Int = 20_000, fraction: Int = 8, catchUpMinimumOps: Int = 2_000_000) {
        self.minimumOps = minimumOps
        self.fraction = fraction
        self.catchUpMinimumOps = catchUpMinimumOps
    }

    /// While a peer is still sending what the store lacked (`ContactStore.catchingUp`): a
    /// snapshot only once the ops since the last one reach `catchUpMinimumOps` and as many as
    /// it covers, so an initial sync is not slowed by rewrites of a growing snapshot, and a crash
    /// in the middle still replays at most max(`catchUpMinimumOps`, half the store's ops).
    public var catchUpMinimumOps: Int

    func isDue(behind: Int, total: Int, catchingUp: Bool = false) -> Bool {
        if catchingUp { return behind > 0 && behind >= max(catchUpMinimumOps, total / 2) }
        return behind > 0 && behind >= max(minimumOps, total / max(fraction, 1))
    }
}

/// One store's snapshot file: `<dir>/store.snapshot`, written whole to `store.snapshot.tmp`,
/// fsynced and renamed over it, so a crash leaves the old snapshot, the new one or a temporary
/// file that the next open deletes. Forget zeroes and deletes it (`invalidate`) before the
/// erasing transaction commits; a write that started before is then discarded, never renamed.
///
/// `@unchecked Sendable`: `generation`, `writing` and `opsInSnapshot` are only touched under `mutex`.
final class StoreSnapshotFile: @unchecked Sendable {
    static let magic = Array("KITHSNP2".utf8)
    static let domain = Array("kith/store/snapshot/v2".utf8)
    static let idLength = 16

    let path: String
    let tempPath: String
    private let key: SymmetricKey
    /// Domain and scope; each section's associated data adds its name and the snapshot's id.
    private let associatedData: [UInt8]
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let idle: UnsafeMutablePointer<pthread_cond_t>
    private var generation: UInt64 = 0
    private var writing = false
    private var opsInSnapshot = 0
    private var indexInSnapshot = false
    /// Test hook (`KITH_TEST_SNAPSHOT_PAUSE=<file>`): a store closing with anything new writes a
    /// snapshot, and after half of the temporary file creates `<file>` and stops, so a test can
    /// kill -9 the process mid-write (after everything it acknowledged was committed).
    private let pauseMarker: String?

    init(directory: String, scope: ScopeID, key: SymmetricKey) {
        path = directory + "/store.snapshot"
        tempPath = path + ".tmp"
        self.key = key
        associatedData = Self.domain + [UInt8(scope.bytes.count)] + scope.bytes
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        idle = .allocate(capacity: 1)
        pthread_cond_init(idle, nil)
        pauseMarker = getenv("KITH_TEST_SNAPSHOT_PAUSE").map { String(cString: $0) }
    }

    deinit {
        pthread_cond_destroy(idle)
        idle.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    var hasTestPause: Bool { pauseMarker != nil }
    /// Set once the store has opened: a store whose open failed half-way writes no snapshot.
    var isOpen = false

    var opsCovered: Int { locked { opsInSnapshot } }
    /// Whether the snapshot on disk holds an index section.
    var hasIndex: Bool { locked { indexInSnapshot } }

    private func sectionAD(_ name: String, _ id: some Collection<UInt8>) -> [UInt8] {
        associatedData + Array(name.utf8) + id
    }

    // MARK: Reading

    enum ReadResult {
        case absent
        /// The state, and the index section when there is one that authenticates (else why not).
        case state([UInt8], index: Result<[UInt8], IndexUnusable>?)
        case unusable(String)
    }

    struct IndexUnusable: Error { let reason: String }

    /// The snapshot's plaintext state and index section, after the magic and each section's AEAD
    /// tag (its checksum, bound to the snapshot's id) are checked.
    func read() -> ReadResult {
        // Mapped, not read: the sections are decrypted straight from the page cache, so the
        // tens of megabytes of a large store are not copied (and zeroed) once more first.
        guard let mapped = MappedFile(path) else { return .absent }
        return mapped.withBytes { read($0) }
    }

    private func read(_ file: UnsafeRawBufferPointer) -> ReadResult {
        let head = Self.magic.count + Self.idLength + 8
        guard file.count > Self.magic.count, Array(file[0..<Self.magic.count]) == Self.magic else {
            return .unusable("the snapshot file does not start with \(String(decoding: Self.magic, as: UTF8.self))")
        }
        guard file.count >= head else { return .unusable("the snapshot file is truncated (\(file.count) bytes)") }
        let id = Array(file[Self.magic.count..<(Self.magic.count + Self.idLength)])
        let stateLength = file[(head - 8)..<head].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard stateLength <= UInt64(file.count - head) else { return .unusable("the snapshot file is truncated in its state section") }
        let stateEnd = head + Int(stateLength)
        // The index section is decrypted on a thread of its own while this one does the state.
        let key = key, indexAD = sectionAD("index", id), whole = RawBytes(buffer: file)
        let indexJob = BackgroundJob<[UInt8]?>.start {
            stateEnd < whole.buffer.count ? Self.openSection(whole.buffer, stateEnd..<whole.buffer.count, key: key, associatedData: indexAD) : nil
        }
        guard let state = Self.openSection(file, head..<stateEnd, key: key, associatedData: sectionAD("state", id)) else {
            return .unusable("the snapshot failed authentication (damaged, truncated, or sealed under another key or scope)")
        }
        guard stateEnd < file.count else { return .state(state, index: nil) }
        guard let index = indexJob.wait() else {
            return .state(state, index: .failure(IndexUnusable(reason: "the snapshot's index section failed authentication (damaged, truncated, or of another snapshot)")))
        }
        return .state(state, index: .success(index))
    }

    /// Opens `nonce ‖ ciphertext ‖ tag` at `range` of `file` without copying it first.
    private static func openSection(_ file: UnsafeRawBufferPointer, _ range: Range<Int>, key: SymmetricKey, associatedData: [UInt8]) -> [UInt8]? {
        let n = XChaCha20Poly1305.nonceLength
        guard range.count >= n + XChaCha20Poly1305.tagLength else { return nil }
        let nonce = Array(file[range.lowerBound..<(range.lowerBound + n)])
        let body = RawBytes(buffer: UnsafeRawBufferPointer(rebasing: file[(range.lowerBound + n)..<range.upperBound]))
        return try? XChaCha20Poly1305.decrypt(body, key: key, nonce: nonce, associatedData: associatedData)
    }

    func noteLoaded(opCount: Int, index: Bool) {
        locked {
            opsInSnapshot = opCount
            indexInSnapshot = index
        }
    }

    // MARK: Writing

    /// Starts writing `replica` (and the index `index` encodes, which must be of that replica) in
    /// the background unless a write is running. Returns at once.
    func writeInBackground(_ replica: Replica, index: (@Sendable () -> [UInt8])?) {
        let started: UInt64? = locked {
            if writing { return nil }
            writing = true
            return generation
        }
        guard let started else { return }
        let file = self
        Task.detached(priority: .utility) {
            _ = file.write(replica, index: index, generation: started)
            file.locked { file.writing = false; pthread_cond_broadcast(file.idle) }
        }
    }

    /// Writes `replica` now (waits for a background write first). False when it failed (the old
    /// snapshot, if any, stays: it is only older, and its tail is replayed).
    @discardableResult
    func writeNow(_ replica: Replica, index: (@Sendable () -> [UInt8])?) -> Bool {
        let started: UInt64 = locked {
            while writing { pthread_cond_wait(idle, mutex) }
            writing = true
            return generation
        }
        let ok = write(replica, index: index, generation: started, pausable: true)
        locked {
            writing = false
            pthread_cond_broadcast(idle)
        }
        return ok
    }

    /// Waits for a background write to finish.
    func waitIdle() { locked { while writing { pthread_cond_wait(idle, mutex) } } }

    /// Bumped by every `invalidate`; a write renames its file into place only if unchanged.
    var currentGeneration: UInt64 { locked { generation } }

    func write(_ replica: Replica, index: (@Sendable () -> [UInt8])? = nil, generation started: UInt64, pausable: Bool = false) -> Bool {
        let id = SecureRandom.bytes(Self.idLength)
        var plain = replica.snapshotState()
        let state = XChaCha20Poly1305.seal(plain, key: key, associatedData: sectionAD("state", id))
        for i in plain.indices { plain[i] = 0 }
        var sealed = Self.magic + id
        sealed.appendBigEndian(UInt64(state.count))
        sealed += state
        if let index {
            var plainIndex = index()
            sealed += XChaCha20Poly1305.seal(plainIndex, key: key, associatedData: sectionAD("index", id))
            for i in plainIndex.indices { plainIndex[i] = 0 }
        }
        guard writeFile(tempPath, sealed, pausable: pausable) else {
            Self.erase(tempPath)
            return false
        }
        // The rename happens under the lock, so an `invalidate` is either before it (the write
        // is discarded) or after it (the new file is zeroed and deleted).
        return locked {
            guard generation == started, rename(tempPath, path) == 0 else {
                Self.erase(tempPath)
                return false
            }
            Self.syncDirectory(of: path)
            opsInSnapshot = replica.opCount
            indexInSnapshot = index != nil
            return true
        }
    }

    /// Zeroes and deletes the snapshot (a forget or a rewrite of held changes makes it hold what
    /// must be erased, or makes it stale in a way the chain heads cannot show). A write already
    /// running is discarded.
    func invalidate() {
        locked {
            generation &+= 1
            opsInSnapshot = 0
            indexInSnapshot = false
            Self.erase(path)
        }
    }

    private func writeFile(_ path: String, _ bytes: [UInt8], pausable: Bool) -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let pause = pausable ? pauseMarker : nil
        let half = pause == nil ? bytes.count : bytes.count / 2
        guard Self.writeAll(fd, bytes[0..<half]) else { return false }
        if let pause {
            _ = fsync(fd)
            let m = open(pause, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            if m >= 0 { close(m) }
            while true { sleep(60) } // killed here by the test
        }
        guard Self.writeAll(fd, bytes[half...]) else { return false }
        return fsync(fd) == 0
    }

    private static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return false }
                off += n
            }
            return true
        }
    }

    /// Overwrites a file with zeros, syncs it and deletes it (a no-op when it does not exist).
    static func erase(_ path: String) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        var st = stat()
        if fstat(fd, &st) == 0 {
            let zeros = [UInt8](repeating: 0, count: 1 << 16)
            var left = Int(st.st_size)
            while left > 0 {
                let n = min(left, zeros.count)
                guard writeAll(fd, zeros[0..<n]) else { break }
                left -= n
            }
            _ = fsync(fd)
        }
        close(fd)
        unlink(path)
        syncDirectory(of: path)
    }

    private static func syncDirectory(of path: String) {
        let dir = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }
}

/// Bytes the caller keeps alive (a mapped file) seen as `ContiguousBytesView`, for the AEAD.
///
/// `@unchecked Sendable`: read-only bytes that the caller keeps mapped until every thread given
/// them was joined.
private struct RawBytes: ContiguousBytesView, @unchecked Sendable {
    let buffer: UnsafeRawBufferPointer
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try body(buffer) }
}

/// A whole file mapped read-only (private), unmapped when done. The snapshot is never truncated
/// in place (a write renames a new file over it; an erase overwrites it with zeros and unlinks it,
/// and happens only after the store opened), so reading the mapping cannot fault.
private final class MappedFile {
    private let base: UnsafeMutableRawPointer?
    private let size: Int

    init?(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)
        guard let p, p != MAP_FAILED else { return nil }
        base = p
    }

    deinit { if let base { munmap(base, size) } }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        body(UnsafeRawBufferPointer(start: base, count: size))
    }
}

/// A raw thread that runs `run()` once, joined by `join()` (or at `deinit`). Not generic: the
/// Swift 6.3 compiler crashes on this `pthread_create` call inside a generic class.
///
/// `@unchecked Sendable`: `thread` is only touched by the thread that owns the job.
class ThreadJob: @unchecked Sendable {
    private var thread: pthread_t?

    /// The work; a subclass stores its result, which is read only after `join()`.
    func run() {}

    /// Starts `run()` on a new thread; false when none could be started.
    final func spawn() -> Bool {
        var t = pthread_t()
        let box = Unmanaged.passRetained(self)
        guard pthread_create(&t, nil, { arg in
            let me = Unmanaged<ThreadJob>.fromOpaque(arg!).takeRetainedValue()
            me.run()
            return nil
        }, box.toOpaque()) == 0 else {
            box.release()
            return false
        }
        thread = t
        return true
    }

    /// Waits for the thread, if one was started and not joined yet.
    final func join() {
        if let t = thread {
            pthread_join(t, nil)
            thread = nil
        }
    }

    deinit { join() }
}

/// Runs `body` on a thread of its own from `start` until `wait()`: the snapshot is read (mapped
/// and decrypted) beside the change rows, and its index section beside its state. A raw thread,
/// not a task: the caller blocks on it, and may itself run on the cooperative pool.
///
/// `@unchecked Sendable`: `result` is written by the thread before it exits and read only after
/// `pthread_join`, which orders the two.
final class BackgroundJob<Result: Sendable>: ThreadJob, @unchecked Sendable {
    private let body: @Sendable () -> Result
    private var result: Result?

    private init(body: @escaping @Sendable () -> Result) {
        self.body = body
    }

    /// Starts `body` on a new thread (or leaves it to `wait()` when none can be started).
    static func start(_ body: @escaping @Sendable () -> Result) -> BackgroundJob {
        let job = BackgroundJob(body: body)
        _ = job.spawn()
        return job
    }

    override func run() { result = body() }

    /// The result (computed here when no thread could be started). Call once.
    func wait() -> Result {
        join()
        if let result { return result }
        let r = body()
        result = r
        return r
    }
}

/// A snapshot read, and its state parsed and checked, on a thread of its own.
struct PrefetchedSnapshot: Sendable {
    let read: StoreSnapshotFile.ReadResult
    /// The state parsed (nil when there was none to parse).
    let image: Result<Replica.SnapshotImage, Replica.SnapshotMismatch>?
}

/// The snapshot read, decrypted and its state parsed and checked beside the change rows
/// (`BackgroundJob`), after deleting the temporary file a write that did not finish left.
func prefetchSnapshot(_ file: StoreSnapshotFile, scope: ScopeID, mode: ScopeMode) -> BackgroundJob<PrefetchedSnapshot> {
    StoreSnapshotFile.erase(file.tempPath)
    return BackgroundJob.start {
        let read = file.read()
        guard case let .state(state, _) = read else { return PrefetchedSnapshot(read: read, image: nil) }
        do throws(Replica.SnapshotMismatch) {
            return PrefetchedSnapshot(read: read, image: .success(try Replica.parsingSnapshot(state, scope: scope, mode: mode)))
        } catch {
            return PrefetchedSnapshot(read: read, image: .failure(error))
        }
    }
}

extension ContactStore {
    /// Opens the replica from the snapshot plus the rows after it when the snapshot is usable
    /// (the rows it covers stay in the database, read on demand), else by replaying every row.
    /// `extents` are the rows' chains as their clear columns show them.
    func restore(snapshot: PrefetchedSnapshot, extents: [DeviceKey: (count: Int, contiguous: Bool)]) throws(StoreError) {
        let file = snapshotFile
        switch snapshot.read {
        case .absent:
            snapshotStatus = .absent
        case let .unusable(reason):
            snapshotStatus = .ignored(reason: reason)
        case let .state(state, index):
            let restored: (replica: Replica, tail: [Change])
            do throws(Replica.SnapshotMismatch) {
                let image: Replica.SnapshotImage
                switch snapshot.image {
                case let .success(parsed)?: image = parsed
                case let .failure(e)?: throw e
                case nil: image = try Replica.parsingSnapshot(state, scope: replica.scope, mode: replica.mode)
                }
                restored = try restoreOnDemand(image, extents: extents)
            } catch {
                snapshotStatus = .ignored(reason: error.reason)
                break
            }
            replica = restored.replica
            if case let .success(bytes) = index, !file.isOpen {
                // The owner loads the index section and patches it with what the tail changes.
                _ = replica.takeChangedContacts()
                loadedIndex = bytes
            } else if case let .failure(e) = index {
                indexIgnoredReason = e.reason
            }
            file.noteLoaded(opCount: restored.replica.opCount, index: index.map { (try? $0.get()) != nil } ?? false)
            try replay(restored.tail)
            snapshotStatus = .loaded(tail: restored.tail.count)
            file.isOpen = true
            snapshotIfDue()
            return
        }
        changeReader = nil
        try replay(readChanges().flatMap(\.changes))
        file.isOpen = true
        snapshotIfDue() // replace a missing or unusable snapshot of a large store
    }

    /// The snapshot's replica with the changes it covers left in the rows: per device, the
    /// rows must be seqs 1… without a gap up to at least the covered count, and the row at that
    /// count (read and authenticated now) must be the head the snapshot names — its id commits
    /// to every change before it. Returns the replica and the rows after the snapshot.
    private func restoreOnDemand(_ image: Replica.SnapshotImage, extents: [DeviceKey: (count: Int, contiguous: Bool)]) throws(Replica.SnapshotMismatch) -> (replica: Replica, tail: [Change]) {
        var heads: [DeviceKey: Change] = [:]
        var tail: [Change] = []
        var covered = Set<DeviceKey>()
        do {
            for (device, count) in image.coveredChains {
                covered.insert(device)
                guard let extent = extents[device] else {
                    if count > 0 { throw Replica.SnapshotMismatch("stale snapshot: the store holds no change of device \(device), the snapshot covers \(count)") }
                    continue
                }
                if count == 0 {
                    tail += try readChanges(device: device).flatMap(\.changes)
                    continue
                }
                guard extent.contiguous, extent.count >= count else {
                    throw Replica.SnapshotMismatch("stale snapshot: the store does not hold changes 1…\(count) of device \(device) it was built from")
                }
                let rows = try readChanges(device: device, seqs: UInt64(count)...UInt64(extent.count)).first?.changes ?? []
                guard let head = rows.first, head.seq == UInt64(count) else {
                    throw Replica.SnapshotMismatch("stale snapshot: the store does not hold change \(count) of device \(device) it was built from")
                }
                heads[device] = head
                tail += rows.dropFirst()
            }
            for (device, _) in extents.sorted(by: { $0.key < $1.key }) where !covered.contains(device) {
                tail += try readChanges(device: device).flatMap(\.changes)
            }
        } catch let e as Replica.SnapshotMismatch {
            throw e
        } catch let e as StoreError {
            // A damaged head or tail row: the replay that follows reports it as it always did.
            throw Replica.SnapshotMismatch("a change row the snapshot needs does not open: \(e.detail)")
        } catch {
            throw Replica.SnapshotMismatch("\(error)")
        }
        let reader = StoreChangeReader(path: path, readOnly: readOnly, scope: replica.scope, key: storageKey)
        let restored = try Replica.restoring(image, epochKeys: replica.epochKeys, configuration: replica.configuration, heads: heads, source: reader)
        changeReader = reader
        return (restored, tail)
    }

    private func replay(_ changes: [Change]) throws(StoreError) {
        for change in changes {
            do {
                try replica.receive(change, nowMilliseconds: clock())
            } catch {
                throw StoreError(.corrupt, "store record change seq \(change.seq) of device \(change.author) does not apply: \(error)")
            }
        }
    }

    /// Starts a background snapshot when enough ops were applied since the last one (fewer
    /// snapshots while `catchingUp`, and those written in line). The owner calls it when a
    /// catch-up ends.
    public func snapshotIfDue() {
        guard replica.mode != .opaque, !isPoisoned, snapshotFile.isOpen else { return }
        let behind = replica.opCount - snapshotFile.opsCovered
        guard snapshotPolicy.isDue(behind: behind, total: replica.opCount, catchingUp: catchingUp) else { return }
        let index = snapshotIndexSource?(self) // brings the index up to date with `replica` first
        if catchingUp {
            // In line while a peer is still sending: a background write holds a copy of the
            // replica, and the next received batch would copy every record of it (copy-on-write).
            snapshotFile.writeNow(replica, index: index)
        } else {
            snapshotFile.writeInBackground(replica, index: index)
        }
    }

    /// The index section of the snapshot loaded at open (once: the owner decodes it, patches it
    /// with `takeChangedContacts()`, and keeps it); nil when there was none or it was taken.
    public func takeSnapshotIndex() -> [UInt8]? {
        defer { loadedIndex = nil }
        return loadedIndex
    }

    /// Writes a snapshot now if any op was applied since the last one (clean shutdown), after
    /// waiting for a background write. Returns true when a snapshot of the present state is on
    /// disk afterwards.
    @discardableResult
    public func writeSnapshot() -> Bool {
        guard replica.mode != .opaque, !isPoisoned, snapshotFile.isOpen else { return false }
        snapshotFile.waitIdle()
        if replica.opCount == snapshotFile.opsCovered && (snapshotFile.hasIndex || snapshotIndexSource == nil) { return replica.opCount > 0 }
        let index = snapshotIndexSource?(self)
        return snapshotFile.writeNow(replica, index: index)
    }

    /// At process exit (the CLI): waits for a background snapshot, and writes one when the ops
    /// since the last are due by the policy (a small edit to a large store does not rewrite it).
    public func closeSnapshot() {
        guard replica.mode != .opaque, !isPoisoned, snapshotFile.isOpen else { return }
        snapshotFile.waitIdle()
        let behind = replica.opCount - snapshotFile.opsCovered
        // A snapshot without an index section is replaced once an index exists to save in it.
        let indexMissing = snapshotIndexSource != nil && !snapshotFile.hasIndex && replica.opCount >= snapshotPolicy.minimumOps
        if snapshotPolicy.isDue(behind: behind, total: replica.opCount) || (snapshotFile.hasTestPause && behind > 0) || indexMissing {
            let index = snapshotIndexSource?(self)
            snapshotFile.writeNow(replica, index: index)
        }
    }

    /// Where the snapshot is kept (for tests and recovery tools).
    public var snapshotPath: String { snapshotFile.path }
}
