@testable import KithConsent
import KithChapter
import KithCRDT
import KithCrypto
import Testing

/// The attacks of security review issue 12 (findings 6, 7, 8 and the CSV part of 10), each
/// performed against the pure hub rules and the member's judgement of hub answers.
@Suite("Hub attacks: self-declared affiliation, grant-id hijacks, forged answers")
struct HubAttackTests {
    /// A grant whose id the attacker chose (ids travel in the clear through relaying peers).
    static func grant(_ by: Member, id: [UInt8], chapter: ChapterID, fields: [String] = ["name"]) -> Grant {
        var w = ByteWriter()
        w.u8(1)
        w.raw(id)
        w.raw(chapter.bytes)
        w.raw(party.signing.publicKey.bytes)
        w.raw(ContactID(high: 9, low: 9).bytes)
        w.text(fields.joined(separator: ","))
        w.text("harvest")
        w.u64(now)
        w.u64(0)
        return try! Grant(encoded: DeviceSigned.make(domain: Grant.domain, body: w.bytes, certificate: by.certificate, device: by.device), nowSeconds: now / 1000)
    }

    // MARK: Finding 6 — the hub accepted any self-declared affiliation

    @Test func aSelfDeclaredAffiliationIsOnlyARequestUntilTheOrganizationApproves() throws {
        // Mallory has the card: she creates a chapter and affiliates it. Nothing of hers is
        // stored until the organization approves, and she gets a signed "pending approval".
        var w = try World(approved: false)
        let g = w.grant(w.alice)
        let r = w.record(g)
        #expect { _ = try w.hub.accept(r, chapter: w.log.state, nowMilliseconds: now) } throws: { ($0 as? ConsentError)?.kind == .pendingApproval }
        let answer = w.hub.answer(record: r, chapter: w.log.state, nowMilliseconds: now)
        #expect(answer.kind == .pending && answer.code == .pendingApproval && answer.answers(r))
        #expect(DeliveryOutcome.judge(answer.encoded, request: r, isRevocation: false, organization: party.signing.publicKey) == .pending(answer))
        #expect(w.hub.held.isEmpty && w.hub.usage[w.log.chapter] == nil)
        #expect(w.hub.standing(of: w.log.chapter, affiliation: w.log.state.affiliation) == .pending && w.hub.waiting[w.log.chapter]?.count == 1)
        // The organization approves with its own key; the member's retry (same bytes) is stored.
        let d = try w.hub.decide(w.log.chapter, state: w.log.state, approve: true, nowMilliseconds: now + 1)
        #expect(try ChapterDecision(encoded: d.encoded, organization: party.signing.publicKey).approved)
        #expect(throws: ConsentError.self) { _ = try ChapterDecision(encoded: d.encoded, organization: rivals.signing.publicKey) }
        #expect(try w.hub.accept(r, chapter: w.log.state, nowMilliseconds: now + 2).kind == .stored)
        #expect(w.hub.usage[w.log.chapter]?.records == 1 && w.hub.usage[w.log.chapter]?.bytes == UInt64(r.count))
    }

    @Test func aRefusedChapterGetsASignedRefusal() throws {
        var w = try World(approved: false)
        _ = try w.hub.decide(w.log.chapter, state: w.log.state, approve: false, nowMilliseconds: now)
        let r = w.record(w.grant(w.alice))
        let answer = w.hub.answer(record: r, chapter: w.log.state, nowMilliseconds: now)
        #expect(answer.kind == .refused && answer.code == .chapterRefused)
        #expect(DeliveryOutcome.judge(answer.encoded, request: r, isRevocation: false, organization: party.signing.publicKey) == .refused(answer))
        #expect(w.hub.held.isEmpty)
    }

