/// How authors normalize set keys before writing them (data-model.md §Normalization). The CRDT
/// itself compares keys byte for byte; normalizing at input makes "0612…" and "+33 6 12…" one.
public enum Normalization {
    /// E.164 (`+` and digits) where the number allows it, else the digits alone.
    ///
    /// - `+…` and `00…` are international already.
    /// - With `defaultCallingCode` (e.g. "1", "44", "33"): a national number with a leading trunk
    ///   `0` drops it and gets the code; for "1" (NANP), ten digits get `+1`, and eleven digits
    ///   starting with 1 get `+`.
    /// Returns nil when the input has no digits.
    public static func phone(_ raw: String, defaultCallingCode: String? = nil) -> String? {
        let trimmed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        let digits = String(trimmed.unicodeScalars.filter { ("0"..."9").contains($0) }.map(Character.init))
        guard !digits.isEmpty else { return nil }
        if trimmed.hasPrefix("+") { return "+" + digits }
        if digits.hasPrefix("00"), digits.count > 4 { return "+" + digits.dropFirst(2) }
        guard let cc = defaultCallingCode, !cc.isEmpty else { return digits }
        if cc == "1" {
            if digits.count == 10 { return "+1" + digits }
            if digits.count == 11, digits.hasPrefix("1") { return "+" + digits }
            return digits
        }
        if digits.hasPrefix("0"), digits.count > 5 { return "+" + cc + digits.dropFirst() }
        return digits
    }

    /// Trimmed and lowercased (the whole address: providers that distinguish case in the local
    /// part are vanishingly rare). Nil unless it has exactly one `@` with text on both sides.
    public static func email(_ raw: String) -> String? {
        let s = raw.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
              !s.contains(where: { $0.isWhitespace })
        else { return nil }
        return s
    }

    /// Trimmed; inner runs of whitespace collapsed to one space. Case is kept.
    public static func tag(_ raw: String) -> String? {
        let words = raw.split(whereSeparator: { $0.isWhitespace })
        guard !words.isEmpty else { return nil }
        return words.joined(separator: " ")
    }
}

extension String {
    func trimmingCharacters(in set: CharacterSetLite) -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace || f.isNewline { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace || l.isNewline { s = s.dropLast() }
        return String(s)
    }
}

/// Foundation-free stand-in: the CRDT module does not import Foundation.
enum CharacterSetLite { case whitespacesAndNewlines }
