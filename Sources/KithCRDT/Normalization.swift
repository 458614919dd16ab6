/// How authors normalize set keys before writing them (data-model.md §Normalization). The CRDT
/// itself compares keys byte for byte; normalizing at input makes "0612…" and "+33 6 12…" one.
public enum Normalization {
    /// A phone number's set key (data-model.md §9), parsed by libphonenumber: E.164 (`+` and
    /// digits) with the extension kept apart as `;ext=<digits>` (RFC 3966), national numbers read
    /// in `region`. Numbers libphonenumber cannot place (no region for a national number, too
    /// short…) fall back to their digits (`+` kept when typed). Nil when the input has no digits.
    public static func phone(_ raw: String, region: PhoneRegion? = nil) -> String? {
        parsePhone(raw, region: region)?.key
    }

    /// `phone(_:region:)` with the parts: what search and display need too.
    public static func parsePhone(_ raw: String, region: PhoneRegion? = nil) -> ParsedPhone? {
        let trimmed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.unicodeScalars.contains(where: { ("0"..."9").contains($0) }) else { return nil }
        if let p = PhoneRegion.libphonenumber(trimmed, region: region) { return p }
        // Without a region, libphonenumber does not know which international prefix applies;
        // `00` is the ITU's recommended one (and what the previous normalizer accepted).
        if region == nil, trimmed.hasPrefix("00"), let p = PhoneRegion.libphonenumber("+" + trimmed.dropFirst(2), region: nil) { return p }
        let digits = String(trimmed.unicodeScalars.filter { ("0"..."9").contains($0) }.map(Character.init))
        let key = trimmed.hasPrefix("+") ? "+" + digits : digits
        return ParsedPhone(key: key, e164: nil, extension: "", nationalNumber: digits)
    }

    /// Trimmed and lowercased (the whole address: providers that distinguish case in the local
    /// part are vanishingly rare). Nil unless it has exactly one `@` with text on both sides.
    public static func email(_ raw: String) -> String? {
        let s = raw.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix(".") else { return nil }
        // ASCII (almost every address): whitespace is a byte test, no Character to build.
        if s.utf8.allSatisfy({ $0 < 0x80 }) {
            return s.utf8.contains(where: { $0 == 0x20 || (0x09...0x0D).contains($0) }) ? nil : s
        }
        guard !s.contains(where: { $0.isWhitespace }) else { return nil }
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
        // Starts and ends with a printable ASCII byte: nothing to trim, no Character to build.
        if let f = utf8.first, let l = utf8.last, (0x21...0x7E).contains(f), (0x21...0x7E).contains(l) { return self }
        var s = Substring(self)
        while let f = s.first, f.isWhitespace || f.isNewline { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace || l.isNewline { s = s.dropLast() }
        return String(s)
    }
}

/// Foundation-free stand-in: the CRDT module does not import Foundation.
enum CharacterSetLite { case whitespacesAndNewlines }

/// A phone number as libphonenumber read it.
public struct ParsedPhone: Hashable, Sendable {
    /// The set key: E.164, `;ext=` and the extension's digits when there is one; the digits
    /// alone when libphonenumber could not place the number.
    public var key: String
    /// "+442079460018", or nil when the number could not be placed.
    public var e164: String?
    /// The extension's digits ("" when none).
    public var `extension`: String
    /// The national significant number's digits ("2079460018"): what a search in any format
    /// of the same number ends with.
    public var nationalNumber: String
}
