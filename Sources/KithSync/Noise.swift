import KithCrypto

/// Noise_XX_25519_ChaChaPoly_BLAKE2b (Noise spec revision 34), sans I/O: the caller moves bytes,
/// this code only transforms them. Built on libsodium through KithCrypto: X25519, ChaCha20-Poly1305
/// IETF and BLAKE2b, with HMAC and HKDF exactly as §4.3 and §5.2 of the spec define them.
public enum Noise {
    public static let protocolName = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
    /// The prologue every Kith handshake uses (Protocol/sync.md §2).
    public static let kithPrologue = Array("kith/sync/1".utf8)
    /// Largest Noise message, handshake or transport (§3).
    public static let maxMessageLength = 65_535
    public static let tagLength = 16
    static let hashLength = 64
    static let blockLength = 128

    public struct Error: Swift.Error, Equatable, CustomStringConvertible, Sendable {
        public enum Code: String, Sendable {
            case tooLong = "message-too-long"
            case truncated = "message-truncated"
            case decryptFailed = "decrypt-failed"
            case outOfTurn = "out-of-turn"
            case nonceExhausted = "nonce-exhausted"
            case weakKey = "weak-key"
        }

        public let code: Code
        public let detail: String
        public init(code: Code, detail: String) {
            self.code = code
            self.detail = detail
        }
        public var description: String { detail }
        public static func == (a: Error, b: Error) -> Bool { a.code == b.code }
    }

    // MARK: Hash functions (§4.3)

    static func hash(_ data: [UInt8]) -> [UInt8] { BLAKE2b.hash(data, outputLength: hashLength) }

    static func hmac(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var k = key.count > blockLength ? hash(key) : key
        k += [UInt8](repeating: 0, count: blockLength - k.count)
        let inner = BLAKE2b.Hasher(outputLength: hashLength)
        inner.update(k.map { $0 ^ 0x36 })
        inner.update(data)
        let outer = BLAKE2b.Hasher(outputLength: hashLength)
        outer.update(k.map { $0 ^ 0x5c })
        outer.update(inner.finalize())
        ConstantTime.wipe(&k)
        return outer.finalize()
    }

    static func hkdf(chainingKey: [UInt8], _ ikm: [UInt8], outputs: Int) -> [[UInt8]] {
        let temp = hmac(key: chainingKey, ikm)
        let o1 = hmac(key: temp, [0x01])
        let o2 = hmac(key: temp, o1 + [0x02])
        if outputs == 2 { return [o1, o2] }
        return [o1, o2, hmac(key: temp, o2 + [0x03])]
    }

    // MARK: CipherState (§5.1)

    /// A key and a nonce counter. The nonce is 4 zero bytes then the 64-bit counter little-endian.
    public struct CipherState: Sendable {
        var key: SymmetricKey?
        public private(set) var nonce: UInt64 = 0

        init(key: SymmetricKey? = nil) { self.key = key }

        public var hasKey: Bool { key != nil }

        static func nonceBytes(_ n: UInt64) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 4)
            for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
            return out
        }

        public mutating func encrypt(_ plaintext: [UInt8], associatedData: [UInt8] = []) throws(Error) -> [UInt8] {
            guard let key else { return plaintext }
            guard nonce < UInt64.max else { throw Error(code: .nonceExhausted, detail: "nonce space exhausted; rekey or reconnect") }
            let out = try! ChaCha20Poly1305.encrypt(plaintext, key: key, nonce: Self.nonceBytes(nonce), associatedData: associatedData)
            nonce += 1
            return out
        }

        public mutating func decrypt(_ ciphertext: [UInt8], associatedData: [UInt8] = []) throws(Error) -> [UInt8] {
            guard let key else { return ciphertext }
            guard nonce < UInt64.max else { throw Error(code: .nonceExhausted, detail: "nonce space exhausted; rekey or reconnect") }
            do {
                let out = try ChaCha20Poly1305.decrypt(ciphertext, key: key, nonce: Self.nonceBytes(nonce), associatedData: associatedData)
                nonce += 1 // only after success (§5.1)
                return out
            } catch {
                throw Error(code: .decryptFailed, detail: "Noise message failed authentication (wrong key, tampered or replayed)")
            }
        }

        /// `k = first 32 bytes of ENCRYPT(k, 2^64-1, "", 32 zero bytes)` (§4.2, §11.3).
        public mutating func rekey() {
            guard let key else { return }
            let out = try! ChaCha20Poly1305.encrypt([UInt8](repeating: 0, count: 32), key: key, nonce: Self.nonceBytes(.max), associatedData: [UInt8]())
            self.key = try! SymmetricKey(bytes: Array(out.prefix(32)))
        }
    }

    // MARK: SymmetricState (§5.2)

    struct SymmetricState {
        var cipher = CipherState()
        var chainingKey: [UInt8]
        var h: [UInt8]

        init(protocolName: String) {
            let name = Array(protocolName.utf8)
            h = name.count <= hashLength ? name + [UInt8](repeating: 0, count: hashLength - name.count) : Noise.hash(name)
            chainingKey = h
        }

        mutating func mixKey(_ ikm: [UInt8]) {
            let out = Noise.hkdf(chainingKey: chainingKey, ikm, outputs: 2)
            chainingKey = out[0]
            cipher = CipherState(key: try! SymmetricKey(bytes: Array(out[1].prefix(32))))
        }

        mutating func mixHash(_ data: [UInt8]) { h = Noise.hash(h + data) }

        mutating func encryptAndHash(_ plaintext: [UInt8]) throws(Error) -> [UInt8] {
            let ct = try cipher.encrypt(plaintext, associatedData: h)
            mixHash(ct)
            return ct
        }

        mutating func decryptAndHash(_ ciphertext: [UInt8]) throws(Error) -> [UInt8] {
            let pt = try cipher.decrypt(ciphertext, associatedData: h)
            mixHash(ciphertext)
            return pt
        }

        func split() -> (CipherState, CipherState) {
            let out = Noise.hkdf(chainingKey: chainingKey, [], outputs: 2)
            return (CipherState(key: try! SymmetricKey(bytes: Array(out[0].prefix(32)))),
                    CipherState(key: try! SymmetricKey(bytes: Array(out[1].prefix(32)))))
        }
    }
}
