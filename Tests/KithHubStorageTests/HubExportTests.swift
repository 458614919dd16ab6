import Foundation
import KithChapter
@testable import KithConsent
import KithCRDT
import KithCrypto
@testable import KithNetwork
import KithStore
import Testing

/// The hub's streamed export (`kithd hub export`): read page by page from either store, complete,
/// byte-identical on SQLite and PostgreSQL, never showing a revoked record.
@Suite("Hub export: streamed from the store, the same on both back ends")
struct HubExportTests {
    /// Everything exported in `format`, and the summary.
    static func export(_ s: any HubStorage, _ keys: OrganizationKeys, _ format: HubExport.Format, pageSize: Int) async throws
        -> (bytes: [UInt8], summary: HubExportStream.Summary, chunks: Int) {
        let collected = Collected()
        let summary = try await HubExportStream.write(storage: s, organization: keys.agreement, format: format, pageSize: pageSize) { collected.add($0) }
        return (collected.bytes, summary, collected.chunks)
    }

    final class Collected: @unchecked Sendable { // used from the one task that runs the export
        var bytes: [UInt8] = []
        var chunks = 0
        func add(_ b: [UInt8]) {
            bytes += b
            chunks += 1
        }
    }

    /// Fills a store with `n` records from two chapters (through the hub, as members send them)
    /// and revokes those at the indices `revoke`.
    static func fill(_ s: any HubStorage, _ keys: OrganizationKeys, chapters: [Chapter], records: [(Grant, [UInt8], Member)],
                     revoke: Set<Int>) async throws {
        let hub = try await HubNode(keys: keys, storage: s, limits: HubLimits(maxRecordsPerChapter: 10_000, maxBytesPerChapter: 1 << 30), logger: quiet)
        for c in chapters { try await hub.approve(c) }
        for (g, r, _) in records { #expect(try answerKind(await hub.accept(r), keys) == .stored, "\(g.id)") }
        for i in revoke.sorted() {
            let (g, _, m) = records[i]
            #expect(try answerKind(await hub.revoke(chapters[i % chapters.count].revocation(g, by: m)), keys) == .deleted)
        }
    }

    @Test func theExportIsCompleteIdenticalOnBothStoresAndWithoutRevokedRecords() async throws {
        let keys = OrganizationKeys.generate(name: "Party"), storageKey = SymmetricKey()
        let chapters = [try Chapter(org: keys, name: "Ward 5"), try Chapter(org: keys, name: "Ward 6")]
        let n = 260
        var records: [(Grant, [UInt8], Member)] = []
        for i in 0..<n {
            let c = chapters[i % 2], m = i % 3 == 0 ? c.alice : c.bob
            let g = c.grant(m, contact: UInt64(i))
            records.append((g, try c.record(g, by: m, person: Person(i)), m))
        }
        let revoked = Set(stride(from: 0, to: n, by: 10))
        var outputs: [StoreKind: [HubExport.Format: [UInt8]]] = [:]
        for kind in StoreKind.available {
            let store = try await TestStore(kind, keys: keys, storageKey: storageKey)
            let s = try await store.open()
            try await Self.fill(s, keys, chapters: chapters, records: records, revoke: revoked)
            for format in HubExport.Format.allCases {
                // Small pages (many of them, each decoded in parallel slices) and one big page give the same bytes.
                let paged = try await Self.export(s, keys, format, pageSize: 97)
                let whole = try await Self.export(s, keys, format, pageSize: 10_000)
                let same = paged.bytes == whole.bytes
                #expect(same, "\(kind) \(format): paging changed the export")
                #expect(paged.summary == HubExportStream.Summary(rows: n - revoked.count), "\(kind) \(format)")
                #expect(paged.chunks >= 3, "\(kind) \(format): the export was not written as it was read")
                outputs[kind, default: [:]][format] = paged.bytes
            }
            await s.shutdown()
            await store.cleanup()
        }
        if let pg = outputs[.postgres] {
            let same = pg == outputs[.sqlite]
            #expect(same, "SQLite and PostgreSQL export different bytes")
        }

        // Complete, and nothing revoked: every held grant exactly once, with its values.
        let json = try #require(try JSONSerialization.jsonObject(with: Data(outputs[.sqlite]![.json]!)) as? [[String: String]])
        let expected = Dictionary(uniqueKeysWithValues: records.indices.filter { !revoked.contains($0) }.map { (Base64URL.encode(records[$0].0.id), $0) })
        #expect(json.count == expected.count)
        #expect(Set(json.compactMap { $0["grant"] }) == Set(expected.keys))
        for row in json {
            let i = try #require(expected[row["grant"] ?? ""])
            let (g, _, m) = records[i]
            #expect(row["name"] == Person(i).name && row["phones"] == Person(i).phone && row["emails"] == Person(i).email, "\(row)")
            #expect(row["granted_by"] == m.member.publicKey.description && row["purpose"] == "GOTV calls" && row["version"] == "1")
            #expect(row["chapter"] == (i % 2 == 0 ? "Ward 5" : "Ward 6") && row["chapter_id"] == g.chapter.description && row["contact"] == g.contact.description)
            #expect(row["rule"] == "contactAgreed" && row["expires"] == "")
        }
        for i in revoked {
            let grant = Base64URL.encode(records[i].0.id)
            for format in HubExport.Format.allCases {
                let found = outputs[.sqlite]![format]!.contains(Array(grant.utf8))
                #expect(!found, "revoked grant \(grant) is in the \(format) export")
            }
            #expect(!json.contains { $0["name"] == Person(i).name }, "a revoked record's name is in the export")
        }
        // The same rows in every format.
        let lines = String(decoding: outputs[.sqlite]![.jsonl]!, as: UTF8.self).split(separator: "\n")
        let jsonl = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] }
        #expect(jsonl.count == json.count && jsonl.map { $0?["grant"] } == json.map { $0["grant"] })
        let csv = parseCSV(String(decoding: outputs[.sqlite]![.csv]!, as: UTF8.self))
        let header = try #require(csv.first)
        #expect(Array(header.prefix(9)) == HubExport.metadataColumns && header.last == "other" && header.contains("name") && header.contains("consent"))
        let csvGrants = csv.dropFirst().map { $0[header.firstIndex(of: "grant")!] }
        #expect(csvGrants == json.map { HubExport.csvCell($0["grant"] ?? "") }) // a grant id starting with - is neutralised too
        #expect(csv.dropFirst().allSatisfy { $0.count == header.count })
    }

    @Test(arguments: StoreKind.available)
    func anEmptyHubExportsAnEmptyDocument(_ kind: StoreKind) async throws {
        let store = try await TestStore(kind)
        let s = try await store.open()
        #expect(try await Self.export(s, store.keys, .json, pageSize: 10).bytes == Array("[]\n".utf8))
        #expect(try JSONSerialization.jsonObject(with: Data(try await Self.export(s, store.keys, .json, pageSize: 10).bytes)) as? [Any] != nil)
        #expect(try await Self.export(s, store.keys, .jsonl, pageSize: 10).bytes.isEmpty)
        let csv = try await Self.export(s, store.keys, .csv, pageSize: 10)
        #expect(parseCSV(String(decoding: csv.bytes, as: UTF8.self)).count == 1 && csv.summary.rows == 0)
        await s.shutdown()
        await store.cleanup()
    }

    /// A damaged row is left out and counted (the CLI then exits 1 and says so); the rest is exported.
    @Test(arguments: StoreKind.available)
    func aRowThatDoesNotReadIsCountedNotFatal(_ kind: StoreKind) async throws {
        let setup = try await HubSetup(kind)
        let (store, ch, s, hub) = (setup.store, setup.chapter, setup.storage, setup.hub)
        for i in 1...3 { #expect(try answerKind(await hub.accept(ch.record(ch.grant(ch.alice, contact: UInt64(i)), by: ch.alice, person: Person(i))), store.keys) == .stored) }
        // A row whose record is not a record, and one whose fields are sealed to another organization.
        try await s.put(GrantKey(member: ch.bob.member.publicKey, grant: SecureRandom.bytes(16)), record: [1, 2, 3], answer: [4], chapterName: "Ward 5")
        let other = OrganizationKeys.generate(name: "Other")
        let g = ch.grant(ch.bob, contact: 99)
        let foreign = try UpwardRecord.make(grant: g, version: 1, values: [("name", "Elsewhere")], to: other.agreement.publicKey,
                                            certificate: ch.bob.certificate, device: ch.bob.device)
        let answer = HubAnswer.make(.stored, request: foreign.encoded, member: g.member, grantID: g.id, version: 1, rule: .contactAgreed, at: 1, signer: store.keys.signing)
        try await s.put(GrantKey(member: g.member, grant: g.id), record: foreign.encoded, answer: answer.encoded, chapterName: "Ward 5")
        let out = try await Self.export(s, store.keys, .jsonl, pageSize: 2)
        #expect(out.summary == HubExportStream.Summary(rows: 3, unreadable: 2))
        #expect(String(decoding: out.bytes, as: UTF8.self).split(separator: "\n").count == 3)
        await s.shutdown()
        await store.cleanup()
    }

    /// Schema 4: a record stored on arrival keeps its fields as opened then, inside its sealed row,
    /// so the export opens no X25519 box (it exports even with another organization's agreement
    /// key); a schema-3 row (no fields in it) is still exported, its fields opened from the record.
    @Test(arguments: StoreKind.available)
    func aStoredRowCarriesItsOpenedFieldsAndAnOlderRowStillExports(_ kind: StoreKind) async throws {
        let setup = try await HubSetup(kind)
        let (store, ch, s, hub) = (setup.store, setup.chapter, setup.storage, setup.hub)
        let g1 = ch.grant(ch.alice, contact: 1)
        #expect(try answerKind(await hub.accept(ch.record(g1, by: ch.alice, person: Person(1))), store.keys) == .stored)
        let row = try #require(try await s.heldPage(after: nil, limit: 10).first)
        let fields = try #require(HubStoreSchema.decodeHeldRow(row.bytes)?.fields)
        #expect(fields.map { "\($0.0)=\($0.1)" } == ["name=Zebulon Quarrington1", "phones=+44 7700 900001", "emails=zeb.quarrington1@example.org", "consent=share"])
        // The row's own fields are exported: the organization's X25519 key is not used.
        let stranger = OrganizationKeys.generate(name: "Stranger")
        let blind = try HubExport.row(id: row.id, held: row.bytes, organization: stranger.agreement)
        #expect(blind.cells["name"] == "Zebulon Quarrington1" && blind.grantID == g1.id)

        // A row as schema 3 wrote it (no fields): exported with the organization's key, unreadable without it.
        let g2 = ch.grant(ch.bob, contact: 2)
        let r2 = try ch.record(g2, by: ch.bob, person: Person(2))
        let a2 = HubAnswer.make(.stored, request: r2, member: g2.member, grantID: g2.id, version: 1, rule: .contactAgreed, at: 1, signer: store.keys.signing)
        try await s.put(GrantKey(member: g2.member, grant: g2.id), record: r2, answer: a2.encoded, chapterName: "Ward 5")
        let old = try #require(try await s.heldPage(after: nil, limit: 10).first { $0.id == g2.member.bytes + g2.id })
        #expect(HubStoreSchema.decodeHeldRow(old.bytes).map { $0.fields == nil } == true)
        #expect(try HubExport.row(id: old.id, held: old.bytes, organization: store.keys.agreement).cells["name"] == "Zebulon Quarrington2")
        #expect(throws: ConsentError.self) { try HubExport.row(id: old.id, held: old.bytes, organization: stranger.agreement) }
        let out = try await Self.export(s, store.keys, .jsonl, pageSize: 1)
        #expect(out.summary == HubExportStream.Summary(rows: 2))
        // The golden vector of Protocol/consent.md §4.4.
        #expect(HubStoreSchema.encodeHeld(record: [0xAA], answer: [0xBB], chapterName: "W", fields: [("name", "Ana")])
            == [0x01, 0xAA, 0x01, 0xBB, 0x01, 0x57, 0x01, 0x01, 0x04, 0x6E, 0x61, 0x6D, 0x65, 0x03, 0x41, 0x6E, 0x61])
        // A row whose fields tail is damaged (not the tail format) does not read: counted, not guessed.
        #expect(HubStoreSchema.decodeHeldRow(row.bytes + [0]) == nil)
        #expect(HubStoreSchema.decodeHeldRow(HubStoreSchema.encodeHeld(record: [1], answer: [2], chapterName: "W") + [2]) == nil)
        await s.shutdown()
        await store.cleanup()
    }

    /// A schema-3 SQLite store (its rows have no fields) is migrated to 4 by writing the version;
    /// its rows read as they are.
    @Test func aSchema3SQLiteStoreIsMigratedTo4() async throws {
        let store = try await TestStore(.sqlite)
        let ch = try Chapter(org: store.keys)
        let g = ch.grant(ch.alice, contact: 3)
        let r = try ch.record(g, by: ch.alice, person: Person(3))
        let a = HubAnswer.make(.stored, request: r, member: g.member, grantID: g.id, version: 1, rule: .contactAgreed, at: 1, signer: store.keys.signing)
        do {
            let raw = try ContactStore(directory: store.directory, scope: ScopeID(name: "hub"), deviceKey: store.keys.signing, storageKey: store.storageKey, mode: .opaque)
            try raw.putRecords(.hubMeta, [(Array("schema".utf8), [0, 0, 0, 0, 0, 0, 0, 3])])
            try raw.putRecords(.hubRecord, [(g.member.bytes + g.id, HubStoreSchema.encodeHeld(record: r, answer: a.encoded, chapterName: "Ward 5"))])
        }
        do {
            let s = try SQLiteHubStorage(directory: store.directory, keys: store.keys, storageKey: store.storageKey)
            #expect(s.migratedFrom == 3)
            #expect(try s.records().map(\.chapterName) == ["Ward 5"])
            let out = try await Self.export(s, store.keys, .csv, pageSize: 10)
            #expect(out.summary == HubExportStream.Summary(rows: 1) && String(decoding: out.bytes, as: UTF8.self).contains("Zebulon Quarrington3"))
        }
        let again = try SQLiteHubStorage(directory: store.directory, keys: store.keys, storageKey: store.storageKey)
        #expect(again.migratedFrom == nil)
    }

    /// Member-supplied values reach staff: quotes, commas, newlines and formula starts stay cells of text.
    @Test func hostileValuesStayInTheirCells() async throws {
        let store = try await TestStore(.sqlite)
        let ch = try Chapter(org: store.keys)
        let s = try await store.open()
        let hub = try await HubNode(keys: store.keys, storage: s, logger: quiet)
        try await hub.approve(ch)
        let name = "=HYPERLINK(\"http://evil\",\"x\"),\nDROP\t\"\\"
        let g = ch.grant(ch.alice, contact: 1)
        let record = try UpwardRecord.make(grant: g, version: 1, values: [("name", name), ("phones", "+1 555"), ("consent", "share")],
                                           to: store.keys.agreement.publicKey, certificate: ch.alice.certificate, device: ch.alice.device)
        #expect(try answerKind(await hub.accept(record.encoded), store.keys) == .stored)
        let text = String(decoding: try await Self.export(s, store.keys, .csv, pageSize: 10).bytes, as: UTF8.self)
        let csv = parseCSV(text)
        try #require(csv.count == 2 && csv[1].count == csv[0].count, "\(text)")
        let cell = { (c: String) in csv[1][csv[0].firstIndex(of: c)!] }
        #expect(cell("name") == "'" + name && cell("phones") == "'+1 555")
        let json = try JSONSerialization.jsonObject(with: Data(try await Self.export(s, store.keys, .json, pageSize: 10).bytes)) as? [[String: String]]
        #expect(json?.first?["name"] == name && json?.first?["phones"] == "+1 555")
        await s.shutdown()
        await store.cleanup()
    }

    /// A field this build has no CSV column for (a newer member's) is kept in `other`, not dropped.
    @Test func anUnknownFieldGoesToTheOtherColumn() throws {
        let row = HubExport.Row(grantID: [UInt8](repeating: 1, count: 16), member: Ed25519.PrivateKey().publicKey, chapterName: "Ward 5",
                                chapter: try ChapterID(bytes: [UInt8](repeating: 2, count: 16)), contact: ContactID(high: 1, low: 2), purpose: "GOTV",
                                expiresAt: 1_800_000_000_000, rule: .contactAgreed, version: 3,
                                values: [("name", "Ada"), ("pronouns", "she/her"), ("shoe", "=7")])
        let writer = HubExport.Writer(format: .csv, fieldColumns: HubExportStream.fieldColumns)
        let csv = parseCSV(String(decoding: writer.export([row]), as: UTF8.self))
        let cell = { (c: String) in csv[1][csv[0].firstIndex(of: c)!] }
        #expect(cell("other") == "pronouns: she/her\nshoe: =7" && cell("name") == "Ada" && cell("expires") == "1800000000" && cell("version") == "3")
        let json = try JSONSerialization.jsonObject(with: Data(HubExport.Writer(format: .json, fieldColumns: []).export([row, row]))) as? [[String: String]]
        #expect(json?.count == 2 && json?.first?["pronouns"] == "she/her" && json?.first?["rule"] == "contactAgreed")
    }

    /// The control socket's framing, fed a byte at a time and in one piece.
    @Test func theExportStreamFramingDecodes() throws {
        let body = Array("[\n{\"a\":\"1\"}\n]\n".utf8)
        var stream: [UInt8] = Array("{\"ok\":true,\"stream\":\"chunks\"}\n3\n".utf8)
        stream += body[0..<3]
        stream += Array((String(body.count - 3, radix: 16) + "\n").utf8)
        stream += body[3...]
        stream += Array("0\n{\"ok\":true,\"rows\":1,\"unreadable\":0}\n".utf8)
        for step in [1, 5, stream.count] {
            var d = ExportStreamDecoder()
            var got: [UInt8] = [], end: ExportStreamDecoder.Trailer?
            for start in stride(from: 0, to: stream.count, by: step) {
                for e in try d.feed(stream[start..<min(start + step, stream.count)]) {
                    switch e {
                    case let .bytes(b): got += b
                    case let .end(t): end = t
                    }
                }
            }
            #expect(got == body && end == .init(ok: true, error: "", rows: 1, unreadable: 0) && d.isDone, "step \(step)")
        }
        var refused = ExportStreamDecoder()
        #expect(try refused.feed(Array("{\"ok\":false,\"error\":\"no\"}\n".utf8)) == [.end(.init(ok: false, error: "no", rows: 0, unreadable: 0))])
        var bad = ExportStreamDecoder()
        #expect(throws: ExportStreamError.self) { try bad.feed(Array("{\"ok\":true}\nzz\n".utf8)) }
        var long = ExportStreamDecoder()
        #expect(throws: ExportStreamError.self) { try long.feed([UInt8](repeating: 0x41, count: ExportStreamDecoder.maxLine + 1)) }
    }
}

/// RFC 4180 rows (quoted cells may hold commas, quotes and newlines).
func parseCSV(_ text: String) -> [[String]] {
    var rows: [[String]] = [], row: [String] = [], cell = "", quoted = false
    var it = Array(text).makeIterator(), pending: Character?
    while let c = pending ?? it.next() {
        pending = nil
        if quoted {
            if c == "\"" {
                if let n = it.next() {
                    if n == "\"" { cell.append("\"") } else { quoted = false; pending = n }
                } else { quoted = false }
            } else { cell.append(c) }
        } else if c == "\"" { quoted = true } else if c == "," { row.append(cell); cell = "" } else if c == "\n" {
            row.append(cell); rows.append(row); row = []; cell = ""
        } else { cell.append(c) }
    }
    if !cell.isEmpty || !row.isEmpty { row.append(cell); rows.append(row) }
    return rows
}
