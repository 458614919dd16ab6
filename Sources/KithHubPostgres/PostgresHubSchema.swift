import KithConsent
import KithCRDT
import KithCrypto
import KithStore
import Logging
import PostgresNIO

/// The hub's tables in PostgreSQL and their versioned migrations.
///
/// `kith_schema_version(version, description, applied_at)` lists every migration applied; the
/// database's version is the highest. Opening applies the missing ones in order, in one
/// transaction, and refuses a database newer than this build.
///
/// - 1: `kith_hub_rows(kind smallint, id bytea, sealed bytea, PRIMARY KEY (kind, id))`: the
///   rows of `HubStoreSchema`, kinds as `ContactStore.RecordKind`, sealed by `ContactStore.sealRecord`.
/// - 2: `kith_hub_owner`: the organization whose hub owns the database (its public signing key)
///   and a check value sealed under its storage key, so that a hub started with another
///   organization's keys, or a lost storage key, is refused with a clear reason instead of
///   failing on the first row. A version-1 database is claimed by the first hub that opens it,
///   once its storage key opens the rows there.
///
/// Inside the rows, `HubStoreSchema`'s own version (the `.hubMeta` "schema" row) is migrated by
/// the same sans-I/O code as in SQLite.
public enum PostgresHubSchema {
    public static let current = 2

    public static let migrations: [(version: Int, description: String)] = [
        (1, "sealed hub rows"),
        (2, "the owning organization"),
    ]

    static let ownerCheckID = Array("owner".utf8)

    static func upsert(_ kind: Int16, _ id: ByteBuffer, _ sealed: ByteBuffer) -> PostgresQuery {
        "INSERT INTO kith_hub_rows(kind, id, sealed) VALUES (\(kind), \(id), \(sealed)) ON CONFLICT (kind, id) DO UPDATE SET sealed = EXCLUDED.sealed"
    }

    /// Writes (or replaces) many rows in one statement; a row must not appear twice.
    static func upsertAll(_ kinds: [Int16], _ ids: [ByteBuffer], _ sealed: [ByteBuffer]) -> PostgresQuery {
        """
        INSERT INTO kith_hub_rows(kind, id, sealed) SELECT * FROM unnest(\(kinds)::smallint[], \(ids)::bytea[], \(sealed)::bytea[]) \
        ON CONFLICT (kind, id) DO UPDATE SET sealed = EXCLUDED.sealed
        """
    }

    /// Deletes many rows in one statement.
    static func deleteAll(_ kinds: [Int16], _ ids: [ByteBuffer]) -> PostgresQuery {
        "DELETE FROM kith_hub_rows r USING unnest(\(kinds)::smallint[], \(ids)::bytea[]) AS d(kind, id) WHERE r.kind = d.kind AND r.id = d.id"
    }

    /// Deletes rows and writes (or replaces) others in one statement, so in one round trip and
    /// atomically without a BEGIN/COMMIT around it. The deleted and written rows must be
    /// different rows (a statement's data-modifying parts see the same snapshot).
    static func deleteAndUpsertAll(_ kinds: [Int16], _ ids: [ByteBuffer], _ putKinds: [Int16], _ putIDs: [ByteBuffer], _ sealed: [ByteBuffer]) -> PostgresQuery {
        """
        WITH gone AS (DELETE FROM kith_hub_rows r USING unnest(\(kinds)::smallint[], \(ids)::bytea[]) AS d(kind, id) WHERE r.kind = d.kind AND r.id = d.id) \
        INSERT INTO kith_hub_rows(kind, id, sealed) SELECT * FROM unnest(\(putKinds)::smallint[], \(putIDs)::bytea[], \(sealed)::bytea[]) \
        ON CONFLICT (kind, id) DO UPDATE SET sealed = EXCLUDED.sealed
        """
    }

    /// Every row of a kind, opened, ordered by id (as `ContactStore.records`).
    static func rows(_ c: PostgresConnection, _ kind: ContactStore.RecordKind, key: SymmetricKey, logger: Logger,
                     place: String = "the hub's database") async throws -> [(id: [UInt8], bytes: [UInt8])] {
        try await opened(c, kind, "SELECT id, sealed FROM kith_hub_rows WHERE kind = \(Int16(kind.rawValue)) ORDER BY id", capacity: 0,
                         key: key, logger: logger, place: place)
    }

    /// One page of a kind's rows (id, plaintext) in id order: the first `limit` with an id greater
    /// than `after` (keyset pagination on the primary key `(kind, id)`).
    static func page(_ c: PostgresConnection, _ kind: ContactStore.RecordKind, after: [UInt8]?, limit: Int, key: SymmetricKey, logger: Logger,
                     place: String = "the hub's database") async throws -> [(id: [UInt8], bytes: [UInt8])] {
        try await opened(c, kind, """
            SELECT id, sealed FROM kith_hub_rows WHERE kind = \(Int16(kind.rawValue)) AND id > \(ByteBuffer(bytes: after ?? []))
            ORDER BY id LIMIT \(Int64(max(0, limit)))
            """, capacity: max(0, limit), key: key, logger: logger, place: place)
    }

