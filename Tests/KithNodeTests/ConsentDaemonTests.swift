import Foundation
import Testing

/// A `kithd hub run` process (a `Daemon` with the hub's arguments and port file).
final class Hub {
    let dir: String
    private let daemon: Daemon?

    /// A stopped hub's directory (export and chapters read its store).
    init(dir: String) {
        self.dir = dir
        daemon = nil
    }

    init(dir: String, listen: String = "127.0.0.1:0", extra: [String] = [], logName: String) throws {
        self.dir = dir
        daemon = try Daemon(arguments: ["hub", "run", "--hub-dir", dir, "--address", listen] + extra, log: dir + "-" + logName + ".log",
                            portFile: dir + "/hub.port")
    }

    var log: String { daemon?.log ?? "" }
    var port: Int { get throws { try daemon!.port } }
    func stop() { daemon?.stop() }

    /// The hub's records, exported (live when it runs, else from its store).
    func export() throws -> [[String: String]] {
        let r = try Binaries.run("kithd", ["hub", "export", "--hub-dir", dir])
        guard r.status == 0 else { throw Timeout(what: "export: \(r.stderr)") }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [[String: String]]
    }

    /// `kithd hub chapters --json` (live when it runs, else from its store).
    func chapters() throws -> [[String: Any]] {
        let r = try Binaries.run("kithd", ["hub", "chapters", "--json", "--hub-dir", dir])
        guard r.status == 0 else { throw Timeout(what: "chapters: \(r.stderr)") }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [[String: Any]]
    }

    /// Waits until the chapter named `name` has asked to affiliate; returns its id.
    func request(_ name: String) throws -> String {
        try waitFor("chapter \(name) asks \(dir) to affiliate", seconds: 30) {
            try self.chapters().first { $0["name"] as? String == name }?["chapter"] as? String
        }
    }

    func decide(_ verb: String, _ chapter: String, _ extra: [String] = []) throws -> Binaries.Result {
        try Binaries.run("kithd", ["hub", verb, "--hub-dir", dir] + extra + ["--", chapter]) // an id may start with -
    }

    /// Waits for the chapter's request and approves it.
    func approve(_ name: String) throws {
        let r = try decide("approve", try request(name))
        #expect(r.status == 0, "\(r.stderr)")
    }
}

