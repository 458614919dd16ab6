import ArgumentParser
import Foundation
import KithCRDT
import KithCrypto
import KithSampleData

@main
struct KithBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kith-bench",
        abstract: "Kith benchmarks: JSON results on stdout, a human summary on stderr.",
        discussion: """
            Run in release mode: swift run -c release kith-bench crdt --contacts 100000
            Every result carries its workload parameters, the git commit and the machine.
            """,
        subcommands: [CRDTBench.self, StoreBench.self, SyncBench.self, GossipBench.self, MembershipBench.self, CLIBench.self, ImportBench.self, ColdOpenBench.self, HubBench.self, HubExportBench.self, ChapterBench.self, SampleCommand.self]
    )
}

/// Monotonic seconds.
func seconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// CPU time (user + system) of the whole process so far, in seconds: on a shared machine wall
/// time grows with the load, CPU time much less. `RUSAGE_CHILDREN`: of the children waited for.
func cpuSeconds(_ who: Int32 = RUSAGE_SELF.rawValue) -> Double {
    var u = rusage()
    getrusage(who, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}

/// Resident set size and its peak, from /proc/self/status (Linux), in bytes.
func memory() -> (rss: Int, peak: Int) {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (0, 0) }
    func field(_ name: String) -> Int {
        for line in s.split(separator: "\n") where line.hasPrefix(name) {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }
    return (field("VmRSS:"), field("VmHWM:"))
}

func gitCommit() -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["git", "rev-parse", "--short", "HEAD"]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return "unknown" }
    p.waitUntilExit()
    return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

func machine() -> [String: Any] {
    var cpu = "unknown"
    if let s = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
       let line = s.split(separator: "\n").first(where: { $0.hasPrefix("model name") }) {
        cpu = line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? cpu
    }
    return ["cpu": cpu, "cores": ProcessInfo.processInfo.activeProcessorCount,
            "memoryGiB": Double(ProcessInfo.processInfo.physicalMemory) / 1_073_741_824]
}

func emit(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
    print(String(decoding: data, as: UTF8.self))
}

