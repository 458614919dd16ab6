import KithCRDT
@testable import KithQuery
import Testing

/// The matcher hashes members without building their text; the hashes must stay those of the
/// text (`p|key`, `l|key|payload`, `f<n>|value`…): indexes sealed in stores by earlier imports
/// hold them (Protocol/store.md §Import index).
@Suite("Import matcher hashes")
struct ImportMatcherHashTests {
    @Test func memberHashesAreThoseOfTheirText() {
        let keys = ["+14155550132", "ada@example.org", "van:123456", "tel:+14155550132", "door-knock", "Zoë", "", "https://x.example/é"]
        for kind in SetKind.allCases {
            for key in keys {
                for payload in ["", "work", "Müller"] {
                    let text: String = switch kind {
                    case .phones: "p|" + key
                    case .emails: "e|" + key
                    case .externalIDs: "x|" + key
                    case .labels: "l|" + key + "|" + payload
                    default: "\(kind.rawValue)|" + key
                    }
                    let m = ImportMatcher.member(kind, Array(key.utf8)[...], Array(payload.utf8)[...])
                    #expect(m.hash == ImportMatcher.hash(text), "\(kind) \(key) \(payload)")
                    #expect(m.isMatchKey == (kind == .phones || kind == .emails || kind == .externalIDs))
                }
            }
        }
        for f in Field.allCases {
            for v in keys { #expect(ImportMatcher.field(f, v).hash == ImportMatcher.hash("f\(f.rawValue)|" + v)) }
        }
        // FNV-1a 64 of "p|+1": pinned, so the text form itself cannot drift unnoticed.
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in "p|+1".utf8 {
            h ^= UInt64(b)
            h &*= 0x100_0000_01b3
        }
        #expect(ImportMatcher.member(.phones, Array("+1".utf8)[...], [UInt8]()[...]).hash == h)
    }
}
