import Foundation
import KithChapter
import KithCRDT
import KithNode
import KithStore
import Testing

/// Opens a stopped node's chapter store with the node's own keys and returns every change
/// with its decrypted blocks: what a member can read, and all a relay or thief could not.
func decryptedChapterChanges(data: String, chapter: String) throws -> [(author: String, blocks: [[UInt8]?])] {
    let (ring, _) = try NodeIdentity.unlock(DataDirectory(path: data), passphrase: nil)
    let id = ChapterID(text: chapter)!
    let store = try ContactStore(directory: data + "/chapters/" + chapter, scope: id.contentScope, deviceKey: ring.deviceSigningKey,
                                 storageKey: ring.storageKey, mode: .encrypted)
    let log = try MembershipLog(chapter: id, ops: try store.records(.membershipOp).map(\.bytes))
    let keys = log.keys(device: ring.deviceSigningKey.publicKey, agreement: ring.deviceAgreementKey)
    return store.replica.allChanges().map { ($0.author.description, $0.plaintextBlocks(keys: keys)) }
}

/// Runs `kith` and returns its parsed JSON output (the command must succeed).
func kithJSON(_ args: [String]) throws -> Any {
    let r = try Binaries.run("kith", args + ["--json"])
    guard r.status == 0 else { throw Timeout(what: "kith \(args.joined(separator: " ")): \(r.stderr)") }
    return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8))
}

/// Given names in a chapter's map as seen from one member's daemon.
func chapterNames(_ data: String) throws -> Set<String> {
    let map = try kithJSON(["chapter", "map", "--data-dir", data]) as! [String: Any]
    let contacts = map["contacts"] as? [[String: Any]] ?? []
    return Set(contacts.compactMap { $0["givenName"] as? String })
}

