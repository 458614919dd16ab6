import Foundation
import KithCRDT
import KithNode
import KithStore
import Testing

@Suite("Durability: kill -9 during a snapshot write", .serialized)
struct SnapshotDurabilityTests {
    /// `kith import`, then an open, leave a snapshot; `kith contact add` commits, then is killed -9 halfway
    /// through writing the next snapshot (the test hook stops it there). The next open finds the
    /// old snapshot intact, deletes the half-written file, applies the added contact as the tail,
    /// and holds everything acknowledged.
    @Test func killDuringSnapshotWriteLosesNothing() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        let (vcf, ids) = syntheticVCard(count: 3_000, seed: 21)
        let file = tmp.path("contacts.vcf")
        try vcf.write(toFile: file, atomically: true, encoding: .utf8)
        let imported = try Binaries.run("kith", ["import", file, "--data-dir", data, "--default-country", "1"])
        #expect(imported.status == 0, "\(imported.stderr)")
        // The import appends to the store without its replica; the next open of the (large)
        // store writes the snapshot.
        #expect(try Binaries.run("kith", ["export", "--data-dir", data]).status == 0)
        let snapshot = data + "/store.snapshot"
        #expect(FileManager.default.fileExists(atPath: snapshot), "the first open after a large import leaves a snapshot")
        let before = (try? Data(contentsOf: URL(fileURLWithPath: snapshot))) ?? Data()

        let marker = tmp.path("paused")
        let p = Process()
        p.executableURL = Binaries.productsDirectory.appendingPathComponent("kith")
        p.arguments = ["contact", "add", "--given", "Killian", "--family", "Snapshotsson", "--data-dir", data]
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "KITH_DATA_DIR")
        env["KITH_TEST_SNAPSHOT_PAUSE"] = marker
        p.environment = env
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: marker) && p.isRunning && Date() < deadline { usleep(20_000) }
        #expect(FileManager.default.fileExists(atPath: marker), "the snapshot write never started")
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        #expect(p.terminationReason == .uncaughtSignal)
        // Half a file was left beside the intact old snapshot.
        #expect(FileManager.default.fileExists(atPath: snapshot + ".tmp"))
        #expect(((try? Data(contentsOf: URL(fileURLWithPath: snapshot))) ?? Data()) == before)

        let store = try NodeAccess.openStore(DataDirectory(path: data), passphrase: nil)
        guard case let .loaded(tail) = store.snapshotStatus else {
            Issue.record("the old snapshot was not used: \(store.snapshotStatus)")
            return
        }
        #expect(tail >= 1)
        #expect(!FileManager.default.fileExists(atPath: snapshot + ".tmp"))
        #expect(store.replica.contacts().count == 3_001)
        #expect(ids.allSatisfy { store.replica.contact($0) != nil })
        #expect(store.replica.contacts().contains { $0[.givenName] == "Killian" && $0[.familyName] == "Snapshotsson" })
    }
}
