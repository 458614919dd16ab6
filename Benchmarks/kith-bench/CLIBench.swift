import ArgumentParser
import AsyncHTTPClient
import Foundation
import KithCRDT
import KithNode
import KithSampleData
import KithStore
import NIOCore
import NIOHTTP1
#if canImport(Glibc)
import Glibc
#endif

/// End-to-end `kith` commands against a running kithd holding N private contacts and an M-contact
/// chapter map (issue 13's table): wall time of the whole `kith` process (median of `runs`), its
/// peak memory, and the server-side time of `GET /v1/contacts?q=` (the API's Server-Timing).
/// Uses the kith and kithd binaries next to this one (build all three with the same -c).
struct CLIBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cli", abstract: "kith commands end to end against a running kithd (JSON).")
    @Option(help: "Contacts in the private store.") var contacts = 100_000
    @Option(help: "Of them, shared into a chapter map.") var chapterContacts = 20_000
    @Option(help: "Runs per command (median reported).") var runs = 10
    @Option(help: "Keep the data directory here (reused when it already holds the contacts).") var dir: String?

    func run() throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
        let data = dir ?? NSTemporaryDirectory() + "kith-cli-bench-\(getpid())"
        let d = DataDirectory(path: data)
        let gen = SyntheticContacts(seed: 42)
        var setupSeconds = 0.0
        if !d.isInitialized {
            let t = seconds()
            _ = try NodeIdentity.initialize(in: d, passphrase: nil)
            let store = try NodeAccess.openStore(d, passphrase: nil)
            var i = 0
            while i < contacts {
                let end = min(i + 1000, contacts)
                let edits = (i..<end).map { gen.contact($0).edit }
                try store.commit(batches: stride(from: 0, to: edits.count, by: 100).map { Array(edits[$0..<min($0 + 100, edits.count)]) })
                i = end
            }
            setupSeconds = seconds() - t
        }
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: bin + "/kithd")
        daemon.arguments = ["--data-dir", data, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--log-level", "warning"]
        daemon.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try? FileManager.default.removeItem(atPath: data + "/kithd.port")
        let t0 = seconds()
        try daemon.run()
        defer {
            daemon.terminate()
            daemon.waitUntilExit()
            if dir == nil { try? FileManager.default.removeItem(atPath: data) }
        }
        while !FileManager.default.fileExists(atPath: data + "/kithd.port") {
            guard daemon.isRunning else { throw ValidationError("kithd exited at start") }
            usleep(20_000)
        }
        let startSeconds = seconds() - t0
        let api = "http://" + APIKey.address(in: d)!
        let key = try APIKey.load(from: d)
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { try? http.syncShutdown() }
        func call(_ method: HTTPMethod, _ path: String, _ body: [String: Any]? = nil) throws -> (Int, [String: Any], Double?) {
            var r = try HTTPClient.Request(url: api + path, method: method)
            r.headers.add(name: "X-API-Key", value: key)
            if let body { r.body = .bytes(try JSONSerialization.data(withJSONObject: body)) }
            let resp = try http.execute(request: r, deadline: .now() + .seconds(600)).wait()
            let json = resp.body.flatMap { try? JSONSerialization.jsonObject(with: Data($0.readableBytesView)) as? [String: Any] } ?? [:]
            let timing = resp.headers.first(name: "Server-Timing").flatMap { $0.split(separator: "=").last.flatMap { Double($0) } }
            return (Int(resp.status.code), json, timing)
        }

        // The chapter map: share the first M contacts into a new chapter (once).
        var shareSeconds = 0.0
        let chapters = try call(.GET, "/v1/chapters").1["chapters"] as? [[String: Any]] ?? []
        if chapterContacts > 0 && chapters.isEmpty {
            let t = seconds()
            _ = try call(.POST, "/v1/chapters", ["name": "Bench ward"])
            let ids = (0..<min(chapterContacts, contacts)).map { gen.contact($0).id.description }
            for start in stride(from: 0, to: ids.count, by: 5_000) {
                let (status, answer, _) = try call(.POST, "/v1/shares", ["contacts": Array(ids[start..<min(start + 5_000, ids.count)])])
                guard status == 200 else { throw ValidationError("share failed: \(answer)") }
            }
            shareSeconds = seconds() - t
        }

        let first = gen.contact(0)
        let commands: [(String, [String])] = [
            ("status", ["status"]),
            // A name query's matches grow with the store (synthetic names repeat); an email's do not.
            ("contact search (name)", ["contact", "search", first.givenName, first.familyName]),
            ("contact search (email)", ["contact", "search", first.email]),
            ("contact list --limit 10", ["contact", "list", "--limit", "10"]),
            ("contact show", ["contact", "show", String(first.id.description.prefix(8))]),
            ("chapter map --limit 20", ["chapter", "map", "--limit", "20"]),
            ("contact add", ["contact", "add", "--given", "Bench", "--family", "Added", "--phone", "+44 20 7946 0999"]),
        ]
        var results: [String: Any] = [:]
        var peakKB = 0
        // Peak memory through /usr/bin/time: a child spawned by this (large) process would count
        // this process's pages in its own ru_maxrss (posix_spawn shares the address space until exec).
        let timeTool = FileManager.default.isExecutableFile(atPath: "/usr/bin/time") ? "/usr/bin/time" : nil
        let rssFile = data + "-rss"
        for (name, args) in commands {
            var times: [Double] = []
            var rss: [Int] = []
            for i in 0...runs {
                let t = seconds()
                let status = try spawnAndWait(bin + "/kith", args + ["--data-dir", data])
                let elapsed = seconds() - t
                guard status == 0 else { throw ValidationError("kith \(args.joined(separator: " ")) failed (status \(status))") }
                if i > 0 { times.append(elapsed * 1000) } // the first run warms the page cache
                if let timeTool, i == runs {
                    _ = try spawnAndWait(timeTool, ["-f", "%M", "-o", rssFile, bin + "/kith"] + args + ["--data-dir", data])
                    if let kb = (try? String(contentsOfFile: rssFile, encoding: .utf8)).flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last ?? "") }) {
                        rss.append(kb)
                        peakKB = max(peakKB, kb)
                    }
                }
            }
            times.sort()
            var entry: [String: Any] = ["medianMs": times[times.count / 2], "maxMs": times.last!]
            if let r = rss.first { entry["peakRSSKB"] = r }
            results[name] = entry
        }
        try? FileManager.default.removeItem(atPath: rssFile)
        func serverTimes(_ query: String) throws -> [String: Any] {
            var server: [Double] = [], roundTrip: [Double] = []
            let q = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
            var total = 0
            for _ in 0..<100 {
                let t = seconds()
                let (_, answer, timing) = try call(.GET, "/v1/contacts?q=\(q)&limit=10")
                roundTrip.append((seconds() - t) * 1000)
                if let timing { server.append(timing) }
                total = answer["total"] as? Int ?? 0
            }
            server.sort()
            roundTrip.sort()
            return ["matches": total, "serverMedianMs": server.isEmpty ? -1 : server[server.count / 2],
                    "serverP99Ms": server.isEmpty ? -1 : server[server.count * 99 / 100], "roundTripMedianMs": roundTrip[roundTrip.count / 2]]
        }
        let byName = try serverTimes("\(first.givenName) \(first.familyName)")
        let byEmail = try serverTimes(first.email)
        var daemonRSS = 0
        if let text = try? String(contentsOfFile: "/proc/\(daemon.processIdentifier)/status", encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) {
            daemonRSS = Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        let out: [String: Any] = [
            "contacts": contacts, "chapterContacts": chapterContacts, "runs": runs,
            "setupSeconds": setupSeconds, "shareSeconds": shareSeconds, "kithdStartSeconds": startSeconds,
            "commands": results, "cliPeakRSSKB": peakKB, "kithdPeakRSSKB": daemonRSS,
            "httpSearchName": byName, "httpSearchEmail": byEmail,
        ]
        let json = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted])
        print(String(decoding: json, as: UTF8.self))
    }
}

/// posix_spawn with stdout to /dev/null and wait4: exact wall time (Foundation's Process waits
/// in 50 ms steps on Linux).
func spawnAndWait(_ path: String, _ args: [String]) throws -> Int32 {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    let argv = ([path] + args).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
    guard rc == 0 else { throw ValidationError("cannot start \(path): errno \(rc)") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status >> 8) & 0xff
}
