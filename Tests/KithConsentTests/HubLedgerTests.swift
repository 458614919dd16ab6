@testable import KithConsent
import KithChapter
import KithCRDT
import KithCrypto
import Testing

/// A member with one device.
struct Member {
    let member = Ed25519.PrivateKey()
    let device = Ed25519.PrivateKey()
    let agreement = X25519.PrivateKey()
    var certificate: DeviceCertificate {
        DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey, createdAt: 1_700_000_000)
    }
}

let now: UInt64 = 1_800_000_000_000
let party = OrganizationKeys.generate(name: "Party")
let rivals = OrganizationKeys.generate(name: "Rivals")

struct World {
    let alice = Member(), bob = Member(), mallory = Member()
    var log: MembershipLog
    var hub = HubLedger(keys: party)

    /// `approved`: the organization approves the chapter (its terms as the chapter asks).
    init(allowWithoutContactConsent: Bool = false, affiliateWith org: OrganizationKeys = party, approved: Bool = true) throws {
        log = try MembershipLog.create(name: "Ward 5", certificate: alice.certificate, device: alice.device, now: now - 10_000)
        try log.append(.addMember(bob.certificate, admin: false, invite: nil), certificate: alice.certificate, device: alice.device, now: now - 9_000)
        let c = org.card
        try log.append(.affiliate(Affiliation(signingKey: c.signingKey, agreementKey: c.agreementKey, name: c.name, hub: "127.0.0.1:7500",
                                              allowsWithoutContactConsent: allowWithoutContactConsent)),
                       certificate: alice.certificate, device: alice.device, now: now - 8_000)
        if approved && org.signing.publicKey == party.signing.publicKey {
            _ = try hub.decide(log.chapter, state: log.state, approve: true, allowWithoutContactConsent: allowWithoutContactConsent, nowMilliseconds: now - 7_000)
        }
    }

    func key(_ g: Grant) -> GrantKey { GrantKey(member: g.member, grant: g.id) }

    func grant(_ by: Member, fields: [String] = ["name", "emails"], expiresAt: UInt64? = nil, org: OrganizationKeys = party) -> Grant {
        Grant.make(chapter: log.chapter, organization: org.signing.publicKey, contact: ContactID(high: 1, low: 2), fields: fields,
                   purpose: "GOTV calls", createdAt: now, expiresAt: expiresAt, certificate: by.certificate, device: by.device)
    }

    /// An encoded record (any signer: the attacks need records the API would not make).
    func record(_ g: Grant, version: UInt64 = 1, by: Member? = nil, values: [(String, String)]? = nil, to org: OrganizationKeys = party) -> [UInt8] {
        let m = by ?? alice
        return UpwardRecord.encode(grant: g, version: version,
                                 values: values ?? [("name", "Rosa Diaz"), ("emails", "rosa@example.org"), ("consent", "share;2026-11-01;in person")],
                                 to: org.agreement.publicKey, certificate: m.certificate, device: m.device)
    }
}

@Suite("Hub ledger: consent-gated upward records")
struct HubLedgerTests {
    @Test func grantedFieldsArriveWithAVerifiableReceipt() throws {
        var w = try World()
        let g = w.grant(w.alice)
        let receipt = try w.hub.accept(w.record(g), chapter: w.log.state, nowMilliseconds: now + 1)
        // The member verifies the receipt against the organization key from the chapter log.
        let verified = try HubAnswer(encoded: receipt.encoded, organization: w.log.state.affiliation!.signingKey)
        #expect(verified.kind == .stored && verified.rule == .contactAgreed && verified.version == 1)
        #expect(verified.requestHash[...] == w.hub.held[w.key(g)]!.requestHash && verified.answers(w.record(g)) == false) // bound to those exact bytes
        #expect(verified.memberKey == w.alice.member.publicKey.bytes && verified.grantID == g.id)
        let held = try #require(w.hub.held[w.key(g)])
        #expect(held.version == 1 && held.rule == .contactAgreed && held.chapter == w.log.chapter)
        // An update (a granted field edited) replaces it with a newer version.
        let v2 = w.record(g, version: 2, values: [("name", "Rosa Díaz"), ("emails", "rosa@example.org"), ("consent", "share")])
        let receipt2 = try w.hub.accept(v2, chapter: w.log.state, nowMilliseconds: now + 2)
        #expect(w.hub.held[w.key(g)]?.version == 2 && w.hub.held[w.key(g)]?.requestHash.elementsEqual(BLAKE2b.hash(v2)) == true)
        // Sending the same record again (a retry) returns the same receipt, byte for byte (the
        // ledger keeps no receipt: it signs the same one again, Ed25519 being deterministic).
        #expect(try w.hub.accept(v2, chapter: w.log.state, nowMilliseconds: now + 3).encoded == receipt2.encoded)
    }

