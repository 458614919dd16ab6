@testable import KithCRDT
import Testing

/// The ASCII fast paths of email normalization and trimming give exactly what the Character
/// paths give (the paths before them, kept here as the reference), over a large generated set
/// of strings mixing ASCII and Unicode whitespace, newlines, combining marks and controls.
@Suite("Normalization fast paths")
struct NormalizationFastPathTests {
    static func referenceTrim(_ s: String) -> String {
        var t = Substring(s)
        while let f = t.first, f.isWhitespace || f.isNewline { t = t.dropFirst() }
        while let l = t.last, l.isWhitespace || l.isNewline { t = t.dropLast() }
        return String(t)
    }

    static func referenceEmail(_ raw: String) -> String? {
        let s = referenceTrim(raw).lowercased()
        let parts = s.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, parts[1].contains("."), !parts[1].hasPrefix("."), !parts[1].hasSuffix("."),
              !s.contains(where: { $0.isWhitespace })
        else { return nil }
        return s
    }

    @Test func fastPathsAgreeWithTheCharacterPaths() {
        let pieces = ["a", "Z", "0", "@", ".", "-", "_", " ", "\t", "\n", "\r", "\r\n", "\u{0B}", "\u{0C}", "\u{1C}", "\u{1F}", "\u{7F}", "\u{0}",
                      "\u{85}", "\u{A0}", "\u{2028}", "\u{3000}", "é", "\u{301}", "ß", "İ", "Ω", "x", "example", "org"]
        var rng = SplitMix(seed: 15)
        var checked = 0
        for _ in 0..<40_000 {
            var s = ""
            for _ in 0..<Int(rng.next() % 12) { s += pieces[Int(rng.next() % UInt64(pieces.count))] }
            if rng.next() % 3 == 0 { s = "u\(rng.next() % 100)@ex.org" + s } // many well-formed ones
            #expect(s.trimmingCharacters(in: .whitespacesAndNewlines) == Self.referenceTrim(s), "\(Array(s.unicodeScalars))")
            #expect(Normalization.email(s) == Self.referenceEmail(s), "\(Array(s.unicodeScalars))")
            checked += 1
        }
        #expect(checked == 40_000)
    }
}

/// A small seeded generator (SplitMix64): the same strings on every run.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
