import KithChapter
import KithCRDT
import KithCrypto

/// The organization's decision on a chapter's affiliation (Protocol/consent.md §4.1), signed by
/// its own key: a chapter admin's `affiliate` op is only a request; the hub takes records from
/// the chapter once the organization approved it, under the terms it approved.
///
/// body = `version(1)=1 ‖ chapter_id[16] ‖ u8 decision (1 approved, 2 refused) ‖
///         u8 allows_without_contact_consent ‖ uvarint max_records (0 = the hub's default) ‖
///         uvarint max_bytes (0 = the hub's default) ‖ u64 at_ms`, then `signature[64]`: Ed25519
/// by the organization's signing key over `"kith/chapter-decision/v1\0" ‖ body`.
public struct ChapterDecision: Sendable, Equatable {
    static let domain = Array("kith/chapter-decision/v1\0".utf8)

    public let chapter: ChapterID
    public let approved: Bool
    /// The organization accepted records of contacts who agreed only to be contacted by the
    /// chapter (the chapter's `allows_without_contact_consent`). Without it, an approval does not
    /// cover an affiliation that relaxes contact consent.
    public let allowsWithoutContactConsent: Bool
    public let maxRecords: UInt64
    public let maxBytes: UInt64
    public let at: UInt64
    public let encoded: [UInt8]

    public static func make(chapter: ChapterID, approved: Bool, allowsWithoutContactConsent: Bool, maxRecords: UInt64 = 0, maxBytes: UInt64 = 0,
                            at: UInt64, signer: Ed25519.PrivateKey) -> ChapterDecision {
        var w = ByteWriter()
        w.u8(1)
        w.raw(chapter.bytes)
        w.u8(approved ? 1 : 2)
        w.u8(allowsWithoutContactConsent ? 1 : 0)
        w.uvarint(maxRecords)
        w.uvarint(maxBytes)
        w.u64(at)
        let body = w.bytes
        return try! ChapterDecision(encoded: body + signer.signature(for: domain + body), organization: signer.publicKey)
    }

    public init(encoded b: [UInt8], organization: Ed25519.PublicKey) throws(ConsentError) {
        guard b.count > 64 else { throw ConsentError(.malformed, "a chapter decision is too short") }
        let body = Array(b[0..<(b.count - 64)])
        guard organization.isValidSignature(b[(b.count - 64)...], for: Self.domain + body) else {
            throw ConsentError(.badSignature, "the chapter decision is not signed by organization \(organization)")
        }
        var r = ByteReader(body)
        do {
            guard try r.u8() == 1 else { throw DecodeError("unsupported decision version") }
            chapter = try ChapterID(bytes: try r.raw(16))
            let d = try r.u8()
            guard d == 1 || d == 2 else { throw DecodeError("unknown decision") }
            approved = d == 1
            let relaxed = try r.u8()
            guard relaxed <= 1 else { throw DecodeError("bad flag") }
            allowsWithoutContactConsent = relaxed == 1
            maxRecords = try r.uvarint()
            maxBytes = try r.uvarint()
            at = try r.u64()
            guard r.isAtEnd else { throw DecodeError("trailing bytes") }
        } catch {
            throw ConsentError(.malformed, "malformed chapter decision: \(error)")
        }
        encoded = b
    }

    /// Whether this decision lets records of a chapter affiliated under `affiliation` in.
    public func covers(_ affiliation: Affiliation) -> Bool {
        approved && (allowsWithoutContactConsent || !affiliation.allowsWithoutContactConsent)
    }
}

/// Per-chapter limits of a hub (a decision may set its own; 0 there means these).
public struct HubLimits: Sendable, Equatable {
    public var maxRecordsPerChapter: UInt64
    public var maxBytesPerChapter: UInt64

    public init(maxRecordsPerChapter: UInt64 = 10_000, maxBytesPerChapter: UInt64 = 32 << 20) {
        self.maxRecordsPerChapter = maxRecordsPerChapter
        self.maxBytesPerChapter = maxBytesPerChapter
    }

    public static let defaults = HubLimits()
}
