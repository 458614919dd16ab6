import ArgumentParser
import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
import KithHubPostgres
import KithNetwork
import KithStore
import Logging
import PostgresNIO

/// The organization hub at party scale (issue 17), on SQLite and PostgreSQL side by side: ingest
/// of records from many approved chapters (each verified, opened, checked, sealed at rest and
/// answered with a signed receipt), revocation latency while members keep sending, a full export,
/// and the hub's memory.
struct HubBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub",
        abstract: "Hub ingest, revocation latency under ingest and export, on SQLite and PostgreSQL.",
        discussion: """
            PostgreSQL: --postgres names a server (postgres://USER@/postgres?host=SOCKETDIR); the benchmark creates a database there and drops it after.
            Example: kith-bench hub --chapters 500 --records 20000 --postgres 'postgres://postgres@/postgres?host=/tmp/kith-pg.X'
            """
    )

    @Option(help: "Approved chapters the records come from.") var chapters = 500
    @Option(help: "Records ingested (one grant each).") var records = 20_000
    @Option(help: "Members sending at once.") var senders = 8
    @Option(help: "Revocations timed while the second half is ingested.") var revocations = 200
    @Option(help: "Stores: sqlite, postgres or both (postgres needs --postgres).") var stores = "both"
    @Option(help: "A PostgreSQL server URL whose database may be used to create and drop a scratch database.") var postgres: String?

    struct Sender {
        let member = Ed25519.PrivateKey(), device = Ed25519.PrivateKey(), agreement = X25519.PrivateKey()
        var certificate: DeviceCertificate {
            DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey, createdAt: 1_700_000_000)
        }
    }

    struct Workload {
        let org: OrganizationKeys
        var logs: [MembershipLog] = []
        var records: [[UInt8]] = []
        var revocations: [[UInt8]] = []
    }

    func generate(now: UInt64) throws -> Workload {
        var w = Workload(org: .generate(name: "Bench Party"))
        let senders = (0..<chapters).map { _ in Sender() }
        for (i, s) in senders.enumerated() {
            var log = try MembershipLog.create(name: "Chapter \(i)", certificate: s.certificate, device: s.device, now: now - 10_000)
            let c = w.org.card
            try log.append(.affiliate(Affiliation(signingKey: c.signingKey, agreementKey: c.agreementKey, name: c.name, hub: "127.0.0.1:7500",
                                                  allowsWithoutContactConsent: false)), certificate: s.certificate, device: s.device, now: now - 9_000)
            w.logs.append(log)
        }
        for i in 0..<records {
            let s = senders[i % chapters], cert = s.certificate
            let g = Grant.make(chapter: w.logs[i % chapters].chapter, organization: w.org.signing.publicKey, contact: ContactID(high: 1, low: UInt64(i)),
                               fields: ["name", "emails", "phones"], purpose: "GOTV calls", createdAt: now - 1_000, expiresAt: nil,
                               certificate: cert, device: s.device)
            let values = [("name", "Person \(i) Benchmark"), ("emails", "person\(i)@example.org"), ("phones", "+44 7700 9\(String(format: "%05d", i % 100_000))"),
                          ("consent", "share;2026-11-01;form")]
            w.records.append(try UpwardRecord.make(grant: g, version: 1, values: values, to: w.org.agreement.publicKey, certificate: cert, device: s.device).encoded)
            if i < records / 2 && w.revocations.count < revocations && i % max(1, (records / 2) / max(1, revocations)) == 0 {
                w.revocations.append(GrantRevocation.make(grant: g, at: now, certificate: cert, device: s.device).encoded)
            }
        }
        return w
    }

    func percentile(_ xs: [Double], _ p: Double) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
    }

    /// Ingests `records` from `senders` concurrent members; returns records stored and seconds.
    func ingest(_ hub: HubNode, _ records: ArraySlice<[UInt8]>, org: Ed25519.PublicKey) async -> (stored: Int, seconds: Double) {
        let t = seconds()
        let parts = (0..<senders).map { k in Array(records.enumerated().filter { $0.offset % senders == k }.map(\.element)) }
        let stored = await withTaskGroup(of: Int.self) { group in
            for part in parts {
                group.addTask {
                    var n = 0
                    for r in part where (try? HubAnswer(encoded: await hub.accept(r), organization: org))?.kind == .stored { n += 1 }
                    return n
                }
            }
            return await group.reduce(0, +)
        }
        return (stored, seconds() - t)
    }

    func run(_ kind: String, _ w: Workload, storage: any HubStorage) async throws -> [String: Any] {
        var log = Logger(label: "kith-bench-hub")
        log.logLevel = .critical
        let rssBefore = memory().rss
        let hub = try await HubNode(keys: w.org, storage: storage, limits: HubLimits(maxRecordsPerChapter: UInt64(records), maxBytesPerChapter: 1 << 40), logger: log)
        for l in w.logs {
            await hub.receiveLog(chapter: l.chapter.bytes, ops: l.allOps.map(\.encoded))
            _ = await hub.control(json: Data(#"{"op":"approve","chapter":"\#(l.chapter.description)"}"#.utf8))
        }
        let half = w.records.count / 2
        let org = w.org.signing.publicKey
        note("\(kind): ingesting \(half) records from \(chapters) chapters, \(senders) senders at once…")
        let first = await ingest(hub, w.records[0..<half], org: org)
        note(String(format: "\(kind): %.0f records/s (%d stored)", Double(first.stored) / first.seconds, first.stored))
        // The second half goes in while revocations of first-half grants are timed.
        let revoking = Task {
            var latencies: [Double] = []
            for r in w.revocations {
                let t = seconds()
                let answer = await hub.revoke(r)
                latencies.append((seconds() - t) * 1000)
                precondition((try? HubAnswer(encoded: answer, organization: org))?.kind == .deleted, "a revocation was not answered deleted")
                try? await Task.sleep(nanoseconds: 5_000_000)
            }
            return latencies
        }
        let second = await ingest(hub, w.records[half...], org: org)
        let latencies = await revoking.value
        note(String(format: "\(kind): under ingest %.0f records/s; revocation p50 %.1f ms, p99 %.1f ms", Double(second.stored) / second.seconds,
                    percentile(latencies, 0.5), percentile(latencies, 0.99)))
        let held = await hub.heldCount
        let rssHeld = memory().rss - rssBefore
        let peakBefore = memory().peak
        let t = seconds()
        let rows = try await hub.export()
        let exportSeconds = seconds() - t
        let exportPeakGrowth = memory().peak - peakBefore
        precondition(rows.count == held)
        note(String(format: "\(kind): export %d rows in %.2f s (%.0f rows/s)", rows.count, exportSeconds, Double(rows.count) / exportSeconds))
        await storage.shutdown()
        return [
            "store": kind,
            "ingestRecordsPerSecond": Double(first.stored) / first.seconds,
            "ingestUnderRevocationRecordsPerSecond": Double(second.stored) / second.seconds,
            "recordsStored": first.stored + second.stored,
            "revocations": latencies.count,
            "revocationP50Milliseconds": percentile(latencies, 0.5),
            "revocationP99Milliseconds": percentile(latencies, 0.99),
            "revocationMaxMilliseconds": latencies.max() ?? 0,
            "recordsHeld": held,
            "exportRows": rows.count,
            "exportRowsPerSecond": Double(rows.count) / exportSeconds,
            "exportPeakRSSGrowthBytes": exportPeakGrowth,
            "hubRSSGrowthBytes": rssHeld,
            "hubRSSBytesPerRecordHeld": Double(rssHeld) / Double(max(1, held)),
        ]
    }

    func run() async throws {
        let now = ContactStore.systemClock()
        note("generating \(records) signed, sealed records from \(chapters) chapters…")
        let t = seconds()
        let w = try generate(now: now)
        note(String(format: "generated in %.1f s", seconds() - t))
        var results: [[String: Any]] = []
        let kinds = stores == "both" ? ["sqlite", "postgres"] : [stores]
        for kind in kinds {
            switch kind {
            case "sqlite":
                let dir = NSTemporaryDirectory() + "kith-bench-hub-" + Base64URL.encode(SecureRandom.bytes(6))
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: dir) }
                results.append(try await run(kind, w, storage: try SQLiteHubStorage(directory: dir, keys: w.org, storageKey: SymmetricKey())))
            case "postgres":
                guard let postgres else {
                    note("postgres: skipped (no --postgres server)")
                    continue
                }
                let server = try PostgresStoreURL(postgres)
                let name = "kith_bench_" + Base64URL.encode(SecureRandom.bytes(6)).lowercased().filter { $0.isLetter || $0.isNumber }
                var log = Logger(label: "kith-bench-pg")
                log.logLevel = .critical
                let admin = try await PostgresConnection.connect(configuration: try server.configuration, id: 1, logger: log)
                try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: log)
                // The same server, the scratch database: the URL's path is its database.
                let parts = postgres.split(separator: "?", maxSplits: 1).map(String.init)
                guard let slash = parts[0].lastIndex(of: "/") else { throw ValidationError("--postgres: postgres://USER@HOST/DATABASE") }
                let url = try PostgresStoreURL(parts[0][...slash] + name + (parts.count > 1 ? "?" + parts[1] : ""))
                let storage = try await PostgresHubStorage.open(url, keys: w.org, storageKey: SymmetricKey(), logger: log)
                do {
                    results.append(try await run(kind, w, storage: storage))
                } catch {
                    await storage.shutdown()
                    throw error
                }
                try await admin.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"), logger: log)
                try await admin.close()
            default:
                throw ValidationError("--stores: sqlite, postgres or both")
            }
        }
        emit([
            "benchmark": "hub",
            "commit": gitCommit(),
            "machine": machine(),
            "workload": ["chapters": chapters, "records": records, "senders": senders, "revocations": revocations],
            "results": results,
            "peakRSSBytes": memory().peak,
        ])
    }
}