func note(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

struct CRDTBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crdt",
        abstract: "Build a replica of N synthetic contacts, then apply its changes to a fresh replica with and without signature checks."
    )

    @Option(help: "Number of contacts.") var contacts = 100_000
    @Option(help: "Most ops per change.") var opsPerChange = 1_000
    @Option(help: "Seed of the synthetic generator.") var seed: UInt64 = 42

    func run() throws {
        let scope = ScopeID(name: "private")
        let wall: UInt64 = 1_790_000_000_000
        note("generating \(contacts) contacts (seed \(seed))…")
        let gen = SyntheticContacts(seed: seed)
        let all = gen.contacts(contacts)
        let csvBytes = SyntheticContacts.csv(all).utf8.count

        // Author the changes (batches of whole contacts up to opsPerChange ops).
        var author = ChangeAuthor(signer: Ed25519.PrivateKey())
        var changes: [Change] = []
        var batch: [ContactEdit] = []
        var batchOps = 0
        var totalOps = 0
        let t0 = seconds()
        for c in all {
            let e = c.edit
            if batchOps + e.ops.count > opsPerChange, !batch.isEmpty {
                changes.append(try author.makeChange(scope: scope, edits: batch, wallMilliseconds: wall))
                batch.removeAll(keepingCapacity: true)
                batchOps = 0
            }
            batch.append(e)
            batchOps += e.ops.count
            totalOps += e.ops.count
        }
        if !batch.isEmpty { changes.append(try author.makeChange(scope: scope, edits: batch, wallMilliseconds: wall)) }
        let authorSeconds = seconds() - t0
        let encodedBytes = changes.reduce(0) { $0 + $1.encoded.count }
        let encoded = changes.map(\.encoded)
        note("authored \(changes.count) changes, \(totalOps) ops in \(String(format: "%.2f", authorSeconds)) s")

        var verifyCPUSeconds = 0.0
        func applyAll(verify: Bool) throws -> (Double, Replica, Int) {
            let before = memory().rss
            let t = seconds(), cpu = cpuSeconds()
            var r = Replica(scope: scope, configuration: ReplicaConfiguration(verifySignatures: verify))
            for bytes in encoded { try r.receive(encoded: bytes, nowMilliseconds: wall) }
            let dt = seconds() - t
            if verify { verifyCPUSeconds = cpuSeconds() - cpu }
            return (dt, r, memory().rss - before)
        }
        // The verified apply first, into memory no earlier replica has freed (an honest RSS
        // delta); then two unverified runs, keeping the faster.
        let (verifySeconds, verified, rssDelta) = try applyAll(verify: true)
        precondition(verified.knownContactCount == contacts)
        // As a node receives: batches of 64 changes (~1 MB, one sync message), each verified
        // and decoded across cores, then applied in order.
        let decoded = try encoded.map { try Change(decoding: $0) }
        var batchedSeconds = Double.infinity, batchedCPUSeconds = 0.0
        for _ in 0..<2 {
            let t = seconds(), cpu = cpuSeconds()
            var r = Replica(scope: scope)
            for start in stride(from: 0, to: decoded.count, by: 64) {
                for case let .failure(e) in r.receive(Array(decoded[start..<min(start + 64, decoded.count)]), nowMilliseconds: wall) { throw e }
            }
            precondition(r.knownContactCount == contacts)
            if seconds() - t < batchedSeconds { (batchedSeconds, batchedCPUSeconds) = (seconds() - t, cpuSeconds() - cpu) }
        }
        let (plainSeconds1, plain, _) = try applyAll(verify: false)
        precondition(plain.knownContactCount == contacts)
        let (plainSeconds2, _, _) = try applyAll(verify: false)
        let plainSeconds = min(plainSeconds1, plainSeconds2)
        let changeLogBytes = verified.encodedSize

        let result: [String: Any] = [
            "benchmark": "crdt-apply",
            "commit": gitCommit(),
            "machine": machine(),
            "workload": ["contacts": contacts, "ops": totalOps, "changes": changes.count, "opsPerChangeMax": opsPerChange, "seed": seed],
            "authorSeconds": authorSeconds,
            "applyVerifiedSeconds": verifySeconds,
            "applyVerifiedOpsPerSecond": Double(totalOps) / verifySeconds,
            "applyVerifiedCPUSeconds": verifyCPUSeconds,
            "applyVerifiedBatchedSeconds": batchedSeconds,
            "applyVerifiedBatchedCPUSeconds": batchedCPUSeconds,
            "applyUnverifiedSeconds": plainSeconds,
            "applyUnverifiedOpsPerSecond": Double(totalOps) / plainSeconds,
            "encodedBytes": encodedBytes,
            "encodedBytesPerOp": Double(encodedBytes) / Double(totalOps),
            "csvBytes": csvBytes,
            "encodedToCSVRatio": Double(encodedBytes) / Double(csvBytes),
            // The replica's change log shares the input buffers, allocated before the baseline:
            // the RSS growth is the materialized view and bookkeeping; add the log for the total.
            "replicaRSSBytes": rssDelta,
            "replicaRSSBytesPerContact": Double(rssDelta) / Double(contacts),
            "changeLogBytesPerContact": Double(changeLogBytes) / Double(contacts),
            "replicaTotalBytesPerContact": Double(rssDelta + changeLogBytes) / Double(contacts),
            "peakRSSBytes": memory().peak,
        ]
        emit(result)
        note(String(format: "apply verified: %.3f s (%.0f ops/s, CPU %.3f s); unverified: %.3f s (%.0f ops/s); verified in batches of 64 across cores: %.3f s (CPU %.3f s)",
                    verifySeconds, Double(totalOps) / verifySeconds, verifyCPUSeconds, plainSeconds, Double(totalOps) / plainSeconds,
                    batchedSeconds, batchedCPUSeconds))
        note(String(format: "encoded %.1f MB = %.2f× CSV (%.1f MB), %.1f B/op; replica %.0f B/contact (RSS growth %.0f + change log %.0f)",
                    Double(encodedBytes) / 1e6, Double(encodedBytes) / Double(csvBytes), Double(csvBytes) / 1e6,
                    Double(encodedBytes) / Double(totalOps), Double(rssDelta + changeLogBytes) / Double(contacts),
                    Double(rssDelta) / Double(contacts), Double(changeLogBytes) / Double(contacts)))
    }
}
