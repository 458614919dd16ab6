import KithCRDT
import KithCrypto

/// A chapter's id: the first 16 bytes of the BLAKE2b-256 id of its `create` op, so the id
/// authenticates the root of the membership log (Protocol/chapters.md §1).
public struct ChapterID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]
    public static let length = 16
    public static let zero = ChapterID(unchecked: [UInt8](repeating: 0, count: 16))

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    public init(bytes: some Collection<UInt8>) throws(DecodeError) {
        guard bytes.count == Self.length else { throw DecodeError("a chapter id is \(Self.length) bytes, got \(bytes.count)") }
        self.bytes = Array(bytes)
    }

    /// Parses the base64url text form (22 characters).
    public init?(text: String) {
        guard let b = Base64URL.decode(text), let id = try? ChapterID(bytes: b) else { return nil }
        self = id
    }

    /// The scope of the chapter's shared contacts: `0x02 ‖ chapter id`.
    public var contentScope: ScopeID { try! ScopeID(bytes: [0x02] + bytes) }

    /// The chapter a content scope belongs to, if it is one.
    public init?(contentScope scope: ScopeID) {
        guard scope.bytes.count == 17, scope.bytes[0] == 0x02 else { return nil }
        self.bytes = Array(scope.bytes[1...])
    }

    public static func < (a: ChapterID, b: ChapterID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
    public var description: String { Base64URL.encode(bytes) }
}

/// A membership op's id: BLAKE2b-256 of its complete encoding (signature included).
public struct OpID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let bytes: [UInt8]

    public func hash(into h: inout Hasher) { bytes.withUnsafeBytes { h.combine(bytes: $0) } }
    public static func == (a: OpID, b: OpID) -> Bool { a.bytes == b.bytes }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    public init(bytes: some Collection<UInt8>) throws(DecodeError) {
        guard bytes.count == 32 else { throw DecodeError("an op id is 32 bytes, got \(bytes.count)") }
        self.bytes = Array(bytes)
    }

    public static func < (a: OpID, b: OpID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
    public var description: String { Base64URL.encode(bytes) }
    /// The 16-byte reference an encrypted block uses to name the epoch whose key sealed it.
    public var epochRef: EpochRef { try! EpochRef(bytes: bytes.prefix(16)) }
}

/// A chapter epoch key sealed to one device's X25519 key (`crypto_box_seal` of the 32-byte key).
public struct KeyEnvelope: Hashable, Sendable {
    /// The device's Ed25519 signing key (its identity in the log).
    public let device: Ed25519.PublicKey
    public let sealed: [UInt8]
    public static let sealedLength = 32 + 48

    public init(device: Ed25519.PublicKey, sealed: [UInt8]) {
        self.device = device
        self.sealed = sealed
    }
}

/// What a membership op does. Tags are the wire values (Protocol/chapters.md §2).
public enum MembershipAction: Hashable, Sendable {
    /// 0x01 — the first op: the author becomes the chapter's first admin.
    case create(name: String, nonce: [UInt8])
    /// 0x02 — an admin adds a member with their first device, citing the invite used (if any).
    case addMember(DeviceCertificate, admin: Bool, invite: OpID?)
    /// 0x03 — an admin removes a member and all their devices.
    case removeMember(Ed25519.PublicKey)
    /// 0x04 — a member (or an admin) lists another device of that member.
    case addDevice(DeviceCertificate)
    /// 0x05 — an admin revokes a device.
    case revokeDevice(Ed25519.PublicKey)
    /// 0x06 — an admin promotes or demotes a member.
    case setAdmin(Ed25519.PublicKey, Bool)
    /// 0x07 — a member starts a new epoch: a fresh key sealed to current devices, with a
    /// commitment (keyed BLAKE2b of a fixed string) so every device can tell it got the same key.
    case epoch(check: [UInt8], envelopes: [KeyEnvelope])
    /// 0x08 — a member seals an existing epoch's key to devices that lack it.
    case shareKey(epoch: OpID, envelopes: [KeyEnvelope])
    /// 0x09 — an admin opens an invite: the invite's Ed25519 public key, expiry (ms), uses, and
    /// whether joins with it wait for an admin's approval.
    case invite(key: Ed25519.PublicKey, expiresAt: UInt64, uses: Int, approval: Bool)
    /// 0x0A — the author's member leaves the chapter.
    case leave
    /// 0x0B — an admin affiliates the chapter with an organization: its keys, name and hub
    /// address, and whether records may go up without the contact's own consent to sharing.
    case affiliate(Affiliation)
    /// 0x0C — an admin closes an invite before it expires or runs out of uses.
    case closeInvite(OpID)
    /// 0x0D — a member's device records the member's own revocation of one of their devices:
    /// the statement signed with the member key (identity.md §6), so a stolen device, which
    /// holds no member key, cannot revoke the member's others.
    case revokeDeviceByMember(DeviceRevocation)
    /// A display name for the author's member key or one of the author member's devices
    /// (`subject`); empty clears it. Only the member may name themselves and their devices.
    case setName(subject: Ed25519.PublicKey, name: String)

