import KithCRDT
import KithCrypto
#if canImport(Glibc)
import Glibc
#endif

/// Reading the `changes` rows: every row at a replay, only the tail after the snapshot and each
/// chain's head at a snapshot open, and the rest on demand (`StoreChangeReader`).
extension ContactStore {
    /// Decrypts and decodes one row, checking it holds the change its clear columns name.
    static func openRow(device deviceBytes: [UInt8], seq: UInt64, sealed: [UInt8], scope: ScopeID, key: SymmetricKey, path: String) throws(StoreError) -> Change {
        let record = "change seq \(seq) of device \(Base64URL.encode(deviceBytes))"
        guard let device = try? DeviceKey(bytes: deviceBytes) else {
            throw StoreError(.corrupt, "store record \(record) has a malformed device key")
        }
        let plain: [UInt8]
        do {
            plain = try XChaCha20Poly1305.open(sealed, key: key, associatedData: changeAssociatedData(scope: scope, device: device, seq: seq))
        } catch {
            throw StoreError(.corrupt, "store record \(record) failed authentication: the database was modified or damaged (\(path))")
        }
        let change: Change
        do {
            change = try Change(decoding: plain)
        } catch {
            throw StoreError(.corrupt, "store record \(record) does not apply: \(error)")
        }
        guard change.author == device, change.seq == seq else {
            throw StoreError(.corrupt, "store record \(record) holds a different change")
        }
        return change
    }

    /// The rows of `device` (every device when nil) with seq in `seqs`, decrypted, per device in
    /// seq order.
    func readChanges(device: DeviceKey? = nil, seqs: ClosedRange<UInt64> = 1...UInt64(Int64.max)) throws(StoreError) -> [(device: DeviceKey, changes: [Change])] {
        try Self.readChanges(db, device: device, seqs: seqs, scope: replica.scope, key: storageKey, path: path)
    }

    static func readChanges(_ db: SQLiteDatabase, device: DeviceKey?, seqs: ClosedRange<UInt64>, scope: ScopeID, key: SymmetricKey,
                            path: String) throws(StoreError) -> [(device: DeviceKey, changes: [Change])] {
        var held: [(device: DeviceKey, changes: [Change])] = []
        do {
            let s: SQLiteStatement
            if let device {
                s = try db.prepare("SELECT device, seq, sealed FROM changes WHERE scope = ? AND device = ? AND seq >= ? AND seq <= ? ORDER BY seq")
                s.bind(2, device.bytes)
                s.bind(3, Int64(clamping: seqs.lowerBound))
                s.bind(4, Int64(clamping: seqs.upperBound))
            } else {
                s = try db.prepare("SELECT device, seq, sealed FROM changes WHERE scope = ? ORDER BY device, seq")
            }
            s.bind(1, scope.bytes)
            while try s.step() {
                let change = try openRow(device: s.blob(0), seq: UInt64(s.int(1)), sealed: s.blob(2), scope: scope, key: key, path: path)
                if held.last?.device != change.author { held.append((change.author, [])) }
                held[held.count - 1].changes.append(change)
            }
        } catch let e as SQLiteError {
            throw StoreError.from(e, "reading \(path)")
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(.io, "reading \(path): \(error)")
        }
        return held
    }

    /// Per device of the scope, from the rows' clear columns (no row is opened): how many rows
    /// it has, and whether they are exactly seqs 1…count.
    func chainExtents() throws(StoreError) -> [DeviceKey: (count: Int, contiguous: Bool)] {
        var out: [DeviceKey: (count: Int, contiguous: Bool)] = [:]
        do {
            let s = try db.prepare("SELECT device, COUNT(*), MIN(seq), MAX(seq) FROM changes WHERE scope = ? GROUP BY device")
            s.bind(1, replica.scope.bytes)
            while try s.step() {
                guard let device = try? DeviceKey(bytes: s.blob(0)) else {
                    throw StoreError(.corrupt, "a store record of \(path) has a malformed device key")
                }
                let count = s.int(1)
                out[device] = (Int(count), s.int(2) == 1 && s.int(3) == count)
            }
        } catch let e as SQLiteError {
            throw StoreError.from(e, "reading \(path)")
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(.io, "reading \(path): \(error)")
        }
        return out
    }
}

/// The changes a store opened from its snapshot keeps in its rows, read on demand (a peer
/// catching up, an erasure) through a connection of its own, so any copy of the replica can
/// read them from any thread. A row that cannot be read is remembered (`failure`) and reported
/// by the store; nothing is served in its place.
///
/// `@unchecked Sendable`: the connection and `failures` are only touched under `mutex`.
final class StoreChangeReader: HeldChangeSource, @unchecked Sendable {
    private let path: String
    private let readOnly: Bool
    private let scope: ScopeID
    private let key: SymmetricKey
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var db: SQLiteDatabase?
    private var failures: String?
    /// Rows read so far (for tests and the benchmark).
    private var rowsRead = 0

    init(path: String, readOnly: Bool, scope: ScopeID, key: SymmetricKey) {
        self.path = path
        self.readOnly = readOnly
        self.scope = scope
        self.key = key
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        db = nil
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Why a held change could not be read, since the store opened (nil: none failed).
    var failure: String? { locked { failures } }
    var rowsReadCount: Int { locked { rowsRead } }

    func heldChanges(of device: DeviceKey, seqs: ClosedRange<UInt64>) -> [Change]? {
        locked {
            do throws(StoreError) {
                if db == nil {
                    do throws(SQLiteError) {
                        db = try SQLiteDatabase(path: path, readOnly: readOnly)
                    } catch {
                        throw StoreError.from(error, "opening \(path) to read held changes")
                    }
                }
                let read = try ContactStore.readChanges(db!, device: device, seqs: seqs, scope: scope, key: key, path: path)
                let changes = read.first?.changes ?? []
                rowsRead += changes.count
                guard changes.count == seqs.count else {
                    throw StoreError(.corrupt, "the store \(path) no longer holds changes \(seqs.lowerBound)…\(seqs.upperBound) of device \(device) (\(changes.count) found)")
                }
                return changes
            } catch {
                if failures == nil { failures = error.detail }
                return nil
            }
        }
    }
}
