import ArgumentParser
import Dispatch
import Foundation
import KithCrypto
import KithNode
import Logging

@main
struct KithDaemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kithd",
        abstract: "The Kith daemon: holds this device's replica and syncs it with chapter peers.",
        discussion: """
            kithd opens the node in the data directory, verifies its identity and runs until \
            SIGTERM or SIGINT, then shuts down gracefully. Peer-to-peer sync, the control socket \
            and the config file arrive with the sync issue; today kithd checks the node and waits.

            Examples:
              kithd --data-dir ~/.local/share/kith
              kithd --log-level debug
            """,
        version: KithVersion.describe(tool: "kithd")
    )

    @Option(name: .customLong("data-dir"), help: "The data directory (default: $KITH_DATA_DIR or ~/.local/share/kith).")
    var dataDir: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(name: .customLong("passphrase-file"), help: "Passphrase for a protected key ring (first line of the file).")
    var passphraseFile: String?

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("unknown log level '\(logLevel)'")
        }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let log = Logger(label: "kithd")
        let dir = DataDirectory(path: dataDir ?? DataDirectory.defaultPath())
        let identity: PublicIdentity
        do {
            let pass = try passphraseFile.map { try NodeIdentity.readPassphrase(file: $0) }
            identity = try NodeIdentity.unlock(dir, passphrase: pass).1
        } catch let e as NodeError {
            log.critical("cannot open node", metadata: ["dataDir": "\(dir.path)", "reason": "\(e.detail)"])
            throw ExitCode(1)
        } catch let e as CryptoError {
            log.critical("cannot open node", metadata: ["dataDir": "\(dir.path)", "reason": "\(e.detail)"])
            throw ExitCode(1)
        }
        log.info("kithd started", metadata: [
            "version": "\(KithVersion.release)",
            "dataDir": "\(dir.path)",
            "member": "\(identity.memberKey)",
            "device": "\(identity.deviceSigningKey)",
        ])
        let stop = DispatchSemaphore(value: 0)
        var sources: [any DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { stop.signal() }
            s.resume()
            sources.append(s)
        }
        stop.wait()
        log.info("kithd stopping: signal received, shutting down gracefully")
        sources.forEach { $0.cancel() }
    }
}
