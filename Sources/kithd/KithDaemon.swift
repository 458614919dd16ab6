import ArgumentParser
import KithAPI
import Dispatch
import Foundation
import KithChapter
import KithCRDT
import KithCrypto
import KithNetwork
import KithNode
import KithLogging
import KithStore
import KithSystemd
import Logging
import NIOCore
import ServiceLifecycle

@main
struct KithDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kithd",
        abstract: "The Kith daemon: holds this device's replica and syncs it with peers.",
        discussion: """
            kithd opens the node in the data directory (taking the store's lock), listens for peers and keeps connections to the static peers given with --peer and to the addresses it learns from invites. Peers authenticate with Noise XX and device certificates; a node syncs its private scope with the member's own devices and each chapter with that chapter's members. The bound port is written to <data-dir>/kithd.port, the local HTTP API's address to <data-dir>/kithd.api. `kithd hub` runs an organization's hub.

            Signals: SIGTERM or SIGINT stop kithd gracefully. SIGHUP reads the config file again and applies log_level, log_format, peers, anti_entropy_interval and upward_via_peers at once; the other keys are logged by name and take effect at the next start. A config file with an error is logged and the running configuration kept.

            Under systemd (Type=notify), kithd reports READY=1 once the peer port and the API are bound and the stores are open, RELOADING=1 around a reload, STOPPING=1 when it stops, and pings the watchdog when WatchdogSec is set. Logs go to stderr, one event per line, message first: text, json, or journal (syslog priority <N>, no timestamp), chosen automatically when stderr is the journal.

            Exit codes:
              0   stopped cleanly (SIGTERM or SIGINT), or --help, --version
              1   runtime failure: port in use, store locked or unreadable
              2   not set up: no identity (kith init), loose permissions, bad passphrase
              64  bad command line or kithd.toml (named: the flag, or file and line)

            Examples:
              kithd --data-dir ~/.local/share/kith
              kithd --listen 0.0.0.0:7434 --peer homeserver.lan:7434
              kithd --listen 127.0.0.1:0 --log-level debug --log-format json
              kithd --config /etc/kith/kithd.toml

            Config file (TOML; every key optional, flags win):
              data_dir = "/var/lib/kith"
              listen = "0.0.0.0:7434"
              peers = ["laptop.lan:7434", "10.0.0.5:7434"]
              anti_entropy_interval = 30   # seconds, 0 = off
              log_level = "info"           # trace, debug, info, notice, warning, error…
              log_format = "text"          # text, json or journal
              lan_discovery = false        # announce on the LAN (rotating keyed tag)
              lan_interface = "0.0.0.0"    # IPv4 address of the interface to use
              lan_port = 7435              # multicast port (group 239.255.74.1)
              relay_scopes = []            # chapter ids to relay blind
              advertise = "host:7434"      # address put in invites and, only when set,
                                           # announced to chapter members (overlay)
              upward_via_peers = false     # records reach the hub only through peers
              api_listen = "127.0.0.1:7480"
              gui_listen = "0.0.0.0:7481"
            """,
        version: KithVersion.describe(tool: "kithd"),
        subcommands: [HubCommand.self]
    )

    @Option(name: .customLong("data-dir"), help: "The data directory (default: $KITH_DATA_DIR or ~/.local/share/kith).")
    var dataDir: String?

    @Option(name: .customLong("config"), help: "Config file (default: <data-dir>/kithd.toml when it exists). Flags override it.")
    var configFile: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default: info).")
    var logLevelFlag: String?

    @Option(name: .customLong("log-format"), help: "text, json or journal (default: journal when stderr is the journal, else text).")
    var logFormatFlag: String?

    @Option(name: .customLong("passphrase-file"), help: "Passphrase for a protected key ring (first line of the file).")
    var passphraseFile: String?

    @Option(name: .customLong("listen"), help: "Address to listen on, host:port (port 0 = chosen by the OS; default 127.0.0.1:7434).")
    var listenFlag: String?

    @Option(name: .customLong("peer"), help: "A static peer to keep connected, host:port (repeatable).")
    var peers: [String] = []

    @Flag(name: .customLong("lan-discovery"), help: "Announce this node on the LAN and connect to the member's other devices found there (off by default).")
    var lanDiscoveryFlag = false

    @Flag(name: .customLong("upward-via-peers"), help: "Send consented records to the organization's hub through chapter peers, never directly (the organization does not learn this device's address).")
    var upwardViaPeersFlag = false

    @Option(name: .customLong("anti-entropy-interval"), help: "Seconds between version-vector re-exchanges with every peer (0 = off; default 30).")
    var antiEntropyFlag: Int?

    @Option(name: .customLong("advertise"), help: "host:port other members reach this node at, put in invites (default: the listen address, or this machine's first LAN address when listening on all interfaces). Only when set (here or in the config) does the node announce it to its chapters' members, sealed to them, so they can connect to it (chapter overlay); without it the node only dials out.")
    var advertiseFlag: String?

    @Option(name: .customLong("gui-listen"), help: "Also serve the API and web GUI here, host:port, over TLS with a self-signed certificate (needs a GUI password: kith gui-password). Off by default.")
    var guiListenFlag: String?

    @Option(name: .customLong("api-listen"), help: "Address of the local HTTP API, host:port (port 0 = chosen by the OS; default 127.0.0.1:7480; the bound address is written to <data-dir>/kithd.api).")
    var apiListenFlag: String?

    /// host:port as the daemon's options accept it (port 0 = any, for listening).
    static func hostPort(_ s: String) -> (String, Int)? { HostPort.parse(s, allowAnyPort: true).map { ($0.host, $0.port) } }

    func run() async throws {
        // Until the reload service traps it, a SIGHUP must not end kithd (its default action).
        signal(SIGHUP, SIG_IGN)
        let settings = try settings()
        let logSettings = LogSettings(level: settings.logLevel, format: settings.logFormat)
        LoggingSystem.bootstrap { label in KithLogHandler(label: label, settings: logSettings) }
        let log = Logger(label: "kithd")
        let notifier = ServiceNotifier()
        let listen = settings.listen
        let dir = DataDirectory(path: settings.dataDir)
        let node: SyncNode
        do {
            let pass = try passphraseFile.map { try NodeIdentity.readPassphrase(file: $0) }
            let (ring, identity) = try NodeIdentity.unlock(dir, passphrase: pass)
            node = try SyncNode(
                directory: dir.path,
                identity: .init(certificate: identity.certificate, agreementKey: ring.deviceAgreementKey, deviceKey: ring.deviceSigningKey,
                                memberKey: ring.memberKey),
                storageKey: ring.storageKey, relayChapters: settings.relayChapters, logger: log
            )
        } catch {
            log.critical("cannot open node", metadata: ["dataDir": "\(dir.path)", "reason": "\(Self.describe(error))"])
            throw DaemonExit.code(forOpening: error)
        }
        // This process holds the store's lock now: address files left by a kithd that died are stale.
        Self.removeStaleFiles(in: dir.path, logger: log)
        await node.setUpwardViaPeers(settings.upwardViaPeers)
        let network = PeerNetwork(node: node, logger: log, now: ContactStore.systemClock)
        let (host, port) = Self.hostPort(listen)!
        let bound: Int
        let serve: @Sendable () async -> Void
        do {
            (bound, serve) = try await network.listen(host: host, port: port)
        } catch {
            log.critical("cannot listen", metadata: ["address": "\(listen)", "reason": "\(error)"])
            throw DaemonExit.failure
        }
        let api: any Service
        var guiApp: (any Service)?
        let (apiHost, apiPort) = Self.hostPort(settings.apiListen)!
        let hint = settings.advertise ?? Self.defaultAdvertise(host: host, port: bound, logger: log)
        do {
            let commands = NodeCommands(node: node, logger: log, network: network, inviteHint: hint, listen: "\(host):\(bound)", version: KithVersion.describe(tool: "kithd"))
            let key = try APIKey.loadOrCreate(in: dir)
            let sessions = APISessions(passwordHash: try GUIPassword.hash(in: dir))
            var apiConfiguration = APIConfiguration(host: apiHost, port: apiPort, apiKey: key)
            if let gui = settings.guiListen {
                guard sessions.passwordHash != nil else {
                    log.critical("gui_listen needs a GUI password: run `kith gui-password --data-dir \(dir.path)` first")
                    throw DaemonExit.failure
                }
                let (guiHost, guiPort) = Self.hostPort(gui)!
                let material = try GUICertificate.loadOrCreate(in: dir, host: guiHost)
                var guiConfiguration = APIConfiguration(host: guiHost, port: guiPort, apiKey: key)
                guiConfiguration.tls = material.tls
                let listener = GUIListener(listen: gui, fingerprint: material.fingerprint)
                guiConfiguration.gui = listener
                if guiHost == "0.0.0.0" || guiHost == "::" {
                    // A browser on the LAN names this machine by one of its addresses or its name.
                    var names = Set((try? System.enumerateDevices())?.compactMap { $0.address?.ipAddress?.lowercased() } ?? [])
                    var buffer = [CChar](repeating: 0, count: 256)
                    if gethostname(&buffer, buffer.count) == 0 {
                        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).lowercased()
                        names.insert(name)
                        names.insert(name + ".local")
                    }
                    guiConfiguration.extraHosts = names
                }
                let guiServer = APIServer(configuration: guiConfiguration, node: node, commands: commands, sessions: sessions, logger: log)
                let shownHost = guiHost == "0.0.0.0" || guiHost == "::" ? Self.defaultAdvertise(host: guiHost, port: 0).split(separator: ":").first.map(String.init) ?? guiHost : guiHost
                guiApp = try guiServer.application { port in
                    let address = "https://\(shownHost.contains(":") ? "[\(shownHost)]" : shownHost):\(port)/"
                    try? (address + "\n").write(toFile: dir.path + "/kithd.gui", atomically: true, encoding: .utf8)
                    listener.bound(at: address)
                    log.notice("web GUI listening (TLS)", metadata: ["address": "\(address)", "fingerprint": "\(material.fingerprint)"])
                }
                apiConfiguration.gui = listener
            }
            let server = APIServer(configuration: apiConfiguration, node: node, commands: commands, sessions: sessions, logger: log)
            let app = try server.application { port in
                let address = apiHost.contains(":") ? "[\(apiHost)]:\(port)" : "\(apiHost):\(port)"
                do { try APIKey.writeAddress(address, in: dir) } catch {
                    log.error("could not write the API address file", metadata: ["path": "\(dir.path)/kithd.api", "reason": "\(error)"])
                }
                log.info("local HTTP API listening", metadata: ["address": "http://\(address)/v1/"])
                // Build the query indexes now, not on the first request (a 100k store: ~1.5 s).
                Task { _ = await node.scopeInfo() }
                // Written last: a client that sees kithd.port can reach the API.
                do { try SecureFiles.writeSecret(Array("\(bound)\n".utf8), to: dir.path + "/kithd.port", exclusive: false) } catch {
                    log.error("could not write the port file; clients and scripts will not find this daemon", metadata: ["path": "\(dir.path)/kithd.port", "reason": "\(error)"])
                }
                Self.notifyReady(notifier, status: "serving peers on \(host):\(bound)", logger: log)
            }
            api = app
        } catch {
            log.critical("cannot set up the local HTTP API", metadata: ["reason": "\(error)"])
            throw DaemonExit.failure
        }
        log.info("kithd started", metadata: [
            "version": "\(KithVersion.release)", "dataDir": "\(dir.path)", "listen": "\(host):\(bound)",
            "member": "\(node.identity.member)", "device": "\(node.identity.certificate.deviceSigningKey)",
            "peers": "\(settings.peers.joined(separator: ","))", "advertise": "\(hint)",
        ])
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: TaskService(serve), serviceName: "peer-listener"),
            .init(service: api, serviceName: "http-api"),
        ]
        if let guiApp { services.append(.init(service: guiApp, serviceName: "web-gui")) }
        let staticPeers = StaticPeers(network: network)
        services.append(.init(service: TaskService {
            await staticPeers.set(settings.peers)
            try? await gracefulShutdown()
            await staticPeers.stopAll()
        }, serviceName: "static-peers"))
        let antiEntropy = LiveValue(settings.antiEntropyInterval)
        services.append(.init(service: ReloadService(command: self, initial: settings, logSettings: logSettings, peers: staticPeers,
                                                     antiEntropy: antiEntropy, node: node, notifier: notifier, log: log),
                              serviceName: "reload"))
        if let notifier {
            services.append(.init(service: ServiceManagerService(notifier: notifier, watchdog: ServiceNotifier.watchdogInterval(), log: log),
                                  serviceName: "systemd"))
        }
        // Consent: expire grants, send new versions of edited granted fields, retry what a hub
        // did not acknowledge.
        services.append(.init(service: TaskService {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 10_000_000_000)
                if !Task.isCancelled { await node.consentMaintenance() }
            }
        }, serviceName: "consent"))
        // Addresses learned at run time (the hint of an invite this node joined by).
        // Addresses given as static peers at start are dialled by `staticPeers`, not again here.
        let configuredPeers = Set(settings.peers)
        services.append(.init(service: TaskService { await network.dialRequested(except: configuredPeers) }, serviceName: "chapter-dialer"))
        // The chapter overlay: keep a few connections to random members of each chapter
        // (Protocol/sync.md §9), and announce this node's address to the members only when
        // `advertise` is set explicitly (a guessed LAN address or host name is not broadcast).
        await node.setAdvertisedAddress(settings.advertise)
        services.append(.init(service: TaskService { await network.maintainOverlay() }, serviceName: "chapter-overlay"))
        if settings.lanDiscovery {
            let discovery = LANDiscovery(network: network, ownPort: bound, multicastPort: settings.lanPort,
                                         interface: settings.lanInterface, logger: log)
            // If discovery fails (no multicast here), the node keeps serving its static peers.
            services.append(.init(service: TaskService { await discovery.run() }, successTerminationBehavior: .ignore,
                                  failureTerminationBehavior: .ignore, serviceName: "lan-discovery"))
        }
        // The interval is read every second, so a SIGHUP that changes it (or turns it on or off) counts at once.
        services.append(.init(service: TaskService {
            var waited = 0
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: 1_000_000_000)
                waited += 1
                let interval = antiEntropy.get()
                if interval > 0, waited >= interval, !Task.isCancelled {
                    waited = 0
                    await node.antiEntropy(fanout: 3)
                }
            }
        }, serviceName: "anti-entropy"))
        // SIGTERM/SIGINT: every service is cancelled; in-flight store writes are transactions that
        // either committed (and were acknowledged) or roll back.
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: log))
        do {
            try await group.run()
        } catch {
            log.error("service group ended with an error", metadata: ["reason": "\(error)"])
        }
        log.info("kithd stopping: peers and the HTTP API closed")
        let snapshots = await node.writeSnapshots()
        log.info("store snapshots written", metadata: ["stores": "\(snapshots)"])
        try? FileManager.default.removeItem(atPath: dir.path + "/kithd.port")
        try? FileManager.default.removeItem(atPath: dir.path + "/kithd.api")
        try? FileManager.default.removeItem(atPath: dir.path + "/kithd.gui")
        log.info("kithd stopped")
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case let e as NodeError: e.detail
        case let e as CryptoError: e.detail
        case let e as StoreError: e.detail
        default: "\(error)"
        }
    }
}

/// A long-running task as a swift-service-lifecycle `Service`: it runs until cancelled, and is
/// cancelled when the group shuts down gracefully.
struct TaskService: Service {
    let body: @Sendable () async -> Void

    init(_ body: @escaping @Sendable () async -> Void) { self.body = body }

    func run() async throws {
        await cancelWhenGracefulShutdown { await body() }
    }
}
