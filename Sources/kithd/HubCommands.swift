import ArgumentParser
import Foundation
import KithConsent
import KithCrypto
import KithHubPostgres
import KithLogging
import KithNetwork
import KithNode
import KithStore
import Logging
import ServiceLifecycle

/// The organization's hub: `kithd hub init|run|chapters|approve|refuse|export` (Protocol/consent.md §4).
struct HubCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hub",
        abstract: "Run an organization's hub: receives consented records from chapters it approved.",
        discussion: """
            A chapter admin with the organization's card runs `kith chapter affiliate <card> --hub host:7500`. That only asks: the hub takes no record from the chapter until the organization approves it with its own key. Until then members keep their records pending and send them again; a refused chapter gets a signed refusal. chapters, approve, refuse and export work on a running hub (through <hub-dir>/hub.sock) and on a stopped one (its store).

            Examples:
              kithd hub init --name "Example Party" --hub-dir /srv/hub   (prints the card)
              kithd hub run --hub-dir /srv/hub --address 0.0.0.0:7500
              kithd hub run --hub-dir /srv/hub --store postgres://kith@/kith_hub?host=/run/postgresql
              kithd hub chapters --hub-dir /srv/hub
              kithd hub status --hub-dir /srv/hub
              kithd hub approve "Ward 5" --hub-dir /srv/hub
              kithd hub refuse "Ward 9" --hub-dir /srv/hub
              kithd hub export --hub-dir /srv/hub --format csv > records.csv
            """,
        subcommands: [Init.self, Run.self, Status.self, Chapters.self, Approve.self, Refuse.self, Export.self]
    )

    /// Sends a control request to the running hub, or — when none runs — performs it on the
    /// hub's store (which a running hub locks, so the two never write it at once).
    static func control(_ dir: HubDir, _ request: [String: Any]) async throws -> [String: Any] {
        let body = try JSONSerialization.data(withJSONObject: request)
        let data: Data
        if let live = await HubNode.requestRunningHub(socket: dir.dataDir + "/hub.sock", body) {
            data = live
        } else {
            let (keys, storageKey) = try loadKeys(dir)
            var log = Logger(label: "kithd-hub")
            log.logLevel = .error
            let storage: any HubStorage
            do { storage = try await openStorage(dir, keys: keys, storageKey: storageKey, logger: log, retryWindow: .seconds(2)) } catch {
                throw ValidationError("cannot open the hub's store: \(error)")
            }
            do {
                data = await (try await HubNode(keys: keys, storage: storage, logger: log)).control(json: body)
                await storage.shutdown()
            } catch {
                await storage.shutdown()
                throw error
            }
        }
        guard let answer = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw ValidationError("the hub's answer is not JSON") }
        guard answer["ok"] as? Bool == true else { throw ValidationError(answer["error"] as? String ?? "the hub refused the request") }
        return answer
    }

    static func printJSON(_ value: Any) throws {
        let data = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }

    /// One line per chapter for `hub chapters` and after a decision.
    static func describe(_ c: [String: Any]) -> String {
        let admins = (c["admins"] as? [String] ?? []).map { String($0.prefix(8)) }.joined(separator: ",")
        let relaxes = c["relaxesContactConsent"] as? Bool == true ? "RELAXES CONTACT CONSENT" : "contact consent required"
        return "\(c["chapter"] ?? "?")  \"\(c["name"] ?? "")\"  \(c["status"] ?? "?")  admin \(admins)  \(relaxes)  "
            + "\(c["records"] ?? 0)/\(c["maxRecords"] ?? 0) records  \(c["bytes"] ?? 0)/\(c["maxBytes"] ?? 0) bytes  \(c["waiting"] ?? 0) waiting"
    }

    struct HubDir: ParsableArguments {
        @Option(name: .customLong("hub-dir"), help: "The hub's data directory (its keys and store).") var dataDir: String
        @Option(name: .customLong("store"), help: """
            Where the hub keeps records: postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=require], or over a Unix socket postgres://USER@/DB?host=/run/postgresql. Default: store = … in <hub-dir>/hub.toml, else SQLite in <hub-dir>.
            """)
        var store: String?
        var keyPath: String { dataDir + "/org.keys" }
        var configPath: String { dataDir + "/hub.toml" }

        /// The store's location: --store, else hub.toml's `store`, else nil (SQLite in the hub's directory).
        func storeLocation() throws -> String? {
            if let store { return store }
            guard FileManager.default.fileExists(atPath: configPath) else { return nil }
            let text: String
            do { text = try String(contentsOfFile: configPath, encoding: .utf8) } catch { throw ValidationError("cannot read \(configPath): \(error)") }
            var found: String?
            do {
                for (key, (value, line)) in try DaemonConfig.parse(text) {
                    guard key == "store" else { throw ValidationError("\(configPath) line \(line): unknown key '\(key)' (known: store)") }
                    guard case let .string(s) = value else { throw ValidationError("\(configPath) line \(line): store must be a string") }
                    found = s
                }
            } catch let e as DaemonConfig.ParseError {
                throw ValidationError("\(configPath) \(e)")
            }
            return found
        }
    }

    /// Opens the hub's storage where `dir` says (PostgreSQL or the SQLite store in the directory).
    static func openStorage(_ dir: HubDir, keys: OrganizationKeys, storageKey: SymmetricKey, logger: Logger,
                            retryWindow: Duration = .seconds(15)) async throws -> any HubStorage {
        guard let location = try dir.storeLocation(), location != "sqlite" else {
            let s = try SQLiteHubStorage(directory: dir.dataDir, keys: keys, storageKey: storageKey)
            if let from = s.migratedFrom { logger.info("hub store migrated", metadata: ["from": "\(from)", "to": "\(HubStoreSchema.current)"]) }
            return s
        }
        let url: PostgresStoreURL
        do { url = try PostgresStoreURL(location) } catch { throw ValidationError("store: \(error.description)") }
        let s = try await PostgresHubStorage.open(url, keys: keys, storageKey: storageKey, logger: logger, retryWindow: retryWindow)
        if let from = await s.migratedFrom { logger.info("hub database migrated", metadata: ["from": "\(from)", "to": "\(PostgresHubSchema.current)"]) }
        return s
    }

    static let magic = Array("KITHORG1".utf8)

    /// `KITHORG1 ‖ signing seed[32] ‖ agreement secret[32] ‖ storage key[32] ‖ text name`, 0600.
    static func loadKeys(_ dir: HubDir) throws -> (OrganizationKeys, SymmetricKey) {
        guard FileManager.default.fileExists(atPath: dir.keyPath) else {
            throw ValidationError("\(dir.keyPath) does not exist: create the organization's keys with `kithd hub init --hub-dir \(dir.dataDir) --name NAME` first")
        }
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
        static let configuration = CommandConfiguration(abstract: "Serve members: store consented records from approved chapters, delete on revocation or expiry, sign every answer.")
        @OptionGroup var dir: HubDir
        @Option(name: .customLong("address"), help: "host:port to listen on (port 0 = any; written to <hub-dir>/hub.port).") var listen = "0.0.0.0:7500"
        @Option(name: .customLong("hub-log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"
        @Option(name: .customLong("log-format"), help: "text, json or journal (default: journal when stderr is the journal, else text).") var logFormat: String?
        @Option(name: .customLong("max-records-per-chapter"), help: "Records the hub holds per chapter at most, unless its approval says otherwise.")
        var maxRecords: UInt64 = HubLimits.defaults.maxRecordsPerChapter
        @Option(name: .customLong("max-bytes-per-chapter"), help: "Bytes of records the hub holds per chapter at most, unless its approval says otherwise.")
        var maxBytes: UInt64 = HubLimits.defaults.maxBytesPerChapter

        func run() async throws {
            let logSettings = try KithDaemon.logSettings(level: logLevel, levelOrigin: "--hub-log-level", format: logFormat)
            LoggingSystem.bootstrap { label in KithLogHandler(label: label, settings: logSettings) }
            let log = Logger(label: "kithd-hub")
            let (keys, storageKey) = try HubCommand.loadKeys(dir)
            let storage = try await HubCommand.openStorage(dir, keys: keys, storageKey: storageKey, logger: log)
            log.info("hub store opened", metadata: ["store": "\((storage as? PostgresHubStorage)?.url.description ?? dir.dataDir)"])
            let hub = try await HubNode(keys: keys, storage: storage, limits: HubLimits(maxRecordsPerChapter: maxRecords, maxBytesPerChapter: maxBytes), logger: log)
            guard let (host, port) = KithDaemon.hostPort(listen) else {
                throw ValidationError("--address must be host:port, got '\(listen)': \(KithDaemon.hostPortProblem(listen, allowAnyPort: true) ?? "")")
            }
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
            await storage.shutdown()
            log.info("hub stopped")
        }
    }

    struct Chapters: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the chapters that asked to affiliate: id, name, admins, status, whether they relax contact consent, records and bytes held.",
            discussion: """
                status: pending (no decision: records wait with the members), approved, refused, or reapproval (approved, but the chapter now relaxes contact consent, which the approval did not cover: pending again). waiting: members' grants answered "pending approval" since the hub started.
                """)
        @OptionGroup var dir: HubDir
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let list = try await HubCommand.control(dir, ["op": "chapters"])["chapters"] as? [[String: Any]] ?? []
            if json { return try HubCommand.printJSON(list) }
            if list.isEmpty { print("no chapter has asked to affiliate (a member's daemon sends its chapter's log with its first record)") }
            for c in list { print(HubCommand.describe(c)) }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the hub at a glance: where it stores, chapters by status, records and bytes held, per chapter.",
            discussion: "From the running hub (its control socket), or from its store when stopped (then running: no).")
        @OptionGroup var dir: HubDir
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let running = await HubNode.requestRunningHub(socket: dir.dataDir + "/hub.sock", Data(#"{"op":"status"}"#.utf8)) != nil
            var s = try await HubCommand.control(dir, ["op": "status"])["status"] as? [String: Any] ?? [:]
            s["running"] = running
            if json { return try HubCommand.printJSON(s) }
            let chapters = (s["chapters"] as? [String: Int] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            print("organization \"\(s["organization"] ?? "")\"  \(running ? "running" : "not running")")
            print("store: \(s["store"] ?? "?")")
            print("records held: \(s["records"] ?? 0) (\(s["bytes"] ?? 0) bytes)")
            print("chapters: \(chapters.isEmpty ? "none has asked to affiliate" : chapters)")
            for c in s["perChapter"] as? [[String: Any]] ?? [] {
                print("  \(c["chapter"] ?? "?")  \"\(c["name"] ?? "")\"  \(c["status"] ?? "?")  \(c["records"] ?? 0) records  \(c["bytes"] ?? 0) bytes  \(c["waiting"] ?? 0) waiting")
            }
        }
    }

    struct Approve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Approve a chapter's affiliation with the organization's key: the hub then takes its members' records.",
            discussion: """
                A chapter whose admin relaxed contact consent (its members may send contacts who agreed only to be contacted by the chapter, not to be shared with you) is approved only with --allow-without-contact-consent. If the chapter relaxes it later, its records wait for a new approval.
                """)
        @OptionGroup var dir: HubDir
        @Argument(help: "The chapter: its id (or a unique prefix) or its name, as kithd hub chapters lists it (write -- before an id that starts with -).") var chapter: String
        @Flag(name: .customLong("allow-without-contact-consent"), help: "Accept that this chapter relaxes contact consent.")
        var allowWithoutContactConsent = false
        @Option(name: .customLong("max-records"), help: "Records held for this chapter at most (default: the hub's --max-records-per-chapter).")
        var maxRecords: UInt64 = 0
        @Option(name: .customLong("max-bytes"), help: "Bytes held for this chapter at most (default: the hub's --max-bytes-per-chapter).")
        var maxBytes: UInt64 = 0

        func run() async throws {
            let answer = try await HubCommand.control(dir, ["op": "approve", "chapter": chapter, "allowWithoutContactConsent": allowWithoutContactConsent,
                                                            "maxRecords": maxRecords, "maxBytes": maxBytes])
            let c = answer["chapter"] as? [String: Any] ?? [:]
            print("approved: " + HubCommand.describe(c))
            if c["relaxesContactConsent"] as? Bool == true {
                print("note: this chapter's members may send contacts who agreed only to be contacted by the chapter")
            }
        }
    }

    struct Refuse: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Refuse a chapter's affiliation: its members' records get a signed refusal (records already held stay until revoked or expired).")
        @OptionGroup var dir: HubDir
        @Argument(help: "The chapter: its id (or a unique prefix) or its name (write -- before an id that starts with -).") var chapter: String

        func run() async throws {
            let answer = try await HubCommand.control(dir, ["op": "refuse", "chapter": chapter])
            print("refused: " + HubCommand.describe(answer["chapter"] as? [String: Any] ?? [:]))
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the records the hub holds now, with purpose and expiry (from the running hub, or its store when stopped).",
            discussion: "CSV cells that a spreadsheet would evaluate (starting with = + - @, a tab or a carriage return) get a leading ' (OWASP).")
        @OptionGroup var dir: HubDir
        @Option(help: "json or csv.") var format = "json"

        func run() async throws {
            let rows = (try await HubCommand.control(dir, ["op": "export"])["rows"] as? [[String: String]]) ?? []
            if format == "csv" {
                print(HubExport.csv(rows), terminator: "")
            } else {
                try HubCommand.printJSON(rows)
            }
        }
    }
}