    @Test func relaxedContactConsentNeedsTheOrganizationsExplicitApproval() throws {
        // A chapter that relaxes contact consent is not approved by accident…
        var relaxed = try World(allowWithoutContactConsent: true, approved: false)
        #expect { _ = try relaxed.hub.decide(relaxed.log.chapter, state: relaxed.log.state, approve: true, nowMilliseconds: now) } throws: {
            ($0 as? ConsentError)?.kind == .noConsent && "\($0)".contains("--allow-without-contact-consent")
        }
        #expect(relaxed.hub.decisions.isEmpty)
        _ = try relaxed.hub.decide(relaxed.log.chapter, state: relaxed.log.state, approve: true, allowWithoutContactConsent: true, nowMilliseconds: now)
        #expect(try relaxed.hub.accept(relaxed.record(relaxed.grant(relaxed.alice), values: [("name", "Rosa"), ("consent", "contact")]),
                                       chapter: relaxed.log.state, nowMilliseconds: now).rule == .chapterAllowsWithoutContactConsent)
        // … and even relaxed, a contact who agreed to nothing stays out.
        #expect { _ = try relaxed.hub.accept(relaxed.record(relaxed.grant(relaxed.alice), values: [("name", "Rosa"), ("consent", "")]),
                                              chapter: relaxed.log.state, nowMilliseconds: now) } throws: { ($0 as? ConsentError)?.kind == .noConsent }

        // A chapter approved strict that relaxes afterwards waits for a new approval.
        var w = try World()
        try w.log.append(.affiliate(Affiliation(signingKey: party.signing.publicKey, agreementKey: party.agreement.publicKey, name: "Party", hub: "h:1",
                                                allowsWithoutContactConsent: true)),
                         certificate: w.alice.certificate, device: w.alice.device, now: now - 1_000)
        #expect(w.hub.standing(of: w.log.chapter, affiliation: w.log.state.affiliation) == .reapproval)
        let onlyContact = w.record(w.grant(w.alice), values: [("name", "Sam"), ("consent", "contact")])
        #expect(w.hub.answer(record: onlyContact, chapter: w.log.state, nowMilliseconds: now).code == .pendingApproval)
        #expect(w.hub.held.isEmpty)
    }

    @Test func perChapterLimitsRefuseWithASignedAnswer() throws {
        var w = try World()
        w.hub.limits = HubLimits(maxRecordsPerChapter: 2, maxBytesPerChapter: 1 << 20)
        let g1 = w.grant(w.alice), g2 = w.grant(w.alice), g3 = w.grant(w.bob)
        _ = try w.hub.accept(w.record(g1), chapter: w.log.state, nowMilliseconds: now)
        _ = try w.hub.accept(w.record(g2), chapter: w.log.state, nowMilliseconds: now)
        let third = w.record(g3, by: w.bob)
        let answer = w.hub.answer(record: third, chapter: w.log.state, nowMilliseconds: now)
        #expect(answer.kind == .refused && answer.code == .overLimit && answer.reason.contains("limit"))
        #expect(w.hub.held.count == 2)
        // At the limit, an update of a record already held still goes through (it replaces).
        #expect(try w.hub.accept(w.record(g1, version: 2), chapter: w.log.state, nowMilliseconds: now).version == 2)
        // Bytes count too; and an approval can set the chapter's own limits.
        _ = try w.hub.decide(w.log.chapter, state: w.log.state, approve: true, maxRecords: 100, maxBytes: 2 * UInt64(third.count) + 10, nowMilliseconds: now)
        #expect(w.hub.answer(record: third, chapter: w.log.state, nowMilliseconds: now).code == .overLimit)
        _ = try w.hub.decide(w.log.chapter, state: w.log.state, approve: true, maxRecords: 3, maxBytes: 0, nowMilliseconds: now)
        #expect(w.hub.answer(record: third, chapter: w.log.state, nowMilliseconds: now).kind == .stored)
    }

    // MARK: Finding 7 — grant ids were not bound to their owner

    @Test func anotherMemberCannotOverwriteTheOwnersRecordWithAHigherVersion() throws {
        var w = try World()
        let g = w.grant(w.alice)
        let first = w.record(g)
        _ = try w.hub.accept(first, chapter: w.log.state, nowMilliseconds: now)
        // Bob saw Alice's grant id go by and signs his own grant under it, at version 99.
        let hijack = Self.grant(w.bob, id: g.id, chapter: w.log.chapter)
        _ = try w.hub.accept(w.record(hijack, version: 99, by: w.bob, values: [("name", "Not Rosa"), ("consent", "share")]),
                             chapter: w.log.state, nowMilliseconds: now + 1)
        // Alice's record is untouched; Bob's is his own, under his key.
        #expect(w.hub.held[w.key(g)]?.requestHash.elementsEqual(BLAKE2b.hash(first)) == true && w.hub.held[w.key(g)]?.version == 1)
        #expect(w.hub.held[w.key(hijack)]?.key.member == w.bob.member.publicKey && w.hub.held[w.key(hijack)]?.version == 99)
        // Alice's next version and her revocation are still accepted, and delete only hers.
        _ = try w.hub.accept(w.record(g, version: 2), chapter: w.log.state, nowMilliseconds: now + 2)
        let revocation = GrantRevocation.make(grant: g, at: now + 3, certificate: w.alice.certificate, device: w.alice.device)
        #expect(try w.hub.revoke(revocation.encoded, nowMilliseconds: now + 3).kind == .deleted)
        #expect(w.hub.held[w.key(g)] == nil && w.hub.held[w.key(hijack)] != nil)
    }

    @Test func aPreemptiveRevocationOfAnUnseenIdByAnotherMemberDoesNotBlockTheOwner() throws {
        var w = try World()
        let g = w.grant(w.alice)
        // Bob revokes Alice's grant id before her record reaches the hub.
        let bobs = Self.grant(w.bob, id: g.id, chapter: w.log.chapter)
        let early = GrantRevocation.make(grant: bobs, at: now, certificate: w.bob.certificate, device: w.bob.device)
        let answer = try w.hub.revoke(early.encoded, nowMilliseconds: now)
        #expect(answer.memberKey == w.bob.member.publicKey.bytes) // it closed Bob's own grant of that id, nothing else
        #expect(w.hub.closed == [GrantKey(member: w.bob.member.publicKey, grant: g.id)])
        // Alice's record arrives afterwards and is stored.
        #expect(try w.hub.accept(w.record(g), chapter: w.log.state, nowMilliseconds: now + 1).kind == .stored)
        #expect(w.hub.held[w.key(g)] != nil)
    }

    // MARK: Finding 8 — a relaying peer could forge "hub refused"

    @Test func onlyTheOrganizationsSignedAnswerForExactlyThatRequestIsFinal() throws {
        var w = try World()
        let g = w.grant(w.alice)
        let r = w.record(g)
        let org = party.signing.publicKey
        let judge = { (reply: [UInt8]?) in DeliveryOutcome.judge(reply, request: r, isRevocation: false, organization: org) }
        let isUnverified = { (o: DeliveryOutcome) -> Bool in if case .unverified = o { true } else { false } }
        // A refusal signed by another key (a relaying member's device, say).
        let byPeer = HubAnswer.make(.refused, request: r, member: nil, grantID: nil, version: 0, code: .noConsent, reason: "no", at: now,
                                    signer: w.bob.device)
        #expect(isUnverified(judge(byPeer.encoded)))
        // No signed answer at all (the old unsigned `hub-refused`).
        #expect(isUnverified(judge(nil)))
        // The organization's genuine refusal of *another* request, replayed onto this one.
        let elsewhere = w.hub.answer(record: w.record(w.grant(w.mallory), by: w.mallory), chapter: w.log.state, nowMilliseconds: now)
        #expect(elsewhere.kind == .refused && isUnverified(judge(elsewhere.encoded)))
        // A genuine receipt with its kind flipped to "refused", or any byte changed.
        let genuine = try w.hub.accept(r, chapter: w.log.state, nowMilliseconds: now)
        for i in 0..<genuine.encoded.count {
            var t = genuine.encoded
            t[i] ^= i == 1 ? 0x02 : 0x01
            #expect(isUnverified(judge(t)))
        }
        // A genuine answer of a kind that does not fit (a deletion receipt for a record).
        let deletion = HubAnswer.make(.deleted, request: r, member: g.member, grantID: g.id, version: 1, at: now, signer: party.signing)
        #expect(isUnverified(judge(deletion.encoded)))
        // After all that the record is still pending; the genuine answer to its retry is final.
        #expect(judge(genuine.encoded) == .stored(genuine))
        #expect(judge(try w.hub.accept(r, chapter: w.log.state, nowMilliseconds: now + 5).encoded) == .stored(genuine))
    }

    // MARK: Storage schema

    @Test func aSchema1StoreMigratesAndKeepsItsClosedGrantsClosed() throws {
        let w = try World()
        let g = w.grant(w.alice)
        let r = w.record(g, version: 3)
        // A schema-1 row: keyed by grant id, with a version-1 receipt.
        var body = ByteWriter()
        body.u8(1); body.u8(1); body.raw(g.id); body.uvarint(UInt64(3)); body.raw(BLAKE2b.hash(r)); body.u8(1); body.u64(now - 5)
        let legacy = body.bytes + party.signing.signature(for: Array("kith/receipt/v1\0".utf8) + body.bytes)
        let closedID = SecureRandom.bytes(16)
        var v: [UInt8] = []
        v.appendBigEndian(UInt64(4))
        let m = HubStoreSchema.migrateFrom1(records: [(g.id, HubStoreSchema.encodeHeld(record: r, answer: legacy, chapterName: "Ward 5"))],
                                            closed: [(closedID, v)], keys: party, nowMilliseconds: now)
        #expect(m.unreadable == 0 && m.deleteRecords == [g.id] && m.deleteClosed == [closedID])
        #expect(m.putRecords.map(\.id) == [w.alice.member.publicKey.bytes + g.id])
        #expect(m.putClosed.map(\.id) == [HubStoreSchema.unknownOwner + closedID])
        let row = try #require(HubStoreSchema.decodeHeld(m.putRecords[0].bytes))
        let answer = try HubAnswer(encoded: row.answer, organization: party.signing.publicKey)
        #expect(answer.kind == .stored && answer.answers(r) && answer.rule == .contactAgreed && answer.at == now - 5 && answer.version == 3)

        // Restored: the record is held under (Alice, id), older versions are replays (also after
        // a restart), and the grant closed in schema 1 stays closed for every member.
        var hub = HubLedger(keys: party)
        let closed = m.putClosed.compactMap { c in HubStoreSchema.decodeClosedID(c.id).map { ($0.member, $0.grant, UInt64(4)) } }
        let approval = ChapterDecision.make(chapter: w.log.chapter, approved: true, allowsWithoutContactConsent: false, at: now, signer: party.signing)
        try hub.restore(records: [row], closed: closed, decisions: [approval.encoded], nowMilliseconds: now)
        #expect(hub.held[w.key(g)]?.version == 3 && hub.usage[w.log.chapter]?.records == 1)
        #expect { _ = try hub.accept(w.record(g, version: 2), chapter: w.log.state, nowMilliseconds: now) } throws: { ($0 as? ConsentError)?.kind == .replayed }
        let closedGrant = Self.grant(w.bob, id: closedID, chapter: w.log.chapter)
        #expect { _ = try hub.accept(w.record(closedGrant, by: w.bob, values: [("name", "x"), ("consent", "share")]), chapter: w.log.state, nowMilliseconds: now) } throws: {
            ($0 as? ConsentError)?.kind == .replayed
        }
    }

    // MARK: Finding 10 — CSV formula injection

    @Test func csvCellsCannotBecomeFormulas() {
        #expect(HubExport.csvCell("=HYPERLINK(\"http://evil\",\"x\")") == "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\"")
        for bad in ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"] {
            let cell = HubExport.csvCell(bad)
            #expect(cell.hasPrefix("'") || cell.hasPrefix("\"'"), "\(bad) → \(cell)")
        }
        #expect(HubExport.csvCell("Rosa Diaz") == "Rosa Diaz")
        #expect(HubExport.csvCell("Diaz, Rosa") == "\"Diaz, Rosa\"")
        #expect(HubExport.csvCell("a\nb") == "\"a\nb\"")
        let csv = HubExport.csv([["name": "=cmd|' /C calc'!A0", "notes": "ok"]])
        #expect(csv == "name,notes\n'=cmd|' /C calc'!A0,ok\n")
    }
}
