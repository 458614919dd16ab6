import ArgumentParser
import Foundation
import KithAPI
import KithChapter
import KithCrypto
import KithLogging
import KithNetwork
import KithNode
import KithStore
import Logging
import NIOCore

/// kithd's exit statuses (`kithd --help`, README "Exit codes").
enum DaemonExit {
    /// A runtime failure a restart may cure: the port is taken, the store is locked or unreadable.
    static let failure = ExitCode(1)
    /// The data directory is not usable as it is (no identity: `kith init`; loose permissions;
    /// wrong passphrase): restarting changes nothing, so the systemd unit does not restart on it.
    static let notSetUp = ExitCode(2)
    // 64 (usage: a bad flag or config value) is swift-argument-parser's status for a ValidationError.

    static func code(forOpening error: any Error) -> ExitCode {
        guard let e = error as? NodeError else { return failure }
        return [.notInitialized, .insecurePermissions, .wrongOwner, .invalidPassphrase].contains(e.code) ? notSetUp : failure
    }
}

extension KithDaemon {
    /// Flags over the config file over defaults.
    struct Settings: Equatable {
        var configPath: String?
        var dataDir: String
        var listen: String
        var apiListen = "127.0.0.1:7480"
        var guiListen: String?
        var peers: [String]
        var antiEntropyInterval: Int
        var logLevel: Logger.Level
        var logFormat: LogFormat
        var lanDiscovery: Bool
        var upwardViaPeers = false
        var lanInterface: String
        var lanPort: Int
        var relayChapters: [ChapterID] = []
        var advertise: String?

        /// The settings that take effect only when kithd starts, by config key.
        func restartOnly() -> [String: String] {
            ["data_dir": dataDir, "listen": listen, "api_listen": apiListen, "gui_listen": guiListen ?? "off",
             "lan_discovery": "\(lanDiscovery)", "lan_interface": lanInterface, "lan_port": "\(lanPort)",
             "relay_scopes": relayChapters.map(\.description).joined(separator: ","), "advertise": advertise ?? "default"]
        }
    }

