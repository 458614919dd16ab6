import KithCRDT
import KithInterchange
@testable import KithQuery
import Testing

/// The flat matcher (sorted arrays of hashes and slots) answers exactly as the matcher of a hash
/// set per contact did: same decisions (id, external id → email → phone, conflicts), same ops
/// written, same suggestions, and the same state, also after a round trip through its bytes.
@Suite("Import matching: flat layout")
struct ImportMatcherFlatTests {
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Records drawn from small pools, so that rows share emails, phones, external ids, UIDs and
    /// name + postal code with earlier rows (matches, updates, conflicts and suggestions).
    static func record(_ n: Int, _ rng: inout SplitMix, pool: Int) throws -> ConvertedContact {
        var c = ImportedContact(origin: "row \(n)")
        func pick(_ k: Int) -> Int { Int.random(in: 0..<k, using: &rng) }
        if pick(8) == 0 { c.uid = "uid-\(pick(pool))" }
        if pick(2) == 0 { c.fields[.givenName] = ["Ada", "Grace", "Rosa", "Ida"][pick(4)] }
        if pick(3) == 0 { c.fields[.familyName] = ["Lovelace", "Hopper", "Parks"][pick(3)] }
        if pick(3) == 0 { c.fields[.postalCode] = ["SW1Y 4LB", "sw1y4lb", "36104", "10001"][pick(4)] }
        if pick(4) == 0 { c.fields[.title] = "T\(pick(5))" }
        for _ in 0..<pick(3) { c.emails.append(ImportedValue("p\(pick(pool))@example.org", label: pick(2) == 0 ? "work" : nil)) }
        for _ in 0..<pick(3) { c.phones.append(ImportedValue("+44 20 7946 \(1000 + pick(pool))")) }
        for _ in 0..<pick(2) { c.externalIDs.append("van:\(pick(pool))") }
        for _ in 0..<pick(3) { c.tags.append("tag\(pick(6))") }
        if pick(4) == 0 { c.events.append(ImportedValue("mobilize:\(pick(9))@2026-10-0\(1 + pick(9))", label: "Canvass")) }
        if !c.isIdentifiable { c.fields[.displayName] = "Person \(pick(pool))" }
        return try c.convert(region: PhoneRegion(code: "GB"))
    }

    static func expectSameState(_ flat: ImportMatcher, _ ref: ReferenceImportMatcher) {
        let c = flat.canonical
        #expect(c.contacts.count == ref.known.count)
        for (id, k) in ref.known {
            #expect(c.contacts[id] == .init(name: k.name, postalCode: k.postalCode, values: k.values), "\(id)")
        }
        #expect(c.index == ref.index)
        #expect(c.shared == ref.shared)
        #expect(c.byNamePostal == ref.byNamePostal)
    }

    /// Thousands of rows over a pool small enough for repeats and large enough that the sorted
    /// maps merge what was added several times; halfway, the matcher goes through its bytes.
    @Test(arguments: [(1, 300), (2, 5_000), (3, 20_000)])
    func answersAsTheSetPerContactMatcher(seed: UInt64, pool: Int) throws {
        var rng = SplitMix(state: seed)
        var flat = ImportMatcher(), ref = ReferenceImportMatcher()
        var conflicts = 0, updates = 0, unchanged = 0, suggestions = 0
        for n in 0..<12_000 {
            if n == 6_000 {
                flat = try #require(ImportMatcher(encoded: flat.encoded))
                Self.expectSameState(flat, ref)
            }
            let c = try Self.record(n, &rng, pool: pool)
            let (a, sa) = flat.plan(c), (b, sb) = ref.plan(c)
            #expect(String(describing: a) == String(describing: b) && sa == sb, "\(c.origin)")
            switch a {
            case .conflict: conflicts += 1
            case .update: updates += 1
            case .unchanged: unchanged += 1
            case .create: break
            }
            if sa != nil { suggestions += 1 }
        }
        Self.expectSameState(flat, ref)
        // The generator produced every kind of answer (a test that cannot fail is none).
        #expect(conflicts > 0 && updates > 0 && unchanged > 0 && suggestions > 0)
        // Past 4,096 added entries a map merges them into its sorted array: both paths were taken.
        if pool >= 5_000 { #expect(!flat.index.sorted.isEmpty && flat.index.count > flat.index.sorted.count) }
        if pool >= 20_000 { #expect(flat.contactCount > 4_096 && !flat.slots.sorted.isEmpty) }
    }
}
