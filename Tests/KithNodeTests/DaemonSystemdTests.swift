import Foundation
import KithSystemd
import Testing

/// A unix datagram socket standing in for systemd's notification socket.
final class FakeSystemd {
    let path: String
    let fd: Int32

    /// `path` "@name" binds in the abstract namespace, as systemd may.
    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw Timeout(what: "socket") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (bytes.first == 0 ? 0 : 1)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) } }
        guard bound == 0 else { throw Timeout(what: "bind \(path): errno \(errno)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        if !path.hasPrefix("@") { unlink(path) }
    }

    /// Every datagram received so far, in order (collected across calls).
    private(set) var received: [String] = []

    @discardableResult
    func drain() -> [String] {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { break }
            received.append(String(decoding: buffer[0..<n], as: UTF8.self))
        }
        return received
    }

    /// Waits until a datagram satisfying `match` has arrived; returns its index.
    func waitFor(_ what: String, seconds: Double = 30, _ match: (String) -> Bool) throws -> Int {
        try KithNodeTests.waitFor(what, seconds: seconds) { drain().firstIndex(where: match) }
    }
}

@Suite("kithd under systemd", .serialized)
struct DaemonSystemdTests {
    @Test func notificationsReachARealDatagramSocket() throws {
        let tmp = try TempDir()
        let systemd = try FakeSystemd(path: tmp.path("notify"))
        let notifier = try #require(ServiceNotifier(environment: ["NOTIFY_SOCKET": systemd.path]))
        #expect(notifier.send(ServiceNotifier.ready(status: "up")) == nil)
        #expect(notifier.send(ServiceNotifier.stopping) == nil)
        _ = try systemd.waitFor("two datagrams") { $0 == "STOPPING=1" }
        #expect(systemd.received == ["READY=1\nSTATUS=up\nMAINPID=\(getpid())", "STOPPING=1"])

        let abstract = try FakeSystemd(path: "@kith-test-\(UUID().uuidString)")
        #expect(ServiceNotifier(environment: ["NOTIFY_SOCKET": abstract.path])!.send(ServiceNotifier.watchdog) == nil)
        _ = try abstract.waitFor("abstract socket") { $0 == "WATCHDOG=1" }

        // Nobody listening: an error to log, not a crash; no variable or a relative path: no notifier.
        #expect(ServiceNotifier(environment: ["NOTIFY_SOCKET": tmp.path("nobody")])!.send(ServiceNotifier.watchdog) != nil)
        #expect(ServiceNotifier(environment: [:]) == nil && ServiceNotifier(environment: ["NOTIFY_SOCKET": "relative"]) == nil)
        #expect(ServiceNotifier.reloading(monotonicMicroseconds: 42) == "RELOADING=1\nMONOTONIC_USEC=42")
    }

    @Test func watchdogIntervalIsHalfOfWhatSystemdAsks() {
        #expect(ServiceNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "60000000"], pid: 7) == .seconds(30))
        #expect(ServiceNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "7"], pid: 7) == .seconds(30))
        // Meant for another process (a parent's variable leaked into a child): no pings.
        #expect(ServiceNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "8"], pid: 7) == nil)
        #expect(ServiceNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "0"], pid: 7) == nil)
        #expect(ServiceNotifier.watchdogInterval(environment: [:], pid: 7) == nil)
    }

