import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
@testable import KithHubPostgres
@testable import KithNetwork
import KithStore
import PostgresNIO
import Testing

/// One suite, both back ends: every test here runs on SQLite and on a real PostgreSQL server.
@Suite("Hub storage: the same behaviour on SQLite and PostgreSQL")
struct HubStorageTests {
    @Test(arguments: StoreKind.available)
    func everyKindOfRowSurvivesARestart(_ kind: StoreKind) async throws {
        let store = try await TestStore(kind)
        let a = Ed25519.PrivateKey().publicKey, b = Ed25519.PrivateKey().publicKey
        let k1 = GrantKey(member: a, grant: SecureRandom.bytes(16)), k2 = GrantKey(member: b, grant: SecureRandom.bytes(16))
        let chapter = try ChapterID(bytes: SecureRandom.bytes(16))
        let decision = ChapterDecision.make(chapter: chapter, approved: true, allowsWithoutContactConsent: false, at: 5, signer: store.keys.signing)
        do {
            let s = try await store.open()
            try await s.put(k1, record: [1, 2, 3], answer: [4, 5], chapterName: "Ward 5")
            try await s.put(k2, record: [6], answer: [7], chapterName: "Ward 6")
            try await s.put(k2, record: [6, 6], answer: [7, 7], chapterName: "Ward 6") // replaced, not added
            var trail = RecordTrail()
            trail.delivered(to: .connector("Action Network"), version: 1, externalID: "p1", now: 1)
            try await s.putTrails([(k1, trail.encoded)])
            trail.startRetraction(.revoked, now: 2)
            try await s.close(k1, version: 3, trail: trail.encoded)
            try await s.close(k1, version: 4, trail: trail.encoded) // a retry of a close: the same row, the newer version
            try await s.putTrails([])
            try await s.putDecision(decision)
            try await s.putChapterOps(chapter, [(SecureRandom.bytes(32), [9, 9]), (SecureRandom.bytes(32), [8])])
            try await s.putChapterOps(chapter, [])
            await s.shutdown()
        }
        let s = try await store.open()
        let held = try await s.records()
        #expect(held.count == 1 && held.first?.record == [6, 6] && held.first?.answer == [7, 7] && held.first?.chapterName == "Ward 6")
        let closed = try await s.closedGrants()
        #expect(closed.count == 1 && closed.first?.member == a && closed.first?.grant == k1.grant && closed.first?.version == 4)
        #expect(try await s.decisions() == [decision.encoded])
        let trails = try await s.trails()
        #expect(trails.count == 1 && trails.first?.id == k1.bytes)
        #expect(try trails.first.map { try RecordTrail(encoded: $0.bytes) }?.entry(.connector("Action Network"))?.state == .outstanding)
        #expect(try await s.chapterOps()[chapter].map { Set($0) } == [[9, 9], [8]])
        // Held rows by id (what a connector delivers): only those held, in id order; a closed
        // grant's and an unknown id are left out.
        let unknown = GrantKey(member: Ed25519.PrivateKey().publicKey, grant: SecureRandom.bytes(16))
        let byID = try await s.heldRows([unknown.bytes, k1.bytes, k2.bytes])
        #expect(byID.map(\.id) == [k2.bytes] && byID.first.flatMap { HubStoreSchema.decodeHeld($0.bytes) }?.record == [6, 6])
        #expect(try await s.heldRows([]).isEmpty)
        await s.shutdown()
        await store.cleanup()
    }

    @Test(arguments: StoreKind.available)
    func heldRowsByIDComeInIDOrderPastOneStatementsWorth(_ kind: StoreKind) async throws {
        let store = try await TestStore(kind)
        let s = try await store.open()
        let keys = (0..<700).map { _ in GrantKey(member: Ed25519.PrivateKey().publicKey, grant: SecureRandom.bytes(16)) }
        try await s.write(keys.enumerated().map { .put($0.element, record: [UInt8(truncatingIfNeeded: $0.offset)], answer: [1], chapterName: "Ward") })
        let asked = Array(keys.shuffled().prefix(650))
        let rows = try await s.heldRows(asked.map(\.bytes))
        #expect(rows.map(\.id) == asked.map(\.bytes).sorted { $0.lexicographicallyPrecedes($1) })
        #expect(rows.allSatisfy { row in HubStoreSchema.decodeHeld(row.bytes)?.record == [UInt8(truncatingIfNeeded: keys.firstIndex { $0.bytes == row.id }!)] })
        await s.shutdown()
        await store.cleanup()
    }

