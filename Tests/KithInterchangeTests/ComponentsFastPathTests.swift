import KithCRDT
@testable import KithInterchange
import Testing

/// `VCard.components`' byte path for ASCII values gives what the Character path gives, over
/// generated values mixing separators, escapes, CR LF, and non-ASCII text (which takes the
/// Character path).
@Suite("vCard value splitting")
struct ComponentsFastPathTests {
    @Test func theASCIIPathAgreesWithTheCharacterPath() {
        let pieces = ["a", "Z", "n", "N", "9", ";", ",", "\\", "\\", " ", "\t", "\r", "\n", "\r\n", "\u{0}", ":", "\"", "é", "\u{301}", "Ω"]
        let asciiPieces = Array(pieces.dropLast(3))
        var gen = GeneratedText(state: 7)
        var ascii = 0
        for _ in 0..<40_000 {
            let s = gen.text(gen.next() % 4 == 0 ? pieces : asciiPieces, maxPieces: 10)
            if s.utf8.allSatisfy({ $0 < 0x80 }) { ascii += 1 }
            for sep: Character in [";", ",", "\u{0}"] {
                #expect(VCard.components(s, sep) == VCard.characterComponents(s, sep), "\(Array(s.unicodeScalars)) split on \(sep.unicodeScalars.first!.value)")
            }
        }
        // Most values took the byte path, so the comparison tested it.
        #expect(ascii > 20_000)
        #expect(VCard.asciiComponents("a\\;b;c\\nd\\\\;", 0x3B) == ["a;b", "c\nd\\", ""])
        #expect(VCard.asciiComponents("Zoë;x", 0x3B) == nil)
    }
}

/// `ImportedContact.tag`'s ASCII path gives `Normalization.tag`'s result.
@Suite("Tag fast path")
struct TagFastPathTests {
    @Test func theASCIIPathAgreesWithNormalization() {
        let pieces = ["a", "Z", "-", "5", "_", " ", "\t", "\n", "\u{0B}", "\u{1C}", "\u{1F}", "\u{7F}", "\u{85}", "\u{A0}", "é", "\u{301}", "~", "!"]
        var gen = GeneratedText(state: 23)
        for _ in 0..<30_000 {
            let s = gen.text(pieces, maxPieces: 7)
            #expect(ImportedContact.tag(s) == Normalization.tag(s), "\(Array(s.unicodeScalars))")
        }
        #expect(ImportedContact.tag("door-knock") == "door-knock")
        #expect(ImportedContact.tag("  ward  5 ") == "ward 5")
    }
}
