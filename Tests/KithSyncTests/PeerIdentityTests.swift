import KithCrypto
import KithSync
import Testing

@Suite("Peer authentication after the handshake")
struct PeerIdentityTests {
    struct Device {
        let member: Ed25519.PrivateKey
        let agreement = X25519.PrivateKey()
        let signing = Ed25519.PrivateKey()
        func cert(expiresAt: UInt64? = nil, agreementKey: X25519.PublicKey? = nil) -> DeviceCertificate {
            DeviceCertificate.issue(member: member, deviceSigningKey: signing.publicKey,
                                    deviceAgreementKey: agreementKey ?? agreement.publicKey, createdAt: 1_000, expiresAt: expiresAt)
        }
    }

    /// Runs a real XX handshake in which each side sends its certificate, then authenticates.
    func handshake(_ i: Device, _ r: Device, initiatorCert: [UInt8], responderCert: [UInt8]) throws -> (initiatorSees: (payload: [UInt8], rs: X25519.PublicKey), responderSees: (payload: [UInt8], rs: X25519.PublicKey)) {
        var hi = NoiseHandshake(role: .initiator, staticKey: i.agreement, prologue: Noise.kithPrologue)
        var hr = NoiseHandshake(role: .responder, staticKey: r.agreement, prologue: Noise.kithPrologue)
        _ = try hr.readMessage(hi.writeMessage(payload: []))
        let rCert = try hi.readMessage(hr.writeMessage(payload: responderCert))
        let iCert = try hr.readMessage(hi.writeMessage(payload: initiatorCert))
        return ((rCert, hi.remoteStatic!), (iCert, hr.remoteStatic!))
    }

    @Test func ownDevicesAreAcceptedOthersRefused() throws {
        let member = Ed25519.PrivateKey()
        let laptop = Device(member: member), server = Device(member: member), stranger = Device(member: Ed25519.PrivateKey())
        let sameMember: (Ed25519.PublicKey) -> Bool = { $0 == member.publicKey }
        let seen = try handshake(laptop, server, initiatorCert: laptop.cert().encoded, responderCert: server.cert().encoded)
        let peer = try PeerIdentity.authenticate(payload: seen.initiatorSees.payload, remoteStatic: seen.initiatorSees.rs, now: 2_000, allowed: sameMember)
        #expect(peer.device == server.signing.publicKey && peer.member == member.publicKey)
        _ = try PeerIdentity.authenticate(payload: seen.responderSees.payload, remoteStatic: seen.responderSees.rs, now: 2_000, allowed: sameMember)

        // A non-member with a perfectly valid certificate of its own.
        let s = try handshake(stranger, server, initiatorCert: stranger.cert().encoded, responderCert: server.cert().encoded)
        #expect(throws: PeerIdentity.Refusal.self) {
            _ = try PeerIdentity.authenticate(payload: s.responderSees.payload, remoteStatic: s.responderSees.rs, now: 2_000, allowed: sameMember)
        }
    }

    @Test func stolenForgedExpiredAndGarbageCertificatesAreRefused() throws {
        let member = Ed25519.PrivateKey()
        let laptop = Device(member: member), server = Device(member: member)
        let attacker = Device(member: Ed25519.PrivateKey())
        let allow: (Ed25519.PublicKey) -> Bool = { $0 == member.publicKey }
        // The attacker replays the laptop's (public) certificate but holds its own static key.
        let replayed = try handshake(attacker, server, initiatorCert: laptop.cert().encoded, responderCert: server.cert().encoded)
        #expect(throws: PeerIdentity.Refusal.self) {
            _ = try PeerIdentity.authenticate(payload: replayed.responderSees.payload, remoteStatic: replayed.responderSees.rs, now: 2_000, allow)
        }
        // A certificate "signed" by the attacker claiming the member's key: signature fails.
        var forged = attacker.cert().encoded
        forged.replaceSubrange(1..<33, with: member.publicKey.bytes)
        let f = try handshake(attacker, server, initiatorCert: forged, responderCert: server.cert().encoded)
        #expect(throws: PeerIdentity.Refusal.self) {
            _ = try PeerIdentity.authenticate(payload: f.responderSees.payload, remoteStatic: f.responderSees.rs, now: 2_000, allow)
        }
        // Expired, and garbage.
        let expired = try handshake(laptop, server, initiatorCert: laptop.cert(expiresAt: 1_500).encoded, responderCert: server.cert().encoded)
        #expect(throws: PeerIdentity.Refusal.self) {
            _ = try PeerIdentity.authenticate(payload: expired.responderSees.payload, remoteStatic: expired.responderSees.rs, now: 2_000, allow)
        }
        #expect(throws: PeerIdentity.Refusal.self) {
            _ = try PeerIdentity.authenticate(payload: [1, 2, 3], remoteStatic: laptop.agreement.publicKey, now: 2_000, allow)
        }
    }
}

extension PeerIdentity {
    static func authenticate(payload: [UInt8], remoteStatic: X25519.PublicKey, now: UInt64, _ allowed: @escaping (Ed25519.PublicKey) -> Bool) throws(Refusal) -> PeerIdentity {
        try authenticate(payload: payload, remoteStatic: remoteStatic, now: now, allowed: allowed)
    }
}