    @Test(arguments: StoreKind.available)
    func aRestartedHubKeepsWhatItAcknowledgedAndNothingItDeleted(_ kind: StoreKind) async throws {
        let store = try await TestStore(kind)
        let ch = try Chapter(org: store.keys)
        let g1 = ch.grant(ch.alice, contact: 1), g2 = ch.grant(ch.bob, contact: 2), g3 = ch.grant(ch.alice, contact: 3)
        let r1v1 = try ch.record(g1, by: ch.alice, person: Person(1))
        let r1v2 = try ch.record(g1, by: ch.alice, version: 2, person: Person(11))
        let r3 = try ch.record(g3, by: ch.alice, person: Person(3))
        do {
            let s = try await store.open()
            let hub = try await HubNode(keys: store.keys, storage: s, logger: quiet)
            try await hub.approve(ch)
            for r in [r1v1, try ch.record(g2, by: ch.bob, person: Person(2)), r1v2, r3] {
                #expect(try answerKind(await hub.accept(r), store.keys) == .stored)
            }
            #expect(try answerKind(await hub.revoke(ch.revocation(g3, by: ch.alice)), store.keys) == .deleted)
            await s.shutdown()
        }
        let s = try await store.open()
        let hub = try await HubNode(keys: store.keys, storage: s, logger: quiet)
        let rows = try await hub.export()
        #expect(rows.map { $0["name"] ?? "" }.sorted() == [Person(11).name, Person(2).name], "\(rows)")
        #expect(rows.first { $0["grant"] == Base64URL.encode(g1.id) }?["version"] == "2")
        let listed = try JSONSerialization.jsonObject(with: await hub.control(json: Data(#"{"op":"chapters"}"#.utf8))) as? [String: Any]
        #expect((listed?["chapters"] as? [[String: Any]])?.first?["status"] as? String == "approved", "\(String(describing: listed))")
        // What was replaced or deleted stays out after the restart: an old version and a revoked record replayed are refused.
        #expect(try answerKind(await hub.accept(r1v1), store.keys) != .stored)
        #expect(try answerKind(await hub.accept(r3), store.keys) != .stored)
        #expect(await hub.heldCount == 2)
        await s.shutdown()
        await store.cleanup()
    }

    @Test(arguments: StoreKind.available)
    func nothingPersonalIsKeptInTheClear(_ kind: StoreKind) async throws {
        let setup = try await HubSetup(kind)
        let (store, ch, s, hub) = (setup.store, setup.chapter, setup.storage, setup.hub)
        var grants: [Grant] = []
        for i in 1...20 {
            let g = ch.grant(i % 2 == 0 ? ch.alice : ch.bob, contact: UInt64(i))
            grants.append(g)
            #expect(try answerKind(await hub.accept(ch.record(g, by: i % 2 == 0 ? ch.alice : ch.bob, person: Person(i))), store.keys) == .stored)
        }
        await s.shutdown()
        // Everything at rest, ASCII-lowercased, so that one search finds any case.
        let raw = try store.atRest()
        let lowered = Data(raw.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 })
        func has(_ s: String) -> Bool { lowered.range(of: Data(s.lowercased().utf8)) != nil }
        // The dump does hold the rows (their ids, member ‖ grant id, are not secret): as raw
        // bytes in SQLite, as bytea hex in pg_dump.
        let id = GrantKey(member: grants[0].member, grant: grants[0].id).bytes
        #expect(kind == .sqlite ? Data(raw).range(of: Data(id)) != nil : has(hex(id)), "the rows are not where the test looks")
        for i in 1...20 {
            let p = Person(i)
            for secret in [p.name, p.phone, p.email, String(p.phone.filter(\.isNumber)), "Quarrington", "Ward 5"] {
                #expect(!has(secret), "\(secret) is in the clear at rest")
                #expect(!has(hex(Array(secret.utf8))) && !has(hex(Array(secret.lowercased().utf8))), "\(secret) is at rest as plain bytea")
            }
        }
        await store.cleanup()
    }

    @Test(arguments: StoreKind.available)
    func oneHubAtATimePerStore(_ kind: StoreKind) async throws {
        let store = try await TestStore(kind)
        do {
            let first = try await store.open()
            await #expect { _ = try await store.open() } throws: { ($0 as? StoreError)?.code == .locked }
            await first.shutdown()
        }
        let again = try await store.open()
        await again.shutdown()
        await store.cleanup()
    }

    @Test(arguments: StoreKind.available)
    func anotherOrganizationsKeysAreRefused(_ kind: StoreKind) async throws {
        let store = try await TestStore(kind)
        let ch = try Chapter(org: store.keys)
        do {
            let s = try await store.open()
            let hub = try await HubNode(keys: store.keys, storage: s, logger: quiet)
            try await hub.approve(ch)
            #expect(try answerKind(await hub.accept(ch.record(ch.grant(ch.alice, contact: 1), by: ch.alice, person: Person(1))), store.keys) == .stored)
            await s.shutdown()
        }
        // A wrong storage key never yields rows: the store (or the hub over it) refuses.
        await #expect(throws: (any Error).self) {
            let s = try await store.open(storageKey: SymmetricKey())
            defer { Task { await s.shutdown() } }
            _ = try await HubNode(keys: store.keys, storage: s, logger: quiet)
        }
        await store.cleanup()
    }
}

/// Store URLs (no server needed).
@Suite("Hub store URLs")
struct PostgresStoreURLTests {
    @Test func storeURLs() throws {
        let u = try PostgresStoreURL("postgres://kith:s%40cret@db.example.org:6543/kith_hub?sslmode=require")
        #expect(u.endpoint == .tcp(host: "db.example.org", port: 6543) && u.username == "kith" && u.password == "s@cret" && u.database == "kith_hub" && u.tls == .require)
        #expect(!u.description.contains("cret"))
        let s = try PostgresStoreURL("postgresql://postgres@/hub?host=/tmp/pg")
        #expect(s.endpoint == .socket(directory: "/tmp/pg", port: 5432) && s.database == "hub" && s.password == nil)
        for bad in ["postgres://host/db", "postgres://u@h:99999/db", "postgres://u@h/", "postgres://u@h/db?sslmode=maybe", "postgres://u@h/db?x=1", "/var/lib/hub"] {
            #expect(throws: PostgresStoreURL.Invalid.self, "\(bad)") { try PostgresStoreURL(bad) }
        }
    }
}

/// What only the PostgreSQL back end has: its schema versions, its connection.
@Suite("Hub storage on PostgreSQL", .enabled(if: TestServer.configured, TestServer.skipReason))
struct PostgresHubStorageTests {
    @Test func theTestServerIsThereWhenRequired() async throws {
        // scripts/test sets KITH_TEST_REQUIRE_POSTGRES: a missing or unreachable server fails the run.
        let rows = try await TestServer.run("postgres", "SELECT 1")
        #expect(rows.count == 1)
    }

