import Foundation
import Hummingbird
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Which local user a loopback connection comes from. A browser sends a `127.0.0.1` cookie to
/// every port of that address, so a server another user of this computer runs on another port
/// receives the session cookie as soon as the browser visits it; replayed from that user's own
/// client it would open every page. On loopback only connections of kithd's own user are served.
enum LoopbackPeer {
    /// Whether `remote` (the client) reaching `local` (this listener) may be served: not a
    /// loopback address (the TLS GUI listener's LAN clients, who need the password), or a
    /// loopback socket owned by the user kithd runs as.
    static func isOwnUser(remote: SocketAddress?, local: SocketAddress?) -> Bool {
        guard let remote, let local, let clientPort = remote.port, let serverPort = local.port else { return false }
        guard isLoopback(remote) else { return true }
        return owner(clientPort: clientPort, serverPort: serverPort) == getuid()
    }

    /// A /proc file to its end (its size reads as 0, and it is read in pages: a busy machine's
    /// socket table is many pages long).
    static func readAll(_ path: String) -> Data? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { return nil }
            if n == 0 { break }
            bytes.append(contentsOf: buffer[0..<n])
        }
        return bytes
    }

    /// Per connection, the answer of `isOwnUser` (reading the kernel's socket table costs
    /// milliseconds on a busy machine; a browser keeps its few connections open). Dropped when
    /// the connection closes.
    private static let answers = Mutex<[ObjectIdentifier: Bool]>([:])

    static func isOwnUser(_ channel: any Channel) -> Bool {
        let id = ObjectIdentifier(channel)
        if let known = answers.withLock({ $0[id] }) { return known }
        let answer = isOwnUser(remote: channel.remoteAddress, local: channel.localAddress)
        answers.withLock { $0[id] = answer }
        channel.closeFuture.whenComplete { _ in answers.withLock { $0[id] = nil } }
        return answer
    }

    static func isLoopback(_ address: SocketAddress) -> Bool {
        guard let ip = address.ipAddress else { return false }
        return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
    }

    /// The uid owning the client end of a loopback TCP connection (Linux: the `uid` column of the
    /// row of `/proc/net/tcp` or `tcp6` whose local port is the client's and remote port is
    /// ours); nil when no such socket is listed.
    static func owner(clientPort: Int, serverPort: Int) -> uid_t? {
        #if os(Linux)
        let local = String(format: ":%04X", clientPort), remote = String(format: ":%04X", serverPort)
        let needle = Data((local + " ").utf8)
        var readable = false
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let all = readAll(table) else { continue }
            readable = true
            // Foundation finds the rows naming the client's port (a busy machine lists hundreds
            // of sockets; only those rows are split into columns).
            var from = all.startIndex
            while let hit = all.range(of: needle, in: from..<all.endIndex) {
                from = hit.upperBound
                let start = all[..<hit.lowerBound].lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? all.startIndex
                let end = all[hit.upperBound...].firstIndex(of: UInt8(ascii: "\n")) ?? all.endIndex
                let columns = String(decoding: all[start..<end], as: UTF8.self).split(separator: " ")
                if columns.count > 7, columns[1].hasSuffix(local), columns[2].hasSuffix(remote), let uid = uid_t(columns[7]) { return uid }
            }
        }
        // No /proc to read (a sandbox without it): not enforceable, and another user cannot
        // hide kithd's /proc; serve as before rather than refuse kithd's own user too.
        return readable ? nil : getuid()
        #else
        // No /proc: not enforced (SECURITY.md); any loopback client is served as before.
        return getuid()
        #endif
    }
}

/// The request context of the API and the web page: Hummingbird's basics plus whether the
/// connection is kithd's own user's (`LoopbackPeer`).
struct KithRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// `LoopbackPeer.isOwnUser` of the request's connection.
    let ownUser: Bool

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        ownUser = LoopbackPeer.isOwnUser(source.channel)
    }
}
