import ArgumentParser
import Foundation
import KithConsent
import KithCrypto
import KithHubConnectors
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
              kithd hub retractions --hub-dir /srv/hub
              kithd hub confirm-deletion action-network-20261203T071000Z-000.csv --hub-dir /srv/hub

            <hub-dir>/hub.toml (all keys optional):
              store = "postgres://kith@/kith_hub?host=/run/postgresql"
              export_dir = "/srv/hub/exports"                     # CSV files for staff
              export_formats = ["action-network-csv", "van-csv"]
              deletions_overdue_after_hours = 72
              osdi_endpoint = "https://actionnetwork.org/api/v2/"   # Action Network (OSDI)
              osdi_api_key_file = "/srv/hub/osdi.key"              # 0600, the API key alone
              osdi_subscribe_purposes = ["Newsletter"]             # grants that subscribe (if the contact agreed)
              osdi_delete_people = false                           # Action Network does not allow it
            """,
        subcommands: [Init.self, Run.self, Status.self, Chapters.self, Approve.self, Refuse.self, Export.self, Retractions.self, ConfirmDeletion.self]
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

    /// "3 d", "5 h", "12 min", "40 s".
    static func age(_ seconds: Int) -> String {
        seconds >= 86_400 ? "\(seconds / 86_400) d" : seconds >= 3_600 ? "\(seconds / 3_600) h" : seconds >= 60 ? "\(seconds / 60) min" : "\(seconds) s"
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
        func storeLocation() throws -> String? { try store ?? config().store }

        /// hub.toml, or the defaults when there is none.
        func config() throws -> HubConfig {
            guard FileManager.default.fileExists(atPath: configPath) else { return HubConfig() }
            let text: String
            do { text = try String(contentsOfFile: configPath, encoding: .utf8) } catch { throw ValidationError("cannot read \(configPath): \(error)") }
            return try HubConfig(parsing: text, path: configPath)
        }
    }

    /// `<hub-dir>/hub.toml`: where the hub stores, where records go beyond it, when a deletion is overdue.
    struct HubConfig {
        static let keys = ["store", "export_dir", "export_formats", "deletions_overdue_after_hours", "osdi_endpoint", "osdi_api_key_file", "osdi_name",
                           "osdi_subscribe_purposes", "osdi_delete_people", "osdi_timeout_seconds"]
        var store: String?
        var exportDir: String?
        var exportFormats: [FileExportConnector.Format] = []
        var overdueAfterHours = 72
        var osdiEndpoint: String?
        var osdiKeyFile: String?
        var osdiName = "Action Network"
        var osdiSubscribePurposes: [String] = []
        var osdiDeletePeople = false
        var osdiTimeout = 15

        init() {}

        init(parsing text: String, path: String) throws {
            let entries: [(String, (DaemonConfig.Value, Int))]
            do { entries = try DaemonConfig.parse(text) } catch { throw ValidationError("\(path) \(error)") }
            for (key, (value, line)) in entries {
                let bad = { (what: String) in ValidationError("\(path) line \(line): \(key) must be \(what)") }
                switch (key, value) {
                case let ("store", .string(v)): store = v
                case let ("export_dir", .string(v)): exportDir = v
                case let ("export_formats", .array(items)):
                    exportFormats = []
                    for item in items {
                        guard case let .string(v) = item, let f = FileExportConnector.Format(rawValue: v) else {
                            throw bad("a list of " + FileExportConnector.Format.allCases.map(\.rawValue).joined(separator: ", "))
                        }
                        exportFormats.append(f)
                    }
                case let ("deletions_overdue_after_hours", .integer(n)):
                    guard n > 0 else { throw bad("a positive number of hours") }
                    overdueAfterHours = n
                case let ("osdi_endpoint", .string(v)):
                    guard v.hasPrefix("https://") || v.hasPrefix("http://127.0.0.1") || v.hasPrefix("http://localhost") else {
                        throw bad("an https:// URL (the API key travels with every request)")
                    }
                    osdiEndpoint = v
                case let ("osdi_api_key_file", .string(v)): osdiKeyFile = v
                case let ("osdi_name", .string(v)) where !v.isEmpty: osdiName = v
                case let ("osdi_subscribe_purposes", .array(items)):
                    osdiSubscribePurposes = try items.map { item in
                        guard case let .string(v) = item else { throw bad("a list of grant purposes") }
                        return v
                    }
                case let ("osdi_delete_people", .bool(b)): osdiDeletePeople = b
                case let ("osdi_timeout_seconds", .integer(n)):
                    guard n > 0 else { throw bad("a positive number of seconds") }
                    osdiTimeout = n
                case ("store", _), ("export_dir", _), ("osdi_endpoint", _), ("osdi_api_key_file", _), ("osdi_name", _): throw bad("a string")
                case ("export_formats", _), ("osdi_subscribe_purposes", _): throw bad("a list of strings")
                case ("deletions_overdue_after_hours", _), ("osdi_timeout_seconds", _): throw bad("an integer")
                case ("osdi_delete_people", _): throw bad("true or false")
                default: throw ValidationError("\(path) line \(line): unknown key '\(key)' (known: \(Self.keys.joined(separator: ", ")))")
                }
            }
            if !exportFormats.isEmpty && exportDir == nil {
                throw ValidationError("\(path): export_formats needs export_dir (the directory staff pick files up from)")
            }
            if (osdiEndpoint == nil) != (osdiKeyFile == nil) {
                throw ValidationError("\(path): osdi_endpoint and osdi_api_key_file go together")
            }
        }

        /// The connectors hub.toml configures; the OSDI API key is read from its file (0600).
        func connectors(clock: @escaping @Sendable () -> UInt64) throws -> [any HubConnector] {
            var out: [any HubConnector] = []
            if let exportDir {
                out += exportFormats.map { f in
                    FileExportConnector(name: f == .actionNetwork ? "Action Network CSV files" : "VAN CSV files", format: f, directory: exportDir, clock: clock)
                }
            }
            if let osdiEndpoint, let osdiKeyFile {
                var key = try SecureFiles.readSecret(osdiKeyFile)
                defer { ConstantTime.wipe(&key) }
                let text = String(decoding: key, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                guard !text.isEmpty else { throw ValidationError("\(osdiKeyFile) is empty: it holds the OSDI API key") }
                out.append(OSDIConnector(.init(name: osdiName, endpoint: osdiEndpoint, apiKey: text, subscribePurposes: Set(osdiSubscribePurposes),
                                               deletePeople: osdiDeletePeople, timeout: .seconds(Int64(osdiTimeout)))))
            }
            return out
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
        @Option(name: .customLong("connector-interval-ms"), help: "How often connectors deliver and delete downstream.") var connectorInterval: UInt64 = 5_000

        func run() async throws {
            let logSettings = try KithDaemon.logSettings(level: logLevel, levelOrigin: "--hub-log-level", format: logFormat)
            LoggingSystem.bootstrap { label in KithLogHandler(label: label, settings: logSettings) }
            let log = Logger(label: "kithd-hub")
            let (keys, storageKey) = try HubCommand.loadKeys(dir)
            let storage = try await HubCommand.openStorage(dir, keys: keys, storageKey: storageKey, logger: log)
            log.info("hub store opened", metadata: ["store": "\((storage as? PostgresHubStorage)?.url.description ?? dir.dataDir)"])
            let config = try dir.config()
            let hub = try await HubNode(keys: keys, storage: storage, limits: HubLimits(maxRecordsPerChapter: maxRecords, maxBytesPerChapter: maxBytes), logger: log,
                                        connectors: try config.connectors(clock: ContactStore.systemClock),
                                        overdueAfterMilliseconds: UInt64(config.overdueAfterHours) * 3_600_000)
            guard let (host, port) = KithDaemon.hostPort(listen) else {
                throw ValidationError("--address must be host:port, got '\(listen)': \(KithDaemon.hostPortProblem(listen, allowAnyPort: true) ?? "")")
            }
            let (bound, serve) = try await hub.listen(host: host, port: port)
            // 0600 like kithd.port: the port is for the organization's own tools, not every local user.
            do { try SecureFiles.writeSecret(Array("\(bound)\n".utf8), to: dir.dataDir + "/hub.port", exclusive: false) } catch {
                log.error("could not write the port file; scripts will not find this hub", metadata: ["path": "\(dir.dataDir)/hub.port", "reason": "\(error)"])
            }
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
                .init(service: TaskService {
                    // Deliveries downstream and the deletion work items (retried with backoff).
                    while !Task.isCancelled {
                        await hub.connectorRound()
                        try? await Task.sleep(nanoseconds: connectorInterval * 1_000_000)
                    }
                }, serviceName: "connectors"),
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
            let problems = s["problems"] as? [String] ?? []
            print(problems.isEmpty ? "health: ok" : "UNHEALTHY: " + problems.joined(separator: "; "))
            print("store: \(s["store"] ?? "?")")
            print("records held: \(s["records"] ?? 0) (\(s["bytes"] ?? 0) bytes)")
            print("chapters: \(chapters.isEmpty ? "none has asked to affiliate" : chapters)")
            for c in s["perChapter"] as? [[String: Any]] ?? [] {
                print("  \(c["chapter"] ?? "?")  \"\(c["name"] ?? "")\"  \(c["status"] ?? "?")  \(c["records"] ?? 0) records  \(c["bytes"] ?? 0) bytes  \(c["waiting"] ?? 0) waiting")
            }
            let connectors = s["connectors"] as? [[String: Any]] ?? []
            print("connectors: \(connectors.isEmpty ? "none (hub.toml configures them)" : "")")
            for c in connectors {
                let health = c["healthy"] as? Bool == false ? "FAILING: \(c["lastError"] ?? "")" : "ok"
                print("  \(c["name"] ?? "?")  \(health)  \(c["delivered"] ?? 0) delivered  \(c["failures"] ?? 0) failures")
            }
            let d = s["deletions"] as? [String: Any] ?? [:]
            let overdue = d["overdue"] as? Int ?? 0
            print("deletions outstanding: \(d["outstanding"] ?? 0)" + (overdue > 0 ? "  DELETIONS OVERDUE: \(overdue) (older than \(d["overdueAfterHours"] ?? 0) h; kithd hub retractions lists them)" : ""))
            for item in d["overdueItems"] as? [[String: Any]] ?? [] {
                print("  OVERDUE  grant \(item["grant"] ?? "?")  \(item["place"] ?? "?")  \(item["state"] ?? "?")  age \(HubCommand.age(item["ageSeconds"] as? Int ?? 0))  \(item["attempts"] ?? 0) attempts")
            }
        }
    }

    struct Retractions: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the deletions not finished, oldest first: grant, place, state, age, attempts, last error.",
            discussion: """
                A revoked or expired grant's record is erased at the hub at once; every other place it went gets a deletion work item: a connector retries (with backoff) until the downstream system confirms it erased or suppressed the record; an exported file waits until staff confirm its rows are deleted (kithd hub confirm-deletion FILE). Items older than deletions_overdue_after_hours (hub.toml, default 72) are marked OVERDUE.
                """)
        @OptionGroup var dir: HubDir
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let list = try await HubCommand.control(dir, ["op": "retractions"])["retractions"] as? [[String: Any]] ?? []
            if json { return try HubCommand.printJSON(list) }
            if list.isEmpty { print("no deletion outstanding") }
            for r in list {
                let ageText = HubCommand.age(r["ageSeconds"] as? Int ?? 0)
                var line = "\(r["overdue"] as? Bool == true ? "OVERDUE  " : "")grant \(r["grant"] ?? "?")  \(r["kithID"] ?? "")  \(r["place"] ?? "?")  \(r["state"] ?? "?")  age \(ageText)  \(r["attempts"] ?? 0) attempts"
                if let list = r["deletionList"] { line += "  on \(list)" }
                if let e = r["lastError"] { line += "  last error: \(e)" }
                print(line)
            }
        }
    }

    struct ConfirmDeletion: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "confirm-deletion",
            abstract: "Confirm that staff deleted an exported file's rows listed for deletion (from the file and from where they uploaded it).",
            discussion: "Completes every deletion awaiting staff for that file; the members' deletion receipts then say so.")
        @OptionGroup var dir: HubDir
        @Argument(help: "The exported file's name, as kithd hub retractions shows it.") var file: String

        func run() async throws {
            let n = try await HubCommand.control(dir, ["op": "confirm-file", "file": file])["confirmed"] as? Int ?? 0
            print("confirmed: \(n) deletion\(n == 1 ? "" : "s") of \(file) finished")
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
            abstract: "Write the records the hub holds now, with purpose and expiry (from the running hub, or its store when stopped).",
            discussion: """
                The export streams: the hub reads its store a page at a time and the rows are written as they come, so an export of millions of records uses little memory, and a running hub keeps serving members meanwhile. Rows come in a stable order (by member and grant id).

                json: an array, one object per line; jsonl: one object per line; csv: the columns grant, granted_by, chapter, chapter_id, contact, purpose, expires, rule, version, then every field a member can share, then other (a field this build does not know, as "name: value" lines). CSV cells that a spreadsheet would evaluate (starting with = + - @, a tab or a carriage return) get a leading ' (OWASP).
                """)
        @OptionGroup var dir: HubDir
        @Option(help: "json, jsonl or csv.") var format = "json"

        func run() async throws {
            guard let f = HubExport.Format(rawValue: format) else {
                throw ValidationError("--format must be json, jsonl or csv, got '\(format)'")
            }
            let out = FileHandle.standardOutput
            let sink: @Sendable ([UInt8]) throws -> Void = { try out.write(contentsOf: Data($0)) }
            let summary: HubExportStream.Summary
            if let live = try await HubNode.exportFromRunningHub(socket: dir.dataDir + "/hub.sock", format: f, sink: sink) {
                summary = live
            } else {
                let (keys, storageKey) = try HubCommand.loadKeys(dir)
                var log = Logger(label: "kithd-hub")
                log.logLevel = .error
                let storage: any HubStorage
                do { storage = try await HubCommand.openStorage(dir, keys: keys, storageKey: storageKey, logger: log, retryWindow: .seconds(2)) } catch {
                    throw ValidationError("cannot open the hub's store: \(error)")
                }
                do {
                    summary = try await HubExportStream.write(storage: storage, organization: keys.agreement, format: f) { try sink($0) }
                    await storage.shutdown()
                } catch {
                    await storage.shutdown()
                    throw ValidationError("the export stopped part way (what was written is incomplete): \(error)")
                }
            }
            if summary.unreadable > 0 {
                FileHandle.standardError.write(Data("kithd hub export: \(summary.unreadable) held record\(summary.unreadable == 1 ? "" : "s") could not be read and \(summary.unreadable == 1 ? "is" : "are") not in the export (the store is damaged, or holds another organization's rows)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}
