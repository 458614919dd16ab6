import Foundation
import KithCrypto

/// A member's data directory: where a node keeps its key ring, certificate and (later) store.
///
/// Layout (see `Protocol/identity.md`):
/// - `keyring`      secret keys (0600), optionally passphrase-wrapped
/// - `device.cert`  this device's certificate, signed by the member key (public)
public struct DataDirectory: Sendable, Equatable {
    public let path: String

    public init(path: String) {
        self.path = (path as NSString).standardizingPath
    }

    /// `$KITH_DATA_DIR`, else `$XDG_DATA_HOME/kith`, else `~/.local/share/kith`.
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let d = environment["KITH_DATA_DIR"], !d.isEmpty { return d }
        if let x = environment["XDG_DATA_HOME"], !x.isEmpty { return x + "/kith" }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return home + "/.local/share/kith"
    }

    public var keyRingPath: String { path + "/keyring" }
    public var certificatePath: String { path + "/device.cert" }

    public var isInitialized: Bool {
        FileManager.default.fileExists(atPath: keyRingPath) || FileManager.default.fileExists(atPath: certificatePath)
    }
}

/// The public half of a node's identity: what `kith whoami` prints and peers learn.
public struct PublicIdentity: Sendable, Equatable {
    public let certificate: DeviceCertificate
    public var memberKey: Ed25519.PublicKey { certificate.memberKey }
    public var deviceSigningKey: Ed25519.PublicKey { certificate.deviceSigningKey }
    public var deviceAgreementKey: X25519.PublicKey { certificate.deviceAgreementKey }
}

/// Creating and opening a node's identity.
public enum NodeIdentity {
    /// Creates a new member identity and first device in `dir`. Refuses if one exists.
    @discardableResult
    public static func initialize(
        in dir: DataDirectory,
        passphrase: SecureBytes?,
        now: UInt64 = UInt64(Date().timeIntervalSince1970),
        limits: Argon2id.Limits = .moderate
    ) throws -> (KeyRing, PublicIdentity) {
        if dir.isInitialized {
            throw NodeError(.alreadyInitialized, "\(dir.path) already holds a Kith identity; refusing to replace it (use another --data-dir, or remove it deliberately)")
        }
        try SecureFiles.preparePrivateDirectory(dir.path)
        let ring = KeyRing.generate()
        let cert = DeviceCertificate.issue(
            member: ring.memberKey!,
            deviceSigningKey: ring.deviceSigningKey.publicKey,
            deviceAgreementKey: ring.deviceAgreementKey.publicKey,
            createdAt: now
        )
        var encoded = try ring.encoded(passphrase: passphrase, limits: limits)
        defer { ConstantTime.wipe(&encoded) }
        try SecureFiles.writeSecret(encoded, to: dir.keyRingPath)
        try SecureFiles.writeSecret(cert.encoded, to: dir.certificatePath)
        if !FileManager.default.fileExists(atPath: APIKey.keyPath(dir)) { try APIKey.create(in: dir) }
        return (ring, PublicIdentity(certificate: cert))
    }

    /// Creates a further device of an existing member in `dir`: fresh device keys certified by
    /// `member`, whose key is not stored there. (Pairing over the network is the chapters
    /// issue's `kith device add`; this is the local building block.)
    @discardableResult
    public static func addDevice(
        in dir: DataDirectory, member: Ed25519.PrivateKey, passphrase: SecureBytes?,
        now: UInt64 = UInt64(Date().timeIntervalSince1970), limits: Argon2id.Limits = .moderate
    ) throws -> (KeyRing, PublicIdentity) {
        if dir.isInitialized {
            throw NodeError(.alreadyInitialized, "\(dir.path) already holds a Kith identity; refusing to replace it")
        }
        let ring = KeyRing.generate(includingMemberKey: false)
        let cert = DeviceCertificate.issue(member: member, deviceSigningKey: ring.deviceSigningKey.publicKey,
                                           deviceAgreementKey: ring.deviceAgreementKey.publicKey, createdAt: now)
        return try install(in: dir, ring: ring, certificate: cert, passphrase: passphrase, limits: limits)
    }

