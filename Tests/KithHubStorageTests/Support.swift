import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
@testable import KithHubPostgres
@testable import KithNetwork
import KithStore
import Logging
import PostgresNIO
import Testing

/// Silent, unless KITH_TEST_LOG names a level (trace … critical): then on stderr.
let quiet: Logger = {
    guard let level = ProcessInfo.processInfo.environment["KITH_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) else {
        return Logger(label: "kith-test", factory: { _ in SwiftLogNoOpLogHandler() })
    }
    var l = Logger(label: "kith-test", factory: { StreamLogHandler.standardError(label: $0) })
    l.logLevel = level
    return l
}()

/// The test PostgreSQL server: `KITH_TEST_POSTGRES_SOCKET` (its socket directory), set by
/// scripts/test, which starts a private cluster (scripts/pg-test-cluster). Without it the
/// PostgreSQL cases are left out with a printed reason — unless `KITH_TEST_REQUIRE_POSTGRES` is
/// set (scripts/test, CI), in which case `TestServer.require` fails the run.
enum TestServer {
    static let env = ProcessInfo.processInfo.environment
    static let socket: String? = env["KITH_TEST_POSTGRES_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    static let required = env["KITH_TEST_REQUIRE_POSTGRES"].map { !$0.isEmpty && $0 != "0" } ?? false
    static let bin = env["KITH_TEST_POSTGRES_BIN"] ?? "/usr/bin"
    static let configured: Bool = {
        if socket == nil {
            print("note: the hub's PostgreSQL storage tests are skipped: KITH_TEST_POSTGRES_SOCKET is not set (scripts/test starts a PostgreSQL cluster and sets it)")
        }
        return socket != nil || required
    }()
    static let skipReason: Comment = "KITH_TEST_POSTGRES_SOCKET is not set (scripts/test starts a PostgreSQL cluster and sets it)"

    static func url(_ database: String) -> String { "postgres://postgres@/\(database)?host=\(socket ?? "/nonexistent")" }

    static func connect(_ database: String) async throws -> PostgresConnection {
        guard let socket else { throw StoreError(.io, "KITH_TEST_REQUIRE_POSTGRES is set but KITH_TEST_POSTGRES_SOCKET is not: no PostgreSQL server for the tests") }
        return try await PostgresConnection.connect(
            configuration: .init(unixSocketPath: socket + "/.s.PGSQL.5432", username: "postgres", password: nil, database: database), id: 1, logger: quiet)
    }

    /// Runs SQL on `database` (admin work: create and drop databases, terminate backends).
    @discardableResult
    static func run(_ database: String, _ query: PostgresQuery) async throws -> [PostgresRow] {
        let c = try await connect(database)
        do {
            var out: [PostgresRow] = []
            for try await row in try await c.query(query, logger: quiet) { out.append(row) }
            try await c.close()
            return out
        } catch {
            try? await c.close()
            throw error
        }
    }

    /// A new empty database (dropped by `drop`).
    static func makeDatabase() async throws -> String {
        let name = "kith_t_" + Base64URL.encode(SecureRandom.bytes(9)).lowercased().filter { $0.isLetter || $0.isNumber }
        try await run("postgres", PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        return name
    }

    static func drop(_ database: String) async {
        _ = try? await run("postgres", PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(database) WITH (FORCE)"))
    }

    /// `pg_dump` of the database: everything PostgreSQL keeps of it, as text.
    static func dump(_ database: String) throws -> String {
        let file = NSTemporaryDirectory() + "kith-dump-" + database + ".sql"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin + "/pg_dump")
        p.arguments = ["-h", socket ?? "", "-U", "postgres", "--no-owner", "-f", file, database]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw StoreError(.io, "pg_dump exited with \(p.terminationStatus)") }
        return try String(contentsOfFile: file, encoding: .utf8)
    }
}

/// The back ends the shared suite runs on.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgres
    var testDescription: String { rawValue }
    /// SQLite always; PostgreSQL when a test server is configured (or required).
    static var available: [StoreKind] { TestServer.configured ? [.sqlite, .postgres] : [.sqlite] }
}

final class TempDir: Sendable {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "kith-hubstore-" + Base64URL.encode(SecureRandom.bytes(6))
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// One hub store of a kind, opened again and again as a restarted hub would.
final class TestStore: Sendable {
    let kind: StoreKind
    let keys: OrganizationKeys
    let storageKey: SymmetricKey
    let directory: String
    let database: String
    private let temp: TempDir

    init(_ kind: StoreKind, keys: OrganizationKeys = .generate(name: "Party"), storageKey: SymmetricKey = SymmetricKey()) async throws {
        self.kind = kind
        self.keys = keys
        self.storageKey = storageKey
        temp = try TempDir()
        directory = temp.path
        database = kind == .postgres ? try await TestServer.makeDatabase() : ""
    }

    var url: PostgresStoreURL { get throws { try PostgresStoreURL(TestServer.url(database)) } }

