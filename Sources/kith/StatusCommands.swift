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
        let s = try daemonRequest(data, ["op": "status"])
        if json {
            printJSONObject(s)
            return
        }
        print("member     \(s["member"] ?? "")")
        print("device     \(s["device"] ?? "")")
        let peers = s["peers"] as? [String] ?? []
        print("peers      \(peers.isEmpty ? "none connected" : "\(peers.count) connected (kith peers)")")
        for sc in s["scopes"] as? [[String: Any]] ?? [] {
            var line = "\(sc["kind"] ?? "?") \(sc["name"] ?? "")".padding(toLength: 28, withPad: " ", startingAt: 0)
            line += "contacts \(sc["contacts"] ?? 0)  changes \(sc["changes"] ?? 0)  peers \(sc["peers"] ?? 0)"
            if let p = sc["pending"] as? Int, p > 0 { line += "  waiting for predecessors \(p)" }
            if let k = sc["awaitingKeys"] as? Int, k > 0 { line += "  blocks waiting for a key \(k)" }
            line += "  last sync " + ago(sc["lastCaughtUp"] as? UInt64)
            print(line)
        }
    }
}

/// "12 s ago", "never".
func ago(_ ms: UInt64?) -> String {
    guard let ms else { return "never" }
    let s = max(0, Int(Date().timeIntervalSince1970) - Int(ms / 1000))
    return s < 120 ? "\(s) s ago" : s < 7200 ? "\(s / 60) min ago" : "\(s / 3600) h ago"
}

struct PeersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "peers", abstract: "List the peers the running kithd is connected to, and what each syncs.")
    @OptionGroup var data: DataDirOption
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let list = try daemonRequest(data, ["op": "peers"])["peers"] as? [[String: Any]] ?? []
        if json { return printJSONObject(list) }
        if list.isEmpty { print("no peers connected") }
        for p in list {
            let who = p["ownDevice"] as? Bool == true ? "your device" : "member \(String((p["member"] as? String ?? "").prefix(8)))"
            print("\(p["name"] ?? "?")  \(who)  scopes \((p["scopes"] as? [String] ?? []).count)  last sync \(ago(p["lastCaughtUp"] as? UInt64))")
        }
    }
}

struct SyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Ask the running kithd to re-exchange versions with every peer now.",
        subcommands: [Now.self]
    )

    struct Now: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "now", abstract: "Re-exchange version vectors with every connected peer now.")
        @OptionGroup var data: DataDirOption

        func run() throws {
            _ = try daemonRequest(data, ["op": "sync-now"])
            print("sync requested")
        }
    }
}
