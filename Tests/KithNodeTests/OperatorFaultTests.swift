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
        let a = tmp.path("a"), b = tmp.path("b")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["device", "add", "--from", a, "--data-dir", b]).status == 0)
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
        let a = tmp.path("a"), b = tmp.path("b")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["device", "add", "--from", a, "--data-dir", b]).status == 0)
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
