import Foundation
import Hummingbird
import NIOCore

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
    static func readAll(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { return nil }
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
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
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = readAll(table) else { continue }
            for line in text.split(separator: "\n").dropFirst() where line.contains(local) {
                let columns = line.split(separator: " ", omittingEmptySubsequences: true)
                guard columns.count > 7, columns[1].hasSuffix(local), columns[2].hasSuffix(remote), let uid = uid_t(columns[7]) else { continue }
                return uid
            }
        }
        return nil
        #else
        // No /proc: not enforced (SECURITY.md); any loopback client is served as before.
        return getuid()
        #endif
    }
}

/// The request context of the API and the web page: Hummingbird's basics plus the connection's
/// two addresses (for `LoopbackPeer`).
struct KithRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?
    let localAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
        localAddress = source.channel.localAddress
    }
}
