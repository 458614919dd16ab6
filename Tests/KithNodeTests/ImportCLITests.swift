import Foundation
import Testing

/// `kith import` end to end on real exports (Tests/Fixtures/interchange): the summary of what was
/// created, updated, left unchanged and dropped; re-import creating nothing; --dry-run writing
/// nothing; conflicts reported, not guessed.
@Suite("kith import, end to end")
struct ImportCLITests {
    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/interchange/\(name)").path
    }

    /// The last JSON line of a `--json` import: its summary.
    static func summary(_ r: Binaries.Result) throws -> [String: Any] {
        let last = try #require(r.stdout.split(separator: "\n").last, "no output; stderr: \(r.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
    }

    static func count(_ data: String) throws -> Int {
        let r = try Binaries.run("kith", ["contact", "list", "--data-dir", data, "--json"])
        return (try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [Any])?.count ?? -1
    }

    @Test func reimportMatchesDryRunAndConflicts() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        let van = Self.fixture("ngpvan-export.csv")

        let first = try Binaries.run("kith", ["import", van, "--data-dir", data, "--region", "US", "--json"])
        #expect(first.status == 0, "\(first.stderr)")
        let s1 = try Self.summary(first)
        #expect(s1["format"] as? String == "van-csv")
        #expect(s1["created"] as? Int == 2)
        #expect((s1["warnings"] as? [Any])?.count == 1) // Support ID 9
        #expect((s1["dropped"] as? [String: Int])?["Party"] == 2)
        #expect(first.stderr.contains("Support ID '9' dropped"))

        // The same file again: nothing created, nothing written.
        let again = try Binaries.run("kith", ["import", van, "--data-dir", data, "--region", "US", "--json"])
        let s2 = try Self.summary(again)
        #expect(s2["created"] as? Int == 0 && s2["updated"] as? Int == 0 && s2["unchanged"] as? Int == 2, "\(s2)")
        #expect(try Self.count(data) == 2)

        // The terminal summary names what was dropped.
        let human = try Binaries.run("kith", ["import", van, "--data-dir", data, "--region", "US"])
        #expect(human.stdout.contains("created 0, updated 0, unchanged 2"), "\(human.stdout)")
        #expect(human.stdout.contains("dropped: ") && human.stdout.contains("Party ×2"), "\(human.stdout)")

        // A dry run of another export writes nothing.
        let dry = try Binaries.run("kith", ["import", Self.fixture("actionnetwork-people.csv"), "--data-dir", data, "--dry-run", "--json"])
        let s3 = try Self.summary(dry)
        #expect(s3["event"] as? String == "dry-run" && s3["created"] as? Int == 3)
        #expect(try Self.count(data) == 2)

        // A row whose two emails belong to two contacts is a conflict: reported, not written.
        // A new person with an existing name and postal code is created, and only suggested as the same.
        let csv = tmp.path("rows.csv")
        try "First Name,Last Name,Email,Zip\r\nL,N,\"linh.nguyen@example.com; chidi@example.com\",1\r\nLinh,Nguyen,linh@new.example,43215-1234\r\nChidi,Okoro,chidi@example.com,\r\n"
            .write(toFile: csv, atomically: true, encoding: .utf8)
        let mixed = try Binaries.run("kith", ["import", csv, "--data-dir", data, "--json"])
        #expect(mixed.status == 2)
        let s4 = try Self.summary(mixed)
        #expect((s4["conflicts"] as? [String])?.count == 1, "\(s4)")
        #expect((s4["suggestions"] as? [String])?.count == 1, "\(s4)")
        #expect(s4["created"] as? Int == 1 && s4["unchanged"] as? Int == 1, "\(s4)")
        #expect(try Self.count(data) == 3)
    }

    /// Without kithd the import appends to the store and keeps its matching index there; a
    /// store changed since (here by `kith contact add`) is detected and the index rebuilt, so
    /// the new contact is matched, never missed through a stale index.
    @Test func theKeptIndexFollowsChangesMadeOutsideTheImport() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        let csv = tmp.path("people.csv")
        try "First Name,Last Name,Email\r\nAda,Lovelace,ada@example.org\r\nAlan,Turing,alan@example.org\r\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let first = try Self.summary(try Binaries.run("kith", ["import", csv, "--data-dir", data, "--json"]))
        #expect(first["created"] as? Int == 2)
        // Reading the store in between changes nothing: the kept index is still right.
        #expect(try Self.count(data) == 2)
        let again = try Self.summary(try Binaries.run("kith", ["import", csv, "--data-dir", data, "--json"]))
        #expect(again["unchanged"] as? Int == 2 && again["created"] as? Int == 0, "\(again)")
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Augusta", "--email", "ada@example.org", "--data-dir", data]).status == 0)
        let third = try Binaries.run("kith", ["import", csv, "--data-dir", data, "--json"])
        #expect(third.status == 2)
        let s3 = try Self.summary(third)
        #expect((s3["conflicts"] as? [String])?.count == 1 && s3["unchanged"] as? Int == 1, "\(s3)")
        #expect(try Self.count(data) == 3)
    }

    /// With kithd running the import goes through its API (the store is the daemon's); once it
    /// stopped, the next import appends itself, its index rebuilt from what kithd wrote.
    @Test func throughTheDaemonThenWithoutIt() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        let csv = tmp.path("people.csv")
        try "First Name,Last Name,Email\r\nAda,Lovelace,ada@example.org\r\nAlan,Turing,alan@example.org\r\n".write(toFile: csv, atomically: true, encoding: .utf8)
        let daemon = try Daemon(data: data, logName: "import")
        _ = try daemon.port
        _ = try waitFor("the API address") { FileManager.default.fileExists(atPath: data + "/kithd.api") ? true : nil }
        let first = try Binaries.run("kith", ["import", csv, "--data-dir", data, "--json"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(try Self.summary(first)["created"] as? Int == 2)
        let again = try Self.summary(try Binaries.run("kith", ["import", csv, "--data-dir", data, "--json"]))
        #expect(again["unchanged"] as? Int == 2 && again["created"] as? Int == 0, "\(again)")
        daemon.stop()
        let after = try Binaries.run("kith", ["import", csv, "--data-dir", data, "--json"])
        #expect(after.status == 0, "\(after.stderr)")
        let s = try Self.summary(after)
        #expect(s["unchanged"] as? Int == 2 && s["created"] as? Int == 0, "\(s)")
        #expect(try Self.count(data) == 2)
    }

    @Test func formatsAreListedForcedAndRefused() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        let list = try Binaries.run("kith", ["import", "--list-formats"])
        for name in ["vcard", "jcard", "google-csv", "outlook-csv", "actionnetwork-csv", "van-csv", "mobilize-csv"] {
            #expect(list.stdout.contains(name))
        }
        let badMap = try Binaries.run("kith", ["import", Self.fixture("outlook.csv"), "--data-dir", data, "--map", "Spouse=spouse"])
        #expect(badMap.status != 0 && badMap.stderr.contains("postal_code") && badMap.stderr.contains("external_id:<system>"))
        let binary = tmp.path("contacts.xlsx")
        try Data([0x50, 0x4B, 0x03, 0x04, 0, 0, 0, 0]).write(to: URL(fileURLWithPath: binary))
        let refused = try Binaries.run("kith", ["import", binary, "--data-dir", data])
        #expect(refused.status == 1 && refused.stderr.contains("binary file"), "\(refused.stderr)")
        let badRegion = try Binaries.run("kith", ["import", Self.fixture("outlook.csv"), "--data-dir", data, "--region", "XX"])
        #expect(badRegion.status != 0 && badRegion.stderr.contains("region 'XX'"))
        // Mobilize: three signup rows of one person become one contact with three events.
        let mob = try Binaries.run("kith", ["import", Self.fixture("mobilize-attendees.csv"), "--data-dir", data, "--region", "US", "--json"])
        #expect(try Self.summary(mob)["created"] as? Int == 2)
        let rosa = try Binaries.run("kith", ["contact", "search", "rosa@", "--data-dir", data, "--json"])
        let found = try JSONSerialization.jsonObject(with: Data(rosa.stdout.utf8)) as? [[String: Any]]
        #expect((found?.first?["events"] as? [Any])?.count == 3)
        for format in ["vcard", "google-csv", "actionnetwork-csv"] {
            let out = try Binaries.run("kith", ["export", "--data-dir", data, "--format", format])
            #expect(out.status == 0 && out.stdout.contains("Rosa"), "\(format)")
        }
    }
}
