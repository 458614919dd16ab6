import KithNetwork
import Foundation
import Testing

/// `kith status --json` of a running daemon.
func statusJSON(_ data: String) throws -> [String: Any] {
    let r = try Binaries.run("kith", ["status", "--json", "--data-dir", data])
    guard r.status == 0 else { throw Timeout(what: "status: \(r.stderr)") }
    return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
}

/// Equivocations recorded in every scope of a running daemon.
func equivocations(_ data: String) throws -> Int {
    (try statusJSON(data)["scopes"] as? [[String: Any]] ?? []).reduce(0) { $0 + ($1["equivocations"] as? Int ?? 0) }
}

func copyDirectory(_ from: String, _ to: String) throws {
    try? FileManager.default.removeItem(atPath: to)
    let r = try Binaries.runAny("/bin/cp", ["-a", from, to])
    guard r.status == 0 else { throw Timeout(what: "cp: \(r.stderr)") }
}

/// Two devices of one member in `tmp`: "a" (made by `kith init`) and "b" (`kith device add`).
func twoDevices(_ tmp: TempDir) throws -> (a: String, b: String) {
    let a = tmp.path("a"), b = tmp.path("b")
    let made = try Binaries.run("kith", ["init", "--data-dir", a])
    guard made.status == 0 else { throw Timeout(what: "init: \(made.stderr)") }
    let added = try Binaries.run("kith", ["device", "add", "--from", a, "--data-dir", b])
    guard added.status == 0 else { throw Timeout(what: "device add: \(added.stderr)") }
    return (a, b)
}

func addContact(_ data: String, _ name: String) throws {
    let r = try Binaries.run("kith", ["contact", "add", "--given", name, "--data-dir", data])
    guard r.status == 0 else { throw Timeout(what: "add \(name) on \(data): \(r.stderr)") }
}

/// Issue 19, finding 1: a device restored from an older copy of its data directory never reuses
/// a seq of its own chain, and no acknowledged edit of either side is lost.
@Suite("a device restored from a backup", .serialized)
struct RestoreFromBackupTests {
    /// Two devices of one member; A dials B (B keeps running, A restarts on a new port). A's data
    /// directory is backed up, A makes `synced` edits that reach B, then A is stopped and the
    /// backup restored.
    func syncThenRestore(_ tmp: TempDir, synced: [String]) throws -> (a: String, b: String, db: Daemon, pb: Int) {
        let (a, b) = try twoDevices(tmp)
        try addContact(a, "Before")
        let db = try Daemon(data: b, logName: "b")
        let pb = try db.port
        let backup = tmp.path("a-backup")
        try copyDirectory(a, backup)
        let da = try Daemon(data: a, peers: [pb], logName: "1")
        _ = try da.port
        for n in synced { try addContact(a, n) }
        _ = try waitFor("B holds A's edits") { try names(b).isSuperset(of: synced) ? true : nil }
        da.stop()
        try FileManager.default.removeItem(atPath: a)
        try copyDirectory(backup, a)
        return (a, b, db, pb)
    }

    @Test func editsAfterARestoreAreWrittenAgainAfterTheRealTail() throws {
        let tmp = try TempDir()
        let (a, b, db, pb) = try syncThenRestore(tmp, synced: ["Synced1", "Synced2", "Synced3"])
        try addContact(b, "FromB")
        // The operator restored A's data directory from the backup, and edits offline.
        for n in ["Restored1", "Restored2"] { try addContact(a, n) }

        let da: Daemon? = try Daemon(data: a, peers: [pb], logName: "2")
        _ = try da!.port
        let all: Set<String> = ["Before", "Synced1", "Synced2", "Synced3", "FromB", "Restored1", "Restored2"]
        _ = try waitFor("A holds everything", seconds: 60) { try names(a) == all ? true : nil }
        _ = try waitFor("B holds everything", seconds: 60) { try names(b) == all ? true : nil }
        #expect(try equivocations(a) == 0)
        #expect(try equivocations(b) == 0)
        let notices = try statusJSON(a)["notices"] as? [String] ?? []
        #expect(notices.contains { $0.contains("restored from an older copy") }, "\(notices)")
        #expect(da!.logText.contains("restored from an older copy"))

        // Later edits on A go on working and reach B.
        try addContact(a, "Later")
        _ = try waitFor("B holds A's later edit", seconds: 60) { try names(b).contains("Later") ? true : nil }
        #expect(try equivocations(b) == 0)
        #expect(!db.logText.contains("signed two different changes"), "\(db.logText)")
        #expect(!da!.logText.contains("signed two different changes"), "\(da!.logText)")
        da!.stop()
        db.stop()
        // And every edit is durable on both sides.
        #expect(try names(a) == all.union(["Later"]))
        #expect(try names(b) == all.union(["Later"]))
    }

