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
/// A value behind a lock (the generator's slices).
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

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
    @Option(help: "A file of generated records: read when it exists (with the same --chapters and --records), else written after generating.")
    var workloadFile: String?

    /// User+system CPU seconds of this process so far (every thread: the hub and its members).
    func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    }

    struct Sender {
        let member = Ed25519.PrivateKey(), device = Ed25519.PrivateKey(), agreement = X25519.PrivateKey()
        var certificate: DeviceCertificate {
            DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey, createdAt: 1_700_000_000)
        }
    }

    struct Workload {
        let org: OrganizationKeys
        /// The organization's X25519 secret (to save the workload).
        var orgAgreementSecret: [UInt8]
        var logs: [MembershipLog] = []
        var records: [[UInt8]] = []
        var revocations: [[UInt8]] = []
    }

    func generate(now: UInt64) throws -> Workload {
        let agreementSecret = SecureRandom.bytes(32)
        var w = Workload(org: OrganizationKeys(signing: Ed25519.PrivateKey(), agreement: try X25519.PrivateKey(bytes: agreementSecret), name: "Bench Party"),
                         orgAgreementSecret: agreementSecret)
        let senders = (0..<chapters).map { _ in Sender() }
        for (i, s) in senders.enumerated() {
            var log = try MembershipLog.create(name: "Chapter \(i)", certificate: s.certificate, device: s.device, now: now - 10_000)
            let c = w.org.card
            try log.append(.affiliate(Affiliation(signingKey: c.signingKey, agreementKey: c.agreementKey, name: c.name, hub: "127.0.0.1:7500",
                                                  allowsWithoutContactConsent: false)), certificate: s.certificate, device: s.device, now: now - 9_000)
            w.logs.append(log)
        }
        // In parallel, in slices: record i is the same whichever thread makes it.
        let org = w.org, logs = w.logs, total = records, slices = max(1, ProcessInfo.processInfo.activeProcessorCount * 4)
        let revokeEvery = max(1, (records / 2) / max(1, revocations)), maxRevocations = revocations
        let made = Locked<[(Int, [[UInt8]], [(Int, [UInt8])])]>([])
        DispatchQueue.concurrentPerform(iterations: slices) { slice in
            var out: [[UInt8]] = [], revs: [(Int, [UInt8])] = []
            for i in stride(from: slice * total / slices, to: (slice + 1) * total / slices, by: 1) {
                let s = senders[i % logs.count], cert = s.certificate
                let (g, record) = HubWorkload.record(i, chapter: logs[i % logs.count].chapter, organization: org, certificate: cert, device: s.device,
                                                     createdAt: now - 1_000)
                out.append(record.encoded)
                if i < total / 2 && i % revokeEvery == 0 && i / revokeEvery < maxRevocations {
                    revs.append((i, GrantRevocation.make(grant: g, at: now, certificate: cert, device: s.device).encoded))
                }
            }
            made.withLock { $0.append((slice, out, revs)) }
        }
        for (_, out, revs) in made.withLock({ $0 }).sorted(by: { $0.0 < $1.0 }) {
            w.records += out
            w.revocations += revs.map(\.1)
        }
        return w
    }

    /// The workload as a file (so that a million records are generated once): the
    /// organization's keys, the chapters' logs, the records and the revocations.
    func save(_ w: Workload, to path: String) throws {
        var b = ByteWriter()
        b.text("kith-hub-bench-1")
        b.lengthPrefixed(w.org.signing.seed.unsafeCopy())
        b.lengthPrefixed(w.orgAgreementSecret)
        for list in [w.logs.map { $0.chapter.bytes }] { b.uvarint(list.count); for x in list { b.lengthPrefixed(x) } }
        for l in w.logs {
            let ops = l.allOps.map(\.encoded)
            b.uvarint(ops.count)
            for o in ops { b.lengthPrefixed(o) }
        }
        for list in [w.records, w.revocations] { b.uvarint(list.count); for x in list { b.lengthPrefixed(x) } }
        try Data(b.bytes).write(to: URL(fileURLWithPath: path))
    }

    func load(_ path: String) throws -> Workload {
        var r = ByteReader(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        guard try r.text(max: 100) == "kith-hub-bench-1" else { throw ValidationError("\(path) is not a kith-bench hub workload") }
        let seed = Array(try r.lengthPrefixed(max: 64)), agreement = Array(try r.lengthPrefixed(max: 64))
        let org = OrganizationKeys(signing: try Ed25519.PrivateKey(seed: seed), agreement: try X25519.PrivateKey(bytes: agreement), name: "Bench Party")
        var w = Workload(org: org, orgAgreementSecret: agreement)
        let ids = try (0..<r.uvarint()).map { _ in try ChapterID(bytes: Array(try r.lengthPrefixed(max: 16))) }
        for id in ids {
            let ops = try (0..<r.uvarint()).map { _ in Array(try r.lengthPrefixed(max: 1 << 16)) }
            w.logs.append(try MembershipLog(chapter: id, ops: ops))
        }
        w.records = try (0..<r.uvarint()).map { _ in Array(try r.lengthPrefixed(max: 1 << 20)) }
        w.revocations = try (0..<r.uvarint()).map { _ in Array(try r.lengthPrefixed(max: 1 << 16)) }
        guard w.logs.count == chapters, w.records.count == records else {
            throw ValidationError("\(path) holds \(w.logs.count) chapters and \(w.records.count) records, not --chapters \(chapters) --records \(records)")
        }
        return w
    }

    func percentile(_ xs: [Double], _ p: Double) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
    }

    /// Ingests `records` from `senders` concurrent members; returns records stored and seconds.
    func ingest(_ hub: HubNode, _ records: ArraySlice<[UInt8]>, org: Ed25519.PublicKey) async -> (stored: Int, seconds: Double, cpu: Double) {
        let t = seconds(), c = cpuSeconds()
        let parts = (0..<senders).map { k in Array(records.enumerated().filter { $0.offset % senders == k }.map(\.element)) }
        let stored = await withTaskGroup(of: Int.self) { group in
            for part in parts {
                group.addTask {
                    // Members verify their receipts on their own machines: here every 50th is
                    // verified in full (the hub signs each), the others' kind read from its byte.
                    var n = 0
                    for (i, r) in part.enumerated() {
                        let a = await hub.accept(r)
                        let stored = i % 50 == 0 ? (try? HubAnswer(encoded: a, organization: org))?.kind == .stored : a.count > 1 && a[1] == HubAnswer.Kind.stored.rawValue
                        if stored { n += 1 }
                    }
                    return n
                }
            }
            return await group.reduce(0, +)
        }
        return (stored, seconds() - t, cpuSeconds() - c)
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
        note(String(format: "\(kind): %.0f records/s (%d stored), %.0f µs CPU per record", Double(first.stored) / first.seconds, first.stored,
                    first.cpu / Double(max(1, first.stored)) * 1e6))
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
            "ingestCPUMicrosecondsPerRecord": first.cpu / Double(max(1, first.stored)) * 1e6,
            "ingestRecordsPerCPUSecond": Double(first.stored) / max(first.cpu, 1e-9),
            "ingestUnderRevocationCPUMicrosecondsPerRecord": second.cpu / Double(max(1, second.stored)) * 1e6,
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
        let w: Workload
        if let workloadFile, FileManager.default.fileExists(atPath: workloadFile) {
            w = try load(workloadFile)
            note("read \(records) records from \(workloadFile)")
        } else {
            note("generating \(records) signed, sealed records from \(chapters) chapters…")
            let t = seconds()
            w = try generate(now: now)
            note(String(format: "generated in %.1f s", seconds() - t))
            if let workloadFile { try save(w, to: workloadFile) }
        }
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
                results.append(try await HubWorkload.withScratchDatabase(postgres) { url, log in
                    let storage = try await PostgresHubStorage.open(url, keys: w.org, storageKey: SymmetricKey(), logger: log)
                    do {
                        return try await run(kind, w, storage: storage)
                    } catch {
                        await storage.shutdown()
                        throw error
                    }
                })
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