    func open(keys: OrganizationKeys? = nil, storageKey: SymmetricKey? = nil, retryWindow: Duration = .seconds(15)) async throws -> any HubStorage {
        switch kind {
        case .sqlite:
            return try SQLiteHubStorage(directory: directory, keys: keys ?? self.keys, storageKey: storageKey ?? self.storageKey)
        case .postgres:
            return try await PostgresHubStorage.open(try url, keys: keys ?? self.keys, storageKey: storageKey ?? self.storageKey, logger: quiet,
                                                     retryWindow: retryWindow)
        }
    }

    /// Everything the back end keeps at rest: the SQLite files (with the WAL), or a pg_dump.
    func atRest() throws -> [UInt8] {
        switch kind {
        case .sqlite:
            return try FileManager.default.contentsOfDirectory(atPath: directory).sorted().flatMap { name -> [UInt8] in
                Array((try? Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))) ?? Data())
            }
        case .postgres:
            return Array(try TestServer.dump(database).utf8)
        }
    }

    func cleanup() async {
        if kind == .postgres { await TestServer.drop(database) }
    }
}

/// A member with one device.
struct Member {
    let member = Ed25519.PrivateKey()
    let device = Ed25519.PrivateKey()
    let agreement = X25519.PrivateKey()
    var certificate: DeviceCertificate {
        DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey, createdAt: 1_700_000_000)
    }
}

/// A chapter affiliated with the organization, and its members' records.
struct Chapter {
    let alice = Member(), bob = Member()
    var log: MembershipLog
    let org: OrganizationKeys
    let now = ContactStore.systemClock()

    init(org: OrganizationKeys, name: String = "Ward 5") throws {
        self.org = org
        log = try MembershipLog.create(name: name, certificate: alice.certificate, device: alice.device, now: now - 10_000)
        try log.append(.addMember(bob.certificate, admin: false, invite: nil), certificate: alice.certificate, device: alice.device, now: now - 9_000)
        let c = org.card
        try log.append(.affiliate(Affiliation(signingKey: c.signingKey, agreementKey: c.agreementKey, name: c.name, hub: "127.0.0.1:7500",
                                              allowsWithoutContactConsent: false)),
                       certificate: alice.certificate, device: alice.device, now: now - 8_000)
    }

    var ops: [[UInt8]] { log.allOps.map(\.encoded) }

    func grant(_ by: Member, contact: UInt64) -> Grant {
        Grant.make(chapter: log.chapter, organization: org.signing.publicKey, contact: ContactID(high: 7, low: contact), fields: ["name", "phones", "emails"],
                   purpose: "GOTV calls", createdAt: now - 1_000, expiresAt: nil, certificate: by.certificate, device: by.device)
    }

    func record(_ g: Grant, by: Member, version: UInt64 = 1, person: Person) throws -> [UInt8] {
        try UpwardRecord.make(grant: g, version: version, values: [("name", person.name), ("phones", person.phone), ("emails", person.email), ("consent", "share")],
                              to: org.agreement.publicKey, certificate: by.certificate, device: by.device).encoded
    }

    func revocation(_ g: Grant, by: Member) -> [UInt8] {
        GrantRevocation.make(grant: g, at: ContactStore.systemClock(), certificate: by.certificate, device: by.device).encoded
    }
}

/// A synthetic person whose every field is unmistakable in a dump.
struct Person {
    let name: String, phone: String, email: String
    init(_ i: Int) {
        name = "Zebulon Quarrington\(i)"
        phone = "+44 7700 9\(String(format: "%05d", i))"
        email = "zeb.quarrington\(i)@example.org"
    }
}

/// A fresh store of a kind, opened, with a hub on it that approved one chapter.
struct HubSetup {
    let store: TestStore
    let chapter: Chapter
    let storage: any HubStorage
    let hub: HubNode

    init(_ kind: StoreKind) async throws {
        store = try await TestStore(kind)
        chapter = try Chapter(org: store.keys)
        storage = try await store.open()
        hub = try await HubNode(keys: store.keys, storage: storage, logger: quiet)
        try await hub.approve(chapter)
    }
}

extension HubNode {
    /// Approves `chapter` (its log first reaches the hub, as a member's daemon sends it).
    func approve(_ chapter: Chapter) async throws {
        await receiveLog(chapter: chapter.log.chapter.bytes, ops: chapter.ops)
        _ = try await decide(chapter.log.chapter.description, approve: true, allowWithoutContactConsent: false, maxRecords: 0, maxBytes: 0)
    }
}

func answerKind(_ answer: [UInt8], _ org: OrganizationKeys) throws -> HubAnswer.Kind {
    try HubAnswer(encoded: answer, organization: org.signing.publicKey).kind
}

extension [UInt8] {
    func contains(_ needle: [UInt8]) -> Bool {
        !needle.isEmpty && Data(self).range(of: Data(needle)) != nil
    }
}

func hex(_ b: [UInt8]) -> String { b.map { String(format: "%02x", $0) }.joined() }
