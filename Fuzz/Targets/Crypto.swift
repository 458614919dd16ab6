import KithCrypto

enum CryptoTargets {
    /// A key ring file (`<data-dir>/keys`). Never with a passphrase: a protected ring names its
    /// own Argon2id cost, and deriving the key is far too slow for fuzzing (the header checks
    /// before the derivation are still reached).
    static func keyring(_ data: [UInt8]) {
        _ = KeyRing.isProtected(data)
        guard let k = try? KeyRing(encoded: data, passphrase: nil) else { return }
        guard let again = try? KeyRing(encoded: try k.encoded(), passphrase: nil) else {
            check(false, "a decoded key ring does not re-encode")
            return
        }
        check(again.deviceSigningKey.publicKey == k.deviceSigningKey.publicKey && again.memberKey?.publicKey == k.memberKey?.publicKey
              && again.deviceAgreementKey.publicKey == k.deviceAgreementKey.publicKey && again.storageKey == k.storageKey,
              "a key ring round-trips")
    }
}
