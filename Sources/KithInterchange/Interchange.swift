import KithCRDT

/// The file formats Kith reads and writes, recognised by content: one entry point for the CLI,
/// the HTTP API and the web page's import screen.
public enum Interchange {
    /// A format `kith import --format` accepts.
    public struct Format: Sendable, Equatable {
        public let name: String
        public let summary: String
        /// True when `kith export --format` writes it too.
        public let exports: Bool
    }

    public static let formats: [Format] = [
        Format(name: "vcard", summary: "vCard 2.1, 3.0 and 4.0 (Apple/iCloud, Android, Google, Outlook .vcf)", exports: true),
        Format(name: "jcard", summary: "jCard, vCard as JSON (RFC 7095)", exports: false),
    ] + CSVPreset.all.map {
        Format(name: $0.name, summary: $0.summary, exports: [CSVPreset.generic, .google, .actionNetwork].contains($0))
    }

    /// Why a file cannot be read at all.
    public struct Unreadable: Error, CustomStringConvertible {
        public let description: String
    }

    /// The format of `data`: vCard when it has `BEGIN:VCARD`, jCard when it is JSON starting
    /// with "vcard", else CSV (whose preset the header decides). Refuses binary files.
    public static func detect(_ data: [UInt8]) throws(Unreadable) -> String {
        let head = data.prefix(8_192)
        if head.starts(with: [0xFF, 0xFE]) || head.starts(with: [0xFE, 0xFF]) {
            throw Unreadable(description: "is UTF-16 text; save it as UTF-8")
        }
        if let kind = binaryKind(head) { throw Unreadable(description: "is a binary file (\(kind)), not vCard, jCard or CSV") }
        if JCard.looksLike(Array(head)) { return "jcard" }
        let upper = String(decoding: head.prefix(4_096).map { (97...122).contains($0) ? $0 - 32 : $0 }, as: UTF8.self)
        if upper.contains("BEGIN:VCARD") { return "vcard" }
        return "csv"
    }

    /// A name for a binary file's kind (by magic bytes), or nil for text.
    public static func binaryKind(_ head: ArraySlice<UInt8>) -> String? {
        let magic: [([UInt8], String)] = [([0x50, 0x4B, 0x03, 0x04], "a ZIP archive, e.g. .xlsx: save it as CSV"),
                                          ([0x25, 0x50, 0x44, 0x46], "a PDF"), ([0xD0, 0xCF, 0x11, 0xE0], "an old Office file, e.g. .xls: save it as CSV"),
                                          ([0x1F, 0x8B], "gzip-compressed"), ([0x89, 0x50, 0x4E, 0x47], "a PNG image"), ([0xFF, 0xD8, 0xFF], "a JPEG image"),
                                          ([0x53, 0x51, 0x4C, 0x69, 0x74, 0x65], "an SQLite database")]
        for (m, name) in magic where head.starts(with: m) { return name }
        return head.contains(0) ? "it contains NUL bytes" : nil
    }

    /// Parses `data` in `format` (a name of `formats`; nil to detect, a CSV's preset then from
    /// its header; "csv" forces the generic CSV reading). `mapping` applies to CSV.
    public static func parse(_ data: [UInt8], format: String?, mapping: [String: CSVInterchange.Target] = [:]) throws(Unreadable) -> ImportBatch {
        let name: String
        if let format { name = format.lowercased() } else { name = try detect(data) }
        if format != nil, let kind = binaryKind(data.prefix(8_192)) {
            throw Unreadable(description: "is a binary file (\(kind)), not \(name)")
        }
        switch name {
        case "vcard", "vcf":
            var b = VCard.parse(data)
            b.format = "vcard"
            if b.contacts.isEmpty, b.skipped.isEmpty, !String(decoding: data.prefix(4_096), as: UTF8.self).uppercased().contains("BEGIN:VCARD") {
                throw Unreadable(description: "has no BEGIN:VCARD: not a vCard file")
            }
            return b
        case "jcard", "json": return JCard.parse(data)
        case "csv" where format == nil: return CSVInterchange.parse(data, mapping: mapping)
        default:
            guard let preset = CSVPreset.named(name) else {
                throw Unreadable(description: "unknown format '\(name)' (formats: \(formats.map(\.name).joined(separator: ", ")))")
            }
            return CSVInterchange.parse(data, preset: preset, mapping: mapping)
        }
    }

    /// The export of `contacts` in `format` (vcard, csv, google-csv, actionnetwork-csv) and its
    /// media type; nil for a format Kith does not write.
    public static func export(_ contacts: [ContactView], format: String) -> (text: String, mediaType: String)? {
        switch format.lowercased() {
        case "vcard", "vcf": (VCard.write(contacts), "text/vcard; charset=utf-8")
        case "csv": (CSVInterchange.write(contacts), "text/csv; charset=utf-8")
        case "google-csv", "google": (CSVInterchange.writeGoogle(contacts), "text/csv; charset=utf-8")
        case "actionnetwork-csv", "actionnetwork": (CSVInterchange.writeActionNetwork(contacts), "text/csv; charset=utf-8")
        default: nil
        }
    }

    /// The formats `export` writes, for error messages.
    public static var exportFormats: [String] { formats.filter(\.exports).map(\.name) }
}