    /// The rows of a kind with these ids (id, plaintext), in id order; an id with no row is left out.
    static func rows(_ c: PostgresConnection, _ kind: ContactStore.RecordKind, ids: [[UInt8]], key: SymmetricKey, logger: Logger,
                     place: String = "the hub's database") async throws -> [(id: [UInt8], bytes: [UInt8])] {
        let wanted = ids.map { ByteBuffer(bytes: $0) }
        return try await opened(c, kind, """
            SELECT id, sealed FROM kith_hub_rows WHERE kind = \(Int16(kind.rawValue)) AND id = ANY(\(wanted)::bytea[]) ORDER BY id
            """, capacity: ids.count, key: key, logger: logger, place: place)
    }

    /// The (id, sealed) rows of `query`, opened with the storage key; a row that does not
    /// authenticate is corruption.
    private static func opened(_ c: PostgresConnection, _ kind: ContactStore.RecordKind, _ query: PostgresQuery, capacity: Int, key: SymmetricKey,
                               logger: Logger, place: String) async throws -> [(id: [UInt8], bytes: [UInt8])] {
        var out: [(id: [UInt8], bytes: [UInt8])] = []
        out.reserveCapacity(capacity)
        let rows = try await c.query(query, logger: logger)
        for try await (idBuffer, sealedBuffer) in rows.decode((ByteBuffer, ByteBuffer).self) {
            let id = Array(idBuffer.readableBytesView)
            guard let plain = ContactStore.openRecord(kind, id: id, Array(sealedBuffer.readableBytesView), key: key) else {
                throw StoreError(.corrupt, "a \(kind) row in \(place) failed authentication: the database was modified or damaged")
            }
            out.append((id, plain))
        }
        return out
    }

    /// The database's schema version (0: no Kith tables).
    public static func version(_ c: PostgresConnection, logger: Logger) async throws -> Int {
        let exists = try await c.query("SELECT to_regclass('kith_schema_version') IS NOT NULL", logger: logger)
        var has = false
        for try await b in exists.decode(Bool.self) { has = b }
        guard has else { return 0 }
        var v = 0
        for try await n in try await c.query("SELECT coalesce(max(version), 0) FROM kith_schema_version", logger: logger).decode(Int32.self) { v = Int(n) }
        return v
    }

    /// Brings the database to `target` (default: current) in one transaction; returns the version
    /// it had when it was older (nil when it was current or new).
    @discardableResult
    public static func migrate(_ c: PostgresConnection, keys: OrganizationKeys, storageKey: SymmetricKey, logger: Logger,
                               to target: Int = current) async throws -> Int? {
        do {
            return try await migrateInTransaction(c, keys: keys, storageKey: storageKey, logger: logger, to: target)
        } catch let e as PostgresTransactionError {
            // The reason is the step's (too new, another organization's), not the transaction's.
            if let reason = e.closureError as? StoreError { throw reason }
            throw e
        }
    }