@Suite("Chapters across kithd processes", .serialized)
struct ChapterDaemonTests {
    @Test func inviteJoinShareRemoveAndRotate() throws {
        let tmp = try TempDir()
        let a = tmp.path("alice"), b = tmp.path("bob"), c = tmp.path("carol"), m = tmp.path("mallory")
        for d in [a, b, c, m] { #expect(try Binaries.run("kith", ["init", "--data-dir", d]).status == 0) }
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Rosa", "--phone", "+1 555 0100", "--notes", "met at the food bank",
                                          "--tag", "canvass", "--data-dir", a]).status == 0)

        let da = try Daemon(data: a, logName: "1")
        let pa = try da.port
        // Bob sets `advertise` (an address nobody answers at: only the announcement is checked);
        // Alice and Carol do not, so they announce nothing to the chapter (finding 5).
        let db = try Daemon(data: b, extra: ["--advertise", "127.0.0.1:9"], logName: "1"), dc = try Daemon(data: c, logName: "1")
        _ = try db.port
        _ = try dc.port

        // Chapter commands need the daemon; without chapters a stranger is refused at the handshake.
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 5", "--data-dir", a]).status == 0)
        let invite1 = try Binaries.run("kith", ["chapter", "invite", "--data-dir", a])
        #expect(invite1.status == 0)
        let inviteB = invite1.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(inviteB.hasPrefix("kith:") && inviteB.count < 150)
        #expect(invite1.stderr.contains("127.0.0.1:\(pa)"))

        let joinB = try Binaries.run("kith", ["chapter", "join", inviteB, "--data-dir", b])
        #expect(joinB.status == 0, "\(joinB.stderr)")
        #expect(joinB.stdout.contains("Ward 5"))
        // The invite was for one use: Mallory cannot reuse it.
        let dm = try Daemon(data: m, logName: "1")
        _ = try dm.port
        let reuse = try Binaries.run("kith", ["chapter", "join", inviteB, "--data-dir", m])
        #expect(reuse.status != 0)
        #expect(reuse.stderr.contains("already been used"), "\(reuse.stderr)")
        // A forged invite (right chapter and address, made-up secret) is refused too.
        var forged = Array(Base64URLTest.decode(String(inviteB.dropFirst(5)))!)
        forged[20] ^= 0xFF
        let forgedJoin = try Binaries.run("kith", ["chapter", "join", "kith:" + Base64URLTest.encode(forged), "--data-dir", m])
        #expect(forgedJoin.status != 0 && forgedJoin.stderr.contains("refused"), "\(forgedJoin.stderr)")

        let inviteC = try Binaries.run("kith", ["chapter", "invite", "--expires", "10m", "--uses", "3", "--data-dir", a]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let joinC = try Binaries.run("kith", ["chapter", "join", inviteC, "--data-dir", c])
        #expect(joinC.status == 0, "\(joinC.stderr) \(inviteC) \(da.logText)")
        let members = try kithJSON(["chapter", "members", "--data-dir", c]) as! [String: Any]
        #expect((members["members"] as? [[String: Any]])?.count == 3)

        // Alice shares Rosa's name and phones only; the notes never reach the chapter.
        let share = try Binaries.run("kith", ["share", "--tag", "canvass", "--fields", "name,phones", "--data-dir", a])
        #expect(share.status == 0, "\(share.stderr)")
        _ = try waitFor("Bob sees Rosa", seconds: 20) { try chapterNames(b).contains("Rosa") ? true : nil }
        _ = try waitFor("Carol sees Rosa", seconds: 20) { try chapterNames(c).contains("Rosa") ? true : nil }
        let mapB = try Binaries.run("kith", ["chapter", "map", "--json", "--data-dir", b]).stdout
        #expect(mapB.contains("15550100"), "\(mapB)")
        #expect(!mapB.contains("food bank"))
        #expect(try names(b).isEmpty, "Bob's private contacts are his own")

        // Alice renames Rosa: the shared projection follows.
        let rosa = try Binaries.run("kith", ["contact", "search", "Rosa", "--json", "--data-dir", a]).stdout
        let rosaID = ((try JSONSerialization.jsonObject(with: Data(rosa.utf8)) as! [[String: Any]]).first!["id"] as! String)
        #expect(try Binaries.run("kith", ["contact", "edit", rosaID, "--given", "Rosalind", "--data-dir", a]).status == 0)
        _ = try waitFor("Carol sees the rename", seconds: 20) { try chapterNames(c).contains("Rosalind") ? true : nil }

        // Carol knows Rosalind too, tags her and logs a conversation, in the chapter only.
        #expect(try Binaries.run("kith", ["chapter", "know", rosaID, "--strength", "3", "--data-dir", c]).status == 0)
        #expect(try Binaries.run("kith", ["chapter", "tag", rosaID, "door-knock", "--data-dir", c]).status == 0)
        let logged = try Binaries.run("kith", ["chapter", "log-conversation", String(rosaID.prefix(6)), "--channel", "door", "--outcome", "supportive", "--data-dir", c])
        #expect(logged.status == 0, "\(logged.stderr)")
        let carolMember = (try kithJSON(["whoami", "--data-dir", c]) as! [String: Any])["member"] as! String
        _ = try waitFor("Bob sees Carol's additions", seconds: 20) { () -> Bool? in
            let map = try kithJSON(["chapter", "map", "--data-dir", b]) as! [String: Any]
            let rosa = (map["contacts"] as? [[String: Any]] ?? []).first { $0["id"] as? String == rosaID }
            let known = (rosa?["knows"] as? [[String: Any]] ?? []).compactMap { $0["member"] as? String }, tags = rosa?["tags"] as? [String] ?? []
            return known.contains(carolMember) && tags.contains("door-knock") ? true : nil
        }
        // Her additions stay in the chapter: Alice's own record is untouched.
        #expect(try !Binaries.run("kith", ["contact", "show", rosaID, "--json", "--data-dir", a]).stdout.contains("door-knock"))

        // Bob shares his own contact for the same person, name only: his phone never enters the
        // chapter, not even as a match token (a guesser learns nothing about unshared numbers).
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "R.", "--family", "Diaz", "--phone", "+1 (555) 0100", "--tag", "mine",
                                          "--data-dir", b]).status == 0)
        #expect(try Binaries.run("kith", ["share", "--tag", "mine", "--fields", "name", "--data-dir", b]).status == 0)
        _ = try waitFor("Carol sees R. Diaz", seconds: 20) { try chapterNames(c).contains("R.") ? true : nil }
        let nameOnly = try kithJSON(["chapter", "map", "--data-dir", c]) as! [String: Any]
        #expect((nameOnly["likelyDuplicates"] as? [[String]] ?? []).isEmpty, "no token for a phone that is not shared")
        // Once he shares the phone, typed differently, the map flags the likely duplicate.
        #expect(try Binaries.run("kith", ["share", "--tag", "mine", "--fields", "name,phones", "--data-dir", b]).status == 0)
        let duplicates = try waitFor("Carol sees a likely duplicate", seconds: 20) { () -> [[String]]? in
            let map = try kithJSON(["chapter", "map", "--data-dir", c]) as! [String: Any]
            let d = map["likelyDuplicates"] as? [[String]] ?? []
            return d.isEmpty ? nil : d
        }
        #expect(duplicates.count == 1 && duplicates[0].count == 2)

        // Alice removes Bob: Bob is cut off and what is shared afterwards never reaches him.
        let bobMember = (try kithJSON(["whoami", "--data-dir", b]) as! [String: Any])["member"] as! String
        let removed = try Binaries.run("kith", ["chapter", "remove", String(bobMember.prefix(10)), "--yes", "--data-dir", a])
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Sam", "--tag", "canvass", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["share", "--tag", "canvass", "--data-dir", a]).status == 0)
        _ = try waitFor("Carol sees Sam", seconds: 20) { try chapterNames(c).contains("Sam") ? true : nil }
        _ = try waitFor("Bob announces his advertised address", seconds: 20) {
            db.logText.contains("announcing this node's address to a chapter") && db.logText.contains("127.0.0.1:9") ? true : nil
        }
        #expect(!da.logText.contains("announcing this node's address"), "kithd without advertise announced an address")
        #expect(!dc.logText.contains("announcing this node's address"), "kithd without advertise announced an address")
        // Bob's connections are closed, and his daemon, which took the removal, dials no one in
        // the chapter (the overlay dials only for members; a removed device that dials anyway is
        // refused at the handshake: ChapterOverlayTests).
        _ = try waitFor("Bob cut off", seconds: 40) { () -> Bool? in
            let peers = try kithJSON(["peers", "--data-dir", a]) as? [[String: Any]] ?? []
            let cut = !peers.contains { $0["member"] as? String == bobMember }
            return cut || da.logText.contains("is not allowed to sync") ? true : nil
        }
        #expect(try !chapterNames(b).contains("Sam"))
        let bobMembers = try kithJSON(["chapter", "list", "--data-dir", b]) as! [[String: Any]]
        #expect(bobMembers.first?["role"] as? String == "removed")
        // `remove` said which invites are still open: Carol's has two uses left.
        #expect(removed.stdout.contains("2 of 3 uses left"), "\(removed.stdout)")
        // Bob tries to come back with that invite, which he never used: refused, he was removed after it was made.
        let rejoin = try Binaries.run("kith", ["chapter", "join", inviteC, "--data-dir", b])
        #expect(rejoin.status != 0 && rejoin.stderr.contains("removed from this chapter"), "\(rejoin.stderr)")
        #expect(try !chapterNames(b).contains("Sam"))
        // The invite sent to someone else but pointed at Carol's daemon (not the admin's device that
        // made it): the joiner's daemon refuses to present it there.
        var redirected = Array(Base64URLTest.decode(String(inviteC.dropFirst(5)))!.prefix(1 + 16 + 32 + 32 + 4))
        let carolHint = Array("127.0.0.1:\(try dc.port)".utf8)
        redirected += [UInt8(carolHint.count)] + carolHint
        let misdirected = try Binaries.run("kith", ["chapter", "join", "kith:" + Base64URLTest.encode(redirected), "--data-dir", m])
        #expect(misdirected.status != 0 && misdirected.stderr.contains("not the admin device"), "\(misdirected.stderr)")
        // The admin lists and closes the invite; then nobody can use it.
        let open = try kithJSON(["chapter", "invites", "--json", "--data-dir", a]) as! [[String: Any]]
        #expect(open.count == 1 && open[0]["usesLeft"] as? Int == 2)
        let inviteID = open[0]["id"] as! String
        #expect(try Binaries.run("kith", ["chapter", "invite", "--close=\(inviteID)", "--data-dir", a]).status == 0)
        #expect((try kithJSON(["chapter", "invites", "--json", "--data-dir", a]) as! [[String: Any]]).isEmpty)
        let closed = try Binaries.run("kith", ["chapter", "join", inviteC, "--data-dir", m])
        #expect(closed.status != 0 && closed.stderr.contains("closed"), "\(closed.stderr)")

        // Alice unshares Rosalind: retracted from Carol's map, and no longer updated.
        #expect(try Binaries.run("kith", ["unshare", rosaID, "--data-dir", a]).status == 0)
        _ = try waitFor("Carol's map loses Rosalind", seconds: 20) { try !chapterNames(c).contains("Rosalind") ? true : nil }
        let chapterID = ((try kithJSON(["chapter", "list", "--data-dir", c]) as! [[String: Any]]).first!["id"] as! String)
        for d in [da, db, dc, dm] { d.stop() }

        // Decrypt every chapter change Alice holds: unshared fields never appear; Bob's changes
        // carry what he shared.
        let bobDevice = (try kithJSON(["whoami", "--data-dir", b]) as! [String: Any])["deviceSigning"] as! String
        let changes = try decryptedChapterChanges(data: a, chapter: chapterID)
        #expect(changes.count >= 4)
        let blocks = changes.flatMap(\.blocks)
        #expect(blocks.allSatisfy { $0 != nil }, "Alice reads every block")
        #expect(!blocks.contains { $0!.containsSubsequence(Array("food bank".utf8)) })
        let bobs = changes.filter { $0.author == bobDevice }.flatMap(\.blocks)
        #expect(!bobs.isEmpty)
        #expect(bobs.contains { $0!.containsSubsequence(Array("Diaz".utf8)) })
    }
}