    /// The longest display name, in UTF-8 bytes.
    public static let maxNameLength = 64

    /// Why `name` cannot be a display name, or nil when it can (Protocol/chapters.md §2, `set name`).
    public static func problem(withName name: String) -> String? {
        if name.utf8.count > maxNameLength { return "a display name is at most \(maxNameLength) bytes of UTF-8 (this one is \(name.utf8.count))" }
        if !name.unicodeScalars.allSatisfy({ !$0.properties.isNoncharacterCodePoint && $0.properties.generalCategory != .control && $0.properties.generalCategory != .format }) {
            return "a display name has no control characters (tabs, line breaks, …)"
        }
        if name != name.trimmingWhitespaceEdges { return "a display name has no leading or trailing spaces" }
        return nil
    }

    /// True for an action that only adds to what the chapter allows (a member, a device, a key
    /// share, an invite, a display name): a node that loses such an op it received only grants
    /// less until a peer sends it again (every connection resends the whole log). Ops that take
    /// rights away, start epochs or change the affiliation are not among them
    /// (Protocol/chapters.md §3.1, storing received ops).
    public var onlyGrants: Bool {
        switch self {
        case .addMember, .addDevice, .shareKey, .invite, .setName: true
        case .create, .removeMember, .revokeDevice, .setAdmin, .epoch, .leave, .affiliate, .closeInvite, .revokeDeviceByMember: false
        }
    }

    public var tag: UInt8 {
        switch self {
        case .create: 0x01
        case .addMember: 0x02
        case .removeMember: 0x03
        case .addDevice: 0x04
        case .revokeDevice: 0x05
        case .setAdmin: 0x06
        case .epoch: 0x07
        case .shareKey: 0x08
        case .invite: 0x09
        case .leave: 0x0A
        case .affiliate: 0x0B
        case .closeInvite: 0x0C
        case .revokeDeviceByMember: 0x0D
        case .setName: 0x0E
        }
    }

    /// The device a revocation op revokes.
    public var revokedDevice: Ed25519.PublicKey? {
        switch self {
        case let .revokeDevice(d): d
        case let .revokeDeviceByMember(r): r.device
        default: nil
        }
    }

    /// True for ops only an admin may sign.
    public var needsAdmin: Bool {
        switch self {
        case .addMember, .removeMember, .setAdmin, .invite, .affiliate, .closeInvite, .revokeDevice: true
        default: false
        }
    }
}

/// One signed entry of a chapter's membership log.
///
/// `format(1)=1 ‖ chapter(16, zero in create) ‖ parents(uvarint n, n×32 ascending) ‖
///  timestamp u64 ms ‖ author device certificate(177) ‖ action tag(1) ‖ body ‖ signature(64)`;
/// the signature is by the certificate's device key over `"kith/membership/v1\0" ‖` every byte
/// before it.
public struct MembershipOp: Hashable, Sendable {
    public static let format: UInt8 = 1
    public static let maxParents = 64
    public static let maxEnvelopes = 4_096
    public static let maxEncodedLength = 1 << 20
    static let signatureDomain = Array("kith/membership/v1\0".utf8)

    /// The op's fields in one immutable box, so copying an op (which evaluation does for every
    /// op of the log) costs one reference count instead of one per field.
    final class Storage: Sendable {
        let chapter: ChapterID
        let parents: [OpID]
        let timestamp: UInt64
        let certificate: DeviceCertificate
        let action: MembershipAction
        let encoded: [UInt8]
        let id: OpID

        init(chapter: ChapterID, parents: [OpID], timestamp: UInt64, certificate: DeviceCertificate, action: MembershipAction,
             encoded: [UInt8], id: OpID) {
            self.chapter = chapter
            self.parents = parents
            self.timestamp = timestamp
            self.certificate = certificate
            self.action = action
            self.encoded = encoded
            self.id = id
        }
    }