    @Test func rowsAreSealedAsTheSQLiteStoreSealsThem() async throws {
        let store = try await TestStore(.postgres)
        let s = try await store.open()
        let key = GrantKey(member: Ed25519.PrivateKey().publicKey, grant: SecureRandom.bytes(16))
        let held = HubStoreSchema.encodeHeld(record: [1, 2, 3], answer: [4], chapterName: "Ward 5")
        try await s.put(key, record: [1, 2, 3], answer: [4], chapterName: "Ward 5")
        await s.shutdown()
        let rows = try await TestServer.run(store.database, "SELECT kind, id, sealed FROM kith_hub_rows WHERE kind = 9")
        let (k, id, sealed) = try #require(rows.first).decode((Int16, ByteBuffer, ByteBuffer).self)
        #expect(k == 9 && Array(id.readableBytesView) == key.bytes)
        let bytes = Array(sealed.readableBytesView)
        #expect(ContactStore.openRecord(.hubRecord, id: key.bytes, bytes, key: store.storageKey) == held)
        // Bound to its kind and id, as in SQLite: moved to another row it does not open.
        #expect(ContactStore.openRecord(.hubClosed, id: key.bytes, bytes, key: store.storageKey) == nil)
        #expect(ContactStore.openRecord(.hubRecord, id: SecureRandom.bytes(48), bytes, key: store.storageKey) == nil)
        // And a row sealed by the SQLite store's code, written verbatim, reads back.
        let other = GrantKey(member: Ed25519.PrivateKey().publicKey, grant: SecureRandom.bytes(16))
        let copied = ContactStore.sealRecord(.hubRecord, id: other.bytes, HubStoreSchema.encodeHeld(record: [9], answer: [8], chapterName: "Copied"), key: store.storageKey)
        try await TestServer.run(store.database, "INSERT INTO kith_hub_rows VALUES (9, \(ByteBuffer(bytes: other.bytes)), \(ByteBuffer(bytes: copied)))")
        let again = try await store.open()
        #expect(try await again.records().map(\.chapterName).sorted() == ["Copied", "Ward 5"])
        await again.shutdown()
        // A tampered row is corruption, not silently skipped.
        try await TestServer.run(store.database, "UPDATE kith_hub_rows SET sealed = overlay(sealed placing '\\x00' from 30 for 1) WHERE kind = 9")
        let tampered = try await store.open()
        await #expect { _ = try await tampered.records() } throws: { ($0 as? StoreError)?.code == .corrupt }
        await tampered.shutdown()
        await store.cleanup()
    }