    /// Reads the config file (again, on SIGHUP) and merges it under the flags. Every error names
    /// where the bad value came from: the flag, or the file and line.
    func settings() throws -> Settings {
        let defaultDir = dataDir ?? DataDirectory.defaultPath()
        var config = DaemonConfig()
        let path = configFile ?? defaultDir + "/kithd.toml"
        var configPath: String?
        if configFile != nil || FileManager.default.fileExists(atPath: path) {
            let text: String
            do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw ValidationError("cannot read config file \(path): \(error.localizedDescription)")
            }
            do { config = try DaemonConfig(toml: text) } catch { throw ValidationError("config file \(path) \(error)") }
            configPath = path
        }
        /// "--listen" or "config file F line N: listen".
        func origin(flag: String, key: String, fromFlag: Bool) -> String {
            if fromFlag { return "--" + flag }
            if let configPath, let line = config.lines[key] { return "config file \(configPath) line \(line): \(key)" }
            return key
        }
        func address(_ value: String, flag: String, key: String, fromFlag: Bool, anyPort: Bool = true) throws -> String {
            if let problem = Self.hostPortProblem(value, allowAnyPort: anyPort) {
                throw ValidationError("\(origin(flag: flag, key: key, fromFlag: fromFlag)) must be host:port, got '\(value)': \(problem)")
            }
            return value
        }
        let levelName = logLevelFlag ?? config.logLevel ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw ValidationError("--log-level: unknown log level '\(levelName)' (use one of: \(logLevelNames))")
        }
        let formatName = logFormatFlag ?? config.logFormat
        var format = JournalDetection.defaultFormat()
        if let formatName {
            guard let f = LogFormat(rawValue: formatName) else {
                throw ValidationError("--log-format: unknown log format '\(formatName)' (use one of: \(LogFormat.names))")
            }
            format = f
        }
        var s = Settings(
            configPath: configPath,
            dataDir: dataDir ?? config.dataDir ?? defaultDir,
            listen: try address(listenFlag ?? config.listen ?? "127.0.0.1:7434", flag: "listen", key: "listen", fromFlag: listenFlag != nil),
            peers: peers.isEmpty ? config.peers : peers,
            antiEntropyInterval: antiEntropyFlag ?? config.antiEntropyInterval ?? 30,
            logLevel: level,
            logFormat: format,
            lanDiscovery: lanDiscoveryFlag || config.lanDiscovery,
            lanInterface: config.lanInterface ?? "0.0.0.0",
            lanPort: config.lanPort ?? LANDiscovery.defaultPort
        )
        for p in s.peers { _ = try address(p, flag: "peer", key: "peers", fromFlag: !peers.isEmpty, anyPort: false) }
        guard s.antiEntropyInterval >= 0 else { throw ValidationError("--anti-entropy-interval must be ≥ 0 (seconds; 0 = off)") }
        for r in config.relayScopes {
            guard let id = ChapterID(text: r) else {
                throw ValidationError("\(origin(flag: "", key: "relay_scopes", fromFlag: false)): '\(r)' is not a chapter id (22 characters, as `kith chapter list` prints)")
            }
            s.relayChapters.append(id)
        }
        s.apiListen = try address(apiListenFlag ?? config.apiListen ?? s.apiListen, flag: "api-listen", key: "api_listen", fromFlag: apiListenFlag != nil)
        let (apiHost, _) = Self.hostPort(s.apiListen)!
        guard APIConfiguration.isLoopback(apiHost) else {
            throw ValidationError("api_listen \(s.apiListen) is not a loopback address: the plain API stays on this machine; to reach kithd from the LAN use gui_listen (TLS and a GUI password)")
        }
        if let g = guiListenFlag ?? config.guiListen {
            s.guiListen = try address(g, flag: "gui-listen", key: "gui_listen", fromFlag: guiListenFlag != nil)
        }
        s.upwardViaPeers = upwardViaPeersFlag || config.upwardViaPeers
        if let a = advertiseFlag ?? config.advertise {
            let from = origin(flag: "advertise", key: "advertise", fromFlag: advertiseFlag != nil)
            s.advertise = try address(a, flag: "advertise", key: "advertise", fromFlag: advertiseFlag != nil, anyPort: false)
            if let problem = AdvertisedAddress.problem(advertiseHost: Self.hostPort(a)!.0, listenHost: Self.hostPort(s.listen)!.0) {
                throw ValidationError("\(from): \(problem)")
            }
        }
        return s
    }

    /// The log settings of `kithd hub run` (its flags only).
    static func logSettings(level: String, levelOrigin: String, format: String?) throws -> LogSettings {
        guard let l = Logger.Level(rawValue: level) else {
            throw ValidationError("\(levelOrigin): unknown log level '\(level)' (use one of: \(logLevelNames))")
        }
        guard let f = format.map({ LogFormat(rawValue: $0) }) ?? JournalDetection.defaultFormat() else {
            throw ValidationError("--log-format: unknown log format '\(format ?? "")' (use one of: \(LogFormat.names))")
        }
        return LogSettings(level: l, format: f)
    }

    /// What is wrong with a host:port, in words ("port 99999 is out of range (1-65535)"), or nil.
    static func hostPortProblem(_ s: String, allowAnyPort: Bool) -> String? {
        if HostPort.parse(s, allowAnyPort: allowAnyPort) != nil { return nil }
        let range = allowAnyPort ? "0-65535, 0 = chosen by the OS" : "1-65535"
        guard let i = s.lastIndex(of: ":") else { return "no port (write it as host:port, [v6]:port for IPv6)" }
        let host = s[..<i].trimmingCharacters(in: CharacterSet(charactersIn: "[]")), portText = s[s.index(after: i)...]
        if host.isEmpty { return "no host (0.0.0.0 listens on every interface)" }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber) else { return "'\(portText)' is not a port number (\(range))" }
        return "port \(portText) is out of range (\(range))"
    }

    /// The address to put in invites when none is configured (never loopback unless the listener is).
    static func defaultAdvertise(host: String, port: Int, logger: Logger? = nil) -> String {
        let interfaces: [String]
        do {
            interfaces = try System.enumerateDevices().compactMap { $0.address?.ipAddress }
        } catch {
            logger?.warning("cannot list this machine's network interfaces", metadata: ["reason": "\(error)"])
            interfaces = []
        }
        if let chosen = AdvertisedAddress.choose(listenHost: host, port: port, interfaceAddresses: interfaces) { return chosen }
        var buffer = [CChar](repeating: 0, count: 256)
        let name = gethostname(&buffer, buffer.count) == 0 ? String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "localhost"
        logger?.warning("no LAN address to put in invites; using the host name: set advertise = \"host:port\" in kithd.toml if other members cannot resolve it",
                        metadata: ["hostname": "\(name)"])
        return "\(name):\(port)"
    }
}
