import KithCRDT
import KithCrypto

/// An invitation to a chapter, as pasted into a text message (Protocol/chapters.md §4):
/// `kith:` followed by base64url of `version(1)=2 ‖ chapter(16) ‖ invite seed(32) ‖
/// admin device key(32) ‖ expires u32 Unix seconds ‖ hint (uvarint length ‖ UTF-8 "host:port")`.
///
/// The admin device key is the Ed25519 key of the device that opened the invite: the joiner's
/// daemon talks only to that device at the hint (a join waiting for approval is recognised by
/// it, not by the address).
///
/// The seed is the private half of an Ed25519 key whose public half an admin published in the
/// chapter's log (an `invite` op, signed by that admin). Whoever holds the string proves it by
/// signing their join request with that key; an admin's daemon checks the proof against the log.
public struct ChapterInvite: Sendable, Equatable {
    public static let prefix = "kith:"
    static let version: UInt8 = 2
    static let joinDomain = Array("kith/join/v1\0".utf8)

    public let chapter: ChapterID
    public let seed: [UInt8]
    /// The inviting admin's device (its signing key).
    public let admin: Ed25519.PublicKey
    /// Unix seconds.
    public let expiresAt: UInt64
    /// Where an admin's daemon listens ("host:port"); may be empty.
    public let hint: String

    public init(chapter: ChapterID, seed: [UInt8], admin: Ed25519.PublicKey, expiresAt: UInt64, hint: String) {
        self.chapter = chapter
        self.seed = seed
        self.admin = admin
        self.expiresAt = expiresAt
        self.hint = hint
    }

    public var key: Ed25519.PrivateKey { try! Ed25519.PrivateKey(seed: seed) }

    /// An admin's daemon a joiner may present the invite to: its device and where it listens.
    public struct Contact: Sendable, Equatable {
        public let device: Ed25519.PublicKey
        public let address: String
        public init(device: Ed25519.PublicKey, address: String) {
            self.device = device
            self.address = address
        }
    }

    /// The admins' daemons this invite can be redeemed with, in the order to try them
    /// (chapters.md §4): the issuing device at the first address of the hint, then every other
    /// admin device the issuer named as `base64url(device)@host:port`. Unparsable entries are
    /// left out.
    public var contacts: [Contact] {
        var out: [Contact] = []
        for (i, entry) in hint.split(separator: " ").enumerated() {
            if let at = entry.firstIndex(of: "@") {
                guard let bytes = Base64URL.decode(String(entry[..<at])), let device = try? Ed25519.PublicKey(bytes: bytes),
                      !out.contains(where: { $0.device == device }) else { continue }
                out.append(Contact(device: device, address: String(entry[entry.index(after: at)...])))
            } else if i == 0 {
                out.append(Contact(device: admin, address: String(entry)))
            }
        }
        return out
    }

    /// The hint for an invite issued at `address` (may be empty) that other admins' daemons can
    /// redeem too: each of `others` as `base64url(device)@host:port`, as many as fit in the
    /// hint's 255 bytes.
    public static func hint(address: String, others: [Contact]) -> String {
        var hint = address
        for c in others where !c.address.isEmpty && !c.address.contains(" ") {
            let entry = Base64URL.encode(c.device.bytes) + "@" + c.address
            let next = hint.isEmpty ? entry : hint + " " + entry
            if next.utf8.count <= maxHintLength { hint = next }
        }
        return hint
    }

    /// Longest hint an invite string carries (PastedCode's text limit).
    public static let maxHintLength = 255

    public var text: String {
        PastedCode.encode(prefix: Self.prefix, version: Self.version, head: chapter.bytes + seed + admin.bytes, expiresAt: expiresAt, hint: hint)
    }

    /// Parses an invite string; `now` (seconds) refuses expired invites before any network use.
    public init(text: String, now: UInt64) throws(MembershipError) {
        let d = try PastedCode.decode(text, prefix: Self.prefix, version: Self.version, headLength: 16 + 32 + 32, what: "invite",
                                      renew: "ask an admin for a new one", now: now)
        chapter = try! ChapterID(bytes: d.head[0..<16])
        seed = Array(d.head[16..<48])
        do { admin = try Ed25519.PublicKey(bytes: d.head[48..<80]) } catch {
            throw MembershipError(.badInvite, "the invite is damaged (its admin key is not a valid key); ask an admin for a new one")
        }
        expiresAt = d.expiresAt
        hint = d.hint
    }

    /// What the joiner signs with the invite key: bound to the chapter, to this connection's
    /// Noise handshake hash (so a captured proof cannot be replayed on another connection) and
    /// to the joiner's device certificate (so it cannot be used to admit someone else).
    static func joinMessage(chapter: ChapterID, handshakeHash: [UInt8], certificate: DeviceCertificate) -> [UInt8] {
        joinDomain + chapter.bytes + handshakeHash + certificate.encoded
    }

    /// The joiner's proof of holding the invite.
    public func proof(handshakeHash: [UInt8], certificate: DeviceCertificate) -> [UInt8] {
        key.signature(for: Self.joinMessage(chapter: chapter, handshakeHash: handshakeHash, certificate: certificate))
    }
}

