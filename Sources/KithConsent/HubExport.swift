import KithChapter
import KithCRDT
import KithCrypto

/// The hub's CSV export (`kithd hub export --format csv`), safe to open in a spreadsheet.
public enum HubExport {
    /// One CSV cell (RFC 4180 quoting), neutralised against formula injection as OWASP
    /// recommends: a value starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
    /// leading `'`, so a spreadsheet shows it as text instead of evaluating it. Member-supplied
    /// values (names, notes, …) reach the organization's staff through this file.
    public static func csvCell(_ value: String) -> String {
        var s = value
        if let first = s.unicodeScalars.first, "=+-@\t\r".unicodeScalars.contains(first) { s = "'" + s }
        let needsQuotes = s.unicodeScalars.contains { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }
        guard needsQuotes else { return s }
        var quoted = "\""
        for c in s { quoted += c == "\"" ? "\"\"" : String(c) }
        return quoted + "\""
    }

    /// The rows as CSV: a header of every column (sorted), then one line per row.
    public static func csv(_ rows: [[String: String]]) -> String {
        let columns = Array(Set(rows.flatMap(\.keys))).sorted()
        var out = columns.map(csvCell).joined(separator: ",") + "\n"
        for r in rows { out += columns.map { csvCell(r[$0] ?? "") }.joined(separator: ",") + "\n" }
        return out
    }
}

extension HubExport {
    /// One held record as the export shows it, read from a stored row (`HubStoreSchema`).
    public struct Row: Sendable {
        public let grantID: [UInt8]
        public let member: Ed25519.PublicKey
        public let chapterName: String
        public let chapter: ChapterID
        public let contact: ContactID
        public let purpose: String
        public let expiresAt: UInt64?
        public let rule: HubAnswer.Rule
        public let version: UInt64
        public let values: [(String, String)]

        /// The row's cells by column name: the grant's metadata, then each field the member sent
        /// (a field never overrides a metadata column).
        public var cells: [String: String] {
            var row: [String: String] = [
                "grant": Base64URL.encode(grantID), "chapter": chapterName, "chapter_id": chapter.description,
                "contact": contact.description, "purpose": purpose, "granted_by": member.description,
                "expires": expiresAt.map { String($0 / 1000) } ?? "", "rule": "\(rule)", "version": String(version),
            ]
            for (k, v) in values where row[k] == nil { row[k] = v }
            return row
        }
    }

    /// The metadata columns every row has, in the order a CSV export writes them.
    public static let metadataColumns = ["grant", "granted_by", "chapter", "chapter_id", "contact", "purpose", "expires", "rule", "version"]

    /// Reads a stored held-record row (id `member ‖ grant id`, bytes `HubStoreSchema.encodeHeld`)
    /// and its fields: the row's own (schema 4), else its sealed fields opened with the organization's key.
    ///
    /// Signatures are not checked again: the hub verified the record and signed its answer
    /// before storing them, and the row is authenticated at rest (the storage key's AEAD, bound
    /// to kind and id), so only the hub wrote it. Checking three Ed25519 signatures per row
    /// would make a full export five times slower for no gain. The structure is still checked,
    /// and the row's id must name the grant and member inside the record.
    public static func row(id: [UInt8], held: [UInt8], organization: X25519.PrivateKey) throws(ConsentError) -> Row {
        guard id.count == 48, let parts = HubStoreSchema.decodeHeldRow(held) else { throw ConsentError(.malformed, "a held-record row does not parse") }
        let tail = DeviceCertificate.encodedLength + 64
        do {
            // The record: body ‖ certificate ‖ signature (`DeviceSigned`).
            guard parts.record.count > tail else { throw DecodeError("the record is too short") }
            var r = ByteReader(parts.record, to: parts.record.count - tail)
            guard try r.u8() == 1 else { throw DecodeError("unsupported record version") }
            let grant = Array(try r.lengthPrefixed(max: 1 << 16))
            let version = try r.uvarint()
            let sealed = try r.lengthPrefixed(max: 1 << 20)
            guard r.isAtEnd, grant.count > tail else { throw DecodeError("the record's grant does not parse") }
            // The grant: body ‖ certificate ‖ signature; the certificate's member key is bytes 1..<33.
            let certificateStart = grant.count - tail
            guard Array(grant[(certificateStart + 1)..<(certificateStart + 33)]) == Array(id[0..<32]) else {
                throw DecodeError("the row's id names another member than its grant")
            }
            var g = ByteReader(grant, to: certificateStart)
            guard try g.u8() == 1 else { throw DecodeError("unsupported grant version") }
            let grantID = Array(try g.raw(16))
            guard grantID == Array(id[32...]) else { throw DecodeError("the row's id names another grant than its record") }
            let chapter = try ChapterID(bytes: try g.raw(16))
            try g.skip(32) // the organization's key
            let contact = try ContactID(bytes: try g.raw(16))
            _ = try g.text(max: 1_000) // the field names (the values name themselves)
            let purpose = try g.text(max: 2_000)
            _ = try g.u64() // created
            let expires = try g.u64()
            // The answer: format ‖ kind ‖ request hash ‖ member ‖ grant id ‖ version ‖ rule …
            guard parts.answer.count > 64 else { throw DecodeError("the stored answer is too short") }
            var a = ByteReader(parts.answer, to: parts.answer.count - 64)
            _ = try a.u8()
            _ = try a.u8()
            try a.skip(32 + 32 + 16)
            _ = try a.uvarint()
            guard let rule = HubAnswer.Rule(rawValue: try a.u8()) else { throw DecodeError("unknown rule in the stored answer") }
            // Schema 4 rows carry the fields as opened at ingest (one symmetric open per row, done
            // by the store); older rows are opened here with the organization's key.
            let values = try parts.fields ?? openFields(sealed, organization: organization)
            return Row(grantID: grantID, member: try Ed25519.PublicKey(bytes: id[0..<32]), chapterName: parts.chapterName, chapter: chapter,
                       contact: contact, purpose: purpose, expiresAt: expires == 0 ? nil : expires, rule: rule, version: version, values: values)
        } catch let e as DecodeError {
            throw ConsentError(.malformed, "a held record in the hub's store does not parse: \(e.reason)")
        } catch {
            throw ConsentError(.malformed, "a held record in the hub's store does not parse: \(error)")
        }
    }

