import Foundation
import KithCRDT
import KithCrypto
import KithStore
#if canImport(Glibc)
import Glibc
#endif

/// The CLI's view of a node whose store a running kithd holds: it talks to the daemon's control
/// socket (Protocol/control.md). Reads work on a replica rebuilt from the daemon's changes;
/// writes are committed (durably) by the daemon, which also gossips them.
public final class DaemonBackend: ContactBackend {
    private let fd: Int32
    private var inbox: [UInt8] = []
    public private(set) var replica: Replica
    private var indexes: [ContactIndex.Kind: ContactIndex] = [:]

    /// Connects to `<data-dir>/kithd.sock`; nil when no daemon answers there.
    public init?(directory: DataDirectory) throws {
        let path = directory.path + "/kithd.sock"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(fd); return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            return nil // a stale socket of a daemon that is gone
        }
        self.fd = fd
        self.replica = Replica(scope: ScopeID(name: "pending"))
        try reload()
    }

    deinit { close(fd) }

    struct DaemonError: Error, CustomStringConvertible {
        let description: String
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw DaemonError(description: "lost the connection to kithd") }
            off += n
        }
    }

    /// Appends whatever the socket has next to `inbox` (blocking), retrying on EINTR.
    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw DaemonError(description: "kithd closed the control connection") }
            inbox += chunk[0..<n]
            return
        }
    }

    private func read(count: Int) throws -> [UInt8] {
        while inbox.count < count { try fill() }
        defer { inbox.removeFirst(count) }
        return Array(inbox[0..<count])
    }

    private func readLine() throws -> [UInt8] {
        while true {
            if let nl = inbox.firstIndex(of: 0x0A) {
                defer { inbox.removeFirst(nl + 1) }
                return Array(inbox[0..<nl])
            }
            try fill()
        }
    }

    /// Sends one request and returns the daemon's JSON answer (throwing its error, if any).
    public func request(_ object: [String: Any]) throws -> [String: Any] {
        try writeAll(Array(try JSONSerialization.data(withJSONObject: object)) + [0x0A])
        guard let answer = try JSONSerialization.jsonObject(with: Data(try readLine())) as? [String: Any] else {
            throw DaemonError(description: "kithd sent an unreadable answer")
        }
        guard answer["ok"] as? Bool == true else {
            throw DaemonError(description: (answer["error"] as? String) ?? "kithd refused the request")
        }
        return answer
    }

    /// Rebuilds the local view from every change the daemon holds.
    public func reload() throws {
        let status = try request(["op": "status"])
        let header = try request(["op": "changes"])
        let count = header["count"] as? Int ?? 0
        var changes: [Change] = []
        for _ in 0..<count {
            let n = Int(UInt32(bigEndianBytes: try read(count: 4)))
            changes.append(try Change(decoding: try read(count: n)))
        }
        let scope = changes.first?.scope ?? ScopeID(name: status["scope"] as? String ?? "private")
        var r = Replica(scope: scope, configuration: ReplicaConfiguration(maxFutureSkewMilliseconds: .max / 2, verifySignatures: false))
        for c in changes { _ = try r.receive(c, nowMilliseconds: 0) }
        replica = r
        indexes = [:]
    }

    @discardableResult
    public func commit(batches: [[ContactEdit]]) throws(StoreError) -> [Change] {
        do {
            let batchesText = batches.map { $0.map { Base64URL.encode($0.encoded) } }
            _ = try request(["op": "commit", "batches": batchesText])
            try reload()
            return []
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(.io, "kithd: \(error)")
        }
    }

    public func search(_ query: String) -> Set<ContactID> {
        let kind = ContactIndex.kind(of: query)
        if indexes[kind] == nil { indexes[kind] = ContactIndex(replica: replica, kinds: [kind]) }
        return indexes[kind]!.search(query)
    }

    public func resolve(_ reference: String) throws(StoreError) -> ContactID {
        try replica.resolve(reference)
    }
}