    @Test func revocationDeletesWithAReceiptAndOldRecordsStayOut() throws {
        var w = try World()
        let g = w.grant(w.alice)
        let r1 = w.record(g)
        _ = try w.hub.accept(r1, chapter: w.log.state, nowMilliseconds: now + 1)
        let revocation = GrantRevocation.make(grant: g, at: now + 10, certificate: w.alice.certificate, device: w.alice.device)
        let receipt = try w.hub.revoke(revocation.encoded, nowMilliseconds: now + 11)
        #expect(try HubAnswer(encoded: receipt.encoded, organization: party.signing.publicKey).kind == .deleted)
        #expect(w.hub.held[w.key(g)] == nil)
        // Replaying the old record (or a newer one under the revoked grant) is refused.
        #expect { _ = try w.hub.accept(r1, chapter: w.log.state, nowMilliseconds: now + 12) } throws: { ($0 as? ConsentError)?.kind == .replayed }
        #expect(throws: ConsentError.self) { _ = try w.hub.accept(w.record(g, version: 5), chapter: w.log.state, nowMilliseconds: now + 12) }
        // A receipt forged with another key does not verify against the organization.
        let forged = HubAnswer.make(.deleted, request: revocation.encoded, member: w.alice.member.publicKey, grantID: g.id, version: 1, at: now, signer: rivals.signing)
        #expect(throws: ConsentError.self) { _ = try HubAnswer(encoded: forged.encoded, organization: party.signing.publicKey) }
    }

    @Test func expiredGrantsAreDeletedAndRefused() throws {
        var w = try World()
        let g = w.grant(w.alice, expiresAt: now + 1_000)
        _ = try w.hub.accept(w.record(g), chapter: w.log.state, nowMilliseconds: now + 1)
        #expect(w.hub.expire(nowMilliseconds: now + 1_000) == [w.key(g)])
        #expect(w.hub.held.isEmpty)
        #expect(throws: ConsentError.self) { _ = try w.hub.accept(w.record(g, version: 2), chapter: w.log.state, nowMilliseconds: now + 2_000) }
    }

