import CSodium

/// Ed25519 signatures (libsodium `crypto_sign_*`).
public enum Ed25519 {
    public static let publicKeyLength = 32
    public static let seedLength = 32
    public static let signatureLength = 64

    /// A verification key. Plain bytes: public keys are not secret.
    public struct PublicKey: Hashable, Sendable, Comparable, CustomStringConvertible {
        public let bytes: [UInt8]

        /// Hashes the 32 bytes in one call (an array's own hashing feeds them one at a time,
        /// which dominated the membership log's evaluation).
        public func hash(into h: inout Hasher) { bytes.withUnsafeBytes { h.combine(bytes: $0) } }
        public static func == (a: PublicKey, b: PublicKey) -> Bool { a.bytes == b.bytes }

        public init(bytes: some Collection<UInt8>) throws {
            let b = [UInt8](bytes)
            guard b.count == Ed25519.publicKeyLength else {
                throw CryptoError(.invalidLength, "an Ed25519 public key is \(Ed25519.publicKeyLength) bytes, got \(b.count)")
            }
            self.bytes = b
        }

        /// Verifies a detached signature. Returns false (never throws) for any malformed input.
        public func isValidSignature(_ signature: some ContiguousBytesView, for message: some ContiguousBytesView) -> Bool {
            Sodium.ensureInitialized()
            return signature.withBytes { sig in
                guard sig.count == Ed25519.signatureLength else { return false }
                return message.withBytes { msg in
                    bytes.withUnsafeBytes { pk in
                        crypto_sign_verify_detached(
                            sig.baseAddress!.assumingMemoryBound(to: UInt8.self),
                            msg.baseAddress?.assumingMemoryBound(to: UInt8.self),
                            UInt64(msg.count),
                            pk.baseAddress!.assumingMemoryBound(to: UInt8.self)
                        ) == 0
                    }
                }
            }
        }

        public static func < (a: PublicKey, b: PublicKey) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

        public var description: String { Base64URL.encode(bytes) }
    }

    /// A signing key. The 64-byte libsodium secret key (seed ‖ public key) lives in `SecureBytes`.
    public struct PrivateKey: Sendable {
        private let secret: SecureBytes
        public let publicKey: PublicKey

        /// A fresh random key pair.
        public init() {
            self.init(seedBytes: SecureBytes.random(count: Ed25519.seedLength))
        }

        /// Deterministic key pair from a 32-byte seed (used for key rings and test vectors).
        public init(seed: some ContiguousBytesView) throws {
            let n = seed.withBytes { $0.count }
            guard n == Ed25519.seedLength else {
                throw CryptoError(.invalidLength, "an Ed25519 seed is \(Ed25519.seedLength) bytes, got \(n)")
            }
            self.init(seedBytes: SecureBytes(copying: seed))
        }

        private init(seedBytes: SecureBytes) {
            Sodium.ensureInitialized()
            var pk = [UInt8](repeating: 0, count: Ed25519.publicKeyLength)
            let sk = SecureBytes(count: Int(crypto_sign_secretkeybytes())) { skBuf in
                seedBytes.withBytes { seedBuf in
                    pk.withUnsafeMutableBufferPointer { pkBuf in
                        _ = crypto_sign_seed_keypair(
                            pkBuf.baseAddress!,
                            skBuf.baseAddress!.assumingMemoryBound(to: UInt8.self),
                            seedBuf.baseAddress!.assumingMemoryBound(to: UInt8.self)
                        )
                    }
                }
            }
            self.secret = sk
            self.publicKey = try! PublicKey(bytes: pk)
        }

        /// The 32-byte seed, in secure memory, for storing in a key ring.
        public var seed: SecureBytes {
            SecureBytes(count: Ed25519.seedLength) { dst in
                secret.withBytes { src in
                    dst.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: Ed25519.seedLength)
                }
            }
        }

        /// A detached 64-byte signature over `message`.
        public func signature(for message: some ContiguousBytesView) -> [UInt8] {
            var sig = [UInt8](repeating: 0, count: Ed25519.signatureLength)
            message.withBytes { msg in
                secret.withBytes { sk in
                    sig.withUnsafeMutableBufferPointer { sigBuf in
                        _ = crypto_sign_detached(
                            sigBuf.baseAddress!, nil,
                            msg.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(msg.count),
                            sk.baseAddress!.assumingMemoryBound(to: UInt8.self)
                        )
                    }
                }
            }
            return sig
        }
    }
}
