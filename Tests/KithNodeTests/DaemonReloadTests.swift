import Foundation
import Testing

/// SIGHUP against a real kithd: it reads kithd.toml again instead of dying (exit 129 before).
@Suite("kithd reloads its config on SIGHUP", .serialized)
struct DaemonReloadTests {
    func write(_ text: String, to path: String) throws { try text.write(toFile: path, atomically: true, encoding: .utf8) }

    /// The JSON log lines of a daemon whose message is `msg`.
    func events(_ d: Daemon, _ msg: String) -> [[String: String]] {
        d.logText.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{"), let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String], o["msg"] == msg else { return nil }
            return o
        }
    }

    func peerCount(_ data: String) throws -> Int { (try kithJSON(["peers", "--data-dir", data]) as? [Any])?.count ?? -1 }

    @Test func liveSettingsChangeRestartOnlyOnesAreNamedAndABadFileIsSurvived() throws {
        let tmp = try TempDir()
        let a = tmp.path("a"), b = tmp.path("b")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["device", "add", "--from", a, "--data-dir", b]).status == 0)
        let db = try Daemon(data: b, logName: "hup")
        let pb = try db.port
        try write("log_level = \"info\"\n", to: a + "/kithd.toml")
        let da = try Daemon(data: a, logName: "hup")
        _ = try da.port
        #expect(try peerCount(a) == 0)

        // A new static peer, debug level, JSON lines; advertise only counts at the next start.
        try write("""
            log_level = "debug"
            log_format = "json"
            peers = ["127.0.0.1:\(pb)"]
            advertise = "203.0.113.7:7434"
            """, to: a + "/kithd.toml")
        kill(da.process.processIdentifier, SIGHUP)
        let reloaded = try waitFor("reload logged") { events(da, "configuration reloaded").first }
        #expect(reloaded["applied"] == "log_level,log_format,peers" && reloaded["needsRestart"] == "advertise" && reloaded["level"] == "notice",
                "\(reloaded)")
        let restart = try #require(events(da, "this setting changes only when kithd restarts").first)
        #expect(restart["key"] == "advertise" && restart["configured"] == "203.0.113.7:7434")
        _ = try waitFor("the new peer is connected", seconds: 40) { da.count("caught up with peer") >= 1 ? true : nil }
        #expect(try peerCount(a) == 1)

        // A broken file: logged with its line and the valid levels; kithd keeps running as it was.
        try write("log_format = \"json\"\nlog_level = \"verbose\"\n", to: a + "/kithd.toml")
        kill(da.process.processIdentifier, SIGHUP)
        let refused = try waitFor("refusal logged") { events(da, "configuration not reloaded; kithd keeps running with the previous one").first }
        #expect(refused["reason"]?.contains("line 2: unknown log level 'verbose' (use one of: trace, debug, info, notice, warning, error, critical)") == true,
                "\(refused)")
        let peersAfterRefusal = try peerCount(a)
        #expect(da.process.isRunning && peersAfterRefusal == 1)

        // The peer removed: its connection is hung up; the anti-entropy interval turned off live.
        try write("log_format = \"json\"\nlog_level = \"debug\"\npeers = []\nanti_entropy_interval = 0\n", to: a + "/kithd.toml")
        kill(da.process.processIdentifier, SIGHUP)
        _ = try waitFor("second reload") { events(da, "configuration reloaded").count >= 2 ? true : nil }
        #expect(events(da, "configuration reloaded")[1]["applied"] == "peers,anti_entropy_interval")
        _ = try waitFor("peer hung up", seconds: 40) { try peerCount(a) == 0 ? true : nil }

        kill(da.process.processIdentifier, SIGTERM)
        da.process.waitUntilExit()
        #expect(da.process.terminationStatus == 0 && da.logText.contains("kithd stopped"))
        // swift-service-lifecycle reports each service's shutdown at debug level.
        #expect(da.logText.contains(#""level":"debug""#), "the debug level did not take effect")
        #expect(!FileManager.default.fileExists(atPath: a + "/kithd.port") && !FileManager.default.fileExists(atPath: a + "/kithd.api"))
        db.stop()
    }

    /// Flags win over the file at a reload too: --log-level and --log-format given at start stay.
    @Test func flagsStillWinAfterAReload() throws {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        try write("log_level = \"info\"\n", to: a + "/kithd.toml")
        let da = try Daemon(data: a, extra: ["--log-level", "notice", "--log-format", "journal"], logName: "flags")
        _ = try da.port
        try write("log_level = \"debug\"\nlog_format = \"text\"\nanti_entropy_interval = 5\n", to: a + "/kithd.toml")
        kill(da.process.processIdentifier, SIGHUP)
        let line = try waitFor("reload logged") { da.logText.split(separator: "\n").first { $0.contains("configuration reloaded") } }
        #expect(line.hasPrefix("<5>kithd: configuration reloaded applied=anti_entropy_interval "), "\(line)")
        #expect(!da.logText.contains("<7>") && da.process.isRunning, "\(da.logText)")
        da.stop()
        #expect(da.process.terminationStatus == 0)
    }
}