    @Test func aVersion1DatabaseIsMigratedAndClaimed() async throws {
        let store = try await TestStore(.postgres)
        // The database as schema version 1 left it, with a held record and the rows' meta.
        let c = try await TestServer.connect(store.database)
        try await PostgresHubSchema.migrate(c, keys: store.keys, storageKey: store.storageKey, logger: quiet, to: 1)
        try await c.close()
        #expect(try await TestServer.run(store.database, "SELECT version FROM kith_schema_version").map { try $0.decode(Int32.self) } == [1])
        #expect(try await TestServer.run(store.database, "SELECT to_regclass('kith_hub_owner') IS NULL").first?.decode(Bool.self) == true)
        let key = GrantKey(member: Ed25519.PrivateKey().publicKey, grant: SecureRandom.bytes(16))
        let sealed = ContactStore.sealRecord(.hubRecord, id: key.bytes, HubStoreSchema.encodeHeld(record: [1], answer: [2], chapterName: "Old"), key: store.storageKey)
        try await TestServer.run(store.database, "INSERT INTO kith_hub_rows VALUES (9, \(ByteBuffer(bytes: key.bytes)), \(ByteBuffer(bytes: sealed)))")

        // Another organization's hub cannot claim it: its storage key does not open the rows.
        let rival = OrganizationKeys.generate(name: "Rivals")
        await #expect { _ = try await store.open(keys: rival, storageKey: SymmetricKey()) } throws: { ($0 as? StoreError)?.code == .corrupt }
        #expect(try await TestServer.run(store.database, "SELECT max(version) FROM kith_schema_version").first?.decode(Int32.self) == 1) // rolled back whole

        let s = try #require(try await store.open() as? PostgresHubStorage)
        #expect(await s.migratedFrom == 1)
        #expect(try await s.records().map(\.chapterName) == ["Old"])
        await s.shutdown()
        let versions = try await TestServer.run(store.database, "SELECT version, description FROM kith_schema_version ORDER BY version").map { try $0.decode((Int32, String).self) }
        #expect(versions.map(\.0) == [1, 2] && versions.map(\.1) == PostgresHubSchema.migrations.map(\.description))
        let owner = try await TestServer.run(store.database, "SELECT organization FROM kith_hub_owner")
        #expect(try owner.map { Array(try $0.decode(ByteBuffer.self).readableBytesView) } == [store.keys.signing.publicKey.bytes])

        // Now claimed: another organization is refused by name, even with the right storage key.
        await #expect { _ = try await store.open(keys: rival) } throws: { "\($0)".contains("another organization") }
        // Opening it again is not a migration.
        let current = try #require(try await store.open() as? PostgresHubStorage)
        #expect(await current.migratedFrom == nil)
        await current.shutdown()
        // A database from a newer Kith is refused, not written.
        try await TestServer.run(store.database, "INSERT INTO kith_schema_version(version, description) VALUES (99, 'from the future')")
        await #expect { _ = try await store.open() } throws: { ($0 as? StoreError)?.code == .tooNew }
        await store.cleanup()
    }