extension MembershipLog {
    /// Closes an open invite (admin only): nobody can join with it any more.
    public mutating func closeInvite(_ id: OpID, certificate: DeviceCertificate, device: Ed25519.PrivateKey, now: UInt64) throws(MembershipError) -> MembershipOp {
        try append(.closeInvite(id), certificate: certificate, device: device, now: now)
    }

    /// Opens a new invite (admin only). Returns the invite op and the invite to hand out.
    public mutating func openInvite(
        expiresAt: UInt64, uses: Int, approval: Bool = false, hint: String, certificate: DeviceCertificate, device: Ed25519.PrivateKey, now: UInt64
    ) throws(MembershipError) -> (MembershipOp, ChapterInvite) {
        guard uses >= 1, uses <= 10_000 else { throw MembershipError(.badInvite, "an invite allows 1 to 10000 uses") }
        guard expiresAt > now else { throw MembershipError(.badInvite, "an invite must expire in the future") }
        let seed = SecureRandom.bytes(32)
        let key = try! Ed25519.PrivateKey(seed: seed)
        let op = try append(.invite(key: key.publicKey, expiresAt: expiresAt * 1000, uses: uses, approval: approval),
                            certificate: certificate, device: device, now: now * 1000)
        return (op, ChapterInvite(chapter: chapter, seed: seed, admin: certificate.deviceSigningKey, expiresAt: expiresAt, hint: hint))
    }

    /// Checks a joiner's proof of an open invite: the invite it proves. Refuses forged proofs,
    /// unknown, closed, expired and used-up invites, existing members, revoked devices, and a
    /// member (or device) removed after the invite was opened: re-admitting someone who was
    /// removed takes an invite opened after the removal.
    public func verifyJoin(joiner: DeviceCertificate, proof: [UInt8], handshakeHash: [UInt8], nowMilliseconds now: UInt64) throws(MembershipError) -> ChapterState.Invite {
        do {
            try joiner.verify(now: now / 1000)
        } catch {
            throw MembershipError(.badSignature, "the joiner's device certificate is not valid: \(error)")
        }
        guard !state.isMember(joiner.memberKey) else {
            throw MembershipError(.badInvite, "\(joiner.memberKey) is already a member of this chapter")
        }
        guard !state.revoked.contains(joiner.deviceSigningKey) else {
            throw MembershipError(.badInvite, "device \(joiner.deviceSigningKey) was revoked in this chapter")
        }
        let message = ChapterInvite.joinMessage(chapter: chapter, handshakeHash: handshakeHash, certificate: joiner)
        guard let invite = state.invites.values.sorted(by: { $0.id < $1.id }).first(where: { $0.key.isValidSignature(proof, for: message) }) else {
            throw MembershipError(.badInvite, "the join proof matches no invite of this chapter (forged, revoked, or for another chapter)")
        }
        guard !invite.closed else { throw MembershipError(.badInvite, "the invite was closed by an admin") }
        if let void = state.voidReason(invite) { throw MembershipError(.badInvite, "\(void); ask a current admin for a new invite") }
        guard now < invite.expiresAt else { throw MembershipError(.badInvite, "the invite has expired") }
        guard invite.used < invite.uses else { throw MembershipError(.badInvite, "the invite has already been used") }
        let removed = [state.removedAt[joiner.memberKey], state.removedDevicesAt[joiner.deviceSigningKey]].compactMap { $0 }.max()
        if let removed, removed > invite.position {
            throw MembershipError(.badInvite, "you were removed from this chapter after this invite was made; only a new invite from an admin can admit you again")
        }
        return invite
    }

    /// Adds a joiner under `invite` (verified, or approved by an admin) and shares every epoch
    /// key this device holds with the joiner's device.
    public mutating func add(
        joiner: DeviceCertificate, invite: OpID, certificate: DeviceCertificate, device: Ed25519.PrivateKey,
        agreement: X25519.PrivateKey, nowMilliseconds now: UInt64
    ) throws(MembershipError) -> [MembershipOp] {
        var trial = self
        var made = [try trial.append(.addMember(joiner, admin: false, invite: invite), certificate: certificate, device: device, now: now)]
        made += try trial.shareMissingKeys(certificate: certificate, device: device, agreement: agreement, now: now)
        self = trial
        return made
    }

    /// `verifyJoin` then `add`: what an admin's daemon does for an invite without approval.
    public mutating func admit(
        joiner: DeviceCertificate, proof: [UInt8], handshakeHash: [UInt8],
        certificate: DeviceCertificate, device: Ed25519.PrivateKey, agreement: X25519.PrivateKey, nowMilliseconds now: UInt64
    ) throws(MembershipError) -> [MembershipOp] {
        let invite = try verifyJoin(joiner: joiner, proof: proof, handshakeHash: handshakeHash, nowMilliseconds: now)
        return try add(joiner: joiner, invite: invite.id, certificate: certificate, device: device, agreement: agreement, nowMilliseconds: now)
    }
}
