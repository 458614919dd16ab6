import KithCRDT
@testable import KithQuery
import Testing

@Suite("Index sort order")
struct ByteOrderTests {
    /// The prefix sort gives exactly `sorted()`: byte strings with shared prefixes longer than 8,
    /// zero bytes, prefixes of each other, empty ones, and equal bytes with different ids.
    @Test func prefixSortEqualsSorted() {
        var rng = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = [0, 1, 0x61, 0x62, 0x7F, 0x80, 0xFF]
        for _ in 0..<20 {
            var terms: [ContactIndex.Term] = []
            var keys: [ContactIndex.OrderKey] = []
            for _ in 0..<2_000 {
                let shared = [UInt8](repeating: 0x61, count: Int.random(in: 0...12, using: &rng))
                let tail = (0..<Int.random(in: 0...4, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
                let id = ContactID(high: 0, low: UInt64.random(in: 0...3, using: &rng))
                terms.append(ContactIndex.Term(bytes: shared + tail, id: id))
                keys.append(ContactIndex.OrderKey(name: shared + tail, id: id))
            }
            #expect(ContactIndex.sortedTerms(terms) == terms.sorted())
            #expect(ContactIndex.sortedKeys(keys) == keys.sorted())
        }
    }

    @Test func compareBytesIsLexicographic() {
        let cases: [([UInt8], [UInt8])] = [([], []), ([], [0]), ([0], [0, 0]), ([1], [0, 9]), ([0x61, 0x62], [0x61, 0x62, 0]), ([0xFF], [0x7F, 0xFF])]
        for (a, b) in cases {
            #expect((compareBytes(a, b) < 0) == a.lexicographicallyPrecedes(b), "\(a) \(b)")
            #expect((compareBytes(b, a) < 0) == b.lexicographicallyPrecedes(a), "\(b) \(a)")
            #expect((compareBytes(a, b) == 0) == (a == b))
        }
    }
}
