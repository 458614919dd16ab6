import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
import KithStore
import Testing

/// Issue 12 attacks that need real processes: a self-declared affiliation (finding 6) and a
/// relaying peer forging the hub's refusal (finding 8).
@Suite("Hub approval and signed answers: kithd processes", .serialized)
struct HubApprovalDaemonTests {
    @Test func theOrganizationDecidesWhichChaptersItTakesRecordsFrom() throws {
        let tmp = try TempDir()
        let hubDir = tmp.path("hub"), a = tmp.path("alice")
        let card = try Binaries.run("kithd", ["hub", "init", "--name", "Party", "--hub-dir", hubDir]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var hub = try Hub(dir: hubDir, extra: ["--max-records-per-chapter", "1"], logName: "ap1")
        let hubPort = try hub.port
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        for (name, consent, tag) in [("Sam", "contact", "s"), ("Uma", "share", "u"), ("Val", "share", "v")] {
            #expect(try Binaries.run("kith", ["contact", "add", "--given", name, "--consent", consent, "--tag", tag, "--data-dir", a]).status == 0)
        }
        let da = try Daemon(data: a, logName: "ap")
        _ = try da.port
        // Anyone with the card can create a chapter and affiliate it, relaxing contact consent…
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 9", "--data-dir", a]).status == 0)
        let aff = try Binaries.run("kith", ["chapter", "affiliate", card, "--hub", "127.0.0.1:\(hubPort)", "--allow-without-contact-consent", "--data-dir", a])
        #expect(aff.status == 0 && aff.stdout.contains("approve"), "\(aff.stdout) \(aff.stderr)")
        // … which is only a request the organization sees, with what it would relax.
        let id = try hub.request("Ward 9")
        let listed = try #require(try hub.chapters().first)
        #expect(listed["status"] as? String == "pending" && listed["relaxesContactConsent"] as? Bool == true, "\(listed)")
        #expect((listed["admins"] as? [String])?.count == 1 && listed["records"] as? Int == 0)
        let text = try Binaries.run("kithd", ["hub", "chapters", "--hub-dir", hubDir]).stdout
        #expect(text.contains("Ward 9") && text.contains("pending") && text.contains("RELAXES CONTACT CONSENT"), "\(text)")

        // Sam agreed only to be contacted by the chapter: under the relaxed rule his record would
        // go up, but the hub answers "pending approval" and holds nothing; the member keeps it.
        let g = try Binaries.run("kith", ["consent", "grant", "--tag", "s", "--fields", "name", "--purpose", "canvass", "--data-dir", a])
        #expect(g.stdout.contains("pending") && g.stdout.contains("approval"), "\(g.stdout) \(g.stderr)")
        #expect(try hub.export().isEmpty)
        #expect(try Binaries.run("kith", ["consent", "show", "--data-dir", a, "--", try contactID(a, "Sam")]).stdout.contains("active"))

        // Approval must say that the organization accepts the relaxation.
        let plain = try hub.decide("approve", id)
        #expect(plain.status != 0 && plain.stderr.contains("--allow-without-contact-consent"), "\(plain.stderr)")
        #expect(try hub.chapters().first?["status"] as? String == "pending")
        let ok = try hub.decide("approve", "Ward 9", ["--allow-without-contact-consent"])
        #expect(ok.status == 0 && ok.stdout.contains("approved") && ok.stdout.contains("RELAXES"), "\(ok.stdout) \(ok.stderr)")
        // The member's daemon sends the pending record again and it is stored.
        _ = try waitFor("the pending record goes up after approval", seconds: 40) {
            try Binaries.run("kith", ["audit", "--data-dir", a]).stdout.contains(" receipt ") ? true : nil
        }
        let rows = try hub.export()
        #expect(rows.count == 1 && rows.first?["name"] == "Sam" && rows.first?["rule"] == "chapterAllowsWithoutContactConsent", "\(rows)")
        let usage = try #require(try hub.chapters().first)
        #expect(usage["status"] as? String == "approved" && usage["records"] as? Int == 1 && (usage["bytes"] as? Int ?? 0) > 0, "\(usage)")

        // Over the chapter's limit (one record, with --max-records-per-chapter 1): a clear signed
        // refusal, and the hub keeps serving.
        let over = try Binaries.run("kith", ["consent", "grant", "--tag", "u", "--fields", "name", "--purpose", "canvass", "--data-dir", a])
        #expect(over.stdout.contains("refused") && over.stdout.contains("limit"), "\(over.stdout) \(over.stderr)")
        #expect(try hub.export().count == 1 && (try hub.chapters()).count == 1)

        // A second chapter, refused on the stopped hub's store (offline): its records get a
        // signed refusal once the hub runs again.
        #expect(try Binaries.run("kith", ["chapter", "create", "Fake", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["chapter", "affiliate", card, "--chapter", "Fake", "--hub", "127.0.0.1:\(hubPort)", "--data-dir", a]).status == 0)
        _ = try hub.request("Fake")
        hub.stop()
        let refuse = try hub.decide("refuse", "Fake")
        #expect(refuse.status == 0 && refuse.stdout.contains("refused"), "\(refuse.stdout) \(refuse.stderr)")
        #expect(try hub.chapters().first { $0["name"] as? String == "Fake" }?["status"] as? String == "refused")
        hub = try Hub(dir: hubDir, listen: "127.0.0.1:\(hubPort)", logName: "ap2")
        _ = try hub.port
        let refused = try Binaries.run("kith", ["consent", "grant", "--chapter", "Fake", "--tag", "v", "--fields", "name", "--purpose", "x", "--data-dir", a])
        #expect(refused.stdout.contains("refused") && refused.stdout.contains("refused the affiliation"), "\(refused.stdout) \(refused.stderr)")
        #expect(try hub.export().count == 1)
        hub.stop()
        da.stop()
    }

    @Test func aForgedRefusalFromARelayingPeerDoesNotStopRetries() throws {
        // Alice sends only through chapter peers; Bob relays and forges the hub's answer (a
        // well-formed refusal for exactly her record, signed by his own device key).
        let tmp = try TempDir()
        let hubDir = tmp.path("hub"), a = tmp.path("alice"), b = tmp.path("bob")
        let card = try Binaries.run("kithd", ["hub", "init", "--name", "Party", "--hub-dir", hubDir]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let hub = try Hub(dir: hubDir, logName: "fg")
        let hubPort = try hub.port
        for d in [a, b] { #expect(try Binaries.run("kith", ["init", "--data-dir", d]).status == 0) }
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Uri", "--consent", "share", "--tag", "u", "--data-dir", a]).status == 0)
        let da = try Daemon(data: a, extra: ["--upward-via-peers"], logName: "fg")
        let alicePort = try da.port
        var db = try Daemon(data: b, environment: ["KITHD_TEST_FORGE_HUB_ANSWERS": "other-key"], logName: "fg-forger")
        _ = try db.port
        #expect(try Binaries.run("kith", ["chapter", "create", "W", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["chapter", "affiliate", card, "--hub", "127.0.0.1:\(hubPort)", "--data-dir", a]).status == 0)
        let invite = try Binaries.run("kith", ["chapter", "invite", "--data-dir", a]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Binaries.run("kith", ["chapter", "join", invite, "--data-dir", b]).status == 0)
        _ = try waitFor("Bob connected to Alice", seconds: 20) { da.logText.contains("peer authenticated") ? true : nil }

        let grant = try Binaries.run("kith", ["consent", "grant", "--tag", "u", "--fields", "name", "--purpose", "survey", "--data-dir", a])
        #expect(grant.stdout.contains("pending") && !grant.stdout.contains("refused"), "\(grant.stdout) \(grant.stderr)")
        // The chapter's log did reach the hub through Bob: approve it. Bob keeps forging, and
        // Alice keeps the record pending and keeps retrying — the forgery never counts.
        try hub.approve("W")
        let audit = { try Binaries.run("kith", ["audit", "--data-dir", a]).stdout }
        _ = try waitFor("retries after the forged refusals", seconds: 40) { try audit().components(separatedBy: " pending ").count > 2 ? true : nil }
        #expect(db.logText.contains("forging the hub's answer") && da.logText.contains("does not verify"))
        let trail = try audit()
        #expect(!trail.contains(" refused ") && !trail.contains(" receipt "), "\(trail)")
        #expect(try hub.export().count == 1) // the hub did store it; only Bob's answer was forged
        let show = try Binaries.run("kith", ["consent", "show", "--data-dir", a, "--", try contactID(a, "Uri")]).stdout
        #expect(show.contains("active") && show.contains("holds nothing"), "\(show)")

        // Bob becomes honest: Alice's next retry brings the hub's genuine receipt.
        db.stop()
        db = try Daemon(data: b, peers: [alicePort], logName: "fg-honest")
        _ = try db.port
        _ = try waitFor("the record is acknowledged through an honest relay", seconds: 60) { try audit().contains(" receipt ") ? true : nil }
        #expect(try Binaries.run("kith", ["consent", "show", "--data-dir", a, "--", try contactID(a, "Uri")]).stdout.contains("name: Uri"))
        for d in [da, db] { d.stop() }
        hub.stop()
    }
}

func contactID(_ data: String, _ name: String) throws -> String {
    let r = try Binaries.run("kith", ["contact", "search", name, "--json", "--data-dir", data]).stdout
    return (try JSONSerialization.jsonObject(with: Data(r.utf8)) as! [[String: Any]]).first!["id"] as! String
}

/// A hub store written by the schema-1 hub (records keyed by grant id alone, version-1
/// receipts) still opens with `kithd hub`, migrated to schema 2.
@Suite("Hub store migration")
struct HubStoreMigrationTests {
    @Test func aSchema1HubStoreOpensAndMigrates() throws {
        let tmp = try TempDir()
        let hubDir = tmp.path("hub")
        #expect(try Binaries.run("kithd", ["hub", "init", "--name", "Party", "--hub-dir", hubDir]).status == 0)
        // The organization's keys, from org.keys (`KITHORG1 ‖ seed ‖ agreement ‖ storage key ‖ name`).
        let file = Array(try Data(contentsOf: URL(fileURLWithPath: hubDir + "/org.keys")))
        let keys = OrganizationKeys(signing: try Ed25519.PrivateKey(seed: Array(file[8..<40])), agreement: try X25519.PrivateKey(bytes: Array(file[40..<72])),
                                    name: "Party")
        let storageKey = try SymmetricKey(bytes: Array(file[72..<104]))
        // A chapter, a member and a record as the schema-1 hub stored them.
        let member = Ed25519.PrivateKey(), device = Ed25519.PrivateKey()
        let cert = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: X25519.PrivateKey().publicKey,
                                           createdAt: 1_700_000_000)
        let now = ContactStore.systemClock()
        var log = try MembershipLog.create(name: "Old Ward", certificate: cert, device: device, now: now - 10_000)
        try log.append(.affiliate(Affiliation(signingKey: keys.signing.publicKey, agreementKey: keys.agreement.publicKey, name: "Party", hub: "h:1",
                                              allowsWithoutContactConsent: false)), certificate: cert, device: device, now: now - 9_000)
        let grant = Grant.make(chapter: log.chapter, organization: keys.signing.publicKey, contact: ContactID(high: 1, low: 1), fields: ["name"],
                               purpose: "old", createdAt: now - 5_000, expiresAt: nil, certificate: cert, device: device)
        let record = try UpwardRecord.make(grant: grant, version: 2, values: [("name", "Rosa"), ("consent", "share")], to: keys.agreement.publicKey,
                                           certificate: cert, device: device)
        var body = ByteWriter()
        body.u8(1); body.u8(1); body.raw(grant.id); body.uvarint(UInt64(2)); body.raw(record.hash); body.u8(1); body.u64(now - 4_000)
        let receiptV1 = body.bytes + keys.signing.signature(for: Array("kith/receipt/v1\0".utf8) + body.bytes)
        do {
            let store = try ContactStore(directory: hubDir, scope: ScopeID(name: "hub"), deviceKey: keys.signing, storageKey: storageKey, mode: .opaque)
            try store.putRecords(.hubRecord, [(grant.id, HubStoreSchema.encodeHeld(record: record.encoded, answer: receiptV1, chapterName: "Old Ward"))])
            try store.putRecords(.hubChapterOp, log.allOps.map { (log.chapter.bytes + $0.id.bytes, $0.encoded) })
            try store.putRecords(.hubClosed, [(SecureRandom.bytes(16), [0, 0, 0, 0, 0, 0, 0, 1])])
        }
        // It opens: the record is exported, the chapter listed (pending: schema 1 had no approvals).
        let hub = Hub(dir: hubDir)
        let rows = try hub.export()
        #expect(rows.count == 1 && rows.first?["name"] == "Rosa" && rows.first?["version"] == "2", "\(rows)")
        let chapters = try hub.chapters()
        #expect(chapters.count == 1 && chapters.first?["status"] as? String == "pending" && chapters.first?["records"] as? Int == 1, "\(chapters)")
        // And it is current now (schema 4; 2 re-keyed the rows by member and re-signed the receipt, 3 adds record trails, 4 the opened fields).
        let store = try ContactStore(directory: hubDir, scope: ScopeID(name: "hub"), deviceKey: keys.signing, storageKey: storageKey, mode: .opaque)
        #expect(try store.records(.hubRecord).map(\.id) == [member.publicKey.bytes + grant.id])
        #expect(try store.records(.hubClosed).allSatisfy { $0.id.count == 48 && $0.id.prefix(32).allSatisfy { $0 == 0 } })
        #expect(try store.records(.hubMeta).first?.bytes == [0, 0, 0, 0, 0, 0, 0, 4])
        let row = try #require(try store.records(.hubRecord).first)
        let held = try #require(HubStoreSchema.decodeHeld(row.bytes))
        #expect(try HubAnswer(encoded: held.answer, organization: keys.signing.publicKey).answers(record.encoded))
    }
}
