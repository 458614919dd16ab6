import Foundation
import Testing

/// The retraction ledger with real processes (Protocol/consent.md §4.5, §6): a hub exports a
/// member's record to a CSV file for staff; the member revokes; the signed receipt says "erased
/// at the hub; 1 file export awaiting staff confirmation"; staff confirm; the member's daemon asks
/// again on its own and `kith consent show` / `kith audit` then say the deletion finished.
@Suite("Retractions: kithd processes")
struct RetractionDaemonTests {
    @Test func theMembersReceiptFollowsEveryPlaceToTheEnd() throws {
        let tmp = try TempDir()
        let hubDir = tmp.path("hub"), a = tmp.path("alice"), exports = tmp.path("exports")
        let initHub = try Binaries.run("kithd", ["hub", "init", "--name", "Example Party", "--hub-dir", hubDir])
        #expect(initHub.status == 0, "\(initHub.stderr)")
        try "export_dir = \"\(exports)\"\nexport_formats = [\"van-csv\"]\ndeletions_overdue_after_hours = 1\n"
            .write(toFile: hubDir + "/hub.toml", atomically: true, encoding: .utf8)
        let card = initHub.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let hub = try Hub(dir: hubDir, extra: ["--connector-interval-ms", "200"], logName: "r")
        let hubPort = try hub.port
        defer { hub.stop() }

        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Rosa", "--family", "Diaz", "--email", "rosa@example.org",
                                          "--consent", "share", "--consent-method", "signed form", "--data-dir", a]).status == 0)
        let da = try Daemon(data: a, logName: "r")
        defer { da.stop() }
        _ = try da.port
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 5", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["chapter", "affiliate", card, "--hub", "127.0.0.1:\(hubPort)", "--data-dir", a]).status == 0)
        try hub.approve("Ward 5")
        let found = try Binaries.run("kith", ["contact", "search", "Rosa", "--json", "--data-dir", a]).stdout
        let rosa = (try JSONSerialization.jsonObject(with: Data(found.utf8)) as! [[String: Any]]).first!["id"] as! String
        let grant = try Binaries.run("kith", ["consent", "grant", "--fields", "name,emails", "--purpose", "GOTV calls", "--data-dir", a, "--", rosa])
        #expect(grant.stdout.contains("acknowledged"), "\(grant.stdout) \(grant.stderr)")

        // The hub writes the record into a VAN file for staff.
        let file = try waitFor("the hub exports the record", seconds: 30) { () -> String? in
            (try? FileManager.default.contentsOfDirectory(atPath: exports))?.first { $0.hasPrefix("van-") && $0.hasSuffix(".csv") }
        }
        #expect(try String(contentsOfFile: exports + "/" + file, encoding: .utf8).contains("rosa@example.org"))

        let revoke = try Binaries.run("kith", ["consent", "revoke", "--yes", "--data-dir", a, "--", rosa])
        #expect(revoke.stdout.contains("deleted"), "\(revoke.stdout) \(revoke.stderr)")
        let show = try Binaries.run("kith", ["consent", "show", "--data-dir", a, "--", rosa]).stdout
        #expect(show.contains("in progress") && show.contains("the hub: erased") && show.contains("file export \(file): awaiting staff confirmation"), "\(show)")
        #expect(try Binaries.run("kith", ["audit", "--data-dir", a]).stdout.contains("erased at the hub; 1 file export awaiting staff confirmation"))

        // The hub lists the deletion for staff and shows it outstanding.
        let list = try waitFor("a deletion list for staff", seconds: 30) { () -> String? in
            (try? FileManager.default.contentsOfDirectory(atPath: exports))?.first { $0.hasPrefix("van-deletions-") }
        }
        let listed = try String(contentsOfFile: exports + "/" + list, encoding: .utf8)
        #expect(listed.contains(file) && !listed.contains("Rosa") && !listed.contains("rosa@"), "\(listed)")
        let retractions = try Binaries.run("kithd", ["hub", "retractions", "--hub-dir", hubDir])
        #expect(retractions.stdout.contains("awaiting staff confirmation") && retractions.stdout.contains(file), "\(retractions.stdout) \(retractions.stderr)")
        let status = try Binaries.run("kithd", ["hub", "status", "--hub-dir", hubDir]).stdout
        #expect(status.contains("deletions outstanding: 1") && status.contains("VAN CSV files  ok"), "\(status)")

        // Staff confirm; the member's daemon asks again on its own and learns it.
        let confirm = try Binaries.run("kithd", ["hub", "confirm-deletion", "--hub-dir", hubDir, file])
        #expect(confirm.status == 0 && confirm.stdout.contains("confirmed: 1"), "\(confirm.stdout) \(confirm.stderr)")
        #expect(try Binaries.run("kithd", ["hub", "confirm-deletion", "--hub-dir", hubDir, "nope.csv"]).status != 0)
        let finished = try waitFor("the member's receipt says the deletion finished", seconds: 90) { () -> String? in
            let s = try Binaries.run("kith", ["consent", "show", "--data-dir", a, "--", rosa]).stdout
            return s.contains("(finished)") ? s : nil
        }
        #expect(finished.contains("deleted (confirmed by staff)"), "\(finished)")
        #expect(try Binaries.run("kith", ["audit", "--data-dir", a]).stdout.contains("erased at the hub; 1 file export deleted (confirmed by staff)"))
        #expect(try Binaries.run("kithd", ["hub", "retractions", "--hub-dir", hubDir]).stdout.contains("no deletion outstanding"))
    }
}
