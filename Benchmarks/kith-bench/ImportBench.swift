import ArgumentParser
import Foundation
import KithNode
import KithSampleData
#if canImport(Glibc)
import Glibc
#endif

/// `kith import` end to end (issue 15's numbers): a synthetic vCard file of N cards into a fresh
/// node, then the same file again (every record matched, nothing written). Wall time of the whole
/// `kith` process and its peak RSS (/usr/bin/time). Uses the kith binary next to this one (build
/// both with the same -c).
struct ImportBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "import", abstract: "kith import of a large vCard file, and its re-import (JSON).")
    @Option(help: "Cards in the file.") var contacts = 100_000
    @Option(help: "Keep the file and data directory under this directory.") var dir: String?
    @Option(help: "The kith binary to measure (default: the one next to this benchmark; measure a release build).") var kith: String?

    func run() throws {
        let kithPath = kith ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path + "/kith"
        let work = dir ?? NSTemporaryDirectory() + "kith-import-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { if dir == nil { try? FileManager.default.removeItem(atPath: work) } }
        let file = work + "/contacts.vcf"
        let gen = SyntheticContacts(seed: 42)
        if !FileManager.default.fileExists(atPath: file) {
            guard FileManager.default.createFile(atPath: file, contents: nil) else { throw ValidationError("cannot create \(file)") }
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
            // Written in slices of 10,000: a million cards need not fit in this process's memory.
            var i = 0
            while i < contacts {
                let n = min(10_000, contacts - i)
                h.write(Data(gen.vCard(range: i..<(i + n)).utf8))
                i += n
            }
            try h.close()
        }
        let data = work + "/node"
        try? FileManager.default.removeItem(atPath: data)
        guard try spawnAndWait(kithPath, ["init", "--data-dir", data]) == 0 else { throw ValidationError("kith init failed") }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/time") else { throw ValidationError("needs /usr/bin/time (apt-get install time)") }
        // Wall time, peak RSS and CPU time (user + system) of the kith process: on a shared,
        // loaded machine the CPU seconds show progress that wall time hides.
        func timed(_ args: [String]) throws -> (seconds: Double, peakKB: Int, cpuSeconds: Double) {
            let rss = work + "/rss"
            let t = seconds()
            let status = try spawnAndWait("/usr/bin/time", ["-f", "%M %U %S", "-o", rss, kithPath] + args)
            let elapsed = seconds() - t
            guard status == 0 else { throw ValidationError("kith \(args.joined(separator: " ")) failed (status \(status))") }
            let last = (try? String(contentsOfFile: rss, encoding: .utf8))?.split(separator: "\n").last?.split(separator: " ").map(String.init) ?? []
            guard last.count == 3, let kb = Int(last[0]), let user = Double(last[1]), let system = Double(last[2]) else {
                throw ValidationError("/usr/bin/time wrote no '%M %U %S' line to \(rss)")
            }
            return (elapsed, kb, user + system)
        }
        let first = try timed(["import", file, "--data-dir", data, "--region", "US"])
        let again = try timed(["import", file, "--data-dir", data, "--region", "US"])
        let size = (try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        let out: [String: Any] = [
            "benchmark": "import", "contacts": contacts, "fileBytes": size, "kith": kithPath,
            "import": ["seconds": first.seconds, "contactsPerSecond": Double(contacts) / first.seconds, "peakRSSKB": first.peakKB,
                       "cpuSeconds": first.cpuSeconds, "contactsPerCPUSecond": Double(contacts) / first.cpuSeconds],
            "reimport": ["seconds": again.seconds, "recordsPerSecond": Double(contacts) / again.seconds, "peakRSSKB": again.peakKB,
                         "cpuSeconds": again.cpuSeconds, "recordsPerCPUSecond": Double(contacts) / again.cpuSeconds],
            "loadAverage": loadAverage(), "machine": machine(), "commit": gitCommit(),
        ]
        let json = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted])
        print(String(decoding: json, as: UTF8.self))
    }
}

/// The 1-minute load average (/proc/loadavg), or -1 where there is none.
func loadAverage() -> Double {
    (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)).flatMap { $0.split(separator: " ").first.flatMap { Double($0) } } ?? -1
}