    /// Backends of the hub's database are killed (pg_terminate_backend) again and again while
    /// records stream in: every record the hub acknowledged is in the database afterwards, and
    /// the hub reconnected on its own.
    @Test func connectionLossMidIngestLosesNothingAcknowledged() async throws {
        let store = try await TestStore(.postgres)
        let ch = try Chapter(org: store.keys)
        let storage = try #require(try await store.open() as? PostgresHubStorage)
        let hub = try await HubNode(keys: store.keys, storage: storage, logger: quiet)
        try await hub.approve(ch)
        let records = try (1...150).map { i -> (GrantKey, [UInt8]) in
            let by = i % 2 == 0 ? ch.alice : ch.bob
            let g = ch.grant(by, contact: UInt64(i))
            return (GrantKey(member: g.member, grant: g.id), try ch.record(g, by: by, person: Person(i)))
        }
        let database = store.database
        let killer = Task { () -> Int in
            var killed = 0
            for _ in 0..<8 {
                try? await Task.sleep(for: .milliseconds(40))
                let rows = (try? await TestServer.run("postgres", """
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(database) AND pid <> pg_backend_pid()
                    """)) ?? []
                killed += rows.count
            }
            return killed
        }
        var acknowledged: [GrantKey] = []
        var unavailable = 0
        // Besides the killer racing the writes, every 30th record finds its connection cut
        // (deterministic: on a loaded machine the racing kills may all land between writes).
        var cutBetween = 0
        for (i, (key, r)) in records.enumerated() {
            if i > 0 && i % 30 == 0 {
                let rows = try await TestServer.run("postgres", """
                    SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(database) AND pid <> pg_backend_pid()
                    """)
                cutBetween += rows.isEmpty ? 0 : 1
            }
            switch try answerKind(await hub.accept(r), store.keys) {
            case .stored: acknowledged.append(key)
            default: unavailable += 1
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        let killed = await killer.value + cutBetween
        #expect(cutBetween >= 3, "the test must cut the hub's connection between writes (cut \(cutBetween) of 4 times)")
        #expect(killed >= 3, "the test must cut the hub's connection (cut \(killed) times)")
        #expect(await storage.reconnects >= 3, "the hub reconnects")
        #expect(unavailable == 0, "within the retry window every write eventually lands (\(unavailable) answered unavailable)")
        await storage.shutdown()
        let reopened = try await store.open()
        let held = Set(try await reopened.records().compactMap { try? UpwardRecord(encoded: $0.record, nowSeconds: ContactStore.systemClock() / 1000) }
            .map { GrantKey(member: $0.grant.member, grant: $0.grant.id) })
        let lost = acknowledged.filter { !held.contains($0) }
        #expect(lost.isEmpty && !acknowledged.isEmpty, "\(lost.count) acknowledged records lost of \(acknowledged.count)")
        await reopened.shutdown()
        await store.cleanup()
    }

    /// The database goes away for longer than the retry window: the record is answered
    /// "unavailable" (no receipt), and once the database is back the retry is stored.
    @Test func aDatabaseOutageIsAnsweredUnavailableThenRecovers() async throws {
        let store = try await TestStore(.postgres)
        let ch = try Chapter(org: store.keys)
        let storage = try #require(try await store.open(retryWindow: .milliseconds(300)) as? PostgresHubStorage)
        let hub = try await HubNode(keys: store.keys, storage: storage, logger: quiet)
        try await hub.approve(ch)
        let g = ch.grant(ch.alice, contact: 1)
        let r = try ch.record(g, by: ch.alice, person: Person(1))
        // No new connections to this database, and the current one cut.
        try await TestServer.run("postgres", PostgresQuery(unsafeSQL: "ALTER DATABASE \(store.database) WITH ALLOW_CONNECTIONS false"))
        try await TestServer.run("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(store.database)")
        let answer = try HubAnswer(encoded: await hub.accept(r), organization: store.keys.signing.publicKey)
        #expect(answer.kind != .stored && answer.reason.contains("could not store"), "\(answer.kind) \(answer.reason)")
        try await TestServer.run("postgres", PostgresQuery(unsafeSQL: "ALTER DATABASE \(store.database) WITH ALLOW_CONNECTIONS true"))
        #expect(try answerKind(await hub.accept(r), store.keys) == .stored)
        await storage.shutdown()
        let reopened = try await store.open()
        #expect(try await reopened.records().count == 1)
        await reopened.shutdown()
        await store.cleanup()
    }
}
