import KithChapter
import KithCRDT
import KithCrypto

/// The rows a hub keeps (Protocol/consent.md §4.4), their versions, and the migration from
/// earlier versions, sans I/O so that any storage back end runs the same migration.
///
/// Schema 4 (current) adds, after a held record's `text chapter_name`, an optional tail
/// `u8 1 ‖ uvarint n ‖ (text name ‖ text value)×n`: the record's fields as the hub opened them
/// when it accepted the record (the plaintext of the record's sealed box). The row is sealed at
/// rest under the storage key like every row, so an export reads the fields with one symmetric
/// open per row instead of an X25519 open. A row without the tail (written by schema 3, or by a
/// caller that had no opened fields) is still valid: its fields are opened from the record.
/// Migrating a schema-3 store only writes the version (its rows stay valid as they are).
///
/// Schema 3 adds:
/// - record trail: id = `member[32] ‖ grant_id[16]`; bytes = a `RecordTrail` (where the record
///   went; for a closed grant, the deletion at each place)
/// A schema-2 store has no trails (nothing went anywhere but the hub): migrating it only writes
/// the version.
///
/// Schema 2:
/// - held record: id = `member[32] ‖ grant_id[16]`; bytes = `bytes record ‖ bytes answer ‖ text chapter_name`
/// - closed grant: id = `member[32] ‖ grant_id[16]` (member all zeros: closed in schema 1, owner
///   unknown, closed for every member); bytes = `u64 highest_version`
/// - decision: id = `chapter_id[16]`; bytes = a signed chapter decision
/// - chapter op: id = `chapter_id[16] ‖ op_id[32]`; bytes = a membership op (unchanged since 1)
///
/// Schema 1 (no version row): held records and closed grants keyed by grant id alone, receipts
/// in the version-1 format (`"kith/receipt/v1\0"`).
public enum HubStoreSchema {
    public static let current: UInt64 = 4
    /// The member part of a closed-grant id whose owner is unknown (schema 1).
    public static let unknownOwner = [UInt8](repeating: 0, count: 32)

    /// A held record's row bytes; `fields`: the record's opened fields (schema 4's tail), when known.
    public static func encodeHeld(record: [UInt8], answer: [UInt8], chapterName: String, fields: [(String, String)]? = nil) -> [UInt8] {
        var w = ByteWriter()
        w.lengthPrefixed(record)
        w.lengthPrefixed(answer)
        w.text(chapterName)
        if let fields {
            w.u8(1)
            w.uvarint(fields.count)
            for (k, v) in fields {
                w.text(k)
                w.text(v)
            }
        }
        return w.bytes
    }

    public static func decodeHeld(_ bytes: [UInt8]) -> (record: [UInt8], answer: [UInt8], chapterName: String)? {
        decodeHeldRow(bytes).map { ($0.record, $0.answer, $0.chapterName) }
    }

    /// A held record's row: its parts, and its opened fields when the row has them (nil: a
    /// schema-3 row, whose fields are opened from the record).
    public static func decodeHeldRow(_ bytes: [UInt8]) -> (record: [UInt8], answer: [UInt8], chapterName: String, fields: [(String, String)]?)? {
        var r = ByteReader(bytes)
        do {
            let rec = Array(try r.lengthPrefixed(max: 1 << 20)), ans = Array(try r.lengthPrefixed(max: 4_096)), name = try r.text(max: 200)
            guard !r.isAtEnd else { return (rec, ans, name, nil) }
            guard try r.u8() == 1 else { return nil }
            let n = try r.count(max: 100, "field count")
            var fields: [(String, String)] = []
            fields.reserveCapacity(n)
            for _ in 0..<n { fields.append((try r.text(max: 200), try r.text(max: 1 << 16))) }
            guard r.isAtEnd else { return nil }
            return (rec, ans, name, fields)
        } catch {
            return nil
        }
    }

    /// A `member[32] ‖ grant_id[16]` row id with a known member.
    public static func decodeGrantKey(_ id: [UInt8]) -> GrantKey? {
        guard id.count == 48, let m = try? Ed25519.PublicKey(bytes: id[0..<32]) else { return nil }
        return GrantKey(member: m, grant: Array(id[32...]))
    }

