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

/// The hub's streamed export at scale (issue 17: ≥ 50,000 records/s with ≤ 100 MB of memory), on
/// SQLite and PostgreSQL side by side. The held rows are real (signed grants and records, fields
/// sealed to the organization, signed receipts) and are generated once into a cache file
/// (`--cache`), reused across runs; they are written straight into the store (ingest is
/// `kith-bench hub`'s), then exported the way `kithd hub export` does, to /dev/null.
struct HubExportBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub-export",
        abstract: "Hub export rows/s and memory growth at scale, on SQLite and PostgreSQL.",
        discussion: """
            Example: kith-bench hub-export --records 1000000 --cache /tmp/kith-hub-1m.rows --postgres 'postgres://postgres@/postgres?host=/tmp/kith-pg.X'
            """
    )

    @Option(help: "Held records exported.") var records = 200_000
    @Option(help: "Chapters the records come from.") var chapters = 500
    @Option(help: "Stores: sqlite, postgres or both (postgres needs --postgres).") var stores = "both"
    @Option(help: "A PostgreSQL server URL whose database may be used to create and drop a scratch database.") var postgres: String?
    @Option(help: "Export format: json, jsonl or csv.") var format = "csv"
    @Option(help: "Rows per page read from the store.") var pageSize = HubExportStream.pageSize
    @Option(help: "A file holding generated rows (made when missing, reused when it has the same record count).") var cache: String?

    /// Version 2: the rows carry their opened fields (hub store schema 4); a version-1 file is made again.
    static let magic = Array("KITHHX2\n".utf8)

    /// The organization's keys and the rows' file (made now when `cache` is missing or for another count).
    func workload() throws -> (OrganizationKeys, String, temporary: Bool) {
        let path = cache ?? NSTemporaryDirectory() + "kith-bench-hub-export-" + Base64URL.encode(SecureRandom.bytes(6)) + ".rows"
        if let h = FileHandle(forReadingAtPath: path) {
            defer { try? h.close() }
            let head = [UInt8](h.readData(ofLength: 8 + 8 + 64))
            if head.count == 80, Array(head[0..<8]) == Self.magic, UInt64(bigEndianBytes: head[8..<16]) == UInt64(records) {
                note("reusing \(records) rows in \(path)")
                return (OrganizationKeys(signing: try Ed25519.PrivateKey(seed: Array(head[16..<48])), agreement: try X25519.PrivateKey(bytes: Array(head[48..<80])),
                                         name: "Bench Party"), path, false)
            }
        }
        let org = OrganizationKeys.generate(name: "Bench Party")
        note("generating \(records) signed, sealed records from \(chapters) chapters into \(path)…")
        let t = seconds()
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]) else { throw ValidationError("cannot create \(path)") }
        guard let out = FileHandle(forWritingAtPath: path) else { throw ValidationError("cannot write \(path)") }
        defer { try? out.close() }
        var head = Self.magic
        head.appendBigEndian(UInt64(records))
        head += org.signing.seed.unsafeCopy() + org.agreement.secret.unsafeCopy()
        out.write(Data(head))
        let chapterIDs = (0..<chapters).map { _ in try! ChapterID(bytes: SecureRandom.bytes(16)) }
        let batch = 20_000
        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        for start in stride(from: 0, to: records, by: batch) {
            let end = min(records, start + batch), per = (end - start + cores - 1) / cores
            let parts = (0..<cores).map { c in (start + c * per)..<min(end, start + (c + 1) * per) }.filter { !$0.isEmpty }
            let chunks = UnsafeChunks(count: parts.count)
            DispatchQueue.concurrentPerform(iterations: parts.count) { k in
                var bytes: [UInt8] = []
                let member = Ed25519.PrivateKey(), device = Ed25519.PrivateKey(), agreement = X25519.PrivateKey()
                let cert = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey, createdAt: 1_700_000_000)
                for i in parts[k] {
                    let (g, record) = HubWorkload.record(i, chapter: chapterIDs[i % chapterIDs.count], organization: org, certificate: cert, device: device,
                                                         createdAt: 1_700_000_000_000)
                    let answer = HubAnswer.make(.stored, request: record.encoded, member: g.member, grantID: g.id, version: 1, rule: .contactAgreed,
                                                at: 1_700_000_000_000, signer: org.signing)
                    // As the hub stores it on arrival (schema 4): with the fields it opened.
                    let held = HubStoreSchema.encodeHeld(record: record.encoded, answer: answer.encoded, chapterName: "Chapter \(i % chapterIDs.count)",
                                                         fields: HubWorkload.values(i))
                    bytes += g.member.bytes + g.id
                    bytes.appendBigEndian(UInt64(held.count))
                    bytes += held
                }
                chunks.set(k, bytes)
            }
            for c in chunks.all { out.write(Data(c)) }
        }
        note(String(format: "generated in %.1f s", seconds() - t))
        return (org, path, cache == nil)
    }

    /// Per-task results of a parallel loop; each index is written by one iteration only.
    final class UnsafeChunks: @unchecked Sendable {
        private let lock = NSLock()
        private var chunks: [[UInt8]]
        init(count: Int) { chunks = Array(repeating: [], count: count) }
        func set(_ i: Int, _ b: [UInt8]) {
            lock.lock()
            chunks[i] = b
            lock.unlock()
        }
        var all: [[UInt8]] { lock.lock(); defer { lock.unlock() }; return chunks }
    }

    /// Writes the rows of `path` into `storage`, in transactions of a few thousand.
    func load(_ path: String, into storage: any HubStorage) async throws {
        guard let h = FileHandle(forReadingAtPath: path) else { throw ValidationError("cannot read \(path)") }
        defer { try? h.close() }
        _ = h.readData(ofLength: 80)
        var buffer: [UInt8] = [], at = 0, loaded = 0
        var batch: [HubWrite] = []
        let t = seconds()
        while loaded < records {
            if buffer.count - at < 1 << 20 {
                buffer = Array(buffer[at...]) + [UInt8](h.readData(ofLength: 8 << 20))
                at = 0
            }
            guard buffer.count - at >= 56 else { throw ValidationError("\(path) ends early") }
            let id = Array(buffer[at..<(at + 48)]), n = Int(UInt64(bigEndianBytes: buffer[(at + 48)..<(at + 56)]))
            guard buffer.count - at >= 56 + n, let key = HubStoreSchema.decodeGrantKey(id),
                  let held = HubStoreSchema.decodeHeldRow(Array(buffer[(at + 56)..<(at + 56 + n)])) else { throw ValidationError("\(path) is damaged") }
            at += 56 + n
            batch.append(.put(key, record: held.record, answer: held.answer, chapterName: held.chapterName, fields: held.fields))
            loaded += 1
            if batch.count == 500 || loaded == records { // short transactions: PostgreSQL gives an attempt 5 s
                try await storage.write(batch)
                batch = []
            }
        }
        note(String(format: "loaded %d rows in %.1f s", loaded, seconds() - t))
    }

    /// CPU seconds (user + system) this process has used.
    func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    }

    func measure(_ kind: String, _ org: OrganizationKeys, _ storage: any HubStorage, _ f: HubExport.Format) async throws -> [String: Any] {
        guard let devnull = FileHandle(forWritingAtPath: "/dev/null") else { throw ValidationError("cannot open /dev/null") }
        defer { try? devnull.close() }
        let rssBefore = memory().rss
        // Resets the peak RSS (VmHWM) to the current RSS, so the peak after is the export's.
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        let bytes = Counter()
        let (t, cpu) = (seconds(), cpuSeconds())
        let summary = try await HubExportStream.write(storage: storage, organization: org.agreement, format: f, pageSize: pageSize) { chunk in
            bytes.add(chunk.count)
            devnull.write(Data(chunk))
        }
        let (wall, used) = (seconds() - t, cpuSeconds() - cpu)
        let peakGrowth = memory().peak - rssBefore
        precondition(summary.rows == records && summary.unreadable == 0, "the export has \(summary.rows) rows, \(summary.unreadable) unreadable")
        note(String(format: "\(kind): export %d rows (%@) in %.2f s wall, %.2f s CPU: %.0f rows/s; peak RSS growth %.1f MB", summary.rows, f.rawValue, wall, used,
                    Double(summary.rows) / wall, Double(peakGrowth) / 1e6))
        return [
            "store": kind, "format": f.rawValue, "exportRows": summary.rows, "exportBytes": bytes.value,
            "exportSeconds": wall, "exportCPUSeconds": used, "exportRowsPerSecond": Double(summary.rows) / wall,
            "exportRowsPerCPUSecond": Double(summary.rows) / max(used, 1e-9), "exportPeakRSSGrowthBytes": peakGrowth,
            "rssBeforeExportBytes": rssBefore, "pageSize": pageSize,
        ]
    }

    final class Counter: @unchecked Sendable { // added to from the one task running the export
        var value = 0
        func add(_ n: Int) { value += n }
    }

    func run() async throws {
        guard let f = HubExport.Format(rawValue: format) else { throw ValidationError("--format: json, jsonl or csv") }
        let (org, path, temporary) = try workload()
        defer { if temporary { try? FileManager.default.removeItem(atPath: path) } }
        var results: [[String: Any]] = []
        for kind in stores == "both" ? ["sqlite", "postgres"] : [stores] {
            switch kind {
            case "sqlite":
                let dir = NSTemporaryDirectory() + "kith-bench-hub-export-" + Base64URL.encode(SecureRandom.bytes(6))
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: dir) }
                let storage = try SQLiteHubStorage(directory: dir, keys: org, storageKey: SymmetricKey())
                try await load(path, into: storage)
                results.append(try await measure(kind, org, storage, f))
            case "postgres":
                guard let postgres else {
                    note("postgres: skipped (no --postgres server)")
                    continue
                }
                results.append(try await HubWorkload.withScratchDatabase(postgres) { url, log in
                    let storage = try await PostgresHubStorage.open(url, keys: org, storageKey: SymmetricKey(), logger: log, retryWindow: .seconds(60))
                    do {
                        try await load(path, into: storage)
                        let result = try await measure(kind, org, storage, f)
                        await storage.shutdown()
                        return result
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
            "benchmark": "hub-export",
            "commit": gitCommit(),
            "machine": machine(),
            "workload": ["records": records, "chapters": chapters, "format": format, "pageSize": pageSize],
            "results": results,
            "loadAverage": (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "",
        ])
    }
}