    /// A real kithd with $NOTIFY_SOCKET: READY=1 only once its port file exists (bound, stores
    /// open), watchdog pings, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 on SIGTERM.
    @Test func kithdTellsSystemdWhenItIsReadyReloadsAndStops() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        let systemd = try FakeSystemd(path: tmp.path("notify"))
        let d = try Daemon(data: data, environment: ["NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "1000000"], logName: "sd")
        let ready = try systemd.waitFor("READY=1") { $0.hasPrefix("READY=1\n") }
        #expect(FileManager.default.fileExists(atPath: data + "/kithd.port") && FileManager.default.fileExists(atPath: data + "/kithd.api"),
                "READY=1 came before the port was bound")
        #expect(systemd.received[ready].contains("MAINPID=\(d.process.processIdentifier)"))
        _ = try systemd.waitFor("watchdog pings") { _ in systemd.received.filter { $0 == "WATCHDOG=1" }.count >= 2 }

        kill(d.process.processIdentifier, SIGHUP)
        let reloading = try systemd.waitFor("RELOADING=1") { $0.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") }
        _ = try systemd.waitFor("READY=1 after the reload") { _ in
            systemd.received.indices.contains { $0 > reloading && systemd.received[$0].hasPrefix("READY=1") }
        }
        #expect(d.process.isRunning)

        kill(d.process.processIdentifier, SIGTERM)
        d.process.waitUntilExit()
        #expect(d.process.terminationStatus == 0)
        _ = try systemd.waitFor("STOPPING=1", seconds: 5) { $0 == "STOPPING=1" }
        #expect(!FileManager.default.fileExists(atPath: data + "/kithd.port"))
    }

    /// Under journald ($JOURNAL_STREAM = the device:inode of kithd's stderr) lines carry `<N>` and
    /// no timestamp; an inherited variable naming another stream changes nothing.
    @Test func kithdDetectsTheJournalByItsStderr() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        for journal in [true, false] {
            let log = data + "-journal-\(journal).log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try #require(FileHandle(forWritingAtPath: log))
            var st = stat()
            #expect(fstat(handle.fileDescriptor, &st) == 0)
            let p = Process()
            p.executableURL = Binaries.productsDirectory.appendingPathComponent("kithd")
            p.arguments = ["--data-dir", data, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"]
            p.environment = ProcessInfo.processInfo.environment.merging(["JOURNAL_STREAM": "\(st.st_dev):\(UInt64(st.st_ino) + (journal ? 0 : 1))"]) { _, new in new }
            p.standardError = handle
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) }; p.waitUntilExit() }
            let started = try waitFor("started line") {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").first { $0.contains("kithd started") }
            }
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            if journal {
                #expect(started.hasPrefix("<6>kithd: kithd started advertise="), "\(started)")
            } else {
                #expect(started.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info kithd: kithd started "#, options: .regularExpression) != nil, "\(started)")
            }
        }
    }

    /// Files a killed kithd left are removed at the next start, but never those of a live kithd:
    /// a second kithd on the same data directory fails on the store's lock and touches nothing.
    @Test func staleAddressFilesAreCleanedOnlyWithTheLock() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        let d = try Daemon(data: data, logName: "1")
        _ = try d.port
        d.kill9()
        for name in ["kithd.sock", "kithd.gui"] { try "stale\n".write(toFile: data + "/" + name, atomically: true, encoding: .utf8) }
        #expect(FileManager.default.fileExists(atPath: data + "/kithd.api"), "kill -9 should have left kithd.api behind")

        // Written by hand, not through the helper (which deletes the port file before it starts).
        try "1\n".write(toFile: data + "/kithd.port", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = Binaries.productsDirectory.appendingPathComponent("kithd")
        p.arguments = ["--data-dir", data, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"]
        let log = data + "-2.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let port = try waitFor("fresh port") { () -> Int? in
            guard let t = try? String(contentsOfFile: data + "/kithd.port", encoding: .utf8), let n = Int(t.trimmingCharacters(in: .whitespacesAndNewlines)), n != 1 else { return nil }
            return n
        }
        #expect(port > 1)
        #expect(!FileManager.default.fileExists(atPath: data + "/kithd.sock") && !FileManager.default.fileExists(atPath: data + "/kithd.gui"))
        let logText = try String(contentsOfFile: log, encoding: .utf8)
        #expect(logText.contains("removed a stale file left by a kithd that did not stop cleanly path=\(data)/kithd.sock"), "\(logText)")

        // A second kithd while the first runs: refused by the lock (exit 1), the live files stay.
        let second = try Binaries.run("kithd", ["--data-dir", data, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        #expect(second.status == 1 && second.stderr.contains("in use by another process"), "\(second.stderr)")
        #expect(try String(contentsOfFile: data + "/kithd.port", encoding: .utf8).contains("\(port)"))
        #expect(FileManager.default.fileExists(atPath: data + "/kithd.api"))
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
    }
}
