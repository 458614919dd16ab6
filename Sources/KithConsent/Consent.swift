import KithChapter
import KithCRDT
import KithCrypto

/// Why a grant, record, revocation or receipt was refused.
public struct ConsentError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case malformed, badSignature, wrongOrganization, notAffiliated, notMember, expired, replayed, notCovered, noConsent, notOwner
        /// The organization has not approved the chapter's affiliation (or not its current terms): retry later.
        case pendingApproval
        /// The organization refused the chapter's affiliation.
        case chapterRefused
        /// The chapter is over the hub's record or byte limit.
        case overLimit
        /// The hub could not take it now (its storage failed): retry later.
        case unavailable

        /// The code a hub answer carries (Protocol/consent.md §5).
        public var code: UInt8 {
            switch self {
            case .malformed: 1
            case .badSignature: 2
            case .wrongOrganization: 3
            case .notAffiliated: 4
            case .notMember: 5
            case .expired: 6
            case .replayed: 7
            case .notCovered: 8
            case .noConsent: 9
            case .notOwner: 10
            case .chapterRefused: 11
            case .overLimit: 12
            case .pendingApproval: 13
            case .unavailable: 14
            }
        }

        public init?(code: UInt8) {
            guard let k = Self.allCases.first(where: { $0.code == code }) else { return nil }
            self = k
        }

        /// Whether the member should keep the record and send it again later.
        public var isTransient: Bool { self == .pendingApproval || self == .unavailable }
    }

    public let kind: Kind
    public let detail: String

    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    public var description: String { detail }
}

/// An organization's keys (the hub holds them): Ed25519 to sign receipts, X25519 to open records.
public struct OrganizationKeys: Sendable {
    public let signing: Ed25519.PrivateKey
    public let agreement: X25519.PrivateKey
    public let name: String

    public init(signing: Ed25519.PrivateKey, agreement: X25519.PrivateKey, name: String) {
        self.signing = signing
        self.agreement = agreement
        self.name = name
    }

    public static func generate(name: String) -> OrganizationKeys {
        OrganizationKeys(signing: Ed25519.PrivateKey(), agreement: X25519.PrivateKey(), name: name)
    }

    public var card: OrganizationCard { OrganizationCard(signingKey: signing.publicKey, agreementKey: agreement.publicKey, name: name) }
}

/// An organization's public identity as an admin pastes it into `kith chapter affiliate`:
/// `kith-org:` ‖ base64url(`version(1)=1 ‖ signing[32] ‖ agreement[32] ‖ text name`).
public struct OrganizationCard: Sendable, Equatable {
    public static let prefix = "kith-org:"
    public let signingKey: Ed25519.PublicKey
    public let agreementKey: X25519.PublicKey
    public let name: String

    public init(signingKey: Ed25519.PublicKey, agreementKey: X25519.PublicKey, name: String) {
        self.signingKey = signingKey
        self.agreementKey = agreementKey
        self.name = name
    }

    public var text: String {
        var w = ByteWriter()
        w.u8(1)
        w.raw(signingKey.bytes)
        w.raw(agreementKey.bytes)
        w.text(name)
        return Self.prefix + Base64URL.encode(w.bytes)
    }

    public init(text: String) throws(ConsentError) {
        let t = text.trimmingWhitespace
        guard t.hasPrefix(Self.prefix), let b = Base64URL.decode(String(t.dropFirst(Self.prefix.count))) else {
            throw ConsentError(.malformed, "this is not an organization card (it starts with \(Self.prefix))")
        }
        var r = ByteReader(b)
        do {
            guard try r.u8() == 1 else { throw DecodeError("unsupported version") }
            signingKey = try Ed25519.PublicKey(bytes: try r.raw(32))
            agreementKey = try X25519.PublicKey(bytes: try r.raw(32))
            name = try r.text(max: 200)
            guard r.isAtEnd else { throw DecodeError("trailing bytes") }
        } catch {
            throw ConsentError(.malformed, "the organization card is damaged: \(error)")
        }
    }
}

/// Signed-object plumbing shared by grants, records, revocations: `body ‖ certificate ‖ signature`
/// where the certificate's device key signs `domain ‖ body ‖ certificate`.
struct DeviceSigned {
    let body: [UInt8]
    let certificate: DeviceCertificate
    let signature: [UInt8]

    static func make(domain: [UInt8], body: [UInt8], certificate: DeviceCertificate, device: Ed25519.PrivateKey) -> [UInt8] {
        precondition(device.publicKey == certificate.deviceSigningKey)
        let signed = body + certificate.encoded
        return signed + device.signature(for: domain + signed)
    }