    private let storage: Storage
    public var chapter: ChapterID { storage.chapter }
    public var parents: [OpID] { storage.parents }
    public var timestamp: UInt64 { storage.timestamp }
    public var certificate: DeviceCertificate { storage.certificate }
    public var action: MembershipAction { storage.action }
    public var encoded: [UInt8] { storage.encoded }
    public var id: OpID { storage.id }

    public var authorMember: Ed25519.PublicKey { certificate.memberKey }
    public var authorDevice: Ed25519.PublicKey { certificate.deviceSigningKey }

    public static func == (a: MembershipOp, b: MembershipOp) -> Bool { a.encoded == b.encoded }
    public func hash(into h: inout Hasher) { h.combine(id) }

    /// Signs a new op. `device` must be the key certified by `certificate`.
    public static func make(
        chapter: ChapterID, parents: [OpID], timestamp: UInt64, certificate: DeviceCertificate,
        device: Ed25519.PrivateKey, action: MembershipAction
    ) -> MembershipOp {
        try! MembershipOp(decoding: signed(chapter: chapter, parents: parents, timestamp: timestamp, certificate: certificate,
                                           device: device, action: action))
    }

    /// The signed encoding of an op, unchecked (tests build hostile ops with it).
    static func signed(
        chapter: ChapterID, parents: [OpID], timestamp: UInt64, certificate: DeviceCertificate,
        device: Ed25519.PrivateKey, action: MembershipAction
    ) -> [UInt8] {
        precondition(device.publicKey == certificate.deviceSigningKey, "the signing device must be the certified one")
        var w = ByteWriter(capacity: 512)
        w.u8(format)
        w.raw(chapter.bytes)
        let sorted = Set(parents).sorted()
        w.uvarint(sorted.count)
        for p in sorted { w.raw(p.bytes) }
        w.u64(timestamp)
        w.raw(certificate.encoded)
        w.u8(action.tag)
        encodeBody(action, into: &w)
        let sig = device.signature(for: signatureDomain + w.bytes)
        w.raw(sig)
        return w.bytes
    }

    private static func encodeBody(_ action: MembershipAction, into w: inout ByteWriter) {
        switch action {
        case let .create(name, nonce):
            w.text(name)
            w.raw(nonce)
        case let .addMember(cert, admin, invite):
            w.raw(cert.encoded)
            w.u8(admin ? 1 : 0)
            w.raw(invite?.bytes ?? [UInt8](repeating: 0, count: 32))
        case let .removeMember(m), let .revokeDevice(m):
            w.raw(m.bytes)
        case let .addDevice(cert):
            w.raw(cert.encoded)
        case let .setAdmin(m, admin):
            w.raw(m.bytes)
            w.u8(admin ? 1 : 0)
        case let .epoch(check, envelopes):
            w.raw(check)
            encode(envelopes, into: &w)
        case let .shareKey(epoch, envelopes):
            w.raw(epoch.bytes)
            encode(envelopes, into: &w)
        case let .invite(key, expiresAt, uses, approval):
            w.raw(key.bytes)
            w.u64(expiresAt)
            w.uvarint(uses)
            w.u8(approval ? 1 : 0)
        case .leave:
            break
        case let .affiliate(a):
            w.raw(a.signingKey.bytes)
            w.raw(a.agreementKey.bytes)
            w.text(a.name)
            w.text(a.hub)
            w.u8(a.allowsWithoutContactConsent ? 1 : 0)
        case let .closeInvite(id):
            w.raw(id.bytes)
        case let .revokeDeviceByMember(r):
            w.raw(r.encoded)
        case let .setName(subject, name):
            w.raw(subject.bytes)
            w.text(name)
        }
    }

    private static func encode(_ envelopes: [KeyEnvelope], into w: inout ByteWriter) {
        w.uvarint(envelopes.count)
        for e in envelopes {
            w.raw(e.device.bytes)
            w.raw(e.sealed)
        }
    }

    /// Parses and checks an op: structure, the author's certificate, every certificate the op
    /// carries (an `add member` / `add device` certificate must be signed by its member key and
    /// valid at the op's time) and the op signature. Whether the author was *allowed* to do it
    /// is the log's business.
    public init(decoding bytes: [UInt8]) throws(MembershipError) {
        var none = Set<[UInt8]>()
        try self.init(decoding: bytes, verifiedCertificates: &none)
    }

