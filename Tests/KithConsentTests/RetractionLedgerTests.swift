@testable import KithConsent
import KithChapter
import KithCRDT
import KithCrypto
import Testing

/// The retraction ledger (Protocol/consent.md §4.5): every place a record went, a deletion work
/// item per place on revocation or expiry, and receipts that say exactly what happened where.
@Suite("Retraction ledger: deletion receipts that tell the truth per place")
struct RetractionLedgerTests {
    let an = RecordPlace.connector("Action Network")
    let file = RecordPlace.file("action-network-20261203T071000Z.csv")

    func revoke(_ w: inout World, _ g: Grant, by m: Member? = nil, at t: UInt64) throws -> HubAnswer {
        let by = m ?? w.alice
        let rev = GrantRevocation.make(grant: g, at: now, certificate: by.certificate, device: by.device).encoded
        let answer = try w.hub.revoke(rev, nowMilliseconds: t)
        // Every deletion receipt verifies against the organization's key, as sent.
        #expect(DeliveryOutcome.judge(answer.encoded, request: rev, isRevocation: true, organization: party.signing.publicKey) == .deleted(answer))
        return answer
    }

    @Test func aRecordThatWentNowhereButTheHubIsErasedThere() throws {
        var w = try World()
        let g = w.grant(w.alice)
        _ = try w.hub.accept(w.record(g), chapter: w.log.state, nowMilliseconds: now + 1)
        let answer = try revoke(&w, g, at: now + 2)
        #expect(answer.formatVersion == 2)
        #expect(answer.places == [PlaceReport(place: .hub, state: .erased, at: now + 2)])
        #expect(answer.deletionComplete)
        #expect(PlaceReport.summary(answer.places) == "erased at the hub")
    }

    @Test func theReceiptSaysWhatHappenedAtEachPlaceAndUpdates() throws {
        var w = try World()
        let g = w.grant(w.alice)
        let key = w.key(g)
        _ = try w.hub.accept(w.record(g), chapter: w.log.state, nowMilliseconds: now + 1)
        _ = w.hub.delivered(key, to: an, version: 1, externalID: "https://actionnetwork.org/api/v2/people/abc", nowMilliseconds: now + 2)
        _ = w.hub.delivered(key, to: file, version: 1, nowMilliseconds: now + 3)
        #expect(w.hub.outstandingDeletions().isEmpty, "nothing is outstanding before a revocation")

        let first = try revoke(&w, g, at: now + 10)
        #expect(PlaceReport.summary(first.places)
            == "erased at the hub; deletion outstanding in Action Network (the hub retries); 1 file export awaiting staff confirmation")
        #expect(!first.deletionComplete)
        #expect(w.hub.held[key] == nil, "the hub's own copy is gone at once")
        let due = w.hub.dueDeletions(nowMilliseconds: now + 10)
        #expect(due.map(\.entry.place) == [an, file])
        #expect(due.first?.entry.externalID == "https://actionnetwork.org/api/v2/people/abc")

        // The downstream times out: the item stays outstanding, nothing is claimed, retried after a backoff.
        _ = w.hub.settle(key, at: an, result: .failure(RetractionFailure("timed out")), nowMilliseconds: now + 11)
        #expect(w.hub.trails[key]?.entry(an)?.state == .outstanding)
        #expect(w.hub.dueDeletions(nowMilliseconds: now + 12).map(\.entry.place) == [file], "backing off")
        #expect(w.hub.dueDeletions(nowMilliseconds: now + 11 + 1_000).map(\.entry.place).contains(an))
        _ = w.hub.settle(key, at: an, result: .failure(RetractionFailure("HTTP 503")), nowMilliseconds: now + 2_000)
        #expect(w.hub.trails[key]?.entry(an)?.nextAttemptAt == now + 2_000 + 2_000, "the backoff doubles")
        // A connector may not report a file's state, nor claim "erased" for a file.
        _ = w.hub.settle(key, at: an, result: .success(.awaitingStaff), nowMilliseconds: now + 5_000)
        #expect(w.hub.trails[key]?.entry(an)?.state == .outstanding)
        _ = w.hub.settle(key, at: file, result: .success(.erased), nowMilliseconds: now + 5_000)
        #expect(w.hub.trails[key]?.entry(file)?.state == .awaitingStaff)

