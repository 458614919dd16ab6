import Foundation
import KithConsent
import KithCRDT
import KithCrypto
@testable import KithNetwork
import KithStore
import Testing

/// Faults of issue 17 at the hub: a revocation racing a connector's delivery, and a full disk.
@Suite("Hub faults: a revocation during a delivery, a full disk", .serialized)
struct HubFaultTests {
    /// A downstream system whose deliveries wait until the test lets them through.
    final class GatedConnector: HubConnector, @unchecked Sendable {
        // Guarded by `lock`: used from the hub's actor and the test.
        private let lock = NSLock()
        private var entered = false, released = false
        private var retractedKeys: [GrantKey] = []
        let name = "Action Network"

        var isDelivering: Bool { lock.withLock { entered } }
        var retracted: [GrantKey] { lock.withLock { retractedKeys } }
        func release() { lock.withLock { released = true } }

        func owns(_ place: RecordPlace) -> Bool { place == .connector(name) }

        func deliver(_ records: [HubDelivery]) async -> [Result<Delivered, RetractionFailure>] {
            lock.withLock { entered = true }
            while !lock.withLock({ released }) { try? await Task.sleep(nanoseconds: 10_000_000) }
            return records.map { .success(Delivered(place: .connector(name), externalID: "person-" + $0.kithID)) }
        }

        func retract(_ items: [HubRetractionItem]) async -> [Result<Retracted, RetractionFailure>] {
            lock.withLock { retractedKeys += items.map(\.key) }
            return items.map { _ in .success(Retracted(.suppressed)) }
        }
    }

