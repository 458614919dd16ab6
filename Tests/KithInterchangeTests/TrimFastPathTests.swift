@testable import KithInterchange
import Testing

/// `VCard.trimmed`'s ASCII fast path gives what trimming by Character gives, over generated
/// values mixing ASCII and Unicode whitespace, combining marks and controls.
@Suite("vCard value trimming")
struct TrimFastPathTests {
    @Test func theFastPathAgreesWithTheCharacterPath() {
        func reference(_ s: String) -> String {
            String(s.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
        }
        let pieces = ["a", "Z", "9", ";", "\\", " ", "\t", "\n", "\r\n", "\u{0B}", "\u{1C}", "\u{7F}", "\u{85}", "\u{A0}", "\u{2028}", "é", "\u{301}", "\u{600}", "Ω"]
        var gen = GeneratedText(state: 15)
        for _ in 0..<30_000 {
            let s = gen.text(pieces, maxPieces: 8)
            #expect(VCard.trimmed(s) == reference(s), "\(Array(s.unicodeScalars))")
        }
    }
}
