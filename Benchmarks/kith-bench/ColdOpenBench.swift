import ArgumentParser
import AsyncHTTPClient
import Foundation
import KithCRDT
import KithNetwork
import KithNode
import KithQuery
import KithSampleData
import KithStore
import NIOCore
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#endif

/// Cold open at N contacts (issue 18): the store opened in-process (snapshot + tail vs. replaying
/// every change), a `kith` process without kithd to its first answer, and kithd from start to
/// its first API answer, with its RSS. `--bin` points at another build's kith/kithd (e.g. main's,
/// for the "before" column: it ignores the snapshot file).
struct ColdOpenBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coldopen",
        abstract: "Cold open to first answer: store open (snapshot vs replay), kith without kithd, kithd start (JSON)."
    )
    @Option(help: "Contacts in the private store.") var contacts = 100_000
    @Option(help: "Runs per measurement (median reported).") var runs = 5
    @Option(help: "Keep the data directory here (reused when it already holds the contacts).") var dir: String?
    @Option(help: "Directory of the kith and kithd binaries to time (default: next to this one).") var bin: String?
    @Flag(help: "Skip the in-process store measurements (e.g. with --bin of another build).") var skipInProcess = false

    func run() throws {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        let bin = self.bin ?? here
        let data = dir ?? NSTemporaryDirectory() + "kith-coldopen-\(getpid())"
        let d = DataDirectory(path: data)
        let gen = SyntheticContacts(seed: 42)
        var setupSeconds = 0.0
        if !d.isInitialized {
            note("writing \(contacts) contacts…")
            let t = seconds()
            _ = try NodeIdentity.initialize(in: d, passphrase: nil)
            let store = try NodeAccess.openStore(d, passphrase: nil)
            var i = 0
            while i < contacts {
                let end = min(i + 2000, contacts)
                let edits = (i..<end).map { gen.contact($0).edit }
                try store.commit(batches: stride(from: 0, to: edits.count, by: 100).map { Array(edits[$0..<min($0 + 100, edits.count)]) })
                i = end
            }
            setupSeconds = seconds() - t
        }
        defer { if dir == nil { try? FileManager.default.removeItem(atPath: data) } }
        let first = gen.contact(0)
        var out: [String: Any] = [
            "benchmark": "cold-open", "commit": gitCommit(), "machine": machine(), "bin": bin,
            "workload": ["contacts": contacts, "runs": runs, "seed": 42], "setupSeconds": setupSeconds,
        ]

        if !skipInProcess {
            // In-process: open + first query, from the snapshot and by replaying everything.
            func openAndQuery() throws -> (open: Double, firstAnswer: Double, status: String, rss: Int, cpu: Double) {
                let t = seconds(), c0 = cpuSeconds(RUSAGE_SELF.rawValue)
                let store = try NodeAccess.openStore(d, passphrase: nil)
                let tOpen = seconds() - t
                store.snapshotPolicy = SnapshotPolicy(minimumOps: .max / 2) // measure, do not write
                let index = store.currentIndex(ContactIndexCache()) // the snapshot's index section, else built
                let hits = index.search(first.email)
                guard !hits.isEmpty else { throw ValidationError("the first contact was not found") }
                let firstAnswer = seconds() - t, cpu = cpuSeconds(RUSAGE_SELF.rawValue) - c0
                return (tOpen, firstAnswer, "\(store.snapshotStatus)", memory().rss, cpu)
            }
            do { // make sure a snapshot of everything exists
                let store = try NodeAccess.openStore(d, passphrase: nil)
                _ = store.currentIndex(ContactIndexCache()) // so the snapshot holds the index
                let t = seconds()
                store.writeSnapshot()
                out["snapshotWriteSeconds"] = seconds() - t
            }
            var st = stat()
            stat(data + "/store.snapshot", &st)
            out["snapshotBytes"] = Int(st.st_size)
            var snap: [(Double, Double)] = [], replay: [(Double, Double)] = [], snapCPU: [Double] = []
            var statuses: Set<String> = []
            for _ in 0..<runs {
                let s = try openAndQuery()
                snap.append((s.open, s.firstAnswer))
                snapCPU.append(s.cpu * 1000)
                statuses.insert(s.status)
            }
            let saved = try Data(contentsOf: URL(fileURLWithPath: data + "/store.snapshot"))
            try FileManager.default.removeItem(atPath: data + "/store.snapshot")
            for _ in 0..<runs {
                let s = try openAndQuery()
                replay.append((s.open, s.firstAnswer))
                statuses.insert(s.status)
            }
            try saved.write(to: URL(fileURLWithPath: data + "/store.snapshot"))
            func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }
            out["inProcess"] = [
                "snapshotOpenMsMedian": median(snap.map(\.0)) * 1000, "snapshotFirstAnswerMsMedian": median(snap.map(\.1)) * 1000,
                "snapshotFirstAnswerCPUMsMedian": median(snapCPU),
                "replayOpenMsMedian": median(replay.map(\.0)) * 1000, "replayFirstAnswerMsMedian": median(replay.map(\.1)) * 1000,
                "statuses": statuses.sorted(),
            ]
            note(String(format: "in-process open: snapshot %.0f ms (first answer %.0f ms, CPU %.0f ms), replay %.0f ms (first answer %.0f ms)",
                        median(snap.map(\.0)) * 1000, median(snap.map(\.1)) * 1000, median(snapCPU), median(replay.map(\.0)) * 1000, median(replay.map(\.1)) * 1000))
        }

        // `kith` without kithd: the whole process, to its first answer (a search by email).
        try? FileManager.default.removeItem(atPath: data + "/kithd.api")
        var cli: [Double] = [], cliCPU: [Double] = []
        for i in 0...runs {
            let t = seconds(), c0 = cpuSeconds(RUSAGE_CHILDREN.rawValue)
            let status = try spawnAndWait(bin + "/kith", ["contact", "search", first.email, "--data-dir", data])
            guard status == 0 else { throw ValidationError("kith contact search failed (status \(status))") }
            if i > 0 { // the first run warms the page cache
                cli.append((seconds() - t) * 1000)
                cliCPU.append((cpuSeconds(RUSAGE_CHILDREN.rawValue) - c0) * 1000)
            }
        }
        cli.sort()
        cliCPU.sort()
        out["cliNoDaemonFirstAnswerMs"] = ["median": cli[cli.count / 2], "max": cli.last!, "cpuMedian": cliCPU[cliCPU.count / 2]]
        note(String(format: "kith contact search without kithd: %.0f ms median (CPU user+sys %.0f ms)", cli[cli.count / 2], cliCPU[cliCPU.count / 2]))

        // kithd: start to the first answer of GET /v1/contacts?q= (the API), its RSS then and at peak.
        var starts: [Double] = [], rss: [Int] = [], peak: [Int] = [], daemonCPU: [Double] = []
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { try? http.syncShutdown() }
        for _ in 0..<max(1, min(runs, 3)) {
            for f in ["kithd.port", "kithd.api", "kithd.gui"] { try? FileManager.default.removeItem(atPath: data + "/" + f) }
            let daemon = Process()
            daemon.executableURL = URL(fileURLWithPath: bin + "/kithd")
            daemon.arguments = ["--data-dir", data, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--log-level", "warning"]
            daemon.standardError = FileHandle(forWritingAtPath: "/dev/null")
            let t0 = seconds()
            try daemon.run()
            var answered = false
            while !answered {
                guard daemon.isRunning else { throw ValidationError("kithd exited at start") }
                if seconds() - t0 > 600 { throw ValidationError("kithd did not answer in 600 s") }
                if let address = APIKey.address(in: d), let key = try? APIKey.load(from: d) {
                    var r = try HTTPClient.Request(url: "http://\(address)/v1/contacts?q=\(first.email.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")&limit=1", method: .GET)
                    r.headers.add(name: "X-API-Key", value: key)
                    if let resp = try? http.execute(request: r, deadline: .now() + .seconds(600)).wait(), resp.status == .ok {
                        answered = true
                        break
                    }
                }
                usleep(2_000)
            }
            starts.append((seconds() - t0) * 1000)
            // CPU (user+sys, every thread) kithd used up to its first answer: /proc/<pid>/stat fields 14 and 15.
            if let stat = try? String(contentsOfFile: "/proc/\(daemon.processIdentifier)/stat", encoding: .utf8),
               let close = stat.lastIndex(of: ")") {
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                if fields.count > 13, let u = Double(fields[11]), let k = Double(fields[12]) {
                    daemonCPU.append((u + k) * 1000 / Double(sysconf(Int32(_SC_CLK_TCK))))
                }
            }
            if let text = try? String(contentsOfFile: "/proc/\(daemon.processIdentifier)/status", encoding: .utf8) {
                func kb(_ name: String) -> Int {
                    text.split(separator: "\n").first(where: { $0.hasPrefix(name) }).flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
                }
                rss.append(kb("VmRSS:"))
                peak.append(kb("VmHWM:"))
            }
            let tStop = seconds()
            daemon.terminate()
            daemon.waitUntilExit()
            note(String(format: "kithd: first API answer after %.0f ms (CPU user+sys %.0f ms), RSS %d MB (peak %d MB); stopped in %.0f ms",
                        starts.last!, daemonCPU.last ?? 0, (rss.last ?? 0) / 1024, (peak.last ?? 0) / 1024, (seconds() - tStop) * 1000))
        }
        starts.sort()
        out["kithdStartToFirstAPIAnswerMs"] = ["median": starts[starts.count / 2], "all": starts, "cpu": daemonCPU]
        out["kithdRSSKBAtFirstAnswer"] = rss
        out["kithdPeakRSSKB"] = peak
        emit(out)
    }
}
