import Crypto
import Foundation
import KithCrypto
import KithNode
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// The web GUI's listener beyond loopback (Protocol/api.md §2.1): TLS with a self-signed
/// certificate made on first use (`<data-dir>/gui-cert.pem`, key in `gui-key.pem`, mode 0600),
/// whose SHA-256 fingerprint `kith status` shows so a person can compare it with what the
/// browser shows.
public enum GUICertificate {
    public struct Material: Sendable {
        public let tls: TLSConfiguration
        /// "SHA256:AB:CD:…" of the certificate's DER.
        public let fingerprint: String
    }

    public static func loadOrCreate(in dir: DataDirectory, host: String, now: Date = Date()) throws -> Material {
        let certPath = dir.path + "/gui-cert.pem", keyPath = dir.path + "/gui-key.pem"
        let certPEM: String, keyPEM: String
        if FileManager.default.fileExists(atPath: certPath) {
            certPEM = String(decoding: try SecureFiles.readPublic(certPath), as: UTF8.self)
            keyPEM = String(decoding: try SecureFiles.readSecret(keyPath), as: UTF8.self)
        } else {
            let key = P256.Signing.PrivateKey()
            let name = try DistinguishedName { CommonName("kithd") }
            var names: [GeneralName] = [.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))]
            if let v4 = IPv4(host) { names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(v4)))) } else if host != "localhost", !host.contains(":") {
                names.append(.dnsName(host))
            }
            let cert = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
                notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(10 * 366 * 86_400),
                issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    SubjectAlternativeNames(names)
                },
                issuerPrivateKey: .init(key)
            )
            certPEM = try cert.serializeAsPEM().pemString
            keyPEM = key.pemRepresentation
            try SecureFiles.writeSecret(Array(keyPEM.utf8), to: keyPath)
            try SecureFiles.writeSecret(Array(certPEM.utf8), to: certPath)
        }
        let pem = try PEMDocument(pemString: certPEM)
        let digest = SHA256.hash(data: pem.derBytes)
        let fingerprint = "SHA256:" + digest.map { String(format: "%02X", $0) }.joined(separator: ":")
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: pem.derBytes, format: .der))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        )
        return Material(tls: tls, fingerprint: fingerprint)
    }

    static func IPv4(_ s: String) -> [UInt8]? {
        let parts = s.split(separator: ".")
        guard parts.count == 4 else { return nil }
        let bytes = parts.compactMap { UInt8($0) }
        return bytes.count == 4 ? bytes : nil
    }
}

/// Browser sessions (Protocol/api.md §2.2): `POST /v1/session` with the GUI password (Argon2id
/// hash in `<data-dir>/gui-password`) sets an HttpOnly, SameSite=Strict cookie and returns a
/// CSRF token that every non-GET request of that session must send as `X-CSRF-Token`.
public final class APISessions: Sendable {
    struct Session {
        let csrf: String
        let expires: Date
    }

    public static let lifetime: TimeInterval = 12 * 3600
    public static let maxSessions = 64
    private let sessions = Mutex<[String: Session]>([:])
    /// One password check at a time (each is an Argon2id hash: ~64 MiB, ~0.1 s).
    private let checking = Mutex<Bool>(false)
    /// The Argon2id hash of the GUI password; nil: no password set (sessions refused).
    public let passwordHash: String?

    public init(passwordHash: String?) {
        self.passwordHash = passwordHash
    }

    enum Login {
        case opened(token: String, csrf: String)
        case wrong
        /// Another check is running: try again in a moment.
        case busy
    }

    /// A new session for the right password.
    func open(password: String) -> Login {
        guard let passwordHash else { return .wrong }
        guard checking.withLock({ busy in busy ? false : { busy = true; return true }() }) else { return .busy }
        defer { checking.withLock { $0 = false } }
        guard Argon2id.verifyPassword(password, hash: passwordHash) else {
            // Still holding the check: at most one guess a second, whoever sends them.
            Thread.sleep(forTimeInterval: 1)
            return .wrong
        }
        let (token, csrf) = issue()
        return .opened(token: token, csrf: csrf)
    }

    /// A new session (the right password, or a one-time link).
    private func issue() -> (token: String, csrf: String) {
        let token = Base64URL.encode(SecureRandom.bytes(32)), csrf = Base64URL.encode(SecureRandom.bytes(24))
        sessions.withLock { all in
            let now = Date()
            all = all.filter { $0.value.expires > now }
            if all.count >= Self.maxSessions, let oldest = all.min(by: { $0.value.expires < $1.value.expires })?.key { all[oldest] = nil }
            all[token] = Session(csrf: csrf, expires: now.addingTimeInterval(Self.lifetime))
        }
        return (token, csrf)
    }

    /// `open(password:)` off the cooperative pool (an Argon2id hash, and a second's wait for a
    /// wrong password, must not hold a Swift concurrency thread).
    func login(password: String) async -> Login {
        await withCheckedContinuation { (c: CheckedContinuation<Login, Never>) in
            DispatchQueue.global().async { c.resume(returning: self.open(password: password)) }
        }
    }

    // MARK: One-time login links (`kith open`)

    /// How long a login link made by `POST /v1/session/links` may wait to be opened.
    public static let linkLifetime: TimeInterval = 120
    private let links = Mutex<[String: Date]>([:])

    /// A one-time link token: whoever holds the API key (the local user) may open a session
    /// without the GUI password. Single use, 2 minutes, at most 16 outstanding.
    func makeLink() -> String {
        let link = Base64URL.encode(SecureRandom.bytes(32))
        links.withLock { all in
            let now = Date()
            all = all.filter { $0.value > now }
            if all.count >= 16, let oldest = all.min(by: { $0.value < $1.value })?.key { all[oldest] = nil }
            all[link] = now.addingTimeInterval(Self.linkLifetime)
        }
        return link
    }

    /// Spends a link: a new session, or nil for an unknown, used or expired link.
    func redeem(link: String) -> (token: String, csrf: String)? {
        let valid = links.withLock { all -> Bool in
            // Compared in constant time with every outstanding link (there are at most 16).
            guard let match = all.keys.first(where: { ConstantTime.equals(Array($0.utf8), Array(link.utf8)) }) else { return false }
            let expires = all.removeValue(forKey: match)!
            return expires > Date()
        }
        return valid ? issue() : nil
    }

    /// The CSRF token of a live session.
    func csrf(for token: String) -> String? {
        sessions.withLock { all in
            guard let s = all[token] else { return nil }
            guard s.expires > Date() else { all[token] = nil; return nil }
            return s.csrf
        }
    }

    func close(_ token: String) { _ = sessions.withLock { $0.removeValue(forKey: token) } }
}