    /// `init(decoding:)` for ops that arrive together or for a log that already checked some
    /// certificates: a certificate whose encoding is in `verifiedCertificates` had its member
    /// signature checked before, so only its validity at this op's time is checked again (most
    /// ops of a log are by a few admins' devices, each op carrying the same certificate).
    /// Certificates checked here are added to the set.
    public init(decoding bytes: [UInt8], verifiedCertificates: inout Set<[UInt8]>) throws(MembershipError) {
        guard bytes.count <= Self.maxEncodedLength else {
            throw MembershipError(.malformed, "membership op is \(bytes.count) bytes, more than \(Self.maxEncodedLength)")
        }
        var r = ByteReader(bytes)
        let chapter: ChapterID, parents: [OpID], timestamp: UInt64, certificate: DeviceCertificate, action: MembershipAction
        do {
            let format = try r.u8()
            guard format == Self.format else { throw DecodeError("membership op format \(format) is not supported (this build reads \(Self.format))") }
            chapter = try ChapterID(bytes: try r.raw(16))
            let n = try r.count(max: Self.maxParents, "parent count")
            var list: [OpID] = []
            for _ in 0..<n { list.append(try OpID(bytes: try r.raw(32))) }
            guard zip(list, list.dropFirst()).allSatisfy({ $0 < $1 }) else { throw DecodeError("parents are not in ascending order without repeats") }
            parents = list
            timestamp = try r.u64()
            certificate = try Self.certificate(&r)
            let tag = try r.u8()
            action = try Self.decodeBody(tag: tag, &r)
            let signedLength = r.offset
            let sig = try r.raw(64)
            guard r.isAtEnd else { throw DecodeError("\(r.remaining) trailing bytes") }
            if case .create = action {
                guard chapter == .zero, parents.isEmpty else { throw DecodeError("a create op has a zero chapter id and no parents") }
            } else {
                guard chapter != .zero, !parents.isEmpty else { throw DecodeError("every op but create names its chapter and at least one parent") }
            }
            do {
                try Self.check(certificate, now: timestamp / 1000, verified: &verifiedCertificates)
            } catch {
                throw MembershipError(.badSignature, "the author's device certificate is not valid at the op's time: \(error)")
            }
            switch action {
            case let .addMember(embedded, _, _), let .addDevice(embedded):
                do {
                    try Self.check(embedded, now: timestamp / 1000, verified: &verifiedCertificates)
                } catch {
                    throw MembershipError(.badSignature, "the certificate this op lists (device \(embedded.deviceSigningKey) of member \(embedded.memberKey)) is not valid at the op's time: \(error)")
                }
            default:
                break
            }
            guard certificate.deviceSigningKey.isValidSignature(sig, for: Self.signatureDomain + bytes[0..<signedLength]) else {
                throw MembershipError(.badSignature, "membership op signature does not verify against its author device \(certificate.deviceSigningKey)")
            }
        } catch let e as DecodeError {
            throw MembershipError(.malformed, "malformed membership op: \(e.reason)")
        } catch let e as MembershipError {
            throw e
        } catch {
            throw MembershipError(.malformed, "malformed membership op: \(error)")
        }
        storage = Storage(chapter: chapter, parents: parents, timestamp: timestamp, certificate: certificate, action: action,
                          encoded: bytes, id: OpID(unchecked: BLAKE2b.hash(bytes)))
    }

    /// `DeviceCertificate.verify(now:)`, skipping the signature check for a certificate in
    /// `verified`: when the validity window holds at `now` (the rule `verify` applies, with its
    /// default skew) it passes; otherwise `verify` runs in full and gives the error.
    private static func check(_ cert: DeviceCertificate, now: UInt64, verified: inout Set<[UInt8]>) throws {
        let encoded = cert.encoded
        if verified.contains(encoded), cert.createdAt <= now &+ 300, cert.expiresAt.map({ now < $0 }) ?? true { return }
        try cert.verify(now: now)
        // Anyone can make valid certificates (for a fresh member key), so the set is bounded.
        if verified.count < Self.maxVerifiedCertificates { verified.insert(encoded) }
    }

    /// Most certificates a `verifiedCertificates` set takes.
    public static let maxVerifiedCertificates = 4_096

    private static func certificate(_ r: inout ByteReader) throws -> DeviceCertificate {
        try DeviceCertificate(encoded: Array(try r.raw(DeviceCertificate.encodedLength)))
    }

    private static func key(_ r: inout ByteReader) throws -> Ed25519.PublicKey {
        try Ed25519.PublicKey(bytes: try r.raw(32))
    }