        // Action Network keeps people: the connector unsubscribed and untagged.
        _ = w.hub.settle(key, at: an, result: .success(.suppressed), nowMilliseconds: now + 20_000)
        // The file's rows go on a deletion list (once).
        _ = w.hub.settle(key, at: file, result: .success(.awaitingStaff), reference: "deletions-1.csv", nowMilliseconds: now + 20_000)
        #expect(w.hub.dueDeletions(nowMilliseconds: now + 10_000_000).isEmpty)
        let second = try revoke(&w, g, at: now + 30_000) // the member asks again: a fresh receipt
        #expect(PlaceReport.summary(second.places) == "erased at the hub; suppressed in Action Network; 1 file export awaiting staff confirmation")
        #expect(second.places.first { $0.place == .hub }?.at == now + 10, "the hub's erasure keeps its time")
        #expect(w.hub.outstandingDeletions().map(\.entry.place) == [file])

        #expect(w.hub.confirmFile("other.csv", nowMilliseconds: now + 40_000).isEmpty)
        #expect(w.hub.confirmFile(file.name, nowMilliseconds: now + 40_000).keys.map { $0 } == [key])
        let last = try revoke(&w, g, at: now + 50_000)
        #expect(PlaceReport.summary(last.places) == "erased at the hub; suppressed in Action Network; 1 file export deleted (confirmed by staff)")
        #expect(last.deletionComplete)
        #expect(w.hub.outstandingDeletions().isEmpty)
    }

    @Test func aDeliveryThatLandsAfterTheRevocationIsDeletedToo() throws {
        var w = try World()
        let g = w.grant(w.alice)
        _ = try w.hub.accept(w.record(g), chapter: w.log.state, nowMilliseconds: now + 1)
        _ = try revoke(&w, g, at: now + 2)
        let t = w.hub.delivered(w.key(g), to: an, version: 1, externalID: "p1", nowMilliseconds: now + 3)
        #expect(t.entry(an)?.state == .outstanding)
        #expect(PlaceReport.summary(try revoke(&w, g, at: now + 4).places) == "erased at the hub; deletion outstanding in Action Network (the hub retries)")
    }

    @Test func expiryStartsTheSameDeletions() throws {
        var w = try World()
        let g = w.grant(w.alice, expiresAt: now + 100)
        _ = try w.hub.accept(w.record(g), chapter: w.log.state, nowMilliseconds: now + 1)
        _ = w.hub.delivered(w.key(g), to: file, version: 1, nowMilliseconds: now + 2)
        #expect(w.hub.expire(nowMilliseconds: now + 200) == [w.key(g)])
        #expect(w.hub.trails[w.key(g)]?.reason == .expired)
        #expect(w.hub.outstandingDeletions().map(\.entry.place) == [file])
    }

    @Test func aNonOwnersRevocationTouchesNoPlaceOfTheOwner() throws {
        var w = try World()
        let g = w.grant(w.alice)
        _ = try w.hub.accept(w.record(g), chapter: w.log.state, nowMilliseconds: now + 1)
        _ = w.hub.delivered(w.key(g), to: an, version: 1, externalID: "p1", nowMilliseconds: now + 2)
        _ = try revoke(&w, g, by: w.mallory, at: now + 3)
        #expect(w.hub.trails[w.key(g)]?.isRetracting == false)
        #expect(w.hub.trails[w.key(g)]?.entry(an)?.state == .delivered)
        #expect(w.hub.held[w.key(g)] != nil)
        #expect(w.hub.outstandingDeletions().isEmpty)
    }

    @Test func trailsRoundTripAndUndeliveredFollowsVersions() throws {
        var w = try World()
        let g = w.grant(w.alice)
        _ = try w.hub.accept(w.record(g), chapter: w.log.state, nowMilliseconds: now + 1)
        #expect(w.hub.undelivered(limit: 10) { $0 == an }.count == 1)
        let t = w.hub.delivered(w.key(g), to: an, version: 1, externalID: "p1", nowMilliseconds: now + 2)
        #expect(w.hub.undelivered(limit: 10) { $0 == an }.isEmpty)
        _ = try w.hub.accept(w.record(g, version: 2), chapter: w.log.state, nowMilliseconds: now + 3)
        #expect(w.hub.undelivered(limit: 10) { $0 == an }.count == 1, "a newer version goes again")
        #expect(try RecordTrail(encoded: t.encoded) == t)
        var started = t
        started.startRetraction(.revoked, now: now + 5)
        #expect(try RecordTrail(encoded: started.encoded) == started)
        #expect(throws: DecodeError.self) { try RecordTrail(encoded: started.encoded + [0]) }
    }

    @Test func receiptsOfVersion1StillVerifyAndVersion2IsTamperEvident() throws {
        let request: [UInt8] = Array("a revocation".utf8)
        let v1 = HubAnswer.make(.deleted, request: request, member: party.signing.publicKey, grantID: [UInt8](repeating: 7, count: 16), version: 3,
                                at: now, signer: party.signing)
        #expect(v1.formatVersion == 1 && v1.places.isEmpty && v1.deletionComplete)
        #expect(try HubAnswer(encoded: v1.encoded, organization: party.signing.publicKey) == v1)
        let v2 = HubAnswer.make(.deleted, request: request, member: party.signing.publicKey, grantID: [UInt8](repeating: 7, count: 16), version: 3,
                                at: now, places: [PlaceReport(place: .hub, state: .erased, at: now), PlaceReport(place: an, state: .outstanding, at: now)],
                                signer: party.signing)
        #expect(try HubAnswer(encoded: v2.encoded, organization: party.signing.publicKey).places == v2.places)
        // Turning "deletion outstanding" into "erased" breaks the signature.
        var forged = v2.encoded
        let stateAt = forged.count - 64 - 8 - 1
        #expect(forged[stateAt] == PlaceState.outstanding.rawValue)
        forged[stateAt] = PlaceState.erased.rawValue
        #expect(throws: ConsentError.self) { try HubAnswer(encoded: forged, organization: party.signing.publicKey) }
    }

    @Test func goldenDeletionReceipt() throws {
        // Protocol/consent.md §5's vector: a fixed key and request; Ed25519 signatures are deterministic.
        let key = try Ed25519.PrivateKey(seed: [UInt8](repeating: 0x01, count: 32))
        let answer = HubAnswer.make(.deleted, request: Array("revocation".utf8), member: key.publicKey, grantID: [UInt8](repeating: 0x02, count: 16),
                                    version: 1, at: 1_800_000_000_000,
                                    places: [PlaceReport(place: .hub, state: .erased, at: 1_800_000_000_000),
                                             PlaceReport(place: .connector("Action Network"), state: .suppressed, at: 1_800_000_060_000),
                                             PlaceReport(place: .file("an-1.csv"), state: .awaitingStaff, at: 1_800_000_000_000)],
                                    signer: key)
        #expect(answer.encoded.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() == Self.golden)
    }

    static let golden = "02026557cac9f89c3ee7fca6e87ce3807dd3fbbd75069a4e4a36dec74b4e95c213e78a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0202020202020202020202020202020201000000000001a3185c500003010002000001a3185c5000020e416374696f6e204e6574776f726b03000001a3185d3a600308616e2d312e63737604000001a3185c500074a37b0f56af1fb55078ea4f700aefa3df3b7821b9a03d2d583645afb1f49223e2656c2c0f6394158cc872a702d441aafcee040a7b742daf808cfb0304fdeb0a"
}

