import CSodium

/// Argon2id password hashing (libsodium `crypto_pwhash`, ALG_ARGON2ID13), for deriving the key
/// that wraps a key ring from a member's passphrase.
public enum Argon2id {
    public static let saltLength = 16

    public struct Limits: Sendable, Equatable {
        public let opsLimit: UInt64
        public let memLimit: UInt64

        public init(opsLimit: UInt64, memLimit: UInt64) {
            self.opsLimit = opsLimit
            self.memLimit = memLimit
        }

        /// libsodium's INTERACTIVE limits (~0.1 s, 64 MiB).
        public static var interactive: Limits {
            Sodium.ensureInitialized()
            return Limits(opsLimit: UInt64(crypto_pwhash_opslimit_interactive()), memLimit: UInt64(crypto_pwhash_memlimit_interactive()))
        }

        /// libsodium's MODERATE limits (~0.7 s, 256 MiB): the default for key rings.
        public static var moderate: Limits {
            Sodium.ensureInitialized()
            return Limits(opsLimit: UInt64(crypto_pwhash_opslimit_moderate()), memLimit: UInt64(crypto_pwhash_memlimit_moderate()))
        }
    }

    public static func deriveKey(passphrase: some ContiguousBytesView, salt: [UInt8], limits: Limits, outputLength: Int = 32) throws -> SecureBytes {
        Sodium.ensureInitialized()
        guard salt.count == saltLength else {
            throw CryptoError(.invalidLength, "an Argon2id salt is \(saltLength) bytes, got \(salt.count)")
        }
        guard limits.opsLimit >= UInt64(crypto_pwhash_opslimit_min()), limits.opsLimit <= UInt64(crypto_pwhash_opslimit_max()),
              limits.memLimit >= UInt64(crypto_pwhash_memlimit_min()), limits.memLimit <= 4 << 30
        else {
            throw CryptoError(.keyDerivationFailed, "Argon2id limits out of range (ops \(limits.opsLimit), memory \(limits.memLimit) bytes)")
        }
        return try SecureBytes(count: outputLength) { out in
            // libsodium wants a non-null pointer even for an empty passphrase.
            var pwCopy = passphrase.withBytes { [UInt8]($0) } + [0]
            defer { ConstantTime.wipe(&pwCopy) }
            let pwLength = pwCopy.count - 1
            let rc = pwCopy.withUnsafeBytes { pw in
                salt.withUnsafeBytes { s in
                    crypto_pwhash(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(outputLength),
                        pw.baseAddress!.assumingMemoryBound(to: CChar.self), UInt64(pwLength),
                        s.baseAddress!.assumingMemoryBound(to: UInt8.self),
                        limits.opsLimit, Int(limits.memLimit), crypto_pwhash_alg_argon2id13()
                    )
                }
            }
            guard rc == 0 else {
                throw CryptoError(.keyDerivationFailed, "Argon2id failed (out of memory for \(limits.memLimit) bytes?)")
            }
        }
    }
}

extension Argon2id {
    /// A password hash string (libsodium `crypto_pwhash_str`: Argon2id, salt and limits encoded,
    /// "$argon2id$v=19$m=…"), for checking a password later (the web GUI's password).
    public static func hashPassword(_ password: String, limits: Limits = .interactive) throws -> String {
        Sodium.ensureInitialized()
        var out = [CChar](repeating: 0, count: Int(crypto_pwhash_STRBYTES))
        let length = UInt64(password.utf8.count)
        let rc = password.withCString { p in crypto_pwhash_str(&out, p, length, limits.opsLimit, Int(limits.memLimit)) }
        guard rc == 0 else { throw CryptoError(.keyDerivationFailed, "Argon2id password hashing failed (out of memory?)") }
        let bytes = out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Whether `password` matches a `hashPassword` string (constant time in the password).
    public static func verifyPassword(_ password: String, hash: String) -> Bool {
        Sodium.ensureInitialized()
        let length = UInt64(password.utf8.count)
        return hash.withCString { h in password.withCString { p in crypto_pwhash_str_verify(h, p, length) == 0 } }
    }
}
