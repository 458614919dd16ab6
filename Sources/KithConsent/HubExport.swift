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