/// A record and its grant usually carry the same device certificate, which the hub then checks
/// once: a grant carrying a *different*, forged certificate is still checked and refused.
@Suite("Upward records: certificates checked once, never skipped")
struct CertificateCheckedOnceTests {
    @Test func aGrantWithAForgedCertificateInsideAValidRecordIsRefused() throws {
        let w = try World()
        // Mallory's device certificate, edited to name Alice as its member: its signature no longer verifies.
        var forged = w.mallory.certificate.encoded
        forged.replaceSubrange(1..<33, with: w.alice.member.publicKey.bytes)
        let cert = try DeviceCertificate(encoded: forged)
        var body = ByteWriter()
        body.u8(1)
        body.raw(SecureRandom.bytes(16))
        body.raw(w.log.chapter.bytes)
        body.raw(party.signing.publicKey.bytes)
        body.raw(ContactID(high: 1, low: 2).bytes)
        body.text("name")
        body.text("GOTV calls")
        body.u64(now)
        body.u64(0)
        let grantBytes = DeviceSigned.make(domain: Grant.domain, body: body.bytes, certificate: cert, device: w.mallory.device)
        #expect(throws: ConsentError.self) { try Grant(encoded: grantBytes, nowSeconds: now / 1000) }
        // Wrapped in a record Alice's real device signs: the record's certificate verifies, the grant's does not.
        var r = ByteWriter()
        r.u8(1)
        r.lengthPrefixed(grantBytes)
        r.uvarint(1)
        r.lengthPrefixed(SealedBox.seal([0], to: party.agreement.publicKey))
        let record = DeviceSigned.make(domain: UpwardRecord.domain, body: r.bytes, certificate: w.alice.certificate, device: w.alice.device)
        #expect { try UpwardRecord(encoded: record, nowSeconds: now / 1000) } throws: { ($0 as? ConsentError)?.kind == .badSignature }
        // And the same record with an honest grant of Alice's parses (its certificate checked once).
        let honest = w.record(w.grant(w.alice))
        #expect(try UpwardRecord(encoded: honest, nowSeconds: now / 1000).grant.member == w.alice.member.publicKey)
    }
}
