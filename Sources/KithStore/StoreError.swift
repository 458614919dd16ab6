/// Why the store could not be opened, read or written.
public struct StoreError: Error, Equatable, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// Another process holds the store.
        public static let locked = Code("locked")
        /// The file or a record failed its integrity check (SQLite or AEAD).
        public static let corrupt = Code("corrupt")
        /// A schema newer than this build understands.
        public static let tooNew = Code("schema-too-new")
        /// An I/O or SQLite failure that is not corruption (disk full, permissions…).
        public static let io = Code("io")
        /// A change was refused by the replica.
        public static let rejected = Code("rejected")
        /// A contact reference matched nothing, or more than one contact.
        public static let notFound = Code("not-found")
        public static let ambiguous = Code("ambiguous")
        /// An earlier write failed; the in-memory state may be ahead of disk. Reopen the store.
        public static let poisoned = Code("poisoned")
        /// The store holds fewer changes than it acknowledged (`store.ack`), or is missing.
        public static let behind = Code("behind")
        /// The storage key of the key ring does not open this store at all.
        public static let keyRing = Code("key-ring")
        /// The data directory is read-only: only reads are possible.
        public static let readOnly = Code("read-only")
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { detail }
    public static func == (a: StoreError, b: StoreError) -> Bool { a.code == b.code }

    static func from(_ e: SQLiteError, _ what: String) -> StoreError {
        if e.isCorruption { return StoreError(.corrupt, "\(what): the database file is damaged: \(e.message)") }
        if e.isDiskFull { return StoreError(.io, "\(what): the disk is full; free some space (nothing was saved, nothing earlier was lost) (\(e.message))") }
        return StoreError(.io, "\(what): \(e.description)")
    }
}
