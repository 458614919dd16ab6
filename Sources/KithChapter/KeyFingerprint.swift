import KithCRDT
import KithCrypto

/// The short form of a public key that people compare ("is this your phone?"), like a Syncthing
/// device id: 15 base32 characters of a hash of the key and a Luhn mod 32 check character, in
/// groups of four, e.g. `k7qd-2mxa-pl5n-3eb7` (Protocol/identity.md, "Fingerprints"). Pure.
public enum KeyFingerprint {
    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")

    /// `BLAKE2b-256("kith/fingerprint" ‖ key)`, its first 75 bits in base32, a check character, grouped.
    public static func of(_ key: some Collection<UInt8>) -> String {
        let digest = BLAKE2b.hash(Array("kith/fingerprint".utf8) + Array(key))
        let data = Array(ContactIDText.base32(digest.prefix(10)).prefix(15))
        let all = data + [check(data)!]
        return stride(from: 0, to: 16, by: 4).map { String(all[$0..<($0 + 4)]) }.joined(separator: "-")
    }

    public static func of(_ key: Ed25519.PublicKey) -> String { of(key.bytes) }

    /// Whether `text` (dashes and case ignored) is a well-formed fingerprint: a mistyped
    /// character fails the check, and so does a swap of two neighbours unless they are `a` and
    /// `7` (Luhn mod 32's one blind spot: values 0 and 31).
    public static func isValid(_ text: String) -> Bool {
        let chars = Array(text.lowercased().filter { $0 != "-" })
        guard chars.count == 16, let c = check(Array(chars.prefix(15))) else { return false }
        return c == chars[15]
    }

    /// Whether `reference`, as a person types it, names `key`: the whole key, a prefix of 4 or
    /// more of its characters, or its fingerprint (dashes and case ignored, check character verified).
    public static func names(_ key: Ed25519.PublicKey, _ reference: String) -> Bool {
        let text = key.description
        if text == reference || (reference.count >= 4 && text.hasPrefix(reference)) { return true }
        guard isValid(reference) else { return false }
        return of(key).filter { $0 != "-" } == reference.lowercased().filter { $0 != "-" }
    }

    /// Luhn mod 32 over the characters' values (Syncthing's `luhn32`); nil for a character outside the alphabet.
    static func check(_ chars: [Character]) -> Character? {
        var factor = 1, sum = 0
        for ch in chars {
            guard let code = alphabet.firstIndex(of: ch) else { return nil }
            var addend = factor * code
            factor = factor == 2 ? 1 : 2
            addend = addend / 32 + addend % 32
            sum += addend
        }
        return alphabet[(32 - sum % 32) % 32]
    }
}
