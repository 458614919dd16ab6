import Foundation
import KithLogging
import KithNetwork
import KithSystemd
import Logging
import ServiceLifecycle
import UnixSignals

/// The static peers kithd keeps connected: one dialling task per `host:port`, changed live when
/// SIGHUP brings a new `peers` list (removed peers are hung up, new ones dialled).
actor StaticPeers {
    let network: PeerNetwork
    private var dialing: [String: Task<Void, Never>] = [:]

    init(network: PeerNetwork) { self.network = network }

    var addresses: Set<String> { Set(dialing.keys) }

    func set(_ peers: [String]) {
        let wanted = Set(peers)
        for (address, task) in dialing where !wanted.contains(address) {
            task.cancel()
            dialing[address] = nil
        }
        for address in peers where dialing[address] == nil {
            guard let (host, port) = HostPort.parse(address) else { continue } // settings() checked them
            let network = network
            dialing[address] = Task { await network.dial(host: host, port: port) }
        }
    }

    func stopAll() { set([]) }
}

/// A value several services read while SIGHUP may change it (the anti-entropy interval).
final class LiveValue<T: Sendable>: @unchecked Sendable {
    // @unchecked: `value` is only read and written under `lock`.
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func get() -> T { lock.withLock { value } }
    func set(_ v: T) { lock.withLock { value = v } }
}

/// SIGHUP: read kithd.toml again and apply what can change while running; log by name what
/// needs a restart. A bad file is logged and the running configuration kept (kithd never exits
/// on a reload). systemd hears RELOADING=1 … READY=1 around it.
struct ReloadService: Service {
    let command: KithDaemon
    let initial: KithDaemon.Settings
    let logSettings: LogSettings
    let peers: StaticPeers
    let antiEntropy: LiveValue<Int>
    let node: SyncNode
    let notifier: ServiceNotifier?
    let log: Logger

    func run() async throws {
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            var current = initial
            for await _ in hangups {
                current = await reload(from: current)
            }
        }
    }

    func reload(from current: KithDaemon.Settings) async -> KithDaemon.Settings {
        notifier?.send(ServiceNotifier.reloading())
        defer { notifier?.send(ServiceNotifier.ready(status: "running; configuration reloaded")) }
        let next: KithDaemon.Settings
        do {
            next = try command.settings()
        } catch {
            log.error("configuration not reloaded; kithd keeps running with the previous one", metadata: ["reason": "\(error)"])
            return current
        }
        var applied: [String] = []
        if next.logLevel != current.logLevel { logSettings.level = next.logLevel; applied.append("log_level") }
        if next.logFormat != current.logFormat { logSettings.format = next.logFormat; applied.append("log_format") }
        if next.peers != current.peers { await peers.set(next.peers); applied.append("peers") }
        if next.antiEntropyInterval != current.antiEntropyInterval { antiEntropy.set(next.antiEntropyInterval); applied.append("anti_entropy_interval") }
        if next.upwardViaPeers != current.upwardViaPeers { await node.setUpwardViaPeers(next.upwardViaPeers); applied.append("upward_via_peers") }
        let was = current.restartOnly(), now = next.restartOnly()
        let needRestart = now.keys.sorted().filter { was[$0] != now[$0] }
        for key in needRestart {
            log.warning("this setting changes only when kithd restarts", metadata: ["key": "\(key)", "running": "\(was[key]!)", "configured": "\(now[key]!)"])
        }
        log.notice("configuration reloaded", metadata: [
            "file": "\(next.configPath ?? "none")",
            "applied": "\(applied.isEmpty ? "nothing changed" : applied.joined(separator: ","))",
            "needsRestart": "\(needRestart.joined(separator: ","))",
        ])
        // Keep the running values of what did not change live, so the next reload compares against them.
        var kept = next
        kept.dataDir = current.dataDir; kept.listen = current.listen; kept.apiListen = current.apiListen
        kept.guiListen = current.guiListen; kept.lanDiscovery = current.lanDiscovery; kept.lanInterface = current.lanInterface
        kept.lanPort = current.lanPort; kept.relayChapters = current.relayChapters; kept.advertise = current.advertise
        return kept
    }
}

/// systemd: STOPPING=1 as soon as a graceful shutdown starts, and watchdog pings while kithd runs.
struct ServiceManagerService: Service {
    let notifier: ServiceNotifier
    let watchdog: Duration?
    let log: Logger

    func run() async throws {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await gracefulShutdown()
                if let reason = notifier.send(ServiceNotifier.stopping) { log.warning("cannot tell systemd kithd is stopping", metadata: ["reason": "\(reason)"]) }
            }
            if let watchdog {
                group.addTask {
                    await cancelWhenGracefulShutdown {
                        while !Task.isCancelled {
                            if let reason = notifier.send(ServiceNotifier.watchdog) { log.warning("cannot ping systemd's watchdog", metadata: ["reason": "\(reason)"]) }
                            try? await Task.sleep(for: watchdog)
                        }
                    }
                }
            }
        }
    }
}
