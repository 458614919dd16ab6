import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
@testable import KithHubConnectors
@testable import KithNetwork
import KithStore
import Testing

/// The retraction ledger through a real hub on both back ends (Protocol/consent.md §4.5): records
/// exported to CSV files for staff, revoked, listed for deletion, confirmed by staff — and every
/// step survives a restart, and every deletion receipt says what is true at each place.
@Suite("Retraction ledger on SQLite and PostgreSQL")
struct RetractionStorageTests {
    final class Clock: @unchecked Sendable {
        // Guarded by `lock`: read from the hub's actor and the connectors.
        private let lock = NSLock()
        private var ms = ContactStore.systemClock()
        var now: UInt64 { lock.withLock { ms } }
        func advance(_ d: UInt64) { lock.withLock { ms += d } }
    }

    func makeHub(_ store: TestStore, _ s: any HubStorage, exports: String, clock: Clock) async throws -> HubNode {
        let connectors: [any HubConnector] = [
            FileExportConnector(name: "Action Network CSV files", format: .actionNetwork, directory: exports, clock: { clock.now }),
            FileExportConnector(name: "VAN CSV files", format: .van, directory: exports, clock: { clock.now }),
        ]
        return try await HubNode(keys: store.keys, storage: s, logger: quiet, connectors: connectors, overdueAfterMilliseconds: 3_600_000,
                                 clock: { clock.now })
    }

    func control(_ hub: HubNode, _ json: String) async throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: await hub.control(json: Data(json.utf8))) as? [String: Any])
    }

    @Test(arguments: StoreKind.available)
    func exportedRecordsAreTrackedToTheirDeletion(_ kind: StoreKind) async throws {
        let store = try await TestStore(kind)
        let exports = try TempDir()
        let clock = Clock()
        let ch = try Chapter(org: store.keys)
        let g1 = ch.grant(ch.alice, contact: 1), g2 = ch.grant(ch.bob, contact: 2)
        let revocation = ch.revocation(g1, by: ch.alice)
        do {
            let s = try await store.open()
            let hub = try await makeHub(store, s, exports: exports.path, clock: clock)
            try await hub.approve(ch)
            for (g, by, i) in [(g1, ch.alice, 1), (g2, ch.bob, 2)] {
                #expect(try answerKind(await hub.accept(ch.record(g, by: by, person: Person(i))), store.keys) == .stored)
            }
            await hub.connectorRound()
            let files = try FileManager.default.contentsOfDirectory(atPath: exports.path).sorted()
            #expect(files.count == 2 && files[0].hasPrefix("action-network-") && files[1].hasPrefix("van-"), "\(files)")
            let an = try String(contentsOfFile: exports.path + "/" + files[0], encoding: .utf8)
            #expect(an.hasPrefix("email,first_name,last_name,zip_code,phone,kith_id,purpose,chapter\r\n"))
            #expect(an.contains("zeb.quarrington1@example.org,Zebulon,Quarrington1,") && an.contains(HubDelivery.kithID(GrantKey(member: g1.member, grant: g1.id))))
            await hub.connectorRound() // nothing new: no new file
            #expect(try FileManager.default.contentsOfDirectory(atPath: exports.path).count == 2)
            await s.shutdown()
        }
        // Restarted: the places are known; the revocation opens a deletion item per file.
        let retractions = try await revokeAndList(store, exports: exports, clock: clock, revocation: revocation, g1: g1)
        try await confirm(store, exports: exports, clock: clock, revocation: revocation, retractions: retractions)
        await store.cleanup()
    }

    func revokeAndList(_ store: TestStore, exports: TempDir, clock: Clock, revocation: [UInt8], g1: Grant) async throws -> [[String: Any]] {
        let s = try await store.open()
        let hub = try await makeHub(store, s, exports: exports.path, clock: clock)
        let answer = try HubAnswer(encoded: await hub.revoke(revocation), organization: store.keys.signing.publicKey)
        #expect(answer.kind == .deleted && answer.formatVersion == 2)
        #expect(PlaceReport.summary(answer.places) == "erased at the hub; 2 file exports awaiting staff confirmation")
        await hub.connectorRound()
        let lists = try FileManager.default.contentsOfDirectory(atPath: exports.path).filter { $0.contains("deletions-") }.sorted()
        #expect(lists.count == 2, "one deletion list per format: \(lists)")
        let list = try String(contentsOfFile: exports.path + "/" + lists[0], encoding: .utf8)
        #expect(list.hasPrefix("file,kith_id,asked_at\r\n") && list.contains(HubDelivery.kithID(GrantKey(member: g1.member, grant: g1.id))))
        #expect(!list.contains("Quarrington"), "a deletion list names no one")
        await hub.connectorRound() // listed once, not again
        #expect(try FileManager.default.contentsOfDirectory(atPath: exports.path).filter { $0.contains("deletions-") }.count == 2)

        clock.advance(2 * 3_600_000)
        let retractions = try await control(hub, #"{"op":"retractions"}"#)["retractions"] as? [[String: Any]] ?? []
        #expect(retractions.count == 2 && retractions.allSatisfy { $0["overdue"] as? Bool == true && ($0["ageSeconds"] as? Int ?? 0) >= 7_200 }, "\(retractions)")
        let status = try await control(hub, #"{"op":"status"}"#)["status"] as? [String: Any]
        let deletions = status?["deletions"] as? [String: Any]
        #expect(deletions?["outstanding"] as? Int == 2 && deletions?["overdue"] as? Int == 2, "\(String(describing: status))")
        let overdueItems = deletions?["overdueItems"] as? [[String: Any]] ?? []
        #expect(overdueItems.count == 2 && overdueItems.allSatisfy { ($0["ageSeconds"] as? Int ?? 0) >= 7_200 && ($0["place"] as? String ?? "").contains("file") }, "\(overdueItems)")
        #expect(status?["healthy"] as? Bool == false && (status?["problems"] as? [String]) == ["2 deletions are overdue"], "\(String(describing: status))")
        #expect((status?["connectors"] as? [[String: Any]])?.count == 2)
        await s.shutdown()
        return retractions
    }

    /// Staff confirm one file on a restarted hub; the member's next ask gets the updated receipt.
    func confirm(_ store: TestStore, exports: TempDir, clock: Clock, revocation: [UInt8], retractions: [[String: Any]]) async throws {
        do {
        let s2 = try await store.open()
        let hub2 = try await makeHub(store, s2, exports: exports.path, clock: clock)
        let anFile = try #require(retractions.compactMap { $0["place"] as? String }.first { $0.contains("action-network-") }).replacingOccurrences(of: "file export ", with: "")
        let confirmed = try await control(hub2, #"{"op":"confirm-file","file":"\#(anFile)"}"#)
        #expect(confirmed["confirmed"] as? Int == 1, "\(confirmed)")
        #expect(try await control(hub2, #"{"op":"confirm-file","file":"no-such.csv"}"#)["ok"] as? Bool == false)
        let again = try HubAnswer(encoded: await hub2.revoke(revocation), organization: store.keys.signing.publicKey)
        #expect(PlaceReport.summary(again.places) == "erased at the hub; 1 file export awaiting staff confirmation; 1 file export deleted (confirmed by staff)")
        #expect(!again.deletionComplete)
        await s2.shutdown()
        }
        let s3 = try await store.open()
        let hub3 = try await makeHub(store, s3, exports: exports.path, clock: clock)
        #expect((try await control(hub3, #"{"op":"retractions"}"#)["retractions"] as? [[String: Any]])?.count == 1, "the confirmation is durable")
        #expect(await hub3.heldCount == 1)
        await s3.shutdown()
    }
}
