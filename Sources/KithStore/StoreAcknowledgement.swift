import KithCRDT
import KithCrypto
#if canImport(Glibc)
import Glibc
#endif

/// What a store has durably acknowledged, kept in a small sealed file beside it (`store.ack`,
/// Protocol/store.md §4): the number of changes it held and this device's own chain head after
/// its latest write. A store found behind it on open lost acknowledged writes (a deleted or
/// truncated write-ahead log, a file replaced by an older copy) and is refused instead of
/// silently starting over.
struct StoreAcknowledgement: Equatable {
    static let domain = Array("kith/store/ack/v1".utf8)
    static let size = 8 + 8 + 32

    var changes: UInt64
    var ownSeq: UInt64
    var ownHead: ChangeID

    init(changes: UInt64, ownSeq: UInt64, ownHead: ChangeID) {
        self.changes = changes
        self.ownSeq = ownSeq
        self.ownHead = ownHead
    }

    init(_ replica: Replica, device: DeviceKey) {
        let head = replica.head(of: device)
        self.init(changes: UInt64(replica.changeCount), ownSeq: head?.seq ?? 0, ownHead: head?.id ?? .zero)
    }

    static func associatedData(_ scope: ScopeID) -> [UInt8] {
        domain + [UInt8(scope.bytes.count)] + scope.bytes
    }

    func sealed(scope: ScopeID, key: SymmetricKey) -> [UInt8] {
        var plain: [UInt8] = []
        plain.appendBigEndian(changes)
        plain.appendBigEndian(ownSeq)
        plain += ownHead.bytes
        return XChaCha20Poly1305.seal(plain, key: key, associatedData: Self.associatedData(scope))
    }

    /// What reading the file gave.
    enum Read {
        case absent
        case unreadable
        case valid(StoreAcknowledgement)
    }

    static func read(_ path: String, scope: ScopeID, key: SymmetricKey) -> Read {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT ? .absent : .unreadable }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = Glibc.read(fd, &buf, buf.count)
        guard n > 0, let plain = try? XChaCha20Poly1305.open(Array(buf[0..<n]), key: key, associatedData: associatedData(scope)),
              plain.count == size, let head = try? ChangeID(bytes: plain[16...]) else { return .unreadable }
        func u64(_ at: Int) -> UInt64 { plain[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) } }
        return .valid(StoreAcknowledgement(changes: u64(0), ownSeq: u64(8), ownHead: head))
    }

    /// Writes the file atomically and durably (temp file, fsync, rename, fsync of the directory).
    func write(_ path: String, scope: ScopeID, key: SymmetricKey) throws(StoreError) {
        let bytes = sealed(scope: scope, key: key)
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError(.io, "cannot write \(tmp): \(String(cString: strerror(errno)))") }
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw StoreError(.io, "cannot write \(path): \(reason)")
        }
        let dir = open(String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            _ = fsync(dir)
            close(dir)
        }
    }
}
