import Foundation
import KithConsent
import KithCrypto
@testable import KithHubPostgres
@testable import KithNetwork
import KithStore
import PostgresNIO
import Testing

/// The PostgreSQL store's second connection (revocations' deletions, `writeBeside`) holds no
/// lock of its own: it is fenced so that it can never write beside another hub that took the
/// database after this hub's main connection was cut.
@Suite("Hub storage: PostgreSQL side connection fence", .enabled(if: TestServer.configured, TestServer.skipReason))
struct PostgresSideFenceTests {
    static func trail(_ i: Int) -> HubWrite {
        .trails([(key: GrantKey(member: Ed25519.PrivateKey().publicKey, grant: Array(repeating: UInt8(i), count: 16)), bytes: [UInt8(i)])])
    }

    @Test func aSecondHubCannotTakeTheDatabaseWhileTheFirstsSideConnectionLives() async throws {
        let database = try await TestServer.makeDatabase()
        let url = try PostgresStoreURL(TestServer.url(database))
        let keys = OrganizationKeys.generate(name: "Party"), storageKey = SymmetricKey()
        let first = try await PostgresHubStorage.open(url, keys: keys, storageKey: storageKey, logger: quiet, retryWindow: .seconds(2))
        try await first.writeBeside([Self.trail(1)]) // opens the side connection
        // The first hub's main connection is cut on the server (its lock goes with it); its side
        // connection lives on, as it would in a hub whose network flapped.
        let rows = try await TestServer.run("postgres", """
            SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ExclusiveLock' \
            AND objid::int8 = \(Int64(PostgresHubStorage.lockKey & 0xFFFF_FFFF)) AND granted \
            AND database = (SELECT oid FROM pg_database WHERE datname = \(database))
            """)
        #expect(rows.count == 1, "the first hub's main connection held the lock")
        // A second hub would now get the lock, and the first one's side connection would write
        // beside it: the fence refuses the second hub instead.
        do {
            let second = try await PostgresHubStorage.open(url, keys: keys, storageKey: storageKey, logger: quiet, retryWindow: .seconds(2))
            await second.shutdown()
            Issue.record("a second hub took the database while the first hub's side connection still writes")
        } catch {
            #expect((error as? StoreError)?.code == .locked, "\(error)")
        }
        // The first hub gets its lock back on its next write and goes on.
        try await first.write([Self.trail(2)])
        try await first.writeBeside([Self.trail(3)])
        await first.shutdown()
        // Once it is gone, another hub opens the database.
        let second = try await PostgresHubStorage.open(url, keys: keys, storageKey: storageKey, logger: quiet, retryWindow: .seconds(2))
        try await second.writeBeside([Self.trail(4)])
        await second.shutdown()
        await TestServer.drop(database)
    }
}