    @Test func attacksAreRefused() throws {
        var w = try World()
        let g = w.grant(w.alice)
        // A record for Alice's grant signed by another member (Bob) — not the owner.
        #expect { _ = try w.hub.accept(w.record(g, by: w.bob), chapter: w.log.state, nowMilliseconds: now) } throws: {
            ($0 as? ConsentError)?.kind == .notOwner
        }
        // A grant by someone who is not a member of the chapter.
        #expect { _ = try w.hub.accept(w.record(w.grant(w.mallory), by: w.mallory), chapter: w.log.state, nowMilliseconds: now) } throws: {
            ($0 as? ConsentError)?.kind == .notMember
        }
        // Tampered bytes anywhere: refused, nothing held.
        let good = w.record(g)
        for i in stride(from: 0, to: good.count, by: 13) {
            var b = good
            b[i] ^= 0x01
            #expect(throws: ConsentError.self) { _ = try w.hub.accept(b, chapter: w.log.state, nowMilliseconds: now) }
        }
        // Sealed to another organization's key but sent here: does not open.
        #expect { _ = try w.hub.accept(w.record(g, to: rivals), chapter: w.log.state, nowMilliseconds: now) } throws: {
            ($0 as? ConsentError)?.kind == .badSignature
        }
        // A grant for another organization.
        #expect { _ = try w.hub.accept(w.record(w.grant(w.alice, org: rivals), to: rivals), chapter: w.log.state, nowMilliseconds: now) } throws: {
            ($0 as? ConsentError)?.kind == .wrongOrganization
        }
        // Fields the grant does not cover.
        let extra = w.record(g, values: [("name", "Rosa"), ("phones", "+15550100"), ("consent", "share")])
        #expect { _ = try w.hub.accept(extra, chapter: w.log.state, nowMilliseconds: now) } throws: { ($0 as? ConsentError)?.kind == .notCovered }
        // A replayed older version after an update.
        _ = try w.hub.accept(w.record(g, version: 3), chapter: w.log.state, nowMilliseconds: now)
        #expect { _ = try w.hub.accept(w.record(g, version: 2), chapter: w.log.state, nowMilliseconds: now) } throws: { ($0 as? ConsentError)?.kind == .replayed }
        // Only the owner may revoke: Bob's revocation of Alice's grant id closes only Bob's own
        // grant of that id, and Alice's record stays.
        let byBob = GrantRevocation.make(grant: g, at: now, certificate: w.bob.certificate, device: w.bob.device)
        _ = try w.hub.revoke(byBob.encoded, nowMilliseconds: now)
        #expect(w.hub.held[w.key(g)] != nil)
    }

    @Test func aChapterNotAffiliatedWithThisHubIsRefused() throws {
        var w = try World(affiliateWith: rivals)
        #expect { _ = try w.hub.accept(w.record(w.grant(w.alice)), chapter: w.log.state, nowMilliseconds: now) } throws: {
            ($0 as? ConsentError)?.kind == .notAffiliated
        }
        #expect(throws: ConsentError.self) { _ = try w.hub.accept(w.record(w.grant(w.alice)), chapter: nil, nowMilliseconds: now) }
    }

    @Test func theContactsOwnConsentIsEnforcedUnlessTheChapterRelaxesIt() throws {
        var strict = try World()
        let onlyContact = [("name", "Rosa"), ("consent", "contact;2026-11-01;door")]
        #expect { _ = try strict.hub.accept(strict.record(strict.grant(strict.alice), values: onlyContact), chapter: strict.log.state, nowMilliseconds: now) } throws: {
            ($0 as? ConsentError)?.kind == .noConsent
        }
        #expect(throws: ConsentError.self) {
            _ = try strict.hub.accept(strict.record(strict.grant(strict.alice), values: [("name", "Rosa")]), chapter: strict.log.state, nowMilliseconds: now)
        }
        var relaxed = try World(allowWithoutContactConsent: true)
        let receipt = try relaxed.hub.accept(relaxed.record(relaxed.grant(relaxed.alice), values: onlyContact), chapter: relaxed.log.state, nowMilliseconds: now)
        #expect(receipt.rule == .chapterAllowsWithoutContactConsent)
        // Only an admin may affiliate or relax: Bob's attempt is refused by the log.
        var log = relaxed.log
        let bob = relaxed.bob
        #expect(throws: MembershipError.self) {
            try log.append(.affiliate(Affiliation(signingKey: rivals.signing.publicKey, agreementKey: rivals.agreement.publicKey, name: "R", hub: "",
                                                  allowsWithoutContactConsent: true)), certificate: bob.certificate, device: bob.device, now: now)
        }
    }

    @Test func organizationCardsRoundTrip() throws {
        let card = party.card
        #expect(try OrganizationCard(text: card.text + "\n") == card)
        #expect(throws: ConsentError.self) { _ = try OrganizationCard(text: "kith-org:AAAA") }
    }
}
