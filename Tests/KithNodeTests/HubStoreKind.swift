import Foundation
import Testing

/// The hub's back ends for daemon tests: SQLite (in the hub directory) always; PostgreSQL when
/// scripts/test started its private cluster (`KITH_TEST_POSTGRES_SOCKET`; required there, with
/// `KITH_TEST_REQUIRE_POSTGRES`). `prepare` points a hub directory at a new database through its
/// hub.toml, so `kithd hub run` and the stopped-hub commands all use it.
enum HubStoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgres
    var testDescription: String { rawValue }

    static let env = ProcessInfo.processInfo.environment
    static let socket = env["KITH_TEST_POSTGRES_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    static let bin = env["KITH_TEST_POSTGRES_BIN"] ?? "/usr/bin"
    static var available: [HubStoreKind] {
        let required = env["KITH_TEST_REQUIRE_POSTGRES"].map { !$0.isEmpty && $0 != "0" } ?? false
        if socket == nil && !required {
            print("note: kithd hub tests run on SQLite only: KITH_TEST_POSTGRES_SOCKET is not set (scripts/test starts a PostgreSQL cluster and sets it)")
            return [.sqlite]
        }
        return [.sqlite, .postgres]
    }

    struct Failure: Error, CustomStringConvertible { let description: String }

    static func tool(_ name: String, _ args: [String]) throws -> String {
        guard let socket else { throw Failure(description: "KITH_TEST_REQUIRE_POSTGRES is set but KITH_TEST_POSTGRES_SOCKET is not") }
        let out = NSTemporaryDirectory() + "kith-\(name)-\(UUID().uuidString).out"
        defer { try? FileManager.default.removeItem(atPath: out) }
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin + "/" + name)
        p.arguments = ["-h", socket, "-U", "postgres"] + args
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        p.standardError = p.standardOutput
        try p.run()
        p.waitUntilExit()
        let text = try String(contentsOfFile: out, encoding: .utf8)
        guard p.terminationStatus == 0 else { throw Failure(description: "\(name) \(args) failed: \(text)") }
        return text
    }

    /// Makes the hub in `hubDir` use this store; returns the database's name (or "").
    func prepare(hubDir: String) throws -> String {
        guard self == .postgres, let socket = Self.socket else {
            if self == .postgres { throw Failure(description: "no PostgreSQL server for the tests (KITH_TEST_POSTGRES_SOCKET)") }
            return ""
        }
        let db = "kith_d_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(12)
        _ = try Self.tool("psql", ["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE \(db)"])
        try "# the hub's store (README: the organization's hub on PostgreSQL)\nstore = \"postgres://postgres@/\(db)?host=\(socket)\"\n"
            .write(toFile: hubDir + "/hub.toml", atomically: true, encoding: .utf8)
        return db
    }

    /// Everything the store keeps at rest, lowercased: the SQLite files, or a pg_dump.
    func atRest(hubDir: String, database: String) throws -> String {
        switch self {
        case .sqlite:
            return try FileManager.default.contentsOfDirectory(atPath: hubDir).filter { $0.hasPrefix("store.sqlite") }
                .map { String(decoding: try Data(contentsOf: URL(fileURLWithPath: hubDir + "/" + $0)), as: UTF8.self) }.joined().lowercased()
        case .postgres:
            return try Self.tool("pg_dump", ["--no-owner", database]).lowercased()
        }
    }
}

func hexOf(_ s: String) -> String { s.utf8.map { String(format: "%02x", $0) }.joined() }
