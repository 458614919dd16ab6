import Foundation
import KithCrypto
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Files that hold secrets: created 0600 in a 0700 directory, written atomically and durably,
/// and refused on read when anyone but the owner could read or change them.
public enum SecureFiles {
    /// The directory holding `path`: "." for a bare relative name (Foundation's
    /// `deletingLastPathComponent` traps on one-component relative paths on Linux).
    static func parentDirectory(of path: String) -> String {
        var p = Substring(path)
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        guard let slash = p.lastIndex(of: "/") else { return "." }
        return slash == p.startIndex ? "/" : String(p[..<slash])
    }

    /// Creates `path` (and missing parents) as a private directory (0700), or checks that an
    /// existing one is private and ours.
    public static func preparePrivateDirectory(_ path: String) throws {
        var st = stat()
        if lstat(path, &st) != 0 {
            guard errno == ENOENT else { throw ioError("cannot inspect data directory \(path)") }
            let parent = parentDirectory(of: path)
            if !parent.isEmpty, parent != path, !FileManager.default.fileExists(atPath: parent) {
                do {
                    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
                } catch {
                    throw NodeError(.io, "cannot create \(parent): \(error.localizedDescription)")
                }
            }
            guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw ioError("cannot create data directory \(path)") }
            _ = chmod(path, 0o700) // mkdir honours the umask; make the mode exact.
        }
        try checkPrivateDirectory(path)
    }

    /// Refuses a directory that is not ours or that group/others can access.
    public static func checkPrivateDirectory(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { throw NodeError(.notInitialized, "data directory \(path) does not exist; run `kith init` first") }
            throw ioError("cannot inspect data directory \(path)")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw NodeError(.io, "\(path) is not a directory")
        }
        guard st.st_uid == geteuid() else {
            throw NodeError(.wrongOwner, "data directory \(path) is owned by uid \(st.st_uid), not by you (uid \(geteuid()))")
        }
        let mode = st.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw NodeError(.insecurePermissions, "data directory \(path) has mode \(octal(mode)); it must be private: chmod 700 \(path)")
        }
    }

    /// Writes `bytes` to `path` with mode 0600, atomically (temp file + rename) and durably
    /// (fsync of file and directory). Fails if `path` exists and `exclusive` is set.
    public static func writeSecret(_ bytes: [UInt8], to path: String, exclusive: Bool = true) throws {
        if exclusive, FileManager.default.fileExists(atPath: path) {
            throw NodeError(.alreadyInitialized, "\(path) already exists; refusing to overwrite it")
        }
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ioError("cannot create \(tmp)") }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        do {
            defer { close(fd) }
            _ = fchmod(fd, 0o600)
            try bytes.withUnsafeBytes { buf in
                var off = 0
                while off < buf.count {
                    let n = write(fd, buf.baseAddress! + off, buf.count - off)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw ioError("cannot write \(tmp)")
                    }
                    off += n
                }
            }
            guard fsync(fd) == 0 else { throw ioError("cannot flush \(tmp) to disk") }
        }
        if exclusive {
            // link() fails if the target appeared meanwhile, unlike rename().
            guard link(tmp, path) == 0 else { throw ioError("cannot create \(path)") }
            unlink(tmp)
        } else {
            guard rename(tmp, path) == 0 else { throw ioError("cannot move \(tmp) to \(path)") }
        }
        ok = true
        syncDirectory(of: path)
    }

    /// Reads a secret file, refusing symlinks, files not owned by us and files that group or
    /// others may read or write.
    public static func readSecret(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw NodeError(.notInitialized, "\(path) does not exist; run `kith init` first") }
            if errno == ELOOP { throw NodeError(.insecurePermissions, "\(path) is a symbolic link; key files must be regular files") }
            throw ioError("cannot open \(path)")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError("cannot inspect \(path)") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw NodeError(.io, "\(path) is not a regular file") }
        guard st.st_uid == geteuid() else {
            throw NodeError(.wrongOwner, "\(path) is owned by uid \(st.st_uid), not by you (uid \(geteuid()))")
        }
        let mode = st.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw NodeError(.insecurePermissions, "\(path) has mode \(octal(mode)); a key file must be readable by its owner only: chmod 600 \(path)")
        }
        return try readAll(fd: fd, path: path, expected: Int(st.st_size))
    }

    /// Reads a non-secret file (certificate, config).
    public static func readPublic(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw NodeError(.notInitialized, "\(path) does not exist; run `kith init` first") }
            throw ioError("cannot open \(path)")
        }
        defer { close(fd) }
        return try readAll(fd: fd, path: path, expected: 4096)
    }

    static func readAll(fd: Int32, path: String, expected: Int) throws -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(max(expected, 16))
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError("cannot read \(path)")
            }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<n])
        }
        ConstantTime.wipe(&chunk)
        return out
    }

    static func syncDirectory(of path: String) {
        let dir = parentDirectory(of: path)
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }

    static func ioError(_ what: String) -> NodeError {
        NodeError(.io, "\(what): \(String(cString: strerror(errno)))")
    }

    static func octal(_ mode: mode_t) -> String {
        "0" + String(mode, radix: 8)
    }
}
