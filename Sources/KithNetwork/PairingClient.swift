import Foundation
import KithChapter
import KithCrypto
import KithSync

/// The new device's side of `kith device add --pair`: one connection to the member's daemon,
/// a Noise XX handshake with a temporary self-certified certificate, one `pair` message, one
/// answer (Protocol/identity.md §5).
public enum PairingClient {
    public struct Failure: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Returns the certificate the member's daemon issued for `signing`/`agreement`.
    public static func pair(_ code: PairingCode, signing: Ed25519.PrivateKey, agreement: X25519.PrivateKey,
                            now: UInt64 = UInt64(Date().timeIntervalSince1970)) async throws -> DeviceCertificate {
        guard HostPort.parse(code.hint) != nil else {
            throw Failure(message: "the pairing code names no address ('\(code.hint)'); make one with kith device pair --hint host:port")
        }
        // Self-certified: the new device's own key stands in for a member key it does not have.
        let temporary = DeviceCertificate.issue(member: signing, deviceSigningKey: signing.publicKey,
                                                deviceAgreementKey: agreement.publicKey, createdAt: now)
        let answer: SyncMessage
        do {
            answer = try await NoiseLink.connect(to: code.hint, staticKey: agreement, certificate: temporary, now: now) { link in
                guard link.peer.member == code.member else {
                    throw Failure(message: "the daemon at \(code.hint) belongs to member \(link.peer.member), not the one in the code (\(code.member))")
                }
                try await link.send(.pair(proof: PairingCode.proof(token: code.token, handshakeHash: link.handshakeHash, certificate: temporary)))
                return try await link.receive()
            }
        } catch let e as Failure {
            throw e
        } catch {
            throw Failure(message: "cannot reach the member's daemon at \(code.hint): \(error)")
        }
        switch answer {
        case let .paired(bytes):
            let cert = try DeviceCertificate(encoded: bytes)
            try cert.verify(now: now, expectedMember: code.member)
            guard cert.deviceSigningKey == signing.publicKey, cert.deviceAgreementKey == agreement.publicKey else {
                throw Failure(message: "the member's daemon certified other keys than this device's")
            }
            return cert
        case let .joinRefused(reason):
            throw Failure(message: "the member's daemon refused: \(reason)")
        default:
            throw Failure(message: "the member's daemon answered with something other than a certificate")
        }
    }
}
