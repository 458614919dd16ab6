import Foundation
import KithNode
import Testing

@Suite("kithd.toml")
struct DaemonConfigTests {
    @Test func readsTheDocumentedKeys() throws {
        let c = try DaemonConfig(toml: """
            # Kith daemon on the home server
            data_dir = "/var/lib/kith"   # where the keys live
            listen = '0.0.0.0:7434'
            peers = [
              "laptop.lan:7434",  # Alice's laptop
              "10.0.0.5:7434",
            ]
            anti_entropy_interval = 1_0
            log_level = "debug"
            lan_discovery = false
            relay_scopes = []
            advertise = "203.0.113.7:7434"
            upward_via_peers = true
            """)
        #expect(c.advertise == "203.0.113.7:7434" && c.upwardViaPeers)
        #expect(c.dataDir == "/var/lib/kith" && c.listen == "0.0.0.0:7434")
        #expect(c.peers == ["laptop.lan:7434", "10.0.0.5:7434"])
        #expect(c.antiEntropyInterval == 10 && c.logLevel == "debug" && !c.lanDiscovery)
        #expect(try DaemonConfig(toml: "listen = \"a\\u00e9#b\" # c").listen == "aé#b")
    }

    @Test func errorsNameTheLine() {
        let cases: [(String, Int, String)] = [
            ("listen = 7434", 1, "must be a string"),
            ("\nport = 1", 2, "unknown key 'port'"),
            ("listen = \"x\"\nlisten = \"y\"", 2, "defined twice"),
            ("[server]", 1, "tables"),
            ("peers = [\"a\", 3]", 1, "array of strings"),
            ("listen = \"open", 1, "unterminated"),
            ("anti_entropy_interval = -1", 1, "non-negative"),
            ("just words", 1, "key = value"),
        ]
        for (text, line, reason) in cases {
            do {
                _ = try DaemonConfig(toml: text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.line == line && error.reason.contains(reason), "\(text): \(error)")
            }
        }
    }

    @Test func kithdReadsItsConfigAndFlagsWin() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        try "listen = \"127.0.0.1:0\"\nlog_level = \"debug\"\nrelay_scopes = [\"x\"]\n".write(toFile: data + "/kithd.toml", atomically: true, encoding: .utf8)
        let wrongRelay = try Binaries.run("kithd", ["--data-dir", data])
        #expect(wrongRelay.status != 0 && wrongRelay.stderr.contains("'x' is not a chapter id"), "\(wrongRelay.stderr)")
        let relayed = "AAECAwQFBgcICQoLDA0ODw"
        try "listen = \"127.0.0.1:0\"\nlog_level = \"debug\"\nrelay_scopes = [\"\(relayed)\"]\n".write(toFile: data + "/kithd.toml", atomically: true, encoding: .utf8)
        let d = try Daemon(data: data, logName: "cfg")
        _ = try d.port
        let list = try Binaries.run("kith", ["chapter", "list", "--json", "--data-dir", data]).stdout
        d.stop()
        #expect(list.contains(relayed) && list.contains("\"relay\""), "\(list)")
        #expect(d.logText.contains("debug"))
        try "listen = 7\n".write(toFile: data + "/kithd.toml", atomically: true, encoding: .utf8)
        let bad = try Binaries.run("kithd", ["--data-dir", data])
        #expect(bad.status != 0 && bad.stderr.contains("line 1: listen must be a string"))
    }
}
