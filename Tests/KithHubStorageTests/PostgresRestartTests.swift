import Foundation
import KithConsent
import KithCrypto
@testable import KithHubPostgres
@testable import KithNetwork
import KithStore
import PostgresNIO
import Testing

/// The PostgreSQL server itself restarts (pg_ctl restart, fast: sessions cut, the server down for
/// a moment) while records stream in. On a private cluster of its own, so the other tests'
/// server is not disturbed.
@Suite("Hub storage: PostgreSQL restarted mid-ingest", .enabled(if: TestServer.configured, TestServer.skipReason))
struct PostgresRestartTests {
    /// `scripts/pg-test-cluster` (start: its export lines; stop DIR). Through the shell with
    /// `system`, not Foundation's `Process`: the server it starts keeps the descriptors Process
    /// watches to learn that its child exited, so waiting on it would never end.
    static func cluster(_ args: [String]) throws -> String {
        let file = NSTemporaryDirectory() + "kith-pg-cluster-" + Base64URL.encode(SecureRandom.bytes(6))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let status = run(FileManager.default.currentDirectoryPath + "/scripts/pg-test-cluster " + args.map { "'\($0)'" }.joined(separator: " ") + " > '\(file)'")
        guard status == 0 else { throw StoreError(.io, "pg-test-cluster \(args) exited with \(status)") }
        return (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
    }

    static func run(_ shell: String) -> Int32 { system(shell + " </dev/null 2>/dev/null") }

    @Test func aServerRestartLosesNothingAcknowledgedAndDuplicatesNothing() async throws {
        let exports = try Self.cluster(["start"])
        guard let dir = exports.split(separator: "'").dropFirst().first.map(String.init) else { throw StoreError(.io, "no cluster directory in \(exports)") }
        defer { _ = try? Self.cluster(["stop", dir]) }
        let bin = exports.components(separatedBy: "KITH_TEST_POSTGRES_BIN='").dropFirst().first?.split(separator: "'").first.map(String.init) ?? TestServer.bin
        let keys = OrganizationKeys.generate(name: "Party"), storageKey = SymmetricKey()
        let url = try PostgresStoreURL("postgres://postgres@/postgres?host=\(dir)")
        let storage = try await PostgresHubStorage.open(url, keys: keys, storageKey: storageKey, logger: quiet, retryWindow: .seconds(60))
        let hub = try await HubNode(keys: keys, storage: storage, logger: quiet)
        let ch = try Chapter(org: keys)
        try await hub.approve(ch)
        let records = try (1...80).map { i -> (GrantKey, [UInt8]) in
            let by = i % 2 == 0 ? ch.alice : ch.bob
            let g = ch.grant(by, contact: UInt64(i))
            return (GrantKey(member: g.member, grant: g.id), try ch.record(g, by: by, person: Person(i)))
        }
        var acknowledged: [GrantKey] = []
        var restart: Task<Bool, Never>?
        for (i, (key, r)) in records.enumerated() {
            if i == 30 {
                // In the background, so that records arrive while the server is down and coming back.
                let asServer = getuid() == 0 ? "su postgres -s /bin/sh -c" : "sh -c"
                // The server's options (socket directory, no TCP) are kept from its start (postmaster.opts).
                let command = "\(asServer) \"'\(bin)/pg_ctl' -D '\(dir)/data' -m fast -w -t 60 -l '\(dir)/server.log' restart >/dev/null\""
                restart = Task.detached { Self.run(command) == 0 }
            }
            if i == 60 { _ = await restart?.value } // the rest after the restart, on a new connection
            if try answerKind(await hub.accept(r), keys) == .stored { acknowledged.append(key) }
            // A retry of the same bytes is the same answer, never a second row.
            if i == 31 || i == 61 { #expect(try answerKind(await hub.accept(r), keys) == .stored) }
            if i >= 30 && i < 60 { try await Task.sleep(for: .milliseconds(20)) }
        }
        let restarted = await restart?.value ?? false
        #expect(restarted, "the test must restart the server")
        #expect(await storage.reconnects >= 1, "the hub reconnected after the restart")
        #expect(acknowledged.count == records.count, "within the retry window every record lands (\(acknowledged.count) of \(records.count))")
        await storage.shutdown()
        let reopened = try await PostgresHubStorage.open(url, keys: keys, storageKey: storageKey, logger: quiet)
        let held = try await reopened.records().compactMap { try? UpwardRecord(encoded: $0.record, nowSeconds: ContactStore.systemClock() / 1000) }
            .map { GrantKey(member: $0.grant.member, grant: $0.grant.id) }
        #expect(held.count == Set(held).count, "no duplicate")
        #expect(Set(held) == Set(acknowledged), "\(acknowledged.filter { !held.contains($0) }.count) acknowledged records lost")
        await reopened.shutdown()
    }
}
