import CPhone
import KithInterchange
import Testing

/// cphone_normalize reads North American numbers in their common shapes without libphonenumber's
/// Parse (its ICU regular expressions were most of an import's conversion time): every result
/// must be libphonenumber's. Compared over a large generated set (the fast shapes, their near
/// misses and other numbers) and every phone of the fixtures, in several regions.
@Suite("Phone fast path")
struct PhoneFastPathTests {
    typealias Normalize = (UnsafePointer<CChar>?, UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int,
                           UnsafeMutablePointer<CChar>?, Int, UnsafeMutablePointer<CChar>?, Int) -> Int32

    static func result(_ f: Normalize, _ input: String, _ region: String) -> String {
        var e164 = [CChar](repeating: 0, count: 40), ext = [CChar](repeating: 0, count: 48), national = [CChar](repeating: 0, count: 40)
        let status = f(input, region, &e164, e164.count, &ext, ext.count, &national, national.count)
        func text(_ b: [CChar]) -> String { String(decoding: b.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        return status == CPHONE_POSSIBLE ? "\(text(e164)) ext=\(text(ext)) nsn=\(text(national))" : "status \(status)"
    }

    static func expectSame(_ input: String, _ region: String) {
        let fast = result(cphone_normalize, input, region)
        let reference = result(cphone_normalize_libphonenumber, input, region)
        #expect(fast == reference, "'\(input)' in '\(region)'")
    }

    static let regions = ["US", "CA", "GB", "", "PR", "MX", "IT"]

    @Test func generatedNumbersGiveLibphonenumbersResult() {
        var state: UInt64 = 1_015
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(state >> 33) % n
        }
        let separators = [" ", "(", ")", "-", ".", ""]
        let strays = ["/", "x", "#", "ext. 12", "\t", "+", "A", "*", ",", ";ext=4", "~", "0", "1", "  "]
        var fastShaped = 0
        for _ in 0..<60_000 {
            // Ten digits (the first one 0–9), a leading 1 or +1 sometimes, a digit more or less
            // sometimes, separators between any digits, and now and then a stray character.
            var digits = (0..<10).map { i in i == 0 && next(5) > 0 ? 2 + next(8) : next(10) }
            switch next(12) {
            case 0: digits.removeLast()
            case 1: digits.append(next(10))
            default: break
            }
            var s = ""
            switch next(4) {
            case 0: s = "+1"
            case 1: s = "+" + separators[next(separators.count)] + "1"
            case 2: s = next(3) == 0 ? "1" : ""
            default: s = ""
            }
            for (i, d) in digits.enumerated() {
                if i > 0, next(3) == 0 { s += separators[next(separators.count)] }
                s += String(d)
            }
            if next(10) == 0 {
                let stray = strays[next(strays.count)]
                let at = next(s.count + 1)
                s.insert(contentsOf: stray, at: s.index(s.startIndex, offsetBy: at))
            }
            if Self.isFastShaped(s) { fastShaped += 1 }
            Self.expectSame(s, Self.regions[next(Self.regions.count)])
        }
        // The set exercised the fast path, not only the fallback.
        #expect(fastShaped > 20_000)
    }

    @Test func fixturePhonesGiveLibphonenumbersResult() throws {
        var phones: [String] = ["+1 415 555 0132", "(415) 555-0132", "415.555.0132", "4155550132", "+14155550132", "+1 (415) 555-0132",
                                "(0)415 555 0132", "115 555 0132", "011 44 20 7946 0018", "+44 20 7946 0018", "(415) 555-0132 x12"]
        for name in ["actionnetwork-people.csv", "android-2.1.vcf", "apple-icloud-3.0.vcf", "contacts.jcard.json", "google-contacts.csv",
                     "mobilize-attendees.csv", "ngpvan-export.csv", "outlook-windows-1252.vcf", "outlook.csv", "rfc6350-4.0.vcf"] {
            let batch = try Fixture.batch(name)
            phones += batch.contacts.flatMap { $0.phones.map(\.value) }
        }
        #expect(phones.count > 30)
        for p in phones {
            for r in Self.regions { Self.expectSame(p, r) }
        }
    }

    /// Digits and ` ( ) - .` only, a `+` first or none (the shapes the fast path considers).
    static func isFastShaped(_ s: String) -> Bool {
        let body = s.hasPrefix("+") ? s.dropFirst() : s[...]
        let digits = body.filter(\.isNumber)
        return body.allSatisfy { $0.isNumber || " ()-.".contains($0) } && (s.hasPrefix("+") ? digits.count == 11 && digits.first == "1" : digits.count == 10)
    }
}