    /// The certificate's bytes as they came.
    let certificateBytes: [UInt8]

    /// Splits and verifies: the certificate (at `now` seconds) and the device signature.
    /// `verified`: a certificate's bytes already verified at this time — a record and its grant
    /// usually carry the same device's certificate, which is then checked once, not twice.
    ///
    /// `cache`: signatures already checked (`VerificationCache`). The certificate's signature is
    /// looked up there, its validity period checked on every use all the same; the object's own
    /// signature is looked up and remembered only when `cacheSignature` (a grant, which many
    /// records repeat — not a record, which is new each time).
    ///
    /// `trusted`: bytes this hub verified when they arrived and kept since (in memory, or in its
    /// authenticated store): parsed without checking a signature again.
    init(encoded b: [UInt8], domain: [UInt8], what: String, nowSeconds: UInt64, verified: [UInt8]? = nil,
         cache: VerificationCache? = nil, cacheSignature: Bool = false, trusted: Bool = false) throws(ConsentError) {
        let tail = DeviceCertificate.encodedLength + 64
        guard b.count > tail else { throw ConsentError(.malformed, "\(what) is too short") }
        body = Array(b[0..<(b.count - tail)])
        certificateBytes = Array(b[(b.count - tail)..<(b.count - 64)])
        let c: DeviceCertificate, certificateBytes = certificateBytes
        do {
            c = try DeviceCertificate(encoded: certificateBytes)
            if certificateBytes != verified && !trusted {
                let key = cache == nil ? nil : VerificationCache.key(domain: Self.certificateCacheDomain, certificateBytes)
                // A cached certificate skips only its signature check; outside its validity
                // period (or near its start, within the clock skew) it is verified in full, which
                // refuses an expired one with its own error.
                let inPeriod = c.createdAt <= nowSeconds && (c.expiresAt.map { nowSeconds < $0 } ?? true)
                var known = false
                if inPeriod, let key, let cache { known = cache.contains(key) }
                if !known {
                    try c.verify(now: nowSeconds)
                    if let key { cache?.insert(key) }
                }
            }
        } catch {
            throw ConsentError(.badSignature, "\(what): the device certificate is not valid: \(error)")
        }
        certificate = c
        signature = Array(b[(b.count - 64)...])
        let key = cacheSignature && cache != nil ? VerificationCache.key(domain: domain, b) : nil
        if trusted { return }
        if let key, let cache, cache.contains(key) { return }
        guard certificate.deviceSigningKey.isValidSignature(signature, for: domain + b[0..<(b.count - 64)]) else {
            throw ConsentError(.badSignature, "\(what): signature does not verify against device \(certificate.deviceSigningKey)")
        }
        if let key { cache?.insert(key) }
    }

    static let certificateCacheDomain = Array("kith/device-certificate\0".utf8)
}

/// A member's consent grant: this contact's chosen fields may go to this organization, for this
/// purpose, until this time (Protocol/consent.md §3). Signed by one of the member's devices.
///
/// body = `version(1)=1 ‖ grant_id[16] ‖ chapter_id[16] ‖ org_signing_key[32] ‖ contact_id[16] ‖
///         text fields ("name,email,…") ‖ text purpose ‖ u64 created_ms ‖ u64 expires_ms (0 = none)`
public struct Grant: Sendable, Equatable {
    static let domain = Array("kith/grant/v1\0".utf8)

    public let id: [UInt8]
    public let chapter: ChapterID
    public let organization: Ed25519.PublicKey
    public let contact: ContactID
    public let fields: [String]
    public let purpose: String
    public let createdAt: UInt64
    public let expiresAt: UInt64?
    public let certificate: DeviceCertificate
    public let encoded: [UInt8]

    public var member: Ed25519.PublicKey { certificate.memberKey }

    public static func make(
        chapter: ChapterID, organization: Ed25519.PublicKey, contact: ContactID, fields: [String], purpose: String,
        createdAt: UInt64, expiresAt: UInt64?, certificate: DeviceCertificate, device: Ed25519.PrivateKey
    ) -> Grant {
        var w = ByteWriter()
        w.u8(1)
        w.raw(SecureRandom.bytes(16))
        w.raw(chapter.bytes)
        w.raw(organization.bytes)
        w.raw(contact.bytes)
        w.text(fields.joined(separator: ","))
        w.text(purpose)
        w.u64(createdAt)
        w.u64(expiresAt ?? 0)
        return try! Grant(encoded: DeviceSigned.make(domain: domain, body: w.bytes, certificate: certificate, device: device),
                          nowSeconds: createdAt / 1000)
    }

