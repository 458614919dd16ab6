import ArgumentParser
import Foundation
import KithConsent
import KithCrypto
import KithNetwork
import KithNode
import KithStore
import Logging
import ServiceLifecycle

/// The organization's hub: `kithd hub init|run|export` (Protocol/consent.md §4).
struct HubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub",
        abstract: "Run an organization's hub: receives consented records from affiliated chapters.",
        discussion: """
            Examples:
              kithd hub init --name "Example Party" --hub-dir /var/lib/kith-hub   prints the organization card
              kithd hub run --hub-dir /var/lib/kith-hub --address 0.0.0.0:7500
              kithd hub export --hub-dir /var/lib/kith-hub --format csv > records.csv
            A chapter admin then runs: kith chapter affiliate <card> --hub host:7500
            """,
        subcommands: [Init.self, Run.self, Export.self]
    )

    struct HubDir: ParsableArguments {
        @Option(name: .customLong("hub-dir"), help: "The hub's data directory (its keys and store).") var dataDir: String
        var keyPath: String { dataDir + "/org.keys" }
    }

    static let magic = Array("KITHORG1".utf8)

    /// `KITHORG1 ‖ signing seed[32] ‖ agreement secret[32] ‖ storage key[32] ‖ text name`, 0600.
    static func loadKeys(_ dir: HubDir) throws -> (OrganizationKeys, SymmetricKey) {
        var b = try SecureFiles.readSecret(dir.keyPath)
        defer { ConstantTime.wipe(&b) }
        guard b.count > 8 + 96, Array(b[0..<8]) == magic else { throw ValidationError("\(dir.keyPath) is not an organization key file") }
        let name = String(decoding: b[(8 + 96)...], as: UTF8.self)
        let keys = OrganizationKeys(signing: try Ed25519.PrivateKey(seed: Array(b[8..<40])), agreement: try X25519.PrivateKey(bytes: Array(b[40..<72])), name: name)
        return (keys, try SymmetricKey(bytes: Array(b[72..<104])))
    }

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create the organization's keys and print its card.")
        @OptionGroup var dir: HubDir
        @Option(help: "The organization's name as members see it.") var name: String

        func run() throws {
            guard !FileManager.default.fileExists(atPath: dir.keyPath) else { throw ValidationError("\(dir.keyPath) exists; refusing to replace the organization's keys") }
            try SecureFiles.preparePrivateDirectory(dir.dataDir)
            let keys = OrganizationKeys.generate(name: name)
            var b = HubCommand.magic + keys.signing.seed.unsafeCopy() + keys.agreement.secret.unsafeCopy() + SymmetricKey().secret.unsafeCopy()
            b += Array(name.utf8)
            defer { ConstantTime.wipe(&b) }
            try SecureFiles.writeSecret(b, to: dir.keyPath)
            print(keys.card.text)
            FileHandle.standardError.write(Data("organization \"\(name)\" created in \(dir.dataDir); give the card above to chapter admins\n".utf8))
        }
    }

    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Serve members: store consented records, delete on revocation or expiry, sign receipts.")
        @OptionGroup var dir: HubDir
        @Option(name: .customLong("address"), help: "host:port to listen on (port 0 = any; written to <hub-dir>/hub.port).") var listen = "0.0.0.0:7500"
        @Option(name: .customLong("hub-log-level"), help: "trace … critical") var logLevel = "info"

        func run() async throws {
            let level = Logger.Level(rawValue: logLevel) ?? .info
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = level
                return h
            }
            let log = Logger(label: "kithd-hub")
            let (keys, storageKey) = try HubCommand.loadKeys(dir)
            let hub = try HubNode(keys: keys, storage: try SQLiteHubStorage(directory: dir.dataDir, keys: keys, storageKey: storageKey), logger: log)
            guard let (host, port) = KithDaemon.hostPort(listen) else { throw ValidationError("listen must be host:port") }
            let (bound, serve) = try await hub.listen(host: host, port: port)
            try? "\(bound)\n".write(toFile: dir.dataDir + "/hub.port", atomically: true, encoding: .utf8)
            log.info("hub started", metadata: ["organization": "\(keys.name)", "key": "\(keys.signing.publicKey)", "listen": "\(host):\(bound)"])
            let control = try await hub.bindControl(path: dir.dataDir + "/hub.sock")
            let services: [ServiceGroupConfiguration.ServiceConfiguration] = [
                .init(service: TaskService(serve), serviceName: "hub-listener"),
                .init(service: TaskService(control), serviceName: "hub-control"),
                .init(service: TaskService {
                    while !Task.isCancelled {
                        try? await Task.sleep(nanoseconds: 5_000_000_000)
                        await hub.expire()
                    }
                }, serviceName: "expiry"),
            ]
            let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: log))
            try? await group.run()
            try? FileManager.default.removeItem(atPath: dir.dataDir + "/hub.port")
            log.info("hub stopped")
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the records the hub holds now, with purpose and expiry (from the running hub, or its store when stopped).")
        @OptionGroup var dir: HubDir
        @Option(help: "json or csv.") var format = "json"

        func run() async throws {
            let rows: [[String: String]]
            if let live = await HubNode.exportFromRunningHub(socket: dir.dataDir + "/hub.sock") {
                rows = live
            } else {
                let (keys, storageKey) = try HubCommand.loadKeys(dir)
                var log = Logger(label: "kithd-hub")
                log.logLevel = .error
                let storage: SQLiteHubStorage
                do { storage = try SQLiteHubStorage(directory: dir.dataDir, keys: keys, storageKey: storageKey) } catch {
                    throw ValidationError("cannot open the hub's store: \(error)")
                }
                rows = await (try HubNode(keys: keys, storage: storage, logger: log)).export()
            }
            if format == "csv" {
                let columns = Array(Set(rows.flatMap(\.keys))).sorted()
                print(columns.joined(separator: ","))
                for r in rows { print(columns.map { csvField(r[$0] ?? "") }.joined(separator: ",")) }
            } else {
                let data = try JSONSerialization.data(withJSONObject: rows, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            }
        }

        func csvField(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
        }
    }
}
