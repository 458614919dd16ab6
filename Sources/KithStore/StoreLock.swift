#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive advisory lock (`flock`) on `<data-dir>/store.lock`, held for the lifetime of
/// the object, so that two processes never write one store. The file records the holder's pid.
final class StoreLock {
    private let fd: Int32
    let path: String

    /// `readOnly`: the data directory cannot be written (a read-only mount): no writer can open
    /// the store either, so a shared lock is taken when the lock file exists, and none otherwise.
    init(path: String, readOnly: Bool = false) throws(StoreError) {
        self.path = path
        if readOnly {
            fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd >= 0, flock(fd, LOCK_SH | LOCK_NB) != 0 {
                close(fd)
                throw StoreError(.locked, "the store is in use by another process; if kithd is running, stop it or use the CLI against it")
            }
            return
        }
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError(.io, "cannot open lock file \(path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buf = [UInt8](repeating: 0, count: 32)
            let n = read(fd, &buf, 31)
            close(fd)
            let holder = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingCharacters() : "?"
            throw StoreError(.locked, "the store is in use by another process (pid \(holder)); if kithd is running, stop it or use the CLI against it")
        }
        _ = ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = fd
    }

    deinit {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
    }
}

extension String {
    func trimmingCharacters() -> String {
        String(self.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}