    public init(encoded: [UInt8], nowSeconds: UInt64) throws(ConsentError) {
        try self.init(encoded: encoded, nowSeconds: nowSeconds, verifiedCertificate: nil)
    }

    init(encoded: [UInt8], nowSeconds: UInt64, verifiedCertificate: [UInt8]?, cache: VerificationCache? = nil, trusted: Bool = false) throws(ConsentError) {
        let s = try DeviceSigned(encoded: encoded, domain: Self.domain, what: "grant", nowSeconds: nowSeconds, verified: verifiedCertificate,
                                 cache: cache, cacheSignature: true, trusted: trusted)
        var r = ByteReader(s.body)
        do {
            guard try r.u8() == 1 else { throw DecodeError("unsupported grant version") }
            id = Array(try r.raw(16))
            chapter = try ChapterID(bytes: try r.raw(16))
            organization = try Ed25519.PublicKey(bytes: try r.raw(32))
            contact = try ContactID(bytes: try r.raw(16))
            fields = try r.text(max: 1_000).split(separator: ",").map(String.init)
            purpose = try r.text(max: 2_000)
            createdAt = try r.u64()
            let e = try r.u64()
            expiresAt = e == 0 ? nil : e
            guard r.isAtEnd, !fields.isEmpty, !purpose.isEmpty else { throw DecodeError("a grant names fields and a purpose") }
        } catch {
            throw ConsentError(.malformed, "malformed grant: \(error)")
        }
        certificate = s.certificate
        self.encoded = encoded
    }

    public func isExpired(nowMilliseconds: UInt64) -> Bool { expiresAt.map { nowMilliseconds >= $0 } ?? false }
}

/// What a member's daemon sends the hub for a grant: the grant, a version that grows with every
/// update, and the projected fields sealed to the organization (`crypto_box_seal`), signed by
/// the sending device. Relays cannot read it; the hub refuses versions it has already passed.
///
/// body = `version(1)=1 ‖ bytes grant ‖ uvarint record_version ‖ bytes sealed`
/// sealed plaintext = `uvarint n ‖ n × (text field ‖ text value)` (always including `consent`)
public struct UpwardRecord: Sendable, Equatable {
    static let domain = Array("kith/upward/v1\0".utf8)

    public let grant: Grant
    public let version: UInt64
    public let sealed: [UInt8]
    public let certificate: DeviceCertificate
    public let encoded: [UInt8]

    public var hash: [UInt8] { BLAKE2b.hash(encoded) }

    /// Seals and signs a record of `grant` (which must be this device's member's).
    public static func make(grant: Grant, version: UInt64, values: [(String, String)], to organization: X25519.PublicKey,
                            certificate: DeviceCertificate, device: Ed25519.PrivateKey) throws(ConsentError) -> UpwardRecord {
        try UpwardRecord(encoded: encode(grant: grant, version: version, values: values, to: organization, certificate: certificate, device: device),
                         nowSeconds: grant.createdAt / 1000)
    }

    static func encode(grant: Grant, version: UInt64, values: [(String, String)], to organization: X25519.PublicKey,
                       certificate: DeviceCertificate, device: Ed25519.PrivateKey) -> [UInt8] {
        var p = ByteWriter()
        p.uvarint(values.count)
        for (k, v) in values {
            p.text(k)
            p.text(v)
        }
        var w = ByteWriter()
        w.u8(1)
        w.lengthPrefixed(grant.encoded)
        w.uvarint(version)
        w.lengthPrefixed(SealedBox.seal(p.bytes, to: organization))
        return DeviceSigned.make(domain: domain, body: w.bytes, certificate: certificate, device: device)
    }

    /// `cache`: certificates and grants already verified (a hub's), see `VerificationCache`.
    public init(encoded: [UInt8], nowSeconds: UInt64, cache: VerificationCache? = nil) throws(ConsentError) {
        try self.init(encoded: encoded, nowSeconds: nowSeconds, cache: cache, trusted: false)
    }

    /// A record this hub verified when it arrived and has kept since (`DeviceSigned`'s `trusted`):
    /// parsed without checking its signatures again. Only for bytes from the hub's own store,
    /// whose rows are authenticated under its storage key.
    public init(trusted encoded: [UInt8]) throws(ConsentError) {
        try self.init(encoded: encoded, nowSeconds: 0, cache: nil, trusted: true)
    }

