import CSodium

/// X25519 Diffie-Hellman (libsodium `crypto_scalarmult`).
public enum X25519 {
    public static let keyLength = 32

    public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
        public let bytes: [UInt8]

        public init(bytes: some Collection<UInt8>) throws {
            let b = [UInt8](bytes)
            guard b.count == X25519.keyLength else {
                throw CryptoError(.invalidLength, "an X25519 public key is \(X25519.keyLength) bytes, got \(b.count)")
            }
            self.bytes = b
        }

        public var description: String { Base64URL.encode(bytes) }
    }

    public struct PrivateKey: Sendable {
        /// The 32-byte scalar.
        public let secret: SecureBytes
        public let publicKey: PublicKey

        public init() {
            try! self.init(secret: SecureBytes.random(count: X25519.keyLength))
        }

        public init(secret: SecureBytes) throws {
            Sodium.ensureInitialized()
            guard secret.count == X25519.keyLength else {
                throw CryptoError(.invalidLength, "an X25519 private key is \(X25519.keyLength) bytes, got \(secret.count)")
            }
            var pk = [UInt8](repeating: 0, count: X25519.keyLength)
            secret.withBytes { sk in
                pk.withUnsafeMutableBufferPointer { pkBuf in
                    _ = crypto_scalarmult_base(pkBuf.baseAddress!, sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
            self.secret = secret
            self.publicKey = try PublicKey(bytes: pk)
        }

        public init(bytes: some ContiguousBytesView) throws {
            try self.init(secret: SecureBytes(copying: bytes))
        }

        /// The raw shared secret with `peer`. Throws `.weakPublicKey` when the result is the
        /// all-zero value (a low-order peer key), which libsodium refuses.
        public func sharedSecret(with peer: PublicKey) throws -> SecureBytes {
            try SecureBytes(count: X25519.keyLength) { out in
                let rc = secret.withBytes { sk in
                    peer.bytes.withUnsafeBytes { pk in
                        crypto_scalarmult(
                            out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                            sk.baseAddress!.assumingMemoryBound(to: UInt8.self),
                            pk.baseAddress!.assumingMemoryBound(to: UInt8.self)
                        )
                    }
                }
                guard rc == 0 else {
                    throw CryptoError(.weakPublicKey, "X25519 with this peer key gives the all-zero shared secret; the key is a low-order point")
                }
            }
        }
    }
}
