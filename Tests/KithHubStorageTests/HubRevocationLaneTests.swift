import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
@testable import KithNetwork
import KithStore
import Testing

/// Issue 17: a revocation's deletion does not wait for a batch of records to commit (on a store
/// that writes beside its batches, as PostgreSQL does with a second connection), and a grant's
/// rows are still written in the order the ledger made them.
@Suite("Hub revocations: a side lane that never overtakes a write of the same grant")
struct HubRevocationLaneTests {
    /// A real store (either back end) whose batch writes can be held back by the test, and which
    /// writes beside them: through its own `writeBeside` (PostgreSQL's second connection).
    final class GatedStorage: HubStorage, @unchecked Sendable {
        let inner: any HubStorage
        // Guarded by `lock`: used from the hub's tasks and the test.
        private let lock = NSLock()
        private var holding = false, blocked = 0

        init(_ inner: any HubStorage) { self.inner = inner }

        /// Batch writes (`write`) wait from now until `release`.
        func hold() { lock.withLock { holding = true } }
        func release() { lock.withLock { holding = false } }
        /// Batch writes waiting now.
        var waiting: Int { lock.withLock { blocked } }

        var writesBeside: Bool { true }
        var location: String { inner.location }

        func write(_ batch: [HubWrite]) async throws {
            lock.withLock { blocked += 1 }
            while lock.withLock({ holding }) { try? await Task.sleep(nanoseconds: 10_000_000) }
            lock.withLock { blocked -= 1 }
            try await inner.write(batch)
        }

        func writeBeside(_ batch: [HubWrite]) async throws { try await inner.writeBeside(batch) }
        func records() async throws -> [(record: [UInt8], answer: [UInt8], chapterName: String)] { try await inner.records() }
        func closedGrants() async throws -> [(member: Ed25519.PublicKey?, grant: [UInt8], version: UInt64)] { try await inner.closedGrants() }
        func decisions() async throws -> [[UInt8]] { try await inner.decisions() }
        func chapterOps() async throws -> [ChapterID: [[UInt8]]] { try await inner.chapterOps() }
        func trails() async throws -> [(id: [UInt8], bytes: [UInt8])] { try await inner.trails() }
        func heldPage(after: [UInt8]?, limit: Int) async throws -> [(id: [UInt8], bytes: [UInt8])] { try await inner.heldPage(after: after, limit: limit) }
        func heldRows(_ ids: [[UInt8]]) async throws -> [(id: [UInt8], bytes: [UInt8])] { try await inner.heldRows(ids) }
        func put(_ key: GrantKey, record: [UInt8], answer: [UInt8], chapterName: String) async throws {
            try await inner.put(key, record: record, answer: answer, chapterName: chapterName)
        }
        func close(_ key: GrantKey, version: UInt64, trail: [UInt8]) async throws { try await inner.close(key, version: version, trail: trail) }
        func putTrails(_ trails: [(key: GrantKey, bytes: [UInt8])]) async throws { try await inner.putTrails(trails) }
        func putDecision(_ decision: ChapterDecision) async throws { try await inner.putDecision(decision) }
        func putChapterOps(_ chapter: ChapterID, _ ops: [(id: [UInt8], bytes: [UInt8])]) async throws { try await inner.putChapterOps(chapter, ops) }
        func shutdown() async { await inner.shutdown() }
    }

    @Test(arguments: StoreKind.available)
    func aRevocationPassesABatchButNeverItsOwnRecordsWrite(_ kind: StoreKind) async throws {
        let store = try await TestStore(kind)
        let ch = try Chapter(org: store.keys)
        let inner = try await store.open()
        let gated = GatedStorage(inner)
        let hub = try await HubNode(keys: store.keys, storage: gated, logger: quiet)
        try await hub.approve(ch)
        let a = ch.grant(ch.alice, contact: 1), b = ch.grant(ch.bob, contact: 2)
        #expect(try answerKind(await hub.accept(ch.record(a, by: ch.alice, person: Person(1))), store.keys) == .stored)

        // B's record is being committed (its transaction held back)…
        gated.hold()
        let recordB = try ch.record(b, by: ch.bob, person: Person(2))
        let storingB = Task { try answerKind(await hub.accept(recordB), store.keys) }
        _ = try await poll("B's transaction has started") { gated.waiting > 0 ? true : nil }
        // …and A's revocation is answered (durably deleted) without waiting for it.
        #expect(try answerKind(await hub.revoke(ch.revocation(a, by: ch.alice)), store.keys) == .deleted)
        #expect(gated.waiting == 1)
        #expect(try await inner.heldPage(after: nil, limit: 10).map(\.id) == [], "B is not committed yet and A is gone")

        // B's own revocation must follow B's write, not pass it (else the write would bring B back).
        let revokingB = Task { try answerKind(await hub.revoke(ch.revocation(b, by: ch.bob)), store.keys) }
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(gated.waiting == 1)
        gated.release()
        #expect(try await storingB.value == .stored)
        #expect(try await revokingB.value == .deleted)

        // Both deleted and closed in the store; a restarted hub holds nothing.
        #expect(try await inner.heldPage(after: nil, limit: 10).isEmpty)
        let closed = Set(try await inner.closedGrants().compactMap { c in c.member.map { GrantKey(member: $0, grant: c.grant) } })
        #expect(closed == [GrantKey(member: a.member, grant: a.id), GrantKey(member: b.member, grant: b.id)])
        let restarted = try await HubNode(keys: store.keys, storage: inner, logger: quiet)
        #expect(await restarted.heldCount == 0)
        await inner.shutdown()
        await store.cleanup()
    }
}
