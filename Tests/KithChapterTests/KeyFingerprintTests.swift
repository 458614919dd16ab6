import KithChapter
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
    /// neighbouring different characters.
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
            if i < 14, chars[i] != chars[i + 1] {
                var swapped = chars
                swapped.swapAt(i, i + 1)
                #expect(!KeyFingerprint.isValid(String(swapped)) || swapped == chars)
            }
        }
    }
}