/// Base64url without padding, for tampering with invite strings in tests.
enum Base64URLTest {
    static func decode(_ s: String) -> Data? {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        return Data(base64Encoded: t)
    }

    static func encode(_ b: [UInt8]) -> String {
        Data(b).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

@Suite("Joins held for approval", .serialized)
struct ApprovalTests {
    @Test func aHeldJoinWaitsForTheAdminThenTheJoinerTakesUpTheChapter() throws {
        let tmp = try TempDir()
        let a = tmp.path("admin"), j = tmp.path("joiner")
        for d in [a, j] { #expect(try Binaries.run("kith", ["init", "--data-dir", d]).status == 0) }
        let da = try Daemon(data: a, logName: "1"), dj = try Daemon(data: j, logName: "1")
        _ = try da.port
        _ = try dj.port
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 7", "--data-dir", a]).status == 0)
        let invite = try Binaries.run("kith", ["chapter", "invite", "--approve", "--data-dir", a]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let join = try Binaries.run("kith", ["chapter", "join", invite, "--data-dir", j])
        #expect(join.status == 0 && join.stdout.contains("held for approval"), "\(join.stdout) \(join.stderr)")
        #expect(try (kithJSON(["chapter", "list", "--data-dir", j]) as! [Any]).isEmpty)
        let requests = try kithJSON(["chapter", "requests", "--data-dir", a]) as! [[String: Any]]
        let joinerMember = (try kithJSON(["whoami", "--data-dir", j]) as! [String: Any])["member"] as! String
        #expect(requests.count == 1 && requests.first?["member"] as? String == joinerMember)
        // Not a member yet: the joiner cannot sync anything.
        #expect((try kithJSON(["chapter", "members", "--data-dir", a]) as! [String: Any])["members"].map { ($0 as! [Any]).count } == 1)
        let approve = try Binaries.run("kith", ["chapter", "approve", String(joinerMember.prefix(8)), "--data-dir", a])
        #expect(approve.status == 0, "\(approve.stderr)")
        _ = try waitFor("the joiner takes up the chapter", seconds: 45) {
            ((try? kithJSON(["chapter", "list", "--data-dir", j])) as? [[String: Any]])?.first?["role"] as? String == "member" ? true : nil
        }
        #expect(try (kithJSON(["chapter", "requests", "--data-dir", a]) as! [Any]).isEmpty)
        // A member who is not an admin cannot approve anyone.
        let byMember = try Binaries.run("kith", ["chapter", "approve", "abcd", "--data-dir", j])
        #expect(byMember.status != 0 && byMember.stderr.contains("only an admin"), "\(byMember.stderr)")
        da.stop()
        dj.stop()
    }
}

@Suite("Blind relay across kithd processes", .serialized)
struct BlindRelayTests {
    /// Alice and Carol cannot reach each other; Alice's home server relays the chapter without
    /// being able to read it, and the partition heals through it in both directions.
    @Test func partitionHealsThroughABlindRelay() throws {
        let tmp = try TempDir()
        let a = tmp.path("alice"), r = tmp.path("home"), c = tmp.path("carol")
        for d in [a, c] { #expect(try Binaries.run("kith", ["init", "--data-dir", d]).status == 0) }
        #expect(try Binaries.run("kith", ["device", "add", "--from", a, "--data-dir", r]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Ida", "--tag", "door", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Jon", "--tag", "door", "--data-dir", c]).status == 0)

        // Carol joins while Alice is reachable.
        var da: Daemon? = try Daemon(data: a, logName: "1")
        _ = try da!.port
        var dc: Daemon? = try Daemon(data: c, logName: "1")
        _ = try dc!.port
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 9", "--data-dir", a]).status == 0)
        let invite = try Binaries.run("kith", ["chapter", "invite", "--data-dir", a]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Binaries.run("kith", ["chapter", "join", invite, "--data-dir", c]).status == 0)
        let chapterID = ((try kithJSON(["chapter", "list", "--data-dir", a]) as! [[String: Any]]).first!["id"] as! String)
        da!.stop()
        dc!.stop()

        // Partition: Alice (new port) and Carol each reach only the home server.
        try "relay_scopes = [\"\(chapterID)\"]\n".write(toFile: r + "/kithd.toml", atomically: true, encoding: .utf8)
        let dr = try Daemon(data: r, logName: "r")
        let pr = try dr.port
        da = try Daemon(data: a, peers: [pr], logName: "2")
        dc = try Daemon(data: c, peers: [pr], logName: "2")
        _ = try waitFor("relay has the log", seconds: 20) {
            let list = try kithJSON(["chapter", "list", "--data-dir", r]) as! [[String: Any]]
            return list.first?["members"] as? Int == 2 ? true : nil
        }
        #expect(try Binaries.run("kith", ["share", "--tag", "door", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["share", "--tag", "door", "--data-dir", c]).status == 0)
        _ = try waitFor("Carol sees Ida through the relay", seconds: 40) { try chapterNames(c).contains("Ida") ? true : nil }
        _ = try waitFor("Alice sees Jon through the relay", seconds: 40) { try chapterNames(a).contains("Jon") ? true : nil }
        // The relay holds and forwards every change but reads none of them.
        let relayView = (try kithJSON(["chapter", "list", "--data-dir", r]) as! [[String: Any]]).first!
        #expect(relayView["role"] as? String == "relay")
        #expect(relayView["contacts"] as? Int == 0)
        #expect((relayView["changes"] as? Int ?? 0) >= 2)
        let relayMap = try kithJSON(["chapter", "map", "--chapter=\(chapterID)", "--data-dir", r]) as! [String: Any]
        #expect((relayMap["contacts"] as? [Any])?.isEmpty == true)
        // Carol's daemon only ever authenticated the home server, never Alice's own device.
        let aliceDevice = (try kithJSON(["whoami", "--data-dir", a]) as! [String: Any])["deviceSigning"] as! String
        let homeDevice = (try kithJSON(["whoami", "--data-dir", r]) as! [String: Any])["deviceSigning"] as! String
        let carolLog = dc!.logText.components(separatedBy: "\n").filter { $0.contains("peer authenticated") }
        #expect(!carolLog.isEmpty && carolLog.allSatisfy { $0.contains(homeDevice) && !$0.contains(aliceDevice) })
        for d in [da!, dc!, dr] { d.stop() }
    }

    /// Overlay review 7: a restarted member whose only connection is a configured static peer
    /// (no overlay link, an empty address table) still dials the chapter's invite hint.
    @Test func aRestartedMemberWithOnlyAStaticPeerDialsTheInviteHint() throws {
        let tmp = try TempDir()
        let a = tmp.path("alice"), b = tmp.path("bob"), c = tmp.path("carol")
        for d in [a, b, c] { #expect(try Binaries.run("kith", ["init", "--data-dir", d]).status == 0) }
        var da: Daemon? = try Daemon(data: a, logName: "1")
        let pa = try da!.port
        let db = try Daemon(data: b, logName: "1")
        let pb = try db.port
        var dc: Daemon? = try Daemon(data: c, logName: "1")
        _ = try dc!.port
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 9", "--data-dir", a]).status == 0)
        for d in [b, c] {
            let invite = try Binaries.run("kith", ["chapter", "invite", "--data-dir", a]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try Binaries.run("kith", ["chapter", "join", invite, "--data-dir", d]).status == 0)
        }
        dc!.stop()
        dc = nil
        // Carol comes back with Bob as her only configured peer while Alice is away; nobody
        // advertises an address. Once Carol is connected to Bob, Alice comes back at the invite's address.
        da!.stop()
        da = nil
        dc = try Daemon(data: c, peers: [pb], logName: "2")
        let bobDevice = (try kithJSON(["whoami", "--data-dir", b]) as! [String: Any])["deviceSigning"] as! String
        _ = try waitFor("Carol reaches Bob", seconds: 40) {
            dc!.logText.components(separatedBy: "\n").contains { $0.contains("peer authenticated") && $0.contains(bobDevice) } ? true : nil
        }
        Thread.sleep(forTimeInterval: 2)
        da = try Daemon(arguments: ["--data-dir", a, "--listen", "127.0.0.1:\(pa)", "--api-listen", "127.0.0.1:0"], log: tmp.path("alice-2.log"),
                        portFile: a + "/kithd.port", data: a)
        _ = try da!.port
        let aliceDevice = (try kithJSON(["whoami", "--data-dir", a]) as! [String: Any])["deviceSigning"] as! String
        _ = try waitFor("Carol reaches Alice through the invite hint", seconds: 90) {
            dc!.logText.components(separatedBy: "\n").contains { $0.contains("peer authenticated") && $0.contains(aliceDevice) } ? true : nil
        }
        for d in [da!, db, dc!] { d.stop() }
    }
}

@Suite("A member's second device in chapters", .serialized)
struct MultiDeviceChapterTests {
    @Test func secondDeviceIsListedGetsTheKeyAndReadsAndWrites() throws {
        let tmp = try TempDir()
        let laptop = tmp.path("laptop"), phone = tmp.path("phone")
        #expect(try Binaries.run("kith", ["init", "--data-dir", laptop]).status == 0)
        #expect(try Binaries.run("kith", ["device", "add", "--from", laptop, "--data-dir", phone]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Kim", "--tag", "x", "--data-dir", laptop]).status == 0)
        let dl = try Daemon(data: laptop, logName: "1")
        let pl = try dl.port
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 2", "--data-dir", laptop]).status == 0)
        #expect(try Binaries.run("kith", ["share", "--tag", "x", "--data-dir", laptop]).status == 0)
        let dp = try Daemon(data: phone, peers: [pl], logName: "1")
        _ = try dp.port
        _ = try waitFor("phone takes up the chapter", seconds: 20) { dp.logText.contains("took up a chapter") ? true : nil }
        _ = try waitFor("phone reads the chapter", seconds: 20) { try chapterNames(phone).contains("Kim") ? true : nil }
        let members = try kithJSON(["chapter", "members", "--data-dir", phone]) as! [String: Any]
        #expect((members["members"] as? [[String: Any]])?.first?["devices"] as? Int == 2)
        // The phone writes to the chapter too (sharing a contact made on the phone).
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Lee", "--tag", "y", "--data-dir", phone]).status == 0)
        let share = try Binaries.run("kith", ["share", "--tag", "y", "--data-dir", phone])
        #expect(share.status == 0, "\(share.stderr)")
        _ = try waitFor("laptop sees the phone's share", seconds: 20) { try chapterNames(laptop).contains("Lee") ? true : nil }
        _ = try waitFor("private scope synced", seconds: 20) { try names(laptop) == ["Kim", "Lee"] ? true : nil }
        dl.stop()
        dp.stop()
    }

    @Test func pairingOverTheNetworkWithAOneTimeCode() throws {
        let tmp = try TempDir()
        let laptop = tmp.path("laptop"), phone = tmp.path("phone"), other = tmp.path("other"), thief = tmp.path("thief")
        #expect(try Binaries.run("kith", ["init", "--data-dir", laptop]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Uma", "--data-dir", laptop]).status == 0)
        let dl = try Daemon(data: laptop, logName: "1")
        let pl = try dl.port
        let pair = try Binaries.run("kith", ["device", "pair", "--expires", "5m", "--data-dir", laptop])
        #expect(pair.status == 0, "\(pair.stderr)")
        let code = pair.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(code.hasPrefix("kith-pair:"))

        // A code whose member key was swapped is caught before anything is sent: the daemon
        // reached is not that member's.
        var bytes = Base64URLTest.decode(String(code.dropFirst(10)))!.map { $0 }
        bytes[5] ^= 1
        let swapped = try Binaries.run("kith", ["device", "add", "--pair", "kith-pair:" + Base64URLTest.encode(bytes), "--data-dir", other])
        #expect(swapped.status != 0, "\(swapped.stdout)")

        // A code whose token was altered reaches the right daemon but proves nothing.
        var wrongToken = Base64URLTest.decode(String(code.dropFirst(10)))!.map { $0 }
        wrongToken[1 + 32 + 3] ^= 1
        let guessed = try Binaries.run("kith", ["device", "add", "--pair", "kith-pair:" + Base64URLTest.encode(wrongToken), "--data-dir", tmp.path("guess")])
        #expect(guessed.status != 0 && guessed.stderr.contains("matches no open pairing"), "\(guessed.stderr)")

        let add = try Binaries.run("kith", ["device", "add", "--pair", code, "--data-dir", phone])
        #expect(add.status == 0, "\(add.stderr)")
        let member = { (d: String) in (try kithJSON(["whoami", "--data-dir", d]) as! [String: Any])["member"] as! String }
        #expect(try member(phone) == member(laptop))
        // One use only.
        let again = try Binaries.run("kith", ["device", "add", "--pair", code, "--data-dir", thief])
        #expect(again.status != 0 && again.stderr.contains("already been used"), "\(again.stderr)")

        let dp = try Daemon(data: phone, peers: [pl], logName: "1")
        _ = try dp.port
        _ = try waitFor("the paired phone syncs", seconds: 20) { try names(phone).contains("Uma") ? true : nil }
        dl.stop()
        dp.stop()
    }

    @Test func aRevokedDeviceIsRefusedEverywhereAndReadsNothingNew() throws {
        let tmp = try TempDir()
        let laptop = tmp.path("laptop"), phone = tmp.path("phone"), tablet = tmp.path("tablet")
        #expect(try Binaries.run("kith", ["init", "--data-dir", laptop]).status == 0)
        for d in [phone, tablet] { #expect(try Binaries.run("kith", ["device", "add", "--from", laptop, "--data-dir", d]).status == 0) }
        let dl = try Daemon(data: laptop, logName: "1")
        let pl = try dl.port
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 3", "--data-dir", laptop]).status == 0)
        let dt = try Daemon(data: tablet, peers: [pl], logName: "1")
        let pt = try dt.port
        let dp = try Daemon(data: phone, peers: [pl, pt], logName: "1")
        _ = try dp.port
        _ = try waitFor("the phone takes up the chapter", seconds: 20) { dp.logText.contains("took up a chapter") ? true : nil }
        _ = try waitFor("the tablet takes up the chapter", seconds: 20) { dt.logText.contains("took up a chapter") ? true : nil }
        let phoneDevice = (try kithJSON(["whoami", "--data-dir", phone]) as! [String: Any])["deviceSigning"] as! String

        // Only the primary device (member key) may revoke; the tablet cannot.
        let fromTablet = try Binaries.run("kith", ["device", "revoke", phoneDevice, "--yes", "--data-dir", tablet])
        #expect(fromTablet.status != 0 && fromTablet.stderr.contains("member key"))
        let revoke = try Binaries.run("kith", ["device", "revoke", String(phoneDevice.prefix(8)), "--yes", "--data-dir", laptop])
        #expect(revoke.status == 0, "\(revoke.stderr)")

        // The laptop and, once told, the tablet refuse the phone at the handshake.
        _ = try waitFor("laptop refuses the phone", seconds: 40) { dl.logText.contains("device \(phoneDevice)) is not allowed") ? true : nil }
        _ = try waitFor("tablet refuses the phone", seconds: 40) { dt.logText.contains("device \(phoneDevice)) is not allowed") ? true : nil }
        // New private and chapter content reaches the tablet, never the phone.
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Quinn", "--tag", "q", "--data-dir", laptop]).status == 0)
        #expect(try Binaries.run("kith", ["share", "--tag", "q", "--data-dir", laptop]).status == 0)
        _ = try waitFor("tablet sees Quinn", seconds: 20) { try names(tablet).contains("Quinn") && chapterNames(tablet).contains("Quinn") ? true : nil }
        usleep(500_000)
        #expect(try !names(phone).contains("Quinn"))
        #expect(try !chapterNames(phone).contains("Quinn"))
        let members = try kithJSON(["chapter", "members", "--data-dir", laptop]) as! [String: Any]
        #expect((members["members"] as? [[String: Any]])?.first?["devices"] as? Int == 2)
        for d in [dl, dt, dp] { d.stop() }
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        for i in 0...(count - needle.count) where self[i..<(i + needle.count)].elementsEqual(needle) { return true }
        return false
    }
}
