import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
@testable import KithHubConnectors
@testable import KithNetwork
import KithStore
import Testing

/// The OSDI connector against a local server implementing Action Network API v2's documented
/// shapes (OSDITestServer): what it sends, how it deletes, and that a failing downstream is
/// retried and never reported as deleted.
@Suite("OSDI connector (Action Network API v2 shapes, local test server)")
struct OSDIConnectorTests {
    typealias Clock = RetractionStorageTests.Clock

    struct Setup {
        let server = OSDITestServer()
        let store: TestStore
        let clock = Clock()
        let ch: Chapter

        init(_ kind: StoreKind) async throws {
            store = try await TestStore(kind)
            ch = try Chapter(org: store.keys)
            try await server.start()
        }

        func connector(timeout: Int64 = 30, deletePeople: Bool = false) -> OSDIConnector {
            OSDIConnector(.init(endpoint: server.base, apiKey: server.token, subscribePurposes: ["Newsletter"], deletePeople: deletePeople,
                                timeout: .seconds(timeout)))
        }

        func hub(_ s: any HubStorage, _ c: OSDIConnector) async throws -> HubNode {
            let clock = clock
            return try await HubNode(keys: store.keys, storage: s, logger: quiet, connectors: [c], clock: { clock.now })
        }

        func grant(_ by: Member, contact: UInt64, purpose: String) -> Grant {
            Grant.make(chapter: ch.log.chapter, organization: store.keys.signing.publicKey, contact: ContactID(high: 7, low: contact),
                       fields: ["name", "phones", "emails"], purpose: purpose, createdAt: ch.now - 1_000, expiresAt: nil,
                       certificate: by.certificate, device: by.device)
        }

        func record(_ g: Grant, by: Member, person p: Person, consent: String = "share") throws -> [UInt8] {
            try UpwardRecord.make(grant: g, version: 1, values: [("name", p.name), ("phones", p.phone), ("emails", p.email), ("consent", consent)],
                                  to: store.keys.agreement.publicKey, certificate: by.certificate, device: by.device).encoded
        }

        func stop() async {
            await server.stop()
            await store.cleanup()
        }
    }

    func place(_ hub: HubNode, _ g: Grant) async -> RecordTrail.Entry? {
        await hub.ledger.trails[GrantKey(member: g.member, grant: g.id)]?.entry(.connector("Action Network"))
    }

    @Test(arguments: StoreKind.available)
    func signupCarriesOnlyWhatWasConsentedAndRevocationSuppresses(_ kind: StoreKind) async throws {
        let t = try await Setup(kind)
        let s = try await t.store.open()
        let c = t.connector()
        let hub = try await t.hub(s, c)
        try await hub.approve(t.ch)
        let calls = t.grant(t.ch.alice, contact: 1, purpose: "GOTV calls"), news = t.grant(t.ch.bob, contact: 2, purpose: "Newsletter")
        #expect(try answerKind(await hub.accept(t.record(calls, by: t.ch.alice, person: Person(1))), t.store.keys) == .stored)
        #expect(try answerKind(await hub.accept(t.record(news, by: t.ch.bob, person: Person(2))), t.store.keys) == .stored)
        await hub.connectorRound()

        let posts = t.server.received().filter { $0.method == "POST" }
        #expect(posts.count == 2 && posts.allSatisfy { $0.path == "/api/v2/people/" && $0.token == t.server.token })
        let first = try #require(posts.first { (($0.body?["person"] as? [String: Any])?["given_name"] as? String) == "Zebulon" && ($0.body?["add_tags"] as? [String]) == ["GOTV calls"] })
        let person = try #require(first.body?["person"] as? [String: Any])
        #expect(person["family_name"] as? String == "Quarrington1")
        #expect((person["identifiers"] as? [String]) == ["kith:" + HubDelivery.kithID(GrantKey(member: calls.member, grant: calls.id))])
        // Not a subscription purpose: explicitly unsubscribed, never the server's default.
        #expect((person["email_addresses"] as? [[String: Any]])?.first?["status"] as? String == "unsubscribed")
        #expect((person["phone_numbers"] as? [[String: Any]])?.first?["status"] as? String == "unsubscribed")
        #expect(t.server.person(email: Person(1).email)?.emailStatus == "unsubscribed")
        // The organization's newsletter, which the contact agreed to: subscribed.
        #expect(t.server.person(email: Person(2).email)?.emailStatus == "subscribed")
        #expect(await place(hub, calls)?.state == .delivered)
        await hub.connectorRound()
        #expect(t.server.received().filter { $0.method == "POST" }.count == 2, "delivered once")

        // Revoked: the tagging goes, the person is unsubscribed; Action Network keeps people, so: suppressed.
        let answer = try HubAnswer(encoded: await hub.revoke(t.ch.revocation(news, by: t.ch.bob)), organization: t.store.keys.signing.publicKey)
        #expect(PlaceReport.summary(answer.places) == "erased at the hub; deletion outstanding in Action Network (the hub retries)")
        await hub.connectorRound()
        let p2 = try #require(t.server.person(email: Person(2).email))
        #expect(p2.taggings.isEmpty && p2.emailStatus == "unsubscribed" && p2.phoneStatus == "unsubscribed")
        #expect(t.server.person(email: Person(1).email)?.taggings.count == 1, "another person's tagging stays")
        #expect(await place(hub, news)?.state == .suppressed)
        let again = try HubAnswer(encoded: await hub.revoke(t.ch.revocation(news, by: t.ch.bob)), organization: t.store.keys.signing.publicKey)
        #expect(PlaceReport.summary(again.places) == "erased at the hub; suppressed in Action Network")
        #expect(again.deletionComplete)
        await s.shutdown()
        await c.shutdown()
        await t.stop()
    }