    /// A closed-grant row's (member, grant id); member nil when unknown (schema 1).
    public static func decodeClosedID(_ id: [UInt8]) -> (member: Ed25519.PublicKey?, grant: [UInt8])? {
        guard id.count == 48 else { return nil }
        let m = Array(id[0..<32]), g = Array(id[32...])
        if m == unknownOwner { return (nil, g) }
        guard let key = try? Ed25519.PublicKey(bytes: m) else { return nil }
        return (key, g)
    }

    /// A closed-grant row as `HubStorage.closedGrants` returns it; nil for a malformed row.
    public static func decodeClosed(_ row: (id: [UInt8], bytes: [UInt8])) -> (member: Ed25519.PublicKey?, grant: [UInt8], version: UInt64)? {
        guard row.bytes.count == 8, let k = decodeClosedID(row.id) else { return nil }
        return (k.member, k.grant, UInt64(bigEndianBytes: row.bytes))
    }

    /// Chapter-op rows (id = chapter id ‖ op id) grouped by chapter, in row order.
    public static func groupChapterOps(_ rows: [(id: [UInt8], bytes: [UInt8])]) -> [ChapterID: [[UInt8]]] {
        var out: [ChapterID: [[UInt8]]] = [:]
        for r in rows where r.id.count == 48 {
            if let c = try? ChapterID(bytes: r.id[0..<16]) { out[c, default: []].append(r.bytes) }
        }
        return out
    }

    /// The outcome of migrating schema-1 rows: rows to delete (old ids) and rows to write.
    public struct Migration: Sendable {
        public var deleteRecords: [[UInt8]] = []
        public var putRecords: [(id: [UInt8], bytes: [UInt8])] = []
        public var deleteClosed: [[UInt8]] = []
        public var putClosed: [(id: [UInt8], bytes: [UInt8])] = []
        /// Held records that could not be read (left out, counted).
        public var unreadable = 0
    }

    /// Schema 1 → 2 (a no-op on schema-2 rows, whose ids are 48 bytes; 2 → 3 and 3 → 4 change no row): re-keys held records by (member, grant id) — the member is the grant's
    /// signer, inside the record — and re-signs their receipts as hub answers (same rule and
    /// time); re-keys closed grants with an unknown owner, so they stay closed for everyone.
    public static func migrateFrom1(records: [(id: [UInt8], bytes: [UInt8])], closed: [(id: [UInt8], bytes: [UInt8])],
                                    keys: OrganizationKeys, nowMilliseconds now: UInt64) -> Migration {
        var m = Migration()
        for row in records where row.id.count == 16 {
            m.deleteRecords.append(row.id)
            guard let old = decodeHeld(row.bytes),
                  let record = try? UpwardRecord(encoded: old.record, nowSeconds: now / 1000), record.grant.id == row.id,
                  let legacy = LegacyReceipt(encoded: old.answer, organization: keys.signing.publicKey) else {
                m.unreadable += 1
                continue
            }
            let answer = HubAnswer.make(.stored, request: old.record, member: record.grant.member, grantID: record.grant.id,
                                        version: record.version, rule: legacy.rule, at: legacy.at, signer: keys.signing)
            m.putRecords.append((record.grant.member.bytes + record.grant.id, encodeHeld(record: old.record, answer: answer.encoded, chapterName: old.chapterName)))
        }
        for row in closed where row.id.count == 16 {
            m.deleteClosed.append(row.id)
            m.putClosed.append((unknownOwner + row.id, row.bytes))
        }
        return m
    }

    /// A schema-1 receipt (`"kith/receipt/v1\0"`): read only to migrate.
    struct LegacyReceipt {
        let rule: HubAnswer.Rule
        let at: UInt64

        init?(encoded b: [UInt8], organization: Ed25519.PublicKey) {
            guard b.count > 64 else { return nil }
            let body = Array(b[0..<(b.count - 64)])
            guard organization.isValidSignature(b[(b.count - 64)...], for: Array("kith/receipt/v1\0".utf8) + body) else { return nil }
            var r = ByteReader(body)
            guard (try? r.u8()) == 1, (try? r.u8()) == 1, (try? r.skip(16)) != nil, (try? r.uvarint()) != nil, (try? r.skip(32)) != nil,
                  let ru = (try? r.u8()).flatMap(HubAnswer.Rule.init(rawValue:)), let t = try? r.u64(), r.isAtEnd else { return nil }
            rule = ru
            at = t
        }
    }
}
