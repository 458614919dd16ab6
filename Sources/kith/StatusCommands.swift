import ArgumentParser
import Foundation
import KithCrypto
import KithNode
import KithStore

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether kithd runs, how each scope is syncing, and what waits.",
        discussion: """
            With kithd running: its version, uptime and addresses, and per scope (your contacts, \
            each chapter) the contacts and changes held, how many connected peers it is up to \
            date with and when it last caught up, and what waits: pending changes (they build on \
            earlier changes not received yet) and blocks awaiting keys (sealed with a chapter key \
            this device has not received yet).

            Without kithd: what the store on disk holds, and how to start kithd.

            --json prints the API's status answer (Protocol/api.md §4.1) with "running": true, \
            or, when kithd is down, "running": false and what the store holds.
            """
    )
    @OptionGroup var node: NodeOptions

    func run() throws {
        let dir = node.data.directory
        var reason = "no kithd has written its address to \(APIKey.addressPath(dir))"
        if let api = try failing({ try APIClient(directory: dir) }) {
            do {
                var s = try api.call("status")
                s["running"] = true
                return node.json ? printJSONObject(s) : printRunning(s)
            } catch is APIClient.Unreachable {
                reason = "its API at \(api.base) refused the connection"
            } catch {
                try failing { throw error }
            }
        }
        let s = offline(dir, reason: reason)
        node.json ? printJSONObject(s) : printOffline(s)
    }

    /// What the data directory holds when kithd is down, with the status answer's keys.
    func offline(_ dir: DataDirectory, reason: String) -> [String: Any] {
        var s: [String: Any] = ["running": false, "dataDir": dir.path,
                                "message": "kithd is not running (\(reason)); start it with: kithd --data-dir \(dir.path)"]
        guard let identity = try? NodeIdentity.loadPublic(from: dir) else {
            fail("kithd is not running, and \(dir.path) holds no Kith identity: run kith init --data-dir \(dir.path) first")
        }
        s["member"] = identity.memberKey.description
        s["device"] = identity.deviceSigningKey.description
        let chapters = (try? FileManager.default.contentsOfDirectory(atPath: dir.path + "/chapters")) ?? []
        s["chapters"] = chapters.count
        do {
            let file = node.passphraseFile ?? ProcessInfo.processInfo.environment["KITH_PASSPHRASE_FILE"]
            let pass = try file.map { try NodeIdentity.readPassphrase(file: $0) }
            let r = try NodeAccess.openStore(dir, passphrase: pass).replica
            let contacts = r.visibleContactIDs.count
            s["scope"] = r.scope.description
            s["contacts"] = contacts
            s["changes"] = r.changeCount
            s["pending"] = r.pendingCount
            s["scopes"] = [["scope": r.scope.description, "kind": "private", "name": "your contacts", "contacts": contacts, "changes": r.changeCount,
                            "pending": r.pendingCount, "awaitingKeys": r.awaitingBlockCount, "peers": 0, "peersCaughtUp": 0] as [String: Any]]
        } catch {
            s["store"] = "not opened: \(describe(error))"
        }
        return s
    }

    func printRunning(_ s: [String: Any]) {
        let uptime = (s["uptime"] as? Int).map { "up \(duration($0))" } ?? "running"
        print("kithd       running, \(uptime)" + ((s["version"] as? String).map { "; \($0)" } ?? ""))
        if let listen = s["listen"] as? String, !listen.isEmpty {
            let advertise = (s["advertise"] as? String).flatMap { $0.isEmpty ? nil : $0 }
            print("listening   \(listen)" + (advertise.map { "; invites and pairing codes point to \($0)" } ?? ""))
        }
        for p in s["problems"] as? [String] ?? [] { print("PROBLEM     \(p)") }
        for n in s["notices"] as? [String] ?? [] { print("notice      \(n)") }
        if let gui = s["gui"] as? [String: Any] {
            print("web GUI     \(gui["address"] ?? "https on \(gui["listen"] ?? "?")")  certificate \(gui["fingerprint"] ?? "?")")
        }
        print("member      \(fingerprint(s["member"]))")
        print("device      \(fingerprint(s["device"]))")
        let peers = s["peers"] as? [String] ?? []
        print("peers       \(peers.isEmpty ? "none connected" : "\(peers.count) connected (kith peers lists them)")")
        for sc in s["scopes"] as? [[String: Any]] ?? [] { printScope(sc) }
    }

    func printScope(_ sc: [String: Any]) {
        let kind = sc["kind"] as? String ?? "?"
        print("")
        print(kind == "private" ? "your contacts (private)" : "\(sc["name"] ?? "?") (\(kind))")
        print("  \(count(sc["contacts"], "contact")), \(count(sc["changes"], "change"))")
        let peers = sc["peers"] as? Int ?? 0, caughtUp = sc["peersCaughtUp"] as? Int ?? 0
        if peers == 0 {
            print("  no peer connected for it: nothing syncs until one connects")
        } else {
            print("  up to date with \(caughtUp) of \(count(peers, "connected peer")); last sync \(ago(sc["lastCaughtUp"] as? UInt64))")
        }
        if let p = sc["pending"] as? Int, p > 0 {
            print("  \(count(p, "change")) pending: \(p == 1 ? "it builds" : "they build") on earlier changes not received yet, and apply when those arrive")
        }
        if let k = sc["awaitingKeys"] as? Int, k > 0 {
            print("  \(count(k, "block")) awaiting keys: sealed with a chapter key this device has not received yet; \(k == 1 ? "it opens" : "they open") when a member's device shares it")
        }
    }

    func printOffline(_ s: [String: Any]) {
        print("kithd       not running for \(s["dataDir"] ?? "?")")
        if let m = s["member"] { print("member      \(fingerprint(m))") }
        if let d = s["device"] { print("device      \(fingerprint(d))") }
        if let store = s["store"] { print("store       \(store)") }
        for sc in s["scopes"] as? [[String: Any]] ?? [] {
            print("")
            print("your contacts (private), as stored")
            print("  \(count(sc["contacts"], "contact")), \(count(sc["changes"], "change"))")
            if let p = sc["pending"] as? Int, p > 0 { print("  \(count(p, "change")) pending: waiting for earlier changes from a peer") }
        }
        if let c = s["chapters"] as? Int, c > 0 { print("chapters    \(c) on disk; kithd shows how they sync") }
        print("")
        print(s["message"] as? String ?? "")
    }
}

/// "1 contact", "3 contacts".
func count(_ value: Any?, _ noun: String) -> String {
    let n = value as? Int ?? 0
    return "\(n) \(noun)\(n == 1 ? "" : "s")"
}

/// "45 s", "12 min", "3 h 12 min", "2 d 4 h".
func duration(_ seconds: Int) -> String {
    switch seconds {
    case ..<60: "\(seconds) s"
    case ..<3600: "\(seconds / 60) min"
    case ..<86_400: "\(seconds / 3600) h \(seconds % 3600 / 60) min"
    default: "\(seconds / 86_400) d \(seconds % 86_400 / 3600) h"
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
            let deviceName = (p["deviceName"] as? String).map { "\"\($0)\" " } ?? "", memberName = (p["memberName"] as? String).map { "\"\($0)\" " } ?? ""
            let who = p["ownDevice"] as? Bool == true ? "your device \(deviceName)\(fingerprint(p["device"]))" : "member \(memberName)\(fingerprint(p["member"]))"
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
            Reads the password from --password-file (its first line) or standard input, and \
            stores only its Argon2id hash in <data-dir>/gui-password (mode 0600). Restart kithd \
            for a new password to apply. Browsers log in with it (POST /v1/session) and then \
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