@Suite("Consent: member daemon and organization hub", .serialized)
struct ConsentDaemonTests {
    /// On both of the hub's stores: SQLite, and PostgreSQL through the hub's hub.toml.
    @Test(arguments: HubStoreKind.available)
    func grantEditRevokeWithReceiptsAndNothingUngranted(_ store: HubStoreKind) throws {
        let tmp = try TempDir()
        let hubDir = tmp.path("hub"), a = tmp.path("alice")
        let initHub = try Binaries.run("kithd", ["hub", "init", "--name", "Example Party", "--hub-dir", hubDir])
        #expect(initHub.status == 0, "\(initHub.stderr)")
        let database = try store.prepare(hubDir: hubDir)
        let card = initHub.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var hub = try Hub(dir: hubDir, logName: "1")
        let hubPort = try hub.port

        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Rosa", "--family", "Diaz", "--email", "rosa@example.org", "--phone", "+1 555 0100",
                                          "--notes", "lives with her mother", "--consent", "share", "--consent-method", "signed form", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Sam", "--consent", "contact", "--data-dir", a]).status == 0)
        let da = try Daemon(data: a, logName: "1")
        _ = try da.port
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 5", "--data-dir", a]).status == 0)
        let aff = try Binaries.run("kith", ["chapter", "affiliate", card, "--hub", "127.0.0.1:\(hubPort)", "--data-dir", a])
        #expect(aff.status == 0, "\(aff.stderr)")
        #expect(try Binaries.run("kith", ["chapter", "show", "--data-dir", a]).stdout.contains("Example Party"))
        try hub.approve("Ward 5")

        let id = { (name: String) throws -> String in
            let r = try Binaries.run("kith", ["contact", "search", name, "--json", "--data-dir", a]).stdout
            return (try JSONSerialization.jsonObject(with: Data(r.utf8)) as! [[String: Any]]).first!["id"] as! String
        }
        let rosa = try id("Rosa"), sam = try id("Sam")
        // Sam only agreed to be contacted by the chapter: refused, with the reason.
        let samGrant = try Binaries.run("kith", ["consent", "grant", "--fields", "name", "--purpose", "GOTV calls", "--data-dir", a, "--", sam])
        #expect(samGrant.stdout.contains("refused") && samGrant.stdout.contains("has not agreed"), "\(samGrant.stdout) \(samGrant.stderr)")
        // Rosa: name and emails, for a purpose.
        let wrongOrg = try Binaries.run("kith", ["consent", "grant", "--to", "Rival Party", "--fields", "name", "--purpose", "x", "--data-dir", a, "--", rosa])
        #expect(wrongOrg.status != 0 && wrongOrg.stderr.contains("Rival Party"), "\(wrongOrg.stderr)")
        let grant = try Binaries.run("kith", ["consent", "grant", "--to", "Example Party", "--fields", "name,emails", "--purpose", "GOTV calls",
                                              "--expires", "90d", "--data-dir", a, "--", rosa]) // "--": an id may start with -
        #expect(grant.status == 0 && grant.stdout.contains("acknowledged"), "\(grant.stdout) \(grant.stderr)")

        // An ungranted field changes: nothing goes up. A granted one: version 2 goes up.
        #expect(try Binaries.run("kith", ["contact", "edit", "--notes", "moved in with her sister", "--data-dir", a, "--", rosa]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "edit", "--remove-email", "rosa@example.org", "--add-email", "rosa.diaz@example.org", "--data-dir", a, "--", rosa]).status == 0)
        do {
            _ = try waitFor("version 2 acknowledged", seconds: 30) { () -> Bool? in
                let audit = try Binaries.run("kith", ["audit", "--data-dir", a]).stdout
                return audit.contains("version 2 stored") ? true : nil
            }
        } catch {
            print("AUDIT", try Binaries.run("kith", ["audit", "--data-dir", a]).stdout, da.logText.suffix(3000), try String(contentsOfFile: hub.log, encoding: .utf8).suffix(2000))
            throw error
        }
        let audit = try Binaries.run("kith", ["audit", "--data-dir", a]).stdout
        #expect(!audit.contains("version 3"), "the notes edit sent nothing: \(audit)")

        // What the hub holds: exactly the granted fields, current values, nothing of Sam.
        #expect(try mode(hub.dir + "/hub.port") == 0o600, "hub.port is for the organization's own tools, like kithd.port")
        let rows = try hub.export() // live, from the running hub's control socket
        let csv = try Binaries.run("kithd", ["hub", "export", "--format", "csv", "--hub-dir", hub.dir]) // streamed in chunks over the socket
        #expect(csv.status == 0 && csv.stdout.hasPrefix("grant,granted_by,chapter,") && csv.stdout.contains(",Rosa Diaz,"), "\(csv.stdout) \(csv.stderr)")
        #expect(try Binaries.run("kithd", ["hub", "export", "--format", "xml", "--hub-dir", hub.dir]).stderr.contains("json, jsonl or csv"))
        hub.stop()
        #expect(try hub.export().count == 1) // and from its store when stopped
        #expect(rows.count == 1)
        #expect(rows.first?["name"] == "Rosa Diaz" && rows.first?["emails"] == "rosa.diaz@example.org" && rows.first?["purpose"] == "GOTV calls")
        #expect(rows.first?["notes"] == nil && rows.first?["phones"] == nil)
        #expect(rows.first?["consent"]?.hasPrefix("share") == true)
        // kithd hub status, from the stopped hub's store: which store, what it holds.
        let st = try Binaries.run("kithd", ["hub", "status", "--json", "--hub-dir", hubDir])
        let status = try JSONSerialization.jsonObject(with: Data(st.stdout.utf8)) as? [String: Any]
        #expect(status?["records"] as? Int == 1 && (status?["chapters"] as? [String: Int]) == ["approved": 1] && status?["running"] as? Bool == false,
                "\(st.stdout) \(st.stderr)")
        #expect((status?["store"] as? String)?.hasPrefix(store == .postgres ? "postgres://postgres@/\(database)" : "sqlite:") == true, "\(st.stdout)")
        // While the hub holds it, nothing of the record is at rest in the clear (a pg_dump for
        // PostgreSQL): not as text, not as a plain bytea. The grant's id is there (not secret).
        let atRest = try store.atRest(hubDir: hubDir, database: database)
        #expect(store == .sqlite || atRest.contains("kith_hub_rows"), "the dump holds the hub's table")
        for secret in ["Rosa", "rosa.diaz@example.org", "Diaz", "GOTV calls", "555 0100", "mother"] {
            #expect(!atRest.contains(secret.lowercased()) && !atRest.contains(hexOf(secret)) && !atRest.contains(hexOf(secret.lowercased())),
                    "\(secret) at rest in the \(store) store")
        }
        let show = try Binaries.run("kith", ["consent", "show", "--data-dir", a, "--", rosa]).stdout
        #expect(show.contains("rosa.diaz@example.org"), "\(show)")
        // The contact's consent as an object, never its packed field text (issue 16).
        #expect(show.contains("consent: share since ") && !show.contains("share;"), "\(show)")
        let shown = try JSONSerialization.jsonObject(with: Data(try Binaries.run("kith", ["--json", "consent", "show", "--data-dir", a, "--", rosa]).stdout.utf8)) as? [[String: Any]]
        let heldConsent = (shown?.first?["organizationHolds"] as? [String: Any])?["consent"] as? [String: Any]
        #expect(heldConsent?["level"] as? String == "share" && heldConsent?["method"] as? String == "signed form", "\(String(describing: shown))")

        // Revoke: the hub deletes and returns a verified deletion receipt.
        hub = try Hub(dir: hubDir, listen: "127.0.0.1:\(hubPort)", logName: "2")
        _ = try hub.port
        let revoke = try Binaries.run("kith", ["consent", "revoke", "--yes", "--data-dir", a, "--", rosa])
        #expect(revoke.status == 0 && revoke.stdout.contains("deleted"), "\(revoke.stdout) \(revoke.stderr)")
        hub.stop()
        #expect(try hub.export().isEmpty)
        let after = try Binaries.run("kith", ["consent", "show", "--data-dir", a, "--", rosa]).stdout
        #expect(after.contains("revoked") && after.contains("holds nothing"), "\(after)")
        let trail = try Binaries.run("kith", ["audit", "--data-dir", a]).stdout
        for event in ["grant", "receipt", "revoke", "deletion-receipt"] { #expect(trail.contains(" \(event) "), "\(event) in \(trail)") }
        // Nothing personal sits in the hub's files in the clear (records are sealed to the
        // organization and sealed again at rest).
        for file in (try FileManager.default.contentsOfDirectory(atPath: hubDir)).filter({ $0.hasPrefix("store.sqlite") }) {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: hubDir + "/" + file))
            #expect(bytes.range(of: Data("Rosa".utf8)) == nil && bytes.range(of: Data("mother".utf8)) == nil, "\(file)")
        }

        // With the hub down, a new grant waits, and so does its revocation — visibly — until the
        // hub is back.
        let g2 = try Binaries.run("kith", ["consent", "grant", "--fields", "name", "--purpose", "canvass", "--data-dir", a, "--", rosa])
        #expect(g2.stdout.contains("pending"), "hub is down: \(g2.stdout)")
        let revokeLater = try Binaries.run("kith", ["consent", "revoke", "--yes", "--data-dir", a, "--", rosa])
        #expect(revokeLater.stdout.contains("pending"), "\(revokeLater.stdout)")
        #expect(try Binaries.run("kith", ["consent", "show", "--data-dir", a, "--", rosa]).stdout.contains("revoking"))
        hub = try Hub(dir: hubDir, listen: "127.0.0.1:\(hubPort)", logName: "3")
        _ = try hub.port
        _ = try waitFor("the pending revocation goes through", seconds: 40) { () -> Bool? in
            let show = try Binaries.run("kith", ["consent", "show", "--data-dir", a, "--", rosa]).stdout
            return show.contains("revoking") ? nil : true
        }
        hub.stop()
        #expect(try hub.export().isEmpty)
        da.stop()
    }

    @Test func recordsGoUpThroughAChapterPeer() throws {
        // Alice never connects to the hub herself (--upward-via-peers): Bob's daemon carries her
        // sealed record and the hub's receipt, and can forge neither.
        let tmp = try TempDir()
        let hubDir = tmp.path("hub"), a = tmp.path("alice"), b = tmp.path("bob")
        let card = try Binaries.run("kithd", ["hub", "init", "--name", "Party", "--hub-dir", hubDir]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let hub = try Hub(dir: hubDir, logName: "p")
        let hubPort = try hub.port
        for d in [a, b] { #expect(try Binaries.run("kith", ["init", "--data-dir", d]).status == 0) }
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Uri", "--consent", "share", "--tag", "u", "--data-dir", a]).status == 0)
        let da = try Daemon(data: a, extra: ["--upward-via-peers"], logName: "p"), db = try Daemon(data: b, logName: "p")
        _ = try da.port
        _ = try db.port
        #expect(try Binaries.run("kith", ["chapter", "create", "W", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["chapter", "affiliate", card, "--hub", "127.0.0.1:\(hubPort)", "--data-dir", a]).status == 0)
        let invite = try Binaries.run("kith", ["chapter", "invite", "--data-dir", a]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Binaries.run("kith", ["chapter", "join", invite, "--data-dir", b]).status == 0)
        _ = try waitFor("Bob connected to Alice", seconds: 20) { da.logText.contains("peer authenticated") ? true : nil }
        // Alice's chapter log reaches the hub with her first record, through Bob: the hub answers
        // "pending approval" (signed), the record waits, and goes up once the chapter is approved.
        let grant = try Binaries.run("kith", ["consent", "grant", "--tag", "u", "--fields", "name", "--purpose", "survey", "--data-dir", a])
        #expect(grant.stdout.contains("pending") && grant.stdout.contains("approval"), "\(grant.stdout) \(grant.stderr)")
        try hub.approve("W")
        _ = try waitFor("the record goes up after approval", seconds: 40) {
            try Binaries.run("kith", ["audit", "--data-dir", a]).stdout.contains(" receipt ") ? true : nil
        }
        #expect(db.logText.contains("forwarded an upward message"))
        #expect(try Binaries.run("kith", ["audit", "--data-dir", a]).stdout.contains("relayed"))
        let rows = try hub.export()
        #expect(rows.count == 1 && rows.first?["name"] == "Uri")
        for d in [da, db] { d.stop() }
        hub.stop()
    }

    @Test func anExpiredGrantIsDeletedOnBothSides() throws {
        let tmp = try TempDir()
        let hubDir = tmp.path("hub"), a = tmp.path("alice")
        let card = try Binaries.run("kithd", ["hub", "init", "--name", "Party", "--hub-dir", hubDir]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let hub = try Hub(dir: hubDir, logName: "x")
        let hubPort = try hub.port
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Ivy", "--consent", "share", "--tag", "t", "--data-dir", a]).status == 0)
        let da = try Daemon(data: a, logName: "x")
        _ = try da.port
        #expect(try Binaries.run("kith", ["chapter", "create", "W", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["chapter", "affiliate", card, "--hub", "127.0.0.1:\(hubPort)", "--data-dir", a]).status == 0)
        try hub.approve("W")
        let g = try Binaries.run("kith", ["consent", "grant", "--tag", "t", "--fields", "name", "--purpose", "one call", "--expires", "3s", "--data-dir", a])
        #expect(g.stdout.contains("acknowledged"), "\(g.stdout)\(g.stderr)")
        _ = try waitFor("the hub deletes on expiry", seconds: 20) { (try? String(contentsOfFile: hub.log, encoding: .utf8))?.contains("deleted on expiry") == true ? true : nil }
        _ = try waitFor("the member marks it expired", seconds: 30) {
            try Binaries.run("kith", ["audit", "--data-dir", a]).stdout.contains(" expired ") ? true : nil
        }
        hub.stop()
        #expect(try hub.export().isEmpty)
        da.stop()
    }
}
