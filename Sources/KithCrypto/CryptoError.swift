/// An error from the crypto layer: a stable, extensible code plus a human-readable detail
/// that says which key, file or value was involved and why it was refused.
public struct CryptoError: Error, Equatable, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// libsodium could not be initialised.
        public static let libraryUnavailable = Code("library-unavailable")
        /// An input had the wrong length (key, nonce, signature, salt...).
        public static let invalidLength = Code("invalid-length")
        /// AEAD or sealed-box authentication failed: wrong key or tampered bytes.
        public static let authenticationFailed = Code("authentication-failed")
        /// A signature did not verify.
        public static let invalidSignature = Code("invalid-signature")
        /// An X25519 computation produced the all-zero point (low-order public key).
        public static let weakPublicKey = Code("weak-public-key")
        /// A certificate is outside its validity window.
        public static let certificateExpired = Code("certificate-expired")
        public static let certificateNotYetValid = Code("certificate-not-yet-valid")
        /// A certificate was signed by a key other than the one expected.
        public static let wrongSigner = Code("wrong-signer")
        /// Bytes that do not parse as the structure they claim to be.
        public static let malformed = Code("malformed")
        /// A passphrase did not unlock a key ring.
        public static let wrongPassphrase = Code("wrong-passphrase")
        /// A passphrase is required but none was given.
        public static let passphraseRequired = Code("passphrase-required")
        /// Key derivation ran out of memory or was given impossible limits.
        public static let keyDerivationFailed = Code("key-derivation-failed")
        /// Some other libsodium call failed.
        public static let operationFailed = Code("operation-failed")
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { detail }

    public static func == (lhs: CryptoError, rhs: CryptoError) -> Bool { lhs.code == rhs.code }
}
