import Foundation
import KithNode
import Testing

/// A real `kithd` process on 127.0.0.1 with an OS-chosen port; killed when the test ends.
final class Daemon {
    let data: String
    let log: String
    let portFile: String
    let process = Process()

    convenience init(data: String, peers: [Int] = [], extra: [String] = [], environment: [String: String] = [:], logName: String) throws {
        try self.init(arguments: ["--data-dir", data, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"] + peers.flatMap { ["--peer", "127.0.0.1:\($0)"] } + extra,
                      log: data + "-" + logName + ".log", portFile: data + "/kithd.port", data: data, environment: environment)
    }

    /// Any `kithd` invocation that writes its bound port to `portFile` (`environment` is added
    /// to this process's).
    init(arguments: [String], log: String, portFile: String, data: String = "", environment: [String: String] = [:]) throws {
        self.data = data
        self.log = log
        self.portFile = portFile
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = Binaries.productsDirectory.appendingPathComponent("kithd")
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        process.standardError = FileHandle(forWritingAtPath: log)
        process.standardOutput = FileHandle.nullDevice
        try? FileManager.default.removeItem(atPath: portFile)
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    var port: Int {
        get throws {
            try waitFor("port file") { (try? String(contentsOfFile: self.portFile, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } }
        }
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    func count(_ needle: String) -> Int { logText.components(separatedBy: needle).count - 1 }

    func stop() {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

struct Timeout: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Polls `check` every 50 ms for up to `seconds`.
func waitFor<T>(_ what: String, seconds: Double = 20, _ check: () throws -> T?) throws -> T {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if let v = try check() { return v }
        usleep(50_000)
    }
    throw Timeout(what: what)
}

func names(_ data: String) throws -> Set<String> {
    let r = try Binaries.run("kith", ["contact", "list", "--json", "--data-dir", data])
    guard r.status == 0 else { throw Timeout(what: "list: \(r.stderr)") }
    let list = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [[String: Any]]
    return Set(list.compactMap { $0["givenName"] as? String })
}

@Suite("kithd processes syncing on loopback", .serialized)
struct SyncDaemonTests {
    @Test func threeDevicesConvergeThroughARelayAndSurviveKill9() throws {
        let tmp = try TempDir()
        let a = tmp.path("a"), b = tmp.path("b"), c = tmp.path("c")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        for d in [b, c] { #expect(try Binaries.run("kith", ["device", "add", "--from", a, "--data-dir", d]).status == 0) }
        for (d, n) in [(a, "Alpha"), (b, "Bravo"), (c, "Charlie")] {
            #expect(try Binaries.run("kith", ["contact", "add", "--given", n, "--data-dir", d]).status == 0)
        }
        // A line: C — B — A. C never talks to A; B relays.
        var da: Daemon? = try Daemon(data: a, logName: "1")
        let pa = try da!.port
        var db: Daemon? = try Daemon(data: b, peers: [pa], logName: "1")
        let pb = try db!.port
        var dc: Daemon? = try Daemon(data: c, peers: [pb], logName: "1")
        _ = try waitFor("c caught up") { dc!.count("caught up with peer") >= 1 ? true : nil }
        _ = try waitFor("b caught up twice") { db!.count("caught up with peer") >= 2 ? true : nil }

        // Garbage and a stranger on A's port are refused; A keeps serving.
        try sendRaw(port: pa, bytes: [UInt8](repeating: 0x41, count: 5_000))
        try sendRaw(port: pa, bytes: [0xff, 0xff] + [UInt8](repeating: 1, count: 100))
        usleep(300_000)
        #expect(da!.process.isRunning)
        // While the daemons run, the CLI goes through their control sockets: an edit on C
        // reaches A through B within moments.
        _ = try waitFor("A sees all three") { try names(a) == ["Alpha", "Bravo", "Charlie"] ? true : nil }
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Echo", "--data-dir", c]).status == 0)
        _ = try waitFor("Echo relayed to A", seconds: 10) { try names(a).contains("Echo") ? true : nil }
        let status = try Binaries.run("kith", ["status", "--json", "--data-dir", b])
        let s = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as! [String: Any]
        #expect((s["peers"] as? [String])?.count == 2 && s["contacts"] as? Int == 4)
        let scopes = s["scopes"] as? [[String: Any]] ?? []
        #expect(scopes.count == 1 && scopes[0]["kind"] as? String == "private" && scopes[0]["peers"] as? Int == 2)
        let peers = try kithJSON(["peers", "--data-dir", b]) as! [[String: Any]]
        #expect(peers.count == 2 && peers.allSatisfy { $0["ownDevice"] as? Bool == true && $0["lastCaughtUp"] is NSNumber })
        for d in [da, db, dc] { d!.stop() }
        for d in [a, b, c] { #expect(try names(d) == ["Alpha", "Bravo", "Charlie", "Echo"], "\(d)") }

        // kill -9 B while it is connected; add a contact on B offline; restart: everything converges.
        da = try Daemon(data: a, logName: "2")
        let pa2 = try da!.port
        db = try Daemon(data: b, peers: [pa2], logName: "2")
        _ = try waitFor("b reconnects") { db!.count("caught up with peer") >= 1 ? true : nil }
        db!.kill9()
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Delta", "--data-dir", b]).status == 0)
        db = try Daemon(data: b, peers: [pa2], logName: "3")
        _ = try waitFor("b caught up after restart") { db!.count("caught up with peer") >= 1 ? true : nil }
        _ = try waitFor("a caught up again") { da!.count("caught up with peer") >= 2 ? true : nil }
        usleep(300_000)
        da!.stop()
        db!.stop()
        #expect(try names(a) == ["Alpha", "Bravo", "Charlie", "Delta", "Echo"])
        #expect(try names(b) == ["Alpha", "Bravo", "Charlie", "Delta", "Echo"])
        #expect(da!.logText.contains("kithd stopped"))
        dc = nil
    }

    @Test func kill9DuringInitialSyncThenConverge() throws {
        let tmp = try TempDir()
        let a = tmp.path("a"), b = tmp.path("b")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["device", "add", "--from", a, "--data-dir", b]).status == 0)
        let (vcf, _) = syntheticVCard(count: 3_000, seed: 5)
        try vcf.write(toFile: tmp.path("c.vcf"), atomically: true, encoding: .utf8)
        #expect(try Binaries.run("kith", ["import", tmp.path("c.vcf"), "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Golf", "--data-dir", b]).status == 0) // acknowledged on B
        let da = try Daemon(data: a, logName: "k")
        let port = try da.port
        var db = try Daemon(data: b, peers: [port], logName: "k1")
        _ = try waitFor("b authenticated", seconds: 20) { db.logText.contains("peer authenticated") ? true : nil }
        db.kill9() // mid-sync: the 3,000 contacts are still streaming
        db = try Daemon(data: b, peers: [port], logName: "k2")
        func contacts(_ d: String) throws -> Int? {
            let r = try Binaries.run("kith", ["status", "--json", "--data-dir", d])
            guard r.status == 0, let s = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else { return nil }
            return s["contacts"] as? Int
        }
        _ = try waitFor("B holds everything", seconds: 90) { try contacts(b) == 3_001 ? true : nil }
        _ = try waitFor("A holds Golf", seconds: 90) { try contacts(a) == 3_001 ? true : nil }
        da.stop()
        db.stop()
        #expect(try names(b).contains("Golf"))
    }

    @Test func devicesFindEachOtherOnTheLAN() throws {
        let tmp = try TempDir()
        let a = tmp.path("a"), b = tmp.path("b")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["device", "add", "--from", a, "--data-dir", b]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Foxtrot", "--data-dir", a]).status == 0)
        // A multicast port of our own, so a real kithd on this machine is not involved.
        let port = 20_000 + Int(getpid() % 20_000)
        for d in [a, b] {
            try "lan_discovery = true\nlan_interface = \"127.0.0.1\"\nlan_port = \(port)\n".write(toFile: d + "/kithd.toml", atomically: true, encoding: .utf8)
        }
        let da = try Daemon(data: a, logName: "lan"), db = try Daemon(data: b, logName: "lan")
        _ = try waitFor("found on the LAN", seconds: 30) { db.logText.contains("found a peer on the LAN") || da.logText.contains("found a peer on the LAN") ? true : nil }
        _ = try waitFor("Foxtrot reaches B", seconds: 20) { try names(b).contains("Foxtrot") ? true : nil }
        da.stop()
        db.stop()
    }

    @Test func anotherMembersDeviceIsRefused() throws {
        let tmp = try TempDir()
        let a = tmp.path("a"), x = tmp.path("x")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["init", "--data-dir", x]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Secret", "--data-dir", a]).status == 0)
        let da = try Daemon(data: a, logName: "1")
        let dx = try Daemon(data: x, peers: [try da.port], logName: "1")
        _ = try waitFor("refusal") { da.logText.contains("is not allowed to sync") ? true : nil }
        da.stop()
        dx.stop()
        #expect(try names(x).isEmpty)
    }
}

/// Opens a TCP connection to 127.0.0.1:port, writes `bytes`, closes.
func sendRaw(port: Int, bytes: [UInt8]) throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw Timeout(what: "socket") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else { throw Timeout(what: "connect") }
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
}

@Suite("kithd resource limits")
struct ResourceLimitTests {
    @Test func aSilentConnectionIsDroppedAfterTheHandshakeDeadline() throws {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        let da = try Daemon(data: a, logName: "silent")
        let port = try da.port
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(rc == 0)
        // Say nothing: the daemon closes the connection after 10 s and keeps running.
        _ = try waitFor("handshake deadline", seconds: 20) { da.logText.contains("handshake not completed within 10 seconds") ? true : nil }
        var byte: UInt8 = 0
        #expect(read(fd, &byte, 1) == 0, "the daemon closed its end")
        #expect(da.process.isRunning)
        da.stop()
    }
}
