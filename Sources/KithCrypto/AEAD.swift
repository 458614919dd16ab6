import CSodium

/// A 256-bit symmetric key for the AEAD constructions, held in secure memory.
public struct SymmetricKey: Sendable, Equatable {
    public static let length = 32
    public let secret: SecureBytes

    /// A fresh random key.
    public init() { self.secret = SecureBytes.random(count: SymmetricKey.length) }

    public init(secret: SecureBytes) throws {
        guard secret.count == SymmetricKey.length else {
            throw CryptoError(.invalidLength, "a symmetric key is \(SymmetricKey.length) bytes, got \(secret.count)")
        }
        self.secret = secret
    }

    public init(bytes: some ContiguousBytesView) throws {
        try self.init(secret: SecureBytes(copying: bytes))
    }
}

/// XChaCha20-Poly1305 (libsodium `crypto_aead_xchacha20poly1305_ietf_*`): random 24-byte
/// nonces are safe, so this is the AEAD for data at rest and end-to-end scope encryption.
public enum XChaCha20Poly1305 {
    public static let nonceLength = 24
    public static let tagLength = 16

    /// Encrypts with a fresh random nonce; returns `nonce ‖ ciphertext ‖ tag`.
    public static func seal(_ plaintext: some ContiguousBytesView, key: SymmetricKey, associatedData: some ContiguousBytesView = [UInt8]()) -> [UInt8] {
        let nonce = SecureRandom.bytes(nonceLength)
        return nonce + (try! encrypt(plaintext, key: key, nonce: nonce, associatedData: associatedData))
    }

    /// Opens `nonce ‖ ciphertext ‖ tag` produced by `seal`.
    public static func open(_ sealed: some ContiguousBytesView, key: SymmetricKey, associatedData: some ContiguousBytesView = [UInt8]()) throws -> [UInt8] {
        try sealed.withBytes { buf in
            guard buf.count >= nonceLength + tagLength else {
                throw CryptoError(.malformed, "sealed data is \(buf.count) bytes, shorter than nonce and tag (\(nonceLength + tagLength))")
            }
            let nonce = [UInt8](buf[0..<nonceLength])
            let body = [UInt8](buf[nonceLength...])
            return try decrypt(body, key: key, nonce: nonce, associatedData: associatedData)
        }
    }

    /// Encrypts with an explicit nonce; returns `ciphertext ‖ tag`.
    public static func encrypt(_ plaintext: some ContiguousBytesView, key: SymmetricKey, nonce: [UInt8], associatedData: some ContiguousBytesView) throws -> [UInt8] {
        try AEADCore.encrypt(.xchacha, plaintext, key: key, nonce: nonce, associatedData: associatedData)
    }

    /// Decrypts `ciphertext ‖ tag`; throws `.authenticationFailed` on a wrong key or tampered bytes.
    public static func decrypt(_ ciphertext: some ContiguousBytesView, key: SymmetricKey, nonce: [UInt8], associatedData: some ContiguousBytesView) throws -> [UInt8] {
        try AEADCore.decrypt(.xchacha, ciphertext, key: key, nonce: nonce, associatedData: associatedData)
    }
}

/// ChaCha20-Poly1305 as in RFC 8439 (libsodium `crypto_aead_chacha20poly1305_ietf_*`), with a
/// 12-byte nonce. Used by the Noise transport, whose nonces are counters, never random.
public enum ChaCha20Poly1305 {
    public static let nonceLength = 12
    public static let tagLength = 16

    public static func encrypt(_ plaintext: some ContiguousBytesView, key: SymmetricKey, nonce: [UInt8], associatedData: some ContiguousBytesView) throws -> [UInt8] {
        try AEADCore.encrypt(.ietf, plaintext, key: key, nonce: nonce, associatedData: associatedData)
    }

    public static func decrypt(_ ciphertext: some ContiguousBytesView, key: SymmetricKey, nonce: [UInt8], associatedData: some ContiguousBytesView) throws -> [UInt8] {
        try AEADCore.decrypt(.ietf, ciphertext, key: key, nonce: nonce, associatedData: associatedData)
    }
}

/// The one place the two AEAD variants call into libsodium.
enum AEADCore {
    enum Variant {
        case xchacha, ietf
        var nonceLength: Int { self == .xchacha ? 24 : 12 }
        var name: String { self == .xchacha ? "XChaCha20-Poly1305" : "ChaCha20-Poly1305" }
    }

    static func encrypt(_ v: Variant, _ plaintext: some ContiguousBytesView, key: SymmetricKey, nonce: [UInt8], associatedData: some ContiguousBytesView) throws -> [UInt8] {
        Sodium.ensureInitialized()
        guard nonce.count == v.nonceLength else {
            throw CryptoError(.invalidLength, "\(v.name) nonce is \(v.nonceLength) bytes, got \(nonce.count)")
        }
        return plaintext.withBytes { pt in
            var out = [UInt8](repeating: 0, count: pt.count + 16)
            var outLen: UInt64 = 0
            associatedData.withBytes { ad in
                key.secret.withBytes { k in
                    nonce.withUnsafeBytes { n in
                        out.withUnsafeMutableBufferPointer { o in
                            let f = v == .xchacha ? crypto_aead_xchacha20poly1305_ietf_encrypt : crypto_aead_chacha20poly1305_ietf_encrypt
                            _ = f(
                                o.baseAddress!, &outLen,
                                pt.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(pt.count),
                                ad.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(ad.count),
                                nil,
                                n.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                k.baseAddress!.assumingMemoryBound(to: UInt8.self)
                            )
                        }
                    }
                }
            }
            return out
        }
    }

    static func decrypt(_ v: Variant, _ ciphertext: some ContiguousBytesView, key: SymmetricKey, nonce: [UInt8], associatedData: some ContiguousBytesView) throws -> [UInt8] {
        Sodium.ensureInitialized()
        guard nonce.count == v.nonceLength else {
            throw CryptoError(.invalidLength, "\(v.name) nonce is \(v.nonceLength) bytes, got \(nonce.count)")
        }
        return try ciphertext.withBytes { ct in
            guard ct.count >= 16 else {
                throw CryptoError(.malformed, "\(v.name) ciphertext is \(ct.count) bytes, shorter than its 16-byte tag")
            }
            // Not zero-filled first: libsodium writes every byte (or zeroes them all when the tag
            // does not verify), so a large section is written once, not twice.
            let capacity = max(ct.count - 16, 1)
            var outLen: UInt64 = 0
            var rc: Int32 = -1
            let out = [UInt8](unsafeUninitializedCapacity: capacity) { o, initialized in
                rc = associatedData.withBytes { ad in
                    key.secret.withBytes { k in
                        nonce.withUnsafeBytes { n in
                            let f = v == .xchacha ? crypto_aead_xchacha20poly1305_ietf_decrypt : crypto_aead_chacha20poly1305_ietf_decrypt
                            return f(
                                o.baseAddress!, &outLen,
                                nil,
                                ct.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(ct.count),
                                ad.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(ad.count),
                                n.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                k.baseAddress!.assumingMemoryBound(to: UInt8.self)
                            )
                        }
                    }
                }
                initialized = rc == 0 ? Int(outLen) : 0
            }
            guard rc == 0 else {
                throw CryptoError(.authenticationFailed, "\(v.name) authentication failed: wrong key or tampered data")
            }
            return out
        }
    }
}
