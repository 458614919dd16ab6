import ArgumentParser
import Foundation
import KithNode

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the running kithd: identity, connected peers, contacts and changes held."
    )
    @OptionGroup var data: DataDirOption
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        guard let daemon = try failing({ try DaemonBackend(directory: data.directory) }) else {
            fail("kithd is not running for \(data.directory.path) (start it with: kithd --data-dir \(data.directory.path))")
        }
        let s = try failing { try daemon.request(["op": "status"]) }
        if json {
            printJSON(s.filter { $0.key != "ok" })
            return
        }
        print("member     \(s["member"] ?? "")")
        print("device     \(s["device"] ?? "")")
        print("contacts   \(s["contacts"] ?? 0)   changes \(s["changes"] ?? 0)   waiting for predecessors \(s["pending"] ?? 0)")
        let peers = s["peers"] as? [String] ?? []
        print("peers      \(peers.isEmpty ? "none connected" : "\(peers.count) connected")")
        for p in peers { print("  \(p)") }
    }
}

struct SyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Ask the running kithd to re-exchange versions with every peer now.",
        subcommands: [Now.self]
    )

    struct Now: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Re-exchange version vectors with every connected peer now.")
        @OptionGroup var data: DataDirOption

        func run() throws {
            guard let daemon = try failing({ try DaemonBackend(directory: data.directory) }) else {
                fail("kithd is not running for \(data.directory.path)")
            }
            _ = try failing { try daemon.request(["op": "sync-now"]) }
            print("sync requested")
        }
    }
}