    private static func flag(_ r: inout ByteReader) throws -> Bool {
        switch try r.u8() {
        case 0: return false
        case 1: return true
        case let v: throw DecodeError("flag byte \(v) is neither 0 nor 1")
        }
    }

    private static func envelopes(_ r: inout ByteReader) throws -> [KeyEnvelope] {
        let n = try r.count(max: maxEnvelopes, "envelope count")
        var out: [KeyEnvelope] = []
        for _ in 0..<n {
            out.append(KeyEnvelope(device: try key(&r), sealed: Array(try r.raw(KeyEnvelope.sealedLength))))
        }
        return out
    }

    private static func decodeBody(tag: UInt8, _ r: inout ByteReader) throws -> MembershipAction {
        switch tag {
        case 0x01:
            let name = try r.text(max: 200)
            return .create(name: name, nonce: Array(try r.raw(16)))
        case 0x02:
            let cert = try certificate(&r)
            let admin = try flag(&r)
            let inv = Array(try r.raw(32))
            return .addMember(cert, admin: admin, invite: inv.allSatisfy { $0 == 0 } ? nil : try OpID(bytes: inv))
        case 0x03: return .removeMember(try key(&r))
        case 0x04: return .addDevice(try certificate(&r))
        case 0x05: return .revokeDevice(try key(&r))
        case 0x06:
            let m = try key(&r)
            return .setAdmin(m, try flag(&r))
        case 0x07:
            let check = Array(try r.raw(16))
            return .epoch(check: check, envelopes: try envelopes(&r))
        case 0x08:
            let e = try OpID(bytes: try r.raw(32))
            return .shareKey(epoch: e, envelopes: try envelopes(&r))
        case 0x09:
            let k = try key(&r)
            let exp = try r.u64()
            let uses = try r.count(max: 10_000, "invite uses")
            guard uses >= 1 else { throw DecodeError("an invite allows at least one use") }
            return .invite(key: k, expiresAt: exp, uses: uses, approval: try flag(&r))
        case 0x0A: return .leave
        case 0x0B:
            let sk = try key(&r)
            let ak = try X25519.PublicKey(bytes: try r.raw(32))
            let name = try r.text(max: 200)
            let hub = try r.text(max: 255)
            return .affiliate(Affiliation(signingKey: sk, agreementKey: ak, name: name, hub: hub, allowsWithoutContactConsent: try flag(&r)))
        case 0x0C: return .closeInvite(try OpID(bytes: try r.raw(32)))
        case 0x0D: return .revokeDeviceByMember(try DeviceRevocation(encoded: Array(try r.raw(DeviceRevocation.encodedLength))))
        case 0x0E:
            let subject = try key(&r)
            let name = try r.text(max: MembershipAction.maxNameLength)
            if let problem = MembershipAction.problem(withName: name) { throw DecodeError(problem) }
            return .setName(subject: subject, name: name)
        default: throw DecodeError("unknown membership action \(tag)")
        }
    }
}

/// A chapter's affiliated organization (Protocol/consent.md §2).
public struct Affiliation: Hashable, Sendable {
    public let signingKey: Ed25519.PublicKey
    public let agreementKey: X25519.PublicKey
    public let name: String
    /// "host:port" of the organization's hub.
    public let hub: String
    /// Set by an admin to let members send records of contacts who agreed only to be contacted
    /// by the chapter (receipts say which rule applied).
    public let allowsWithoutContactConsent: Bool

    public init(signingKey: Ed25519.PublicKey, agreementKey: X25519.PublicKey, name: String, hub: String, allowsWithoutContactConsent: Bool) {
        self.signingKey = signingKey
        self.agreementKey = agreementKey
        self.name = name
        self.hub = hub
        self.allowsWithoutContactConsent = allowsWithoutContactConsent
    }
}

/// Why a membership op, invite or join was refused.
public struct MembershipError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case malformed, badSignature, wrongChapter, tooMany, notAuthorized, badInvite, noKey
    }

    public let kind: Kind
    public let detail: String

    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    public var description: String { detail }
}

extension String {
    /// Without leading and trailing white space (no Foundation in this module).
    var trimmingWhitespaceEdges: String {
        String(unicodeScalars.drop { $0.properties.isWhitespace }.reversed().drop { $0.properties.isWhitespace }.reversed().map(Character.init).reduce(into: "") { $0.append($1) })
    }
}