    @Test func reconnectingBeforeEditingDoesNotBreakLaterEdits() throws {
        let tmp = try TempDir()
        let (a, b, db, pb) = try syncThenRestore(tmp, synced: ["Synced1", "Synced2"])
        let da = try Daemon(data: a, peers: [pb], logName: "2")
        _ = try da.port
        _ = try waitFor("A took its own edits back", seconds: 60) { try names(a).isSuperset(of: ["Synced1", "Synced2"]) ? true : nil }
        try addContact(a, "AfterReconnect")
        _ = try waitFor("B holds the new edit", seconds: 60) { try names(b).contains("AfterReconnect") ? true : nil }
        #expect(try equivocations(a) == 0)
        #expect(try equivocations(b) == 0)
        da.stop()
        db.stop()
    }
}

/// Issue 19, finding 3: a missing, emptied or rolled-back store is refused with a clear message
/// (not silently started over), `kith repair` accepts it and peers fill it again; a damaged
/// storage key is reported as a key-ring problem.
@Suite("a damaged or missing store", .serialized)
struct DamagedStoreTests {
    func list(_ data: String) throws -> Binaries.Result {
        try Binaries.run("kith", ["contact", "list", "--data-dir", data])
    }

    @Test func aMissingOrEmptiedStoreIsAnError() throws {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        for n in ["One", "Two"] { try addContact(a, n) }
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: a + "/store.sqlite" + suffix) }
        let r = try list(a)
        #expect(r.status != 0 && r.stderr.contains("is missing") && r.stderr.contains("kith repair"), "\(r.stderr)")
        let d = try Daemon(data: a, logName: "missing")
        d.process.waitUntilExit()
        #expect(d.process.terminationStatus != 0)
        #expect(d.logText.contains("is missing"), "\(d.logText)")
        // An empty file in its place is no better.
        #expect(FileManager.default.createFile(atPath: a + "/store.sqlite", contents: nil))
        #expect(try list(a).stderr.contains("were acknowledged"))
        #expect(try Binaries.run("kith", ["repair", "--data-dir", a]).status == 0)
        #expect(try list(a).status == 0)
    }

    @Test func aLostWriteAheadLogIsRefusedAndRepairedFromPeers() throws {
        let tmp = try TempDir()
        let (a, b) = try twoDevices(tmp)
        let db = try Daemon(data: b, logName: "b")
        let pb = try db.port
        var da: Daemon? = try Daemon(data: a, peers: [pb], logName: "1")
        _ = try da!.port
        let added = (1...12).map { "Person\($0)" }
        for n in added { try addContact(a, n) }
        _ = try waitFor("B holds A's edits") { try names(b).isSuperset(of: added) ? true : nil }
        // A crash leaves the acknowledged edits in the write-ahead log; the log is then lost.
        da!.kill9()
        da = nil
        #expect(FileManager.default.fileExists(atPath: a + "/store.sqlite-wal"))
        try FileManager.default.removeItem(atPath: a + "/store.sqlite-wal")
        try? FileManager.default.removeItem(atPath: a + "/store.sqlite-shm")
        let r = try list(a)
        #expect(r.status != 0 && r.stderr.contains("were acknowledged") && r.stderr.contains("kith repair"), "\(r.stderr)")

        let repaired = try Binaries.run("kith", ["repair", "--data-dir", a])
        #expect(repaired.status == 0, "\(repaired.stderr)")
        da = try Daemon(data: a, peers: [pb], logName: "2")
        _ = try da!.port
        _ = try waitFor("A fetched its edits back", seconds: 60) { try names(a).isSuperset(of: added) ? true : nil }
        try addContact(a, "AfterRepair")
        _ = try waitFor("B holds the new edit", seconds: 60) { try names(b).contains("AfterRepair") ? true : nil }
        #expect(try equivocations(b) == 0)
        da!.stop()
        db.stop()
    }

    @Test func aFlippedStorageKeyIsAKeyRingProblem() throws {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        try addContact(a, "One")
        var ring = try [UInt8](Data(contentsOf: URL(fileURLWithPath: a + "/keyring")))
        ring[ring.count - 1] ^= 0x01 // the storage key is the last entry of an unprotected key ring
        try Data(ring).write(to: URL(fileURLWithPath: a + "/keyring"))
        let r = try list(a)
        #expect(r.status != 0 && r.stderr.contains("key ring") && r.stderr.contains("do not delete the store"), "\(r.stderr)")
        #expect(!r.stderr.contains("the database was modified or damaged"))
    }
}