    init(encoded: [UInt8], nowSeconds: UInt64, cache: VerificationCache?, trusted: Bool) throws(ConsentError) {
        let s = try DeviceSigned(encoded: encoded, domain: Self.domain, what: "upward record", nowSeconds: nowSeconds, cache: cache, trusted: trusted)
        var r = ByteReader(s.body)
        let grantBytes: [UInt8]
        do {
            guard try r.u8() == 1 else { throw DecodeError("unsupported record version") }
            grantBytes = Array(try r.lengthPrefixed(max: 1 << 16))
            version = try r.uvarint()
            sealed = Array(try r.lengthPrefixed(max: 1 << 20))
            guard r.isAtEnd else { throw DecodeError("trailing bytes") }
        } catch {
            throw ConsentError(.malformed, "malformed upward record: \(error)")
        }
        grant = try Grant(encoded: grantBytes, nowSeconds: nowSeconds, verifiedCertificate: s.certificateBytes, cache: cache, trusted: trusted)
        guard s.certificate.memberKey == grant.member else {
            throw ConsentError(.notOwner, "the record is signed by member \(s.certificate.memberKey), but the grant is member \(grant.member)'s")
        }
        certificate = s.certificate
        self.encoded = encoded
    }

    /// Opens the sealed fields with the organization's key.
    public func open(with organization: X25519.PrivateKey) throws(ConsentError) -> [(String, String)] {
        let plain: [UInt8]
        do { plain = try SealedBox.open(sealed, with: organization) } catch {
            throw ConsentError(.badSignature, "the sealed fields do not open with this organization's key (tampered, or sealed to another organization)")
        }
        var r = ByteReader(plain)
        do {
            let n = try r.count(max: 100, "field count")
            var out: [(String, String)] = []
            for _ in 0..<n { out.append((try r.text(max: 200), try r.text(max: 1 << 16))) }
            guard r.isAtEnd else { throw DecodeError("trailing bytes") }
            return out
        } catch {
            throw ConsentError(.malformed, "the sealed fields do not parse: \(error)")
        }
    }
}

/// A member's revocation of a grant: the hub must delete the record.
/// body = `version(1)=1 ‖ grant_id[16] ‖ org_signing_key[32] ‖ u64 at_ms`
public struct GrantRevocation: Sendable, Equatable {
    static let domain = Array("kith/revoke-grant/v1\0".utf8)
    public let grantID: [UInt8]
    public let organization: Ed25519.PublicKey
    public let at: UInt64
    public let certificate: DeviceCertificate
    public let encoded: [UInt8]

    /// The member who signed it: the hub deletes only that member's grant of this id.
    public var member: Ed25519.PublicKey { certificate.memberKey }

    public static func make(grant: Grant, at: UInt64, certificate: DeviceCertificate, device: Ed25519.PrivateKey) -> GrantRevocation {
        var w = ByteWriter()
        w.u8(1)
        w.raw(grant.id)
        w.raw(grant.organization.bytes)
        w.u64(at)
        return try! GrantRevocation(encoded: DeviceSigned.make(domain: domain, body: w.bytes, certificate: certificate, device: device),
                                    nowSeconds: at / 1000)
    }

    public init(encoded: [UInt8], nowSeconds: UInt64, cache: VerificationCache? = nil) throws(ConsentError) {
        let s = try DeviceSigned(encoded: encoded, domain: Self.domain, what: "revocation", nowSeconds: nowSeconds, cache: cache)
        var r = ByteReader(s.body)
        do {
            guard try r.u8() == 1 else { throw DecodeError("unsupported revocation version") }
            grantID = Array(try r.raw(16))
            organization = try Ed25519.PublicKey(bytes: try r.raw(32))
            at = try r.u64()
            guard r.isAtEnd else { throw DecodeError("trailing bytes") }
        } catch {
            throw ConsentError(.malformed, "malformed revocation: \(error)")
        }
        certificate = s.certificate
        self.encoded = encoded
    }
}

/// The contact's own consent, from the contact's `consent` field (`level;date;method`).
public enum ContactConsent: String, Sendable {
    case none, contact, share

    public init(field: String?) {
        let level = field?.split(separator: ";", maxSplits: 1).first.map(String.init) ?? ""
        self = ContactConsent(rawValue: level) ?? .none
    }

    /// The rule that lets a record up, or nil when neither the contact nor the chapter allows it.
    public func rule(chapterAllowsWithoutContactConsent: Bool) -> HubAnswer.Rule? {
        if self == .share { return .contactAgreed }
        // The chapter's relaxation covers contacts who agreed to be contacted by the chapter,
        // never contacts who agreed to nothing.
        if chapterAllowsWithoutContactConsent && self == .contact { return .chapterAllowsWithoutContactConsent }
        return nil
    }
}
