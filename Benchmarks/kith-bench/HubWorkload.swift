import ArgumentParser
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
import KithHubPostgres
import Logging
import PostgresNIO

/// The records both hub benchmarks make (`kith-bench hub` sends them to a hub, `kith-bench
/// hub-export` writes them straight into a store): contact `i`'s grant of a few fields to the
/// organization, and the upward record carrying its values sealed to the organization.
enum HubWorkload {
    static let fields = ["name", "emails", "phones"]
    static let purpose = "GOTV calls"

    /// Contact `i`'s values: distinct per contact, shaped like real ones, with contact consent.
    static func values(_ i: Int) -> [(String, String)] {
        [("name", "Person \(i) Benchmark"), ("emails", "person\(i)@example.org"), ("phones", "+44 7700 9\(String(format: "%05d", i % 100_000))"),
         ("consent", "share;2026-11-01;form")]
    }

    /// Contact `i`'s grant (made at `createdAt`, never expiring) and its record, version 1.
    static func record(_ i: Int, chapter: ChapterID, organization org: OrganizationKeys, certificate: DeviceCertificate, device: Ed25519.PrivateKey,
                       createdAt: UInt64) -> (grant: Grant, record: UpwardRecord) {
        let g = Grant.make(chapter: chapter, organization: org.signing.publicKey, contact: ContactID(high: 1, low: UInt64(i)), fields: fields,
                           purpose: purpose, createdAt: createdAt, expiresAt: nil, certificate: certificate, device: device)
        // The grant was just made for this organization and these values: making the record cannot fail.
        let record = try! UpwardRecord.make(grant: g, version: 1, values: values(i), to: org.agreement.publicKey, certificate: certificate, device: device)
        return (g, record)
    }
}

extension HubWorkload {
    /// Runs `body` with the URL of a scratch database made on the `postgres` server (the URL's
    /// path is the database), and drops that database once `body` has returned.
    static func withScratchDatabase<T>(_ postgres: String, _ body: (PostgresStoreURL, Logger) async throws -> T) async throws -> T {
        let server = try PostgresStoreURL(postgres)
        let name = "kith_bench_" + Base64URL.encode(SecureRandom.bytes(6)).lowercased().filter { $0.isLetter || $0.isNumber }
        var log = Logger(label: "kith-bench-pg")
        log.logLevel = .critical
        let admin = try await PostgresConnection.connect(configuration: try server.configuration, id: 1, logger: log)
        try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: log)
        let parts = postgres.split(separator: "?", maxSplits: 1).map(String.init)
        guard let slash = parts[0].lastIndex(of: "/") else { throw ValidationError("--postgres: postgres://USER@HOST/DATABASE") }
        let url = try PostgresStoreURL(parts[0][...slash] + name + (parts.count > 1 ? "?" + parts[1] : ""))
        let result = try await body(url, log)
        try await admin.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"), logger: log)
        try await admin.close()
        return result
    }
}
