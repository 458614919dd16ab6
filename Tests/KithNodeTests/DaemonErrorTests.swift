import Foundation
import KithNode
import Testing

/// The repository's root (scripts/, deploy/).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// kithd's messages tell a person what to do, and its exit status says what kind of failure it was.
@Suite("kithd's errors and exit statuses")
struct DaemonErrorTests {
    func kithd(_ args: [String]) throws -> Binaries.Result { try Binaries.run("kithd", args) }

    /// An initialized node in `tmp`.
    func initialized(_ tmp: TempDir) throws -> String {
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        return data
    }

    @Test func anUnquotedConfigValueIsShownWithItsQuotes() throws {
        for (text, expected) in [("listen = 0.0.0.0:7434", #"listen = "0.0.0.0:7434""#), ("log_level = debug # chatty", #"log_level = "debug""#),
                                 ("peers = laptop.lan:7434", #"peers = "laptop.lan:7434""#)] {
            do {
                _ = try DaemonConfig(toml: "\n" + text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.line == 2 && error.reason == "the value of \(text.prefix { $0 != " " }) is text and needs quotes: \(expected)", "\(error)")
            }
        }
        // Integers and booleans need no quotes.
        #expect(try DaemonConfig(toml: "lan_port = 7435\nlan_discovery = true").lanPort == 7435)

        let tmp = try TempDir()
        let data = try initialized(tmp)
        try "\n\nlisten = 0.0.0.0:7434\n".write(toFile: data + "/kithd.toml", atomically: true, encoding: .utf8)
        let r = try kithd(["--data-dir", data])
        #expect(r.status == 64 && r.stderr.contains("config file \(data)/kithd.toml line 3: the value of listen is text and needs quotes: listen = \"0.0.0.0:7434\""),
                "\(r.stderr)")
    }

    @Test func anUnknownLogLevelNamesTheFileTheLineAndTheLevels() throws {
        let tmp = try TempDir()
        let data = try initialized(tmp)
        try "listen = \"127.0.0.1:0\"\nlog_level = \"verbose\"\n".write(toFile: data + "/kithd.toml", atomically: true, encoding: .utf8)
        let r = try kithd(["--data-dir", data])
        #expect(r.status == 64)
        #expect(r.stderr.contains("config file \(data)/kithd.toml line 2: unknown log level 'verbose' (use one of: trace, debug, info, notice, warning, error, critical)"),
                "\(r.stderr)")
        try "log_format = \"xml\"\n".write(toFile: data + "/kithd.toml", atomically: true, encoding: .utf8)
        let f = try kithd(["--data-dir", data])
        #expect(f.status == 64 && f.stderr.contains("line 1: unknown log format 'xml' (use one of: text, json, journal)"), "\(f.stderr)")
        try FileManager.default.removeItem(atPath: data + "/kithd.toml")
        let flag = try kithd(["--data-dir", data, "--log-level", "verbose"])
        #expect(flag.status == 64 && flag.stderr.contains("--log-level: unknown log level 'verbose' (use one of: trace, debug, info, notice, warning, error, critical)"),
                "\(flag.stderr)")
    }

    @Test func aPortOutOfRangeIsSaidSo() throws {
        let tmp = try TempDir()
        let data = try initialized(tmp)
        let r = try kithd(["--data-dir", data, "--listen", "127.0.0.1:99999"])
        #expect(r.status == 64 && r.stderr.contains("--listen must be host:port, got '127.0.0.1:99999': port 99999 is out of range (0-65535, 0 = chosen by the OS)"),
                "\(r.stderr)")
        let peer = try kithd(["--data-dir", data, "--peer", "laptop.lan:0"])
        #expect(peer.status == 64 && peer.stderr.contains("--peer must be host:port, got 'laptop.lan:0': port 0 is out of range (1-65535)"), "\(peer.stderr)")
        let word = try kithd(["--data-dir", data, "--listen", "localhost:http"])
        #expect(word.stderr.contains("'http' is not a port number"), "\(word.stderr)")
        try "# home server\npeers = [\"a.lan:7434\", \"b.lan\"]\n".write(toFile: data + "/kithd.toml", atomically: true, encoding: .utf8)
        let file = try kithd(["--data-dir", data])
        #expect(file.status == 64 && file.stderr.contains("config file \(data)/kithd.toml line 2: peers must be host:port, got 'b.lan': no port"), "\(file.stderr)")
    }

    @Test func theHubSaysWhichCommandCreatesItsKeys() throws {
        let tmp = try TempDir()
        let hub = tmp.path("hub")
        try FileManager.default.createDirectory(atPath: hub, withIntermediateDirectories: true)
        for args in [["hub", "run", "--hub-dir", hub, "--address", "127.0.0.1:0"], ["hub", "chapters", "--hub-dir", hub]] {
            let r = try kithd(args)
            #expect(r.status == 64, "\(args)")
            #expect(r.stderr.contains("\(hub)/org.keys does not exist: create the organization's keys with `kithd hub init --hub-dir \(hub) --name NAME` first"),
                    "\(r.stderr)")
            #expect(!r.stderr.contains("kith init"))
        }
        let level = try kithd(["hub", "run", "--hub-dir", hub, "--hub-log-level", "verbose"])
        #expect(level.status == 64 && level.stderr.contains("--hub-log-level: unknown log level 'verbose'"), "\(level.stderr)")
    }

    @Test func exitStatusesAreDocumentedAndDistinct() throws {
        let help = try kithd(["--help"])
        #expect(help.status == 0)
        let flat = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        #expect(flat.contains("Exit codes: 0 stopped cleanly") && flat.contains("1 runtime failure") && flat.contains("2 not set up")
                && flat.contains("64 bad command line or kithd.toml"), "\(help.stdout)")
        // 2: not set up (a restart cannot help, so systemd does not retry).
        let tmp = try TempDir()
        let none = try kithd(["--data-dir", tmp.path("nothing"), "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"])
        #expect(none.status == 2 && none.stderr.contains("kith init"), "\(none.stderr)")
        // 64: usage.
        #expect(try kithd(["--no-such-flag"]).status == 64)
        // 1: a runtime failure — the port is taken.
        let data = try initialized(tmp)
        let blocker = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(blocker) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(blocker, $0, length) } }
        _ = listen(blocker, 1)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(blocker, $0, &length) } }
        let taken = Int(UInt16(bigEndian: address.sin_port))
        let busy = try kithd(["--data-dir", data, "--listen", "127.0.0.1:\(taken)", "--api-listen", "127.0.0.1:0"])
        #expect(busy.status == 1 && busy.stderr.contains("cannot listen"), "\(busy.status) \(busy.stderr)")
    }

    @Test func advertiseIsNeverLoopbackUnlessTheListenerIs() throws {
        #expect(AdvertisedAddress.choose(listenHost: "0.0.0.0", port: 7434, interfaceAddresses: ["127.0.0.1", "169.254.3.4", "192.168.1.20"]) == "192.168.1.20:7434")
        #expect(AdvertisedAddress.choose(listenHost: "0.0.0.0", port: 7434, interfaceAddresses: ["127.0.0.1", "::1", "fe80::1", "2001:db8::5"]) == "[2001:db8::5]:7434")
        #expect(AdvertisedAddress.choose(listenHost: "0.0.0.0", port: 7434, interfaceAddresses: ["127.0.0.1", "::1"]) == nil)
        #expect(AdvertisedAddress.choose(listenHost: "127.0.0.1", port: 7434, interfaceAddresses: ["192.168.1.20"]) == "127.0.0.1:7434")
        #expect(AdvertisedAddress.choose(listenHost: "10.0.0.2", port: 7434, interfaceAddresses: []) == "10.0.0.2:7434")
        #expect(AdvertisedAddress.problem(advertiseHost: "127.0.0.1", listenHost: "0.0.0.0") != nil)
        #expect(AdvertisedAddress.problem(advertiseHost: "localhost", listenHost: "::") != nil)
        #expect(AdvertisedAddress.problem(advertiseHost: "127.0.0.1", listenHost: "127.0.0.1") == nil)
        #expect(AdvertisedAddress.problem(advertiseHost: "203.0.113.7", listenHost: "0.0.0.0") == nil)

        let tmp = try TempDir()
        let data = try initialized(tmp)
        let r = try kithd(["--data-dir", data, "--listen", "0.0.0.0:0", "--advertise", "127.0.0.1:7434"])
        #expect(r.status == 64 && r.stderr.contains("--advertise: 127.0.0.1 is a loopback address, which no other member's machine can reach"), "\(r.stderr)")
    }

    /// Help text is written as paragraphs and wrapped by the terminal: a hard line break inside a
    /// sentence shows as a ragged, orphaned line at any other width.
    @Test func helpTextHasNoOrphanLineBreaks() throws {
        let dump = try kithd(["--experimental-dump-help"])
        let info = try #require(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
        var checked = 0
        func visit(_ command: [String: Any], _ path: String) {
            let texts = [command["discussion"] as? String ?? ""] + (command["arguments"] as? [[String: Any]] ?? []).flatMap {
                [$0["abstract"] as? String ?? "", $0["discussion"] as? String ?? ""]
            }
            for text in texts {
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
                for (l1, l2) in zip(lines, lines.dropFirst()) where !l1.isEmpty && !l2.isEmpty && !l1.hasPrefix(" ") && !l2.hasPrefix(" ") && !l1.hasSuffix(":") {
                    Issue.record("\(path): a line break inside a paragraph: '\(l1)' / '\(l2)'")
                }
                checked += 1
            }
            for sub in command["subcommands"] as? [[String: Any]] ?? [] { visit(sub, path + " " + (sub["commandName"] as? String ?? "?")) }
        }
        let root = try #require(info["command"] as? [String: Any])
        visit(root, "kithd")
        // Lines typed as they are shown (examples, the config sample, exit codes) fit 80 columns.
        for line in (root["discussion"] as? String ?? "").split(separator: "\n") where line.hasPrefix(" ") {
            #expect(line.count <= 78, "too wide for an 80-column terminal: '\(line)'")
        }
        #expect(checked > 20)
    }
}