    private static func openFields(_ sealed: ArraySlice<UInt8>, organization: X25519.PrivateKey) throws -> [(String, String)] {
        let opened: [UInt8]
        do { opened = try SealedBox.open(sealed, with: organization) } catch {
            throw DecodeError("the sealed fields do not open with this organization's key")
        }
        var v = ByteReader(opened)
        let n = try v.count(max: 100, "field count")
        var values: [(String, String)] = []
        values.reserveCapacity(n)
        for _ in 0..<n { values.append((try v.text(max: 200), try v.text(max: 1 << 16))) }
        guard v.isAtEnd else { throw DecodeError("trailing bytes after the sealed fields") }
        return values
    }

    /// What `kithd hub export` writes: `json` (an array, one object per line), `jsonl` (one
    /// object per line) or `csv` (a header of `columns`, then one line per row).
    public enum Format: String, Sendable, CaseIterable {
        case json, jsonl, csv
    }

    /// Turns rows into the bytes of an export, one row at a time, so an export of any size is
    /// written as it is read. JSON objects list their keys sorted; a CSV has fixed `columns`,
    /// and a field outside them goes into the last column, `other`, as `name: value` lines.
    ///
    /// In a JSON array every row is written as `,\n{…}`; the export's first row drops its
    /// comma (`firstRow`), so rows can be encoded apart (in parallel) and joined.
    public struct Writer: Sendable {
        public let format: Format
        public let columns: [String]
        private let known: Set<String>

        public init(format: Format, fieldColumns: [String]) {
            self.format = format
            var seen = Set(HubExport.metadataColumns)
            columns = HubExport.metadataColumns + fieldColumns.filter { seen.insert($0).inserted } + ["other"]
            known = Set(columns)
        }

        /// What comes before the first row.
        public func header() -> [UInt8] {
            switch format {
            case .json: Array("[".utf8)
            case .jsonl: []
            case .csv: Array((columns.map(HubExport.csvCell).joined(separator: ",") + "\n").utf8)
            }
        }

        /// Bytes the export's first row drops from what `append` wrote for it (a JSON array's comma).
        public var firstRowDrops: Int { format == .json ? 1 : 0 }

        /// One row's bytes, appended to `out`.
        public func append(_ row: Row, to out: inout [UInt8]) {
            let cells = row.cells
            switch format {
            case .json, .jsonl:
                if format == .json { out += [UInt8(ascii: ","), 0x0A] }
                out.append(UInt8(ascii: "{"))
                for (i, k) in cells.keys.sorted().enumerated() {
                    if i > 0 { out.append(UInt8(ascii: ",")) }
                    HubExport.jsonString(k, to: &out)
                    out.append(UInt8(ascii: ":"))
                    HubExport.jsonString(cells[k] ?? "", to: &out)
                }
                out.append(UInt8(ascii: "}"))
                if format == .jsonl { out.append(0x0A) }
            case .csv:
                let other = row.values.filter { !known.contains($0.0) }.map { "\($0.0): \($0.1)" }.joined(separator: "\n")
                var line = ""
                for (i, c) in columns.enumerated() {
                    if i > 0 { line += "," }
                    line += HubExport.csvCell(c == "other" ? other : cells[c] ?? "")
                }
                line += "\n"
                out += Array(line.utf8)
            }
        }

        /// What comes after the last row.
        public func footer(empty: Bool) -> [UInt8] {
            format == .json ? Array((empty ? "]\n" : "\n]\n").utf8) : []
        }

        /// Rows as one export (header, rows, footer): for small exports and tests.
        public func export(_ rows: [Row]) -> [UInt8] {
            var out = header()
            for (i, r) in rows.enumerated() {
                var b: [UInt8] = []
                append(r, to: &b)
                out += i == 0 ? b.dropFirst(firstRowDrops) : b[...]
            }
            return out + footer(empty: rows.isEmpty)
        }
    }

    /// `s` as a JSON string (RFC 8259: quote, backslash and control characters escaped).
    static func jsonString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0A: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 0xF)]]
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
