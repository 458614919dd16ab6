/// The secret keys of one device, and their on-disk encoding, optionally wrapped with a
/// passphrase (Argon2id → XChaCha20-Poly1305). Pure: reading and writing files is `KithNode`'s job.
///
/// Encoding (see `Protocol/identity.md`):
/// ```
/// "KITHKEYS" ‖ version u8 = 1 ‖ protection u8
///   protection 0: entries in the clear
///   protection 1: opslimit u64 ‖ memlimit u64 ‖ salt(16) ‖ nonce(24) ‖ XChaCha20-Poly1305(entries)
///                 with the header (every byte before the ciphertext) as associated data
/// entries = count u8 ‖ (kind u8 ‖ length u8 ‖ secret bytes)*
/// ```
public struct KeyRing: Sendable {
    public static let magic = Array("KITHKEYS".utf8)
    public static let version: UInt8 = 1

    enum Kind: UInt8 {
        case memberSigningSeed = 1
        case deviceSigningSeed = 2
        case deviceAgreementSecret = 3
        case storageKey = 4
    }

    /// The member's identity key. Absent on a secondary device that was certified by another.
    public var memberKey: Ed25519.PrivateKey?
    /// Signs this device's changes.
    public var deviceSigningKey: Ed25519.PrivateKey
    /// Authenticates this device in the Noise handshake and receives sealed scope keys.
    public var deviceAgreementKey: X25519.PrivateKey
    /// Encrypts this device's store at rest.
    public var storageKey: SymmetricKey

    public init(memberKey: Ed25519.PrivateKey?, deviceSigningKey: Ed25519.PrivateKey, deviceAgreementKey: X25519.PrivateKey, storageKey: SymmetricKey) {
        self.memberKey = memberKey
        self.deviceSigningKey = deviceSigningKey
        self.deviceAgreementKey = deviceAgreementKey
        self.storageKey = storageKey
    }

    /// Fresh random keys for a new member on their first device.
    public static func generate(includingMemberKey: Bool = true) -> KeyRing {
        KeyRing(
            memberKey: includingMemberKey ? Ed25519.PrivateKey() : nil,
            deviceSigningKey: Ed25519.PrivateKey(),
            deviceAgreementKey: X25519.PrivateKey(),
            storageKey: SymmetricKey()
        )
    }

    /// True when the encoding is passphrase-protected (so a passphrase must be supplied to read it).
    public static func isProtected(_ encoded: [UInt8]) -> Bool {
        encoded.count > 9 && Array(encoded.prefix(8)) == magic && encoded[9] == 1
    }

    /// Encodes the key ring, wrapped with `passphrase` when one is given.
    public func encoded(passphrase: SecureBytes? = nil, limits: Argon2id.Limits = .moderate) throws -> [UInt8] {
        var entries: [UInt8] = []
        var items: [(Kind, SecureBytes)] = []
        if let memberKey { items.append((.memberSigningSeed, memberKey.seed)) }
        items.append((.deviceSigningSeed, deviceSigningKey.seed))
        items.append((.deviceAgreementSecret, deviceAgreementKey.secret))
        items.append((.storageKey, storageKey.secret))
        entries.append(UInt8(items.count))
        for (kind, secret) in items {
            entries.append(kind.rawValue)
            entries.append(UInt8(secret.count))
            secret.withBytes { entries.append(contentsOf: $0) }
        }
        defer { ConstantTime.wipe(&entries) }

        var header = Self.magic + [Self.version]
        guard let passphrase else {
            header.append(0)
            return header + entries
        }
        header.append(1)
        header.appendBigEndian(limits.opsLimit)
        header.appendBigEndian(limits.memLimit)
        let salt = SecureRandom.bytes(Argon2id.saltLength)
        let nonce = SecureRandom.bytes(XChaCha20Poly1305.nonceLength)
        header += salt
        header += nonce
        let key = try SymmetricKey(secret: Argon2id.deriveKey(passphrase: passphrase, salt: salt, limits: limits))
        return header + (try XChaCha20Poly1305.encrypt(entries, key: key, nonce: nonce, associatedData: header))
    }

    /// Decodes a key ring. `source` names the file in error messages.
    public init(encoded b: [UInt8], passphrase: SecureBytes?, source: String = "key ring") throws {
        guard b.count >= 10, Array(b.prefix(8)) == Self.magic else {
            throw CryptoError(.malformed, "\(source) is not a Kith key ring (bad magic)")
        }
        guard b[8] == Self.version else {
            throw CryptoError(.malformed, "\(source) has key ring version \(b[8]); this build reads version \(Self.version)")
        }
        var entries: [UInt8]
        switch b[9] {
        case 0:
            entries = Array(b[10...])
        case 1:
            let headerLength = 10 + 8 + 8 + Argon2id.saltLength + XChaCha20Poly1305.nonceLength
            guard b.count >= headerLength + XChaCha20Poly1305.tagLength else {
                throw CryptoError(.malformed, "\(source) is truncated (\(b.count) bytes)")
            }
            guard let passphrase else {
                throw CryptoError(.passphraseRequired, "\(source) is protected by a passphrase; supply it with --passphrase-file")
            }
            let ops = UInt64(bigEndianBytes: b[10..<18])
            let mem = UInt64(bigEndianBytes: b[18..<26])
            let salt = Array(b[26..<42])
            let nonce = Array(b[42..<66])
            let header = Array(b[0..<headerLength])
            let key = try SymmetricKey(secret: Argon2id.deriveKey(passphrase: passphrase, salt: salt, limits: .init(opsLimit: ops, memLimit: mem)))
            do {
                entries = try XChaCha20Poly1305.decrypt(Array(b[headerLength...]), key: key, nonce: nonce, associatedData: header)
            } catch {
                throw CryptoError(.wrongPassphrase, "wrong passphrase for \(source) (or the file was modified)")
            }
        default:
            throw CryptoError(.malformed, "\(source) uses unknown protection scheme \(b[9])")
        }
        defer { ConstantTime.wipe(&entries) }

        var found: [Kind: SecureBytes] = [:]
        guard let count = entries.first else { throw CryptoError(.malformed, "\(source) has no entries") }
        var i = 1
        for _ in 0..<count {
            guard i + 2 <= entries.count else { throw CryptoError(.malformed, "\(source) entry table is truncated") }
            let kindByte = entries[i], length = Int(entries[i + 1])
            i += 2
            guard i + length <= entries.count else { throw CryptoError(.malformed, "\(source) entry \(kindByte) is truncated") }
            guard let kind = Kind(rawValue: kindByte) else { throw CryptoError(.malformed, "\(source) holds an unknown key kind \(kindByte)") }
            guard found[kind] == nil else { throw CryptoError(.malformed, "\(source) holds key kind \(kindByte) twice") }
            found[kind] = SecureBytes(copying: entries[i..<(i + length)])
            i += length
        }
        guard i == entries.count else { throw CryptoError(.malformed, "\(source) has \(entries.count - i) trailing bytes") }
        guard let ds = found[.deviceSigningSeed], let da = found[.deviceAgreementSecret], let sk = found[.storageKey] else {
            throw CryptoError(.malformed, "\(source) lacks a device or storage key")
        }
        self.memberKey = try found[.memberSigningSeed].map { try Ed25519.PrivateKey(seed: $0) }
        self.deviceSigningKey = try Ed25519.PrivateKey(seed: ds)
        self.deviceAgreementKey = try X25519.PrivateKey(secret: da)
        self.storageKey = try SymmetricKey(secret: sk)
    }
}
