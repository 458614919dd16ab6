import CSQLite

/// A failed SQLite call: the result code and SQLite's message, plus what Kith was doing.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public let context: String

    public var description: String { "\(context): \(message) (SQLite code \(code))" }

    /// SQLITE_CORRUPT or SQLITE_NOTADB: the file is damaged, not merely busy.
    public var isCorruption: Bool { code & 0xff == SQLITE_CORRUPT || code & 0xff == SQLITE_NOTADB }
    /// SQLITE_FULL, or an I/O error writing because the file system is full.
    public var isDiskFull: Bool { code & 0xff == SQLITE_FULL || message.contains("disk is full") }
}

/// One SQLite connection. Not Sendable: a connection belongs to one thread or task at a time
/// (the store serializes access).
final class SQLiteDatabase {
    let handle: OpaquePointer
    let path: String

    /// `readOnly` opens the file as immutable (a read-only data directory: no -wal or -shm can
    /// be made, and nothing can change it).
    init(path: String, readOnly: Bool = false) throws(SQLiteError) {
        var db: OpaquePointer?
        let rc: Int32
        if readOnly {
            let escaped = path.utf8.map { b -> String in
                b >= 0x80 || b == UInt8(ascii: "%") || b == UInt8(ascii: "?") || b == UInt8(ascii: "#") ? "%" + String(b, radix: 16, uppercase: true) : String(UnicodeScalar(b))
            }.joined()
            rc = sqlite3_open_v2("file:" + escaped + "?immutable=1", &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, nil)
        } else {
            rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        }
        guard rc == SQLITE_OK, let db else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let db { sqlite3_close_v2(db) }
            throw SQLiteError(code: rc, message: msg, context: "opening \(path)")
        }
        handle = db
        self.path = path
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, 5_000)
    }

    deinit {
        sqlite3_close_v2(handle)
    }

    func error(_ rc: Int32, _ context: String) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)), context: context)
    }

    func execute(_ sql: String) throws(SQLiteError) {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let msg = err.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(err)
            throw SQLiteError(code: rc, message: msg, context: "executing \(sql.prefix(60))")
        }
    }

    func prepare(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, "preparing \(sql.prefix(60))") }
        return SQLiteStatement(stmt, db: self)
    }

    /// Runs `body` in a write transaction (BEGIN IMMEDIATE … COMMIT), rolling back if it throws.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    func scalarInt(_ sql: String) throws(SQLiteError) -> Int64 {
        let s = try prepare(sql)
        guard try s.step() else { return 0 }
        return s.int(0)
    }
}

/// A prepared statement, finalized in `deinit`.
final class SQLiteStatement {
    let handle: OpaquePointer
    unowned let db: SQLiteDatabase

    init(_ handle: OpaquePointer, db: SQLiteDatabase) {
        self.handle = handle
        self.db = db
    }

    deinit { sqlite3_finalize(handle) }

    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ i: Int32, _ v: Int64) { sqlite3_bind_int64(handle, i, v) }

    func bind(_ i: Int32, _ bytes: some Collection<UInt8>) {
        let a = Array(bytes)
        a.withUnsafeBytes { buf in
            _ = sqlite3_bind_blob(handle, i, buf.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(buf.count), Self.transient)
        }
    }

    func bind(_ i: Int32, _ s: String) { sqlite3_bind_text(handle, i, s, -1, Self.transient) }

    /// True when a row is available; false when done.
    func step() throws(SQLiteError) -> Bool {
        let rc = sqlite3_step(handle)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        throw db.error(rc, "stepping \(String(cString: sqlite3_sql(handle)).prefix(60))")
    }

    func run() throws(SQLiteError) {
        _ = try step()
        reset()
    }

    func int(_ col: Int32) -> Int64 { sqlite3_column_int64(handle, col) }

    func blob(_ col: Int32) -> [UInt8] {
        let n = Int(sqlite3_column_bytes(handle, col))
        guard n > 0, let p = sqlite3_column_blob(handle, col) else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: p, count: n))
    }

    func text(_ col: Int32) -> String {
        guard let p = sqlite3_column_text(handle, col) else { return "" }
        return String(cString: p)
    }
}