    /// Writes a device's key ring and certificate (made elsewhere, e.g. by pairing) into `dir`.
    @discardableResult
    public static func install(
        in dir: DataDirectory, ring: KeyRing, certificate cert: DeviceCertificate, passphrase: SecureBytes?,
        limits: Argon2id.Limits = .moderate
    ) throws -> (KeyRing, PublicIdentity) {
        if dir.isInitialized {
            throw NodeError(.alreadyInitialized, "\(dir.path) already holds a Kith identity; refusing to replace it")
        }
        guard cert.deviceSigningKey == ring.deviceSigningKey.publicKey, cert.deviceAgreementKey == ring.deviceAgreementKey.publicKey else {
            throw NodeError(.corrupt, "the certificate is for other device keys than the key ring's")
        }
        try SecureFiles.preparePrivateDirectory(dir.path)
        var encoded = try ring.encoded(passphrase: passphrase, limits: limits)
        defer { ConstantTime.wipe(&encoded) }
        try SecureFiles.writeSecret(encoded, to: dir.keyRingPath)
        try SecureFiles.writeSecret(cert.encoded, to: dir.certificatePath)
        return (ring, PublicIdentity(certificate: cert))
    }

    /// Reads and verifies the device certificate; needs no passphrase.
    public static func loadPublic(from dir: DataDirectory, now: UInt64 = UInt64(Date().timeIntervalSince1970)) throws -> PublicIdentity {
        try SecureFiles.checkPrivateDirectory(dir.path)
        let bytes = try SecureFiles.readPublic(dir.certificatePath)
        let cert: DeviceCertificate
        do {
            cert = try DeviceCertificate(encoded: bytes)
            try cert.verify(now: now)
        } catch let e as CryptoError {
            throw NodeError(.corrupt, "\(dir.certificatePath): \(e.detail)")
        }
        return PublicIdentity(certificate: cert)
    }

    /// Opens the key ring (asking for the passphrase if it is wrapped) and checks that it matches
    /// the certificate.
    public static func unlock(_ dir: DataDirectory, passphrase: SecureBytes?, now: UInt64 = UInt64(Date().timeIntervalSince1970)) throws -> (KeyRing, PublicIdentity) {
        let identity = try loadPublic(from: dir, now: now)
        var bytes = try SecureFiles.readSecret(dir.keyRingPath)
        defer { ConstantTime.wipe(&bytes) }
        let ring = try KeyRing(encoded: bytes, passphrase: passphrase, source: dir.keyRingPath)
        guard ring.deviceSigningKey.publicKey == identity.deviceSigningKey,
              ring.deviceAgreementKey.publicKey == identity.deviceAgreementKey,
              ring.memberKey.map({ $0.publicKey == identity.memberKey }) ?? true
        else {
            throw NodeError(.corrupt, "\(dir.keyRingPath) does not match \(dir.certificatePath): the files belong to different identities")
        }
        return (ring, identity)
    }

    /// Reads a passphrase from a file: its first line, without the line ending. Empty is refused.
    public static func readPassphrase(file: String) throws -> SecureBytes {
        var bytes: [UInt8]
        do {
            bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
        } catch {
            throw NodeError(.io, "cannot read passphrase file \(file): \(error.localizedDescription)")
        }
        defer { ConstantTime.wipe(&bytes) }
        var end = bytes.firstIndex(of: 0x0A) ?? bytes.count
        if end > 0, bytes[end - 1] == 0x0D { end -= 1 }
        guard end > 0 else { throw NodeError(.invalidPassphrase, "passphrase file \(file) is empty") }
        return SecureBytes(copying: bytes[0..<end])
    }
}