    private static func migrateInTransaction(_ c: PostgresConnection, keys: OrganizationKeys, storageKey: SymmetricKey, logger: Logger,
                                             to target: Int) async throws -> Int? {
        try await c.withTransaction(logger: logger) { t -> Int? in
            // Two hubs starting at once on a fresh database: one migrates, the other waits.
            try await t.query("SELECT pg_advisory_xact_lock(\(PostgresHubStorage.lockKey + 1))", logger: logger)
            try await t.query("""
                CREATE TABLE IF NOT EXISTS kith_schema_version (
                    version     integer PRIMARY KEY,
                    description text NOT NULL,
                    applied_at  timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
            let from = try await version(t, logger: logger)
            guard from <= current else {
                throw StoreError(.tooNew, "the hub's database is schema \(from), newer than this build's \(current); upgrade Kith")
            }
            for (v, description) in migrations where v > from && v <= target {
                try await apply(v, t, keys: keys, storageKey: storageKey, logger: logger)
                try await t.query("INSERT INTO kith_schema_version(version, description) VALUES (\(Int32(v)), \(description))", logger: logger)
                logger.info("hub database migrated", metadata: ["version": "\(v)", "what": "\(description)"])
            }
            if target >= 2 { try await checkOwner(t, keys: keys, storageKey: storageKey, logger: logger) }
            if target >= 1 { try await migrateRows(t, keys: keys, storageKey: storageKey, logger: logger) }
            return from > 0 && from < target ? from : nil
        }
    }

    private static func apply(_ version: Int, _ t: PostgresConnection, keys: OrganizationKeys, storageKey: SymmetricKey, logger: Logger) async throws {
        switch version {
        case 1:
            try await t.query("""
                CREATE TABLE kith_hub_rows (
                    kind   smallint NOT NULL,
                    id     bytea NOT NULL,
                    sealed bytea NOT NULL,
                    PRIMARY KEY (kind, id)
                )
                """, logger: logger)
        case 2:
            // A database of version 1 is this organization's only if its storage key opens what is there.
            let probe = try await t.query("SELECT kind, id, sealed FROM kith_hub_rows LIMIT 1", logger: logger)
            for try await (kind, id, sealed) in probe.decode((Int16, ByteBuffer, ByteBuffer).self) {
                guard let k = ContactStore.RecordKind(rawValue: Int64(kind)),
                      ContactStore.openRecord(k, id: Array(id.readableBytesView), Array(sealed.readableBytesView), key: storageKey) != nil else {
                    throw StoreError(.corrupt, "the hub's database holds rows this organization's storage key does not open: it is another hub's, or damaged")
                }
            }
            try await t.query("""
                CREATE TABLE kith_hub_owner (
                    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                    organization bytea NOT NULL,
                    key_check    bytea NOT NULL
                )
                """, logger: logger)
            let org = keys.signing.publicKey.bytes
            let check = ContactStore.sealRecord(.hubMeta, id: ownerCheckID, org, key: storageKey)
            try await t.query("INSERT INTO kith_hub_owner(organization, key_check) VALUES (\(ByteBuffer(bytes: org)), \(ByteBuffer(bytes: check)))", logger: logger)
        default:
            preconditionFailure("no migration \(version)")
        }
    }

    /// Refuses a database another organization owns, or one the storage key does not open.
    private static func checkOwner(_ t: PostgresConnection, keys: OrganizationKeys, storageKey: SymmetricKey, logger: Logger) async throws {
        var found = false
        for try await (org, check) in try await t.query("SELECT organization, key_check FROM kith_hub_owner", logger: logger).decode((ByteBuffer, ByteBuffer).self) {
            found = true
            let o = Array(org.readableBytesView)
            guard o == keys.signing.publicKey.bytes else {
                let owner = (try? Ed25519.PublicKey(bytes: o)).map { "\($0)" } ?? "?"
                throw StoreError(.corrupt, "the hub's database belongs to another organization (key \(owner)), not \(keys.name) (\(keys.signing.publicKey))")
            }
            guard ContactStore.openRecord(.hubMeta, id: ownerCheckID, Array(check.readableBytesView), key: storageKey) == o else {
                throw StoreError(.corrupt, "the hub's storage key does not open its database: org.keys is not the one this database was made with")
            }
        }
        guard found else { throw StoreError(.corrupt, "the hub's database has no owner row") }
    }

    /// The rows' own version (`HubStoreSchema`): a fresh database gets the current one; rows
    /// without it (schema 1, copied from an old SQLite store) are migrated as SQLite does.
    private static func migrateRows(_ t: PostgresConnection, keys: OrganizationKeys, storageKey: SymmetricKey, logger: Logger) async throws {
        let meta = try await rows(t, .hubMeta, key: storageKey, logger: logger).first { $0.id == Array("schema".utf8) }
        let version = meta.map { UInt64(bigEndianBytes: $0.bytes) } ?? 1
        guard version <= HubStoreSchema.current else {
            throw StoreError(.tooNew, "the hub's rows are schema \(version), newer than this build's \(HubStoreSchema.current); upgrade Kith")
        }
        guard version < HubStoreSchema.current else { return }
        let m = HubStoreSchema.migrateFrom1(records: try await rows(t, .hubRecord, key: storageKey, logger: logger),
                                            closed: try await rows(t, .hubClosed, key: storageKey, logger: logger),
                                            keys: keys, nowMilliseconds: ContactStore.systemClock())
        for id in m.deleteRecords { try await t.query("DELETE FROM kith_hub_rows WHERE kind = \(Int16(ContactStore.RecordKind.hubRecord.rawValue)) AND id = \(ByteBuffer(bytes: id))", logger: logger) }
        for id in m.deleteClosed { try await t.query("DELETE FROM kith_hub_rows WHERE kind = \(Int16(ContactStore.RecordKind.hubClosed.rawValue)) AND id = \(ByteBuffer(bytes: id))", logger: logger) }
        var v: [UInt8] = []
        v.appendBigEndian(HubStoreSchema.current)
        let puts = m.putRecords.map { (ContactStore.RecordKind.hubRecord, $0.id, $0.bytes) } + m.putClosed.map { (ContactStore.RecordKind.hubClosed, $0.id, $0.bytes) }
            + [(ContactStore.RecordKind.hubMeta, Array("schema".utf8), v)]
        for (k, id, bytes) in puts {
            try await t.query(upsert(Int16(k.rawValue), ByteBuffer(bytes: id), ByteBuffer(bytes: ContactStore.sealRecord(k, id: id, bytes, key: storageKey))), logger: logger)
        }
    }
}