    @Test func aServerThatPermitsDeletionErases() async throws {
        let t = try await Setup(.sqlite)
        t.server.allowDeletingPeople = true
        let s = try await t.store.open()
        let c = t.connector(deletePeople: true)
        let hub = try await t.hub(s, c)
        try await hub.approve(t.ch)
        let g = t.grant(t.ch.alice, contact: 1, purpose: "GOTV calls")
        _ = try await hub.accept(t.record(g, by: t.ch.alice, person: Person(1)))
        await hub.connectorRound()
        #expect(t.server.peopleCount == 1)
        _ = await hub.revoke(t.ch.revocation(g, by: t.ch.alice))
        await hub.connectorRound()
        #expect(t.server.peopleCount == 0)
        #expect(await place(hub, g)?.state == .erased)
        await c.shutdown()
        await t.stop()
    }

    /// 503, 429, 400, a timeout, a wrong key: the item stays outstanding with its error and a
    /// growing backoff, nothing is called deleted; once the server is well it completes.
    @Test(arguments: StoreKind.available)
    func aFailingDownstreamIsRetriedAndNothingIsClaimed(_ kind: StoreKind) async throws {
        let t = try await Setup(kind)
        // 10 s: a loaded 2-core CI run must not turn the injected 500 into a timeout; the hang
        // fault below outlasts it.
        let c = t.connector(timeout: 10)
        let g = t.grant(t.ch.alice, contact: 1, purpose: "GOTV calls")
        do {
        let s = try await t.store.open()
        let hub = try await t.hub(s, c)
        try await hub.approve(t.ch)
        _ = try await hub.accept(t.record(g, by: t.ch.alice, person: Person(1)))
        // Delivery fails first (500): not recorded as delivered, tried again next round.
        t.server.inject([.status(500)])
        await hub.connectorRound()
        #expect(await place(hub, g) == nil)
        let health = try JSONSerialization.jsonObject(with: await hub.control(json: Data(#"{"op":"status"}"#.utf8))) as? [String: Any]
        let connectors = (health?["status"] as? [String: Any])?["connectors"] as? [[String: Any]]
        #expect(connectors?.first?["healthy"] as? Bool == false && (connectors?.first?["lastError"] as? String ?? "").contains("500"), "\(String(describing: connectors))")
        await hub.connectorRound()
        #expect(await place(hub, g)?.state == .delivered)

        _ = await hub.revoke(t.ch.revocation(g, by: t.ch.alice))
        var attempts: UInt64 = 0
        for fault in [OSDITestServer.Fault.status(503), .status(429), .status(400), .hang(.seconds(25)), .status(401)] {
            t.server.inject([fault])
            t.clock.advance(3_600_000) // past any backoff
            await hub.connectorRound()
            let e = try #require(await place(hub, g))
            attempts += 1
            #expect(e.state == .outstanding && e.attempts == attempts && !e.lastError.isEmpty, "\(fault): \(e)")
            #expect(e.nextAttemptAt > t.clock.now, "backing off")
            let listed = try JSONSerialization.jsonObject(with: await hub.control(json: Data(#"{"op":"retractions"}"#.utf8))) as? [String: Any]
            #expect((listed?["retractions"] as? [[String: Any]])?.first?["state"] as? String == "deletion outstanding")
        }
        #expect(t.server.person(email: Person(1).email)?.taggings.isEmpty == false || t.server.person(email: Person(1).email)?.emailStatus == "unsubscribed",
                "the person is still there")
        // Not due yet: nothing is sent.
        let before = t.server.received().count
        await hub.connectorRound()
        #expect(t.server.received().count == before)
        t.clock.advance(3_600_000)
        await hub.connectorRound()
        #expect(await place(hub, g)?.state == .suppressed)
        await s.shutdown()
        }
        // And that outcome is durable.
        let reopened = try await t.store.open()
        let hub2 = try await t.hub(reopened, c)
        #expect(await place(hub2, g)?.state == .suppressed)
        await reopened.shutdown()
        await c.shutdown()
        await t.stop()
    }
}