/// kithd run through libfaketime's wrapper, its wall clock shifted by `offset` ("+2h"; the
/// monotonic clock is left alone, so timers and deadlines keep working). A bare LD_PRELOAD of
/// libfaketime loses the arguments of a Swift executable started by Foundation's Process. The
/// wrapper does not pass signals on: kithd is stopped by its own pid (in kithd.api).
final class FakeTimeDaemon {
    let process = Process()
    let data: String
    let log: String

    init(data: String, offset: String, peers: [Int]) throws {
        self.data = data
        log = data + "-faketime.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/faketime")
        process.arguments = ["-f", offset, Binaries.productsDirectory.appendingPathComponent("kithd").path,
                             "--data-dir", data, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"] + peers.flatMap { ["--peer", "127.0.0.1:\($0)"] }
        process.environment = ProcessInfo.processInfo.environment.merging(["FAKETIME_DONT_FAKE_MONOTONIC": "1"]) { _, new in new }
        process.standardError = FileHandle(forWritingAtPath: log)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    var port: Int {
        get throws {
            try waitFor("port file") { (try? String(contentsOfFile: self.data + "/kithd.port", encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } }
        }
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    func stop() {
        let api = (try? String(contentsOfFile: data + "/kithd.api", encoding: .utf8)) ?? ""
        if let pid = api.split(separator: " ").dropFirst().first.flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            kill(pid, SIGTERM)
            if (try? waitFor("kithd under faketime to stop", seconds: 15, { kill(pid, 0) != 0 ? true : nil })) == nil { kill(pid, SIGKILL) }
        }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

/// Runs kith through libfaketime's wrapper (kith's arguments do not survive a bare LD_PRELOAD).
func kithAt(_ offset: String, _ args: [String]) throws -> Binaries.Result {
    try Binaries.runAny("/usr/bin/faketime", ["-f", offset, Binaries.productsDirectory.appendingPathComponent("kith").path] + args,
                        environment: ["FAKETIME_DONT_FAKE_MONOTONIC": "1"])
}

/// Issue 19, finding 2: clock faults, through libfaketime.
@Suite("a computer with a wrong clock", .serialized)
struct ClockSkewTests {
    @Test func skewIsReportedAndRefusedEditsAreShownAsNotDelivered() throws {
        try #require(FileManager.default.fileExists(atPath: "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"), "libfaketime is missing: apt-get install faketime (scripts/ensure-deps)")
        let tmp = try TempDir()
        let (a, b) = try twoDevices(tmp)
        let da = try Daemon(data: a, logName: "a")
        let pa = try da.port
        let db = try FakeTimeDaemon(data: b, offset: "+2h", peers: [pa])
        defer { db.stop() }
        _ = try db.port
        let ahead = try waitFor("B reports its clock", seconds: 30) {
            (try statusJSON(b)["problems"] as? [String] ?? []).first { $0.contains("this computer's clock is 2 h ahead of the one peer it can compare with: check both clocks") }
        }
        #expect(!ahead.isEmpty)
        #expect(try statusJSON(b)["healthy"] as? Bool == false)
        _ = try waitFor("A reports the skew too", seconds: 30) {
            (try statusJSON(a)["problems"] as? [String] ?? []).contains { $0.contains("2 h behind the one peer it can compare with") } ? true : nil
        }
        #expect(db.logText.contains("this computer's clock is 2 h ahead of a peer's"))

        // An edit on B is refused by A for its stamp: B's author sees it as not delivered, with why.
        try addContact(b, "Future")
        let undelivered = try waitFor("B shows the edit as not delivered", seconds: 30) {
            (try statusJSON(b)["problems"] as? [String] ?? []).first { $0.contains("1 edit(s) not delivered") }
        }
        #expect(undelivered.contains("ahead of its clock") && undelivered.contains("fix this computer's clock"), "\(undelivered)")
        _ = try waitFor("A logs why it refused", seconds: 30) { da.logText.contains("ahead of this device's clock") ? true : nil }
        #expect(try !names(a).contains("Future"))
        da.stop()
        db.stop()
    }

    @Test func aClockThatJumpsBackDoesNotBlockOwnEdits() throws {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        let early = try kithAt("+3h", ["contact", "add", "--given", "Ahead", "--data-dir", a])
        #expect(early.status == 0, "\(early.stderr)")
        // The clock is set back 3 h: the device's own earlier stamps do not block it.
        try addContact(a, "Later")
        let d = try Daemon(data: a, logName: "a")
        _ = try d.port
        try addContact(a, "WithDaemon")
        #expect(try names(a) == ["Ahead", "Later", "WithDaemon"])
        d.stop()
    }

    @Test func aCertificateFromTheFutureNamesDatesAndTheClock() throws {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try kithAt("+1d", ["init", "--data-dir", a]).status == 0)
        let r = try Binaries.run("kith", ["whoami", "--data-dir", a])
        #expect(r.status != 0)
        #expect(r.stderr.contains("UTC") && r.stderr.contains("check this computer's clock"), "\(r.stderr)")
        #expect(r.stderr.range(of: #"dated \d{4}-\d{2}-\d{2} "#, options: .regularExpression) != nil, "\(r.stderr)")
    }
}

/// Issue 19, findings 5 and 6: connection limits and a log that floods cannot fill.
@Suite("connection floods and log flooding")
struct FloodTests {
    final class Closed: @unchecked Sendable {
        // @unchecked: only touched from the test's thread.
        var tickets: [String] = []
    }

    @Test func theGateEvictsUnauthenticatedConnectionsFirst() {
        let gate = ConnectionGate(maxTotal: 4, maxPerAddress: 2)
        let closed = Closed()
        func admit(_ address: String, _ name: String) -> Int? {
            switch gate.admit(address: address, close: { closed.tickets.append(name) }) {
            case let .success(a): return a.ticket
            case .failure: return nil
            }
        }
        let real = admit("10.0.0.1", "real")!
        gate.authenticated(real)
        _ = admit("10.0.0.9", "flood1")
        _ = admit("10.0.0.9", "flood2")
        // The flooding address is at its cap: its own oldest idle connection makes room.
        _ = admit("10.0.0.9", "flood3")
        #expect(closed.tickets == ["flood1"])
        _ = admit("10.0.0.2", "other")
        #expect(gate.openCount == 4)
        // Full: the newcomer takes the place of the flood's oldest idle connection, never the
        // authenticated peer's.
        let late = admit("10.0.0.3", "late")
        #expect(late != nil && closed.tickets == ["flood1", "flood2"])
        // Every connection authenticated: refused.
        let all = ConnectionGate(maxTotal: 1, maxPerAddress: 1)
        if case let .success(a) = all.admit(address: "x", close: {}) { all.authenticated(a.ticket) }
        #expect(all.admit(address: "y", close: {}).map(\.ticket) == .failure(.full))
        #expect(all.admit(address: "x", close: {}).map(\.ticket) == .failure(.tooManyFromAddress))
        gate.release(real)
        #expect(gate.openCount == 3)
    }

    @Test func repeatedWarningsAreCountedNotLogged() {
        final class Clock: @unchecked Sendable { var ms: UInt64 = 0 } // @unchecked: one thread
        let clock = Clock()
        let limiter = LogRateLimiter(burst: 3, intervalMilliseconds: 60_000, clock: { clock.ms })
        var logged: [Int] = []
        for _ in 0..<1_210 { if let s = limiter.admit("hostile") { logged.append(s) } }
        #expect(logged == [0, 0, 0])
        #expect(limiter.admit("other") == 0, "kinds are limited separately")
        clock.ms = 61_000
        #expect(limiter.admit("hostile") == 1_207)
        #expect(LogRateLimiter.suffix(1_204) == " (… and 1,204 more in the last minute)")
        #expect(LogRateLimiter.suffix(0) == "")
    }

    /// Opens `count` TCP connections to 127.0.0.1:`port`, each sending one byte, kept open.
    func idleConnections(_ count: Int, port: Int) -> [Int32] {
        (0..<count).compactMap { _ in
            guard let fd = connectLoopback(port) else { return nil }
            var timeout = timeval(tv_sec: 40, tv_usec: 0) // a read never hangs the test
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var one: UInt8 = 0x00
            _ = write(fd, &one, 1)
            return fd
        }
    }

    @Test func anIdleFloodDoesNotLockOutAPeerAndLogsSparingly() throws {
        let tmp = try TempDir()
        let (a, b) = try twoDevices(tmp)
        try addContact(b, "FromB")
        let da = try Daemon(data: a, logName: "a")
        let pa = try da.port
        let flood = idleConnections(300, port: pa)
        defer { for fd in flood { close(fd) } }
        #expect(flood.count > 250)
        // A real device still gets in and syncs.
        let db = try Daemon(data: b, peers: [pa], logName: "b")
        _ = try db.port
        _ = try waitFor("A holds B's contact despite the flood", seconds: 60) { try names(a).contains("FromB") ? true : nil }
        let evictions = da.count("closed a connection that had not authenticated")
        #expect(evictions >= 1 && evictions <= 5, "logged \(evictions) times for ~270 evictions")
        #expect(da.process.isRunning)
        da.stop()
        db.stop()
    }

    @Test func theHubHasAHandshakeDeadlineAndConnectionLimits() throws {
        let tmp = try TempDir()
        let hubDir = tmp.path("hub")
        #expect(try Binaries.run("kithd", ["hub", "init", "--name", "Example Party", "--hub-dir", hubDir]).status == 0)
        let hub = try Daemon(arguments: ["hub", "run", "--hub-dir", hubDir, "--address", "127.0.0.1:0"], log: hubDir + "-flood.log",
                             portFile: hubDir + "/hub.port")
        let port = try hub.port
        let flood = idleConnections(100, port: port)
        defer { for fd in flood { close(fd) } }
        _ = try waitFor("the hub logs the cap", seconds: 30) { hub.logText.contains("connection limit reached on the hub port") ? true : nil }
        // Idle connections are closed at the handshake deadline, and that is logged sparingly.
        _ = try waitFor("handshake deadline", seconds: 40) { hub.logText.contains("did not complete its handshake within 10 seconds") ? true : nil }
        let last = flood.last!
        var byte: UInt8 = 0
        #expect(read(last, &byte, 1) == 0, "the hub closed an idle connection")
        usleep(500_000)
        #expect(hub.count("did not complete its handshake") <= 5)
        #expect(hub.process.isRunning)
        hub.stop()
    }
}

/// A TCP connection to 127.0.0.1:`port`, or nil.
func connectLoopback(_ port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else { close(fd); return nil }
    return fd
}

/// A small tmpfs mounted for one test and unmounted after it (root only).
final class SmallDisk {
    let path: String
    init(_ path: String, size: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let r = try Binaries.runAny("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size),mode=0700", "tmpfs", path])
        guard r.status == 0 else { throw Timeout(what: "mount: \(r.stderr)") }
    }

    func remount(_ options: String) throws {
        let r = try Binaries.runAny("/bin/mount", ["-o", "remount,\(options)", path])
        guard r.status == 0 else { throw Timeout(what: "remount: \(r.stderr)") }
    }

    deinit { _ = try? Binaries.runAny("/bin/umount", ["-l", path]) }
}

/// Issue 19, findings 4 and 7: a full disk, a read-only data directory, the port file's mode.
@Suite("a full or read-only disk", .serialized,
       .enabled(if: geteuid() == 0, "skipped: these tests mount a small tmpfs, which needs root"))
struct DiskTests {
    @Test func writesFailClearlyWhileTheDiskIsFullAndRecoverWithoutARestart() throws {
        let tmp = try TempDir()
        let disk = try SmallDisk(tmp.path("small"), size: "8m")
        let a = disk.path + "/a"
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        try addContact(a, "Before")
        let d = try Daemon(data: a, logName: "full")
        _ = try d.port
        #expect(try mode(a + "/kithd.port") == 0o600)
        // Fill the disk.
        let filler = disk.path + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT, 0o600)
        let chunk = [UInt8](repeating: 7, count: 64 * 1024)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        close(fd)
        for n in ["Full1", "Full2", "Full3"] {
            let r = try Binaries.run("kith", ["contact", "add", "--given", n, "--data-dir", a])
            #expect(r.status != 0 && r.stderr.contains("the disk is full"), "\(r.stderr)")
        }
        let s = try statusJSON(a)
        #expect(s["healthy"] as? Bool == false)
        #expect((s["problems"] as? [String] ?? []).contains { $0.contains("cannot save changes") && $0.contains("disk is full") }, "\(s)")
        #expect(d.count("cannot save changes") == 1, "logged once, not per request")

        // Space is freed: the same daemon saves again.
        try FileManager.default.removeItem(atPath: filler)
        try addContact(a, "AfterSpace")
        _ = try waitFor("healthy again") { try statusJSON(a)["healthy"] as? Bool == true ? true : nil }
        #expect(d.logText.contains("the store can save changes again"))
        #expect(try names(a) == ["Before", "AfterSpace"])
        d.stop()
        #expect(try names(a) == ["Before", "AfterSpace"])
    }

    @Test func aReadOnlyDataDirectoryStillAllowsReading() throws {
        let tmp = try TempDir()
        let disk = try SmallDisk(tmp.path("ro"), size: "16m")
        let a = disk.path + "/a"
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Ada", "--family", "Lovelace", "--data-dir", a]).status == 0)
        let id = try contactID(a, "Ada")
        try disk.remount("ro")
        defer { try? disk.remount("rw") }
        #expect(try names(a) == ["Ada"])
        let search = try Binaries.run("kith", ["contact", "search", "lovelace", "--data-dir", a])
        #expect(search.status == 0 && search.stdout.contains("Ada"), "\(search.stderr)")
        let show = try Binaries.run("kith", ["contact", "show", "--data-dir", a, "--", id])
        #expect(show.status == 0 && show.stdout.contains("Lovelace"), "\(show.stderr)")
        let export = try Binaries.run("kith", ["export", "--format", "csv", "--data-dir", a])
        #expect(export.status == 0 && export.stdout.contains("Lovelace"), "\(export.stderr)")
        let add = try Binaries.run("kith", ["contact", "add", "--given", "Bob", "--data-dir", a])
        #expect(add.status != 0 && add.stderr.contains("read-only"), "\(add.stderr)")
    }
}
