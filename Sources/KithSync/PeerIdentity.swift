import KithCrypto

/// Who is on the other end of a completed handshake, and whether they may sync with us
/// (Protocol/sync.md §2): the handshake payload is the peer's device certificate, which must
/// verify, must certify the very X25519 key the peer proved in the handshake, and must belong to
/// a member the policy allows.
public struct PeerIdentity: Sendable, Equatable {
    public let member: Ed25519.PublicKey
    public let device: Ed25519.PublicKey
    public let certificate: DeviceCertificate

    /// Why a peer was refused; logged, then the connection is closed.
    public struct Refusal: Error, Equatable, CustomStringConvertible, Sendable {
        public let reason: String
        public var description: String { reason }
        public init(reason: String) { self.reason = reason }
    }

    /// Checks the certificate `payload` against the static key `remoteStatic` the handshake
    /// authenticated. `allowed` decides membership (the chapters layer provides it; until then a
    /// node syncs only with the devices of its own member).
    public static func authenticate(
        payload: [UInt8], remoteStatic: X25519.PublicKey, now: UInt64,
        allowed: (Ed25519.PublicKey) -> Bool
    ) throws(Refusal) -> PeerIdentity {
        let cert: DeviceCertificate
        do {
            cert = try DeviceCertificate(encoded: payload)
            try cert.verify(now: now)
        } catch let e as CryptoError {
            throw Refusal(reason: "peer certificate refused: \(e.detail)")
        } catch {
            throw Refusal(reason: "peer certificate refused: \(error)")
        }
        guard cert.deviceAgreementKey == remoteStatic else {
            throw Refusal(reason: "peer certificate is for transport key \(cert.deviceAgreementKey), but the peer authenticated with \(remoteStatic)")
        }
        guard allowed(cert.memberKey) else {
            throw Refusal(reason: "member \(cert.memberKey) is not allowed to sync with this node")
        }
        return PeerIdentity(member: cert.memberKey, device: cert.deviceSigningKey, certificate: cert)
    }
}

