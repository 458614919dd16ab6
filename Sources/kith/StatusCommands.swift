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
        for p in s["problems"] as? [String] ?? [] { print("PROBLEM    \(p)") }
        for n in s["notices"] as? [String] ?? [] { print("notice     \(n)") }
        print("member     \(s["member"] ?? "")")
        print("device     \(s["device"] ?? "")")
        if let gui = s["gui"] as? [String: Any] {
            print("web GUI    https on \(gui["listen"] ?? "?")  certificate \(gui["fingerprint"] ?? "?")")
        }
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
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false

        func run() throws {
            let r = try daemonRequest(data, ["op": "sync-now"])
            if json { return printJSONObject(r) }
            print("sync requested")
        }
    }
}

struct GUIPasswordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gui-password",
        abstract: "Set the web GUI's password (needed before kithd serves the GUI beyond this machine).",
        discussion: """
            Reads the password from --password-file (its first line) or standard input, and
            stores only its Argon2id hash in <data-dir>/gui-password (mode 0600). Restart kithd
            for a new password to apply. Browsers log in with it (POST /v1/session) and then
            hold a session cookie; the CLI keeps using the API key.
            """
    )
    @OptionGroup var data: DataDirOption
    @Option(name: .customLong("password-file"), help: "A file whose first line is the password (default: read standard input).")
    var passwordFile: String?

    func run() throws {
        let password: String
        if let passwordFile {
            guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else { fail("cannot read \(passwordFile)") }
            password = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
        } else {
            password = readLine(strippingNewline: true) ?? ""
        }
        try failing {
            guard data.directory.isInitialized else { throw CLIFailure(message: "\(data.directory.path) holds no Kith identity: run `kith init` first") }
            try GUIPassword.set(password, in: data.directory)
        }
        print("GUI password set (Argon2id hash in \(GUIPassword.path(data.directory))); restart kithd to use it")
    }
}
