@testable import KithChapter
import KithCrypto
import Testing

@Suite("Key fingerprints")
struct KeyFingerprintTests {
    /// Protocol/identity.md "Fingerprints" golden vectors.
    @Test func goldenVectors() {
        #expect(KeyFingerprint.of([UInt8](repeating: 0, count: 32)) == "lkm5-63uj-zcah-zn2h")
        #expect(KeyFingerprint.of(Base64URL.decode("rFUCLovcpUDj7HF5pD5t_Htg-Op7FTNyeFNKEU5TgnQ")!) == "76uf-z6jk-czun-32e4")
    }

    /// The check character catches every single mistyped character and every swap of two
    /// neighbouring different characters but one: like every Luhn mod N check, it cannot see
    /// the first and last characters of the alphabet (`a`, value 0, and `7`, value 31) swapped.
    @Test func checkCharacterCatchesTypos() {
        let fp = KeyFingerprint.of(Ed25519.PrivateKey().publicKey)
        #expect(KeyFingerprint.isValid(fp) && KeyFingerprint.isValid(String(fp.uppercased().filter { $0 != "-" })))
        let chars = Array(fp.filter { $0 != "-" })
        for i in 0..<15 {
            for c in "abcdefghijklmnopqrstuvwxyz234567" where c != chars[i] {
                var typo = chars
                typo[i] = c
                #expect(!KeyFingerprint.isValid(String(typo)), "\(String(typo))")
            }
            if i < 14, chars[i] != chars[i + 1], Set([chars[i], chars[i + 1]]) != ["a", "7"] {
                var swapped = chars
                swapped.swapAt(i, i + 1)
                #expect(!KeyFingerprint.isValid(String(swapped)), "\(String(swapped))")
            }
        }
    }

    /// Every neighbour swap of every pair of different characters, at every position, is caught,
    /// except `a` and `7` (values 0 and 31), which Luhn mod 32 cannot tell apart when swapped.
    @Test func everyNeighbourSwapButTheLuhnBlindSpotIsCaught() {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var missed: Set<String> = []
        for x in alphabet {
            for y in alphabet where x != y {
                for i in 0..<14 {
                    var data = Array(repeating: Character("b"), count: 15)
                    data[i] = x
                    data[i + 1] = y
                    let valid = String(data) + String(KeyFingerprint.check(data)!)
                    var swapped = Array(valid)
                    swapped.swapAt(i, i + 1)
                    if KeyFingerprint.isValid(String(swapped)) { missed.insert(String([x, y])) }
                }
            }
        }
        #expect(missed == ["a7", "7a"])
    }

    /// What a person may type to name a key in `chapter remove/approve`, `device revoke` and
    /// `name set --device`: the key, a prefix of 4+ characters, or the fingerprint as shown
    /// (any case, with or without dashes); a fingerprint with a typo names nothing.
    @Test func referencesThatNameAKey() {
        let key = Ed25519.PrivateKey().publicKey, other = Ed25519.PrivateKey().publicKey
        let fp = KeyFingerprint.of(key)
        for r in [key.description, String(key.description.prefix(4)), fp, fp.uppercased(), fp.filter { $0 != "-" }] {
            #expect(KeyFingerprint.names(key, r), "\(r)")
            #expect(!KeyFingerprint.names(other, r) || other.description.hasPrefix(r), "\(r)")
        }
        var typo = Array(fp)
        typo[0] = typo[0] == "a" ? "b" : "a"
        #expect(!KeyFingerprint.names(key, String(typo)))
        #expect(!KeyFingerprint.names(key, String(key.description.prefix(3))))
    }
}
