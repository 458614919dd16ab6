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