    static func control(_ hub: HubNode, _ op: String) async throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: await hub.control(json: Data("{\"op\":\"\(op)\"}".utf8))) as? [String: Any])
    }

    /// The record reaches the connector while its revocation arrives: the receipt does not claim
    /// the deletion complete, the delivery that lands opens a deletion item for that place, and
    /// only the connector's own deletion finishes it.
    @Test(arguments: StoreKind.available)
    func aRevocationDuringADeliveryEndsWithADeletionAtThatPlace(_ kind: StoreKind) async throws {
        let store = try await TestStore(kind)
        let ch = try Chapter(org: store.keys)
        let connector = GatedConnector()
        let g = ch.grant(ch.alice, contact: 1), key = GrantKey(member: g.member, grant: g.id)
        do {
            let s = try await store.open()
            let hub = try await HubNode(keys: store.keys, storage: s, logger: quiet, connectors: [connector])
            try await hub.approve(ch)
            #expect(try answerKind(await hub.accept(ch.record(g, by: ch.alice, person: Person(1))), store.keys) == .stored)

            let round = Task { await hub.connectorRound() }
            _ = try await poll("the connector is sending the record") { connector.isDelivering ? true : nil }
            let receipt = try HubAnswer(encoded: await hub.revoke(ch.revocation(g, by: ch.alice)), organization: store.keys.signing.publicKey)
            #expect(receipt.kind == .deleted)
            #expect(receipt.places.contains { $0.place == .hub && $0.state == .erased })
            #expect(receipt.places.contains { $0.place == .connector("Action Network") && $0.state == .outstanding }, "\(receipt.places)")
            #expect(!receipt.deletionComplete, "the receipt claims the deletion complete while the record is on its way downstream")

            // The delivery lands after the revocation: it opens a deletion item for that place,
            // which the same round hands to the connector — nothing else may finish it.
            connector.release()
            await round.value
            #expect(connector.retracted == [key], "the record delivered after its revocation was not deleted downstream")
            let done = try HubAnswer(encoded: await hub.revoke(ch.revocation(g, by: ch.alice)), organization: store.keys.signing.publicKey)
            #expect(done.deletionComplete && done.places.contains { $0.place == .connector("Action Network") && $0.state == .suppressed }, "\(done.places)")
            #expect(!done.places.contains { $0.place == .connector("Action Network") && $0.state == .erased })
            await s.shutdown()
        }
        // Durable: after a restart the trail still says suppressed there, and nothing is held.
        let s2 = try await store.open()
        let hub2 = try await HubNode(keys: store.keys, storage: s2, logger: quiet, connectors: [connector])
        #expect((try await Self.control(hub2, "retractions")["retractions"] as? [[String: Any]])?.isEmpty == true)
        #expect(try await hub2.export().isEmpty)
        let after = try HubAnswer(encoded: await hub2.revoke(ch.revocation(g, by: ch.alice)), organization: store.keys.signing.publicKey)
        #expect(after.places.contains { $0.place == .connector("Action Network") && $0.state == .suppressed }, "\(after.places)")
        await s2.shutdown()
        await store.cleanup()
    }

    /// The hub's SQLite store on a full disk: records are answered "send it again later" (never a
    /// receipt for what was not stored), status says why, nothing acknowledged is lost, and the
    /// same hub stores again once there is space.
    @Test(.enabled(if: geteuid() == 0, "mounting a small tmpfs needs root"))
    func aFullDiskRefusesRecordsClearlyLosesNothingAndRecovers() async throws {
        let tmp = try TempDir()
        let disk = try Tmpfs(tmp.path + "/small", size: "4m")
        let keys = OrganizationKeys.generate(name: "Party"), storageKey = SymmetricKey()
        let dir = disk.path + "/hub"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let ch = try Chapter(org: keys)
        var acknowledged: Set<String> = []
        var records: [(grant: String, bytes: [UInt8])] = []
        for i in 0..<200 {
            let g = ch.grant(i % 2 == 0 ? ch.alice : ch.bob, contact: UInt64(i))
            records.append((Base64URL.encode(g.id), try ch.record(g, by: i % 2 == 0 ? ch.alice : ch.bob, person: Person(i))))
        }
        do {
        let s = try SQLiteHubStorage(directory: dir, keys: keys, storageKey: storageKey)
        let hub = try await HubNode(keys: keys, storage: s, logger: quiet)
        try await hub.approve(ch)
        for r in records[0..<5] {
            #expect(try answerKind(await hub.accept(r.bytes), keys) == .stored)
            acknowledged.insert(r.grant)
        }
        let filler = disk.path + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT, 0o600)
        let chunk = [UInt8](repeating: 7, count: 64 * 1024)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        close(fd)

        // Full: records (SQLite may still fit a few in its write-ahead log) until one is refused.
        var refused: [(grant: String, bytes: [UInt8])] = []
        for r in records[5...] {
            let answer = try HubAnswer(encoded: await hub.accept(r.bytes), organization: keys.signing.publicKey)
            if answer.kind == .stored {
                acknowledged.insert(r.grant)
                continue
            }
            #expect(answer.kind == .pending && answer.reason.contains("could not store"), "\(answer.kind): \(answer.reason)")
            refused.append(r)
            if refused.count == 3 { break }
        }
        try #require(refused.count == 3, "the full disk never refused a record")
        let status = try await Self.control(hub, "status")["status"] as? [String: Any]
        #expect(status?["healthy"] as? Bool == false)
        #expect((status?["problems"] as? [String] ?? []).contains { $0.contains("cannot store records") && $0.contains("the disk is full") }, "\(String(describing: status))")
        // What was acknowledged is all there, read from the store while the disk is full.
        #expect(Set(try await hub.export().compactMap { $0["grant"] }) == acknowledged)

        // Space again: the same hub takes the records the members send again.
        try FileManager.default.removeItem(atPath: filler)
        for r in refused {
            #expect(try answerKind(await hub.accept(r.bytes), keys) == .stored)
            acknowledged.insert(r.grant)
        }
        let healthy = try await Self.control(hub, "status")["status"] as? [String: Any]
        #expect(healthy?["healthy"] as? Bool == true && (healthy?["problems"] as? [String])?.isEmpty == true, "\(String(describing: healthy))")
        }
        // Restarted: every acknowledged record, none other.
        let s2 = try SQLiteHubStorage(directory: dir, keys: keys, storageKey: storageKey)
        let hub2 = try await HubNode(keys: keys, storage: s2, logger: quiet)
        #expect(Set(try await hub2.export().compactMap { $0["grant"] }) == acknowledged)
        await s2.shutdown()
    }
}

/// Polls `check` until it gives a value (a generous deadline: the machine may be loaded).
func poll<T>(_ what: String, seconds: Double = 30, _ check: () async throws -> T?) async throws -> T {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if let v = try await check() { return v }
        try await Task.sleep(nanoseconds: 20_000_000)
    }
    throw StoreError(.io, "timed out waiting: \(what)")
}

/// A small tmpfs mounted for one test, unmounted after it (root only).
final class Tmpfs {
    let path: String
    init(_ path: String, size: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/mount")
        p.arguments = ["-t", "tmpfs", "-o", "size=\(size),mode=0700", "tmpfs", path]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw StoreError(.io, "mount tmpfs on \(path) failed (\(p.terminationStatus))") }
    }

    deinit {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/umount")
        p.arguments = ["-l", path]
        try? p.run()
        p.waitUntilExit()
    }
}
