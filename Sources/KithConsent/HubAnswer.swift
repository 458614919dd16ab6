import KithCRDT
import KithCrypto

/// Every answer a hub gives to a record or a revocation, signed by the organization's key
/// (Protocol/consent.md §5): stored (a receipt), deleted (a deletion receipt), refused, or
/// pending (not taken now: the chapter awaits approval, or the hub could not store it).
///
/// body = `version(1)=1 ‖ kind (1 stored, 2 deleted, 3 refused, 4 pending) ‖ request_hash[32] ‖
///         member_key[32] ‖ grant_id[16] ‖ uvarint record_version ‖ u8 rule ‖ u8 code ‖
///         text reason ‖ u64 at_ms`, then `signature[64]`: Ed25519 by the organization's signing
/// key over `"kith/hub-answer/v1\0" ‖ body`. `request_hash` is BLAKE2b-256 of the exact record
/// or revocation answered, so an answer cannot be moved onto another request; `member_key` and
/// `grant_id` are zeros when the request did not parse.
///
/// Version 2 (deletion receipts only) appends, before the signature, where the record went and
/// what is true there now: `uvarint n ‖ n × (u8 place_kind ‖ text place_name ‖ u8 state ‖ u64 at_ms)`
/// (`RecordPlace`, `PlaceState`); version-1 answers still parse and verify.
public struct HubAnswer: Sendable, Equatable {
    public enum Kind: UInt8, Sendable { case stored = 1, deleted = 2, refused = 3, pending = 4 }
    /// Which consent rule let the record up.
    public enum Rule: UInt8, Sendable { case none = 0, contactAgreed = 1, chapterAllowsWithoutContactConsent = 2 }
    static let domain = Array("kith/hub-answer/v1\0".utf8)

    public let kind: Kind
    public let requestHash: [UInt8]
    public let memberKey: [UInt8]
    public let grantID: [UInt8]
    public let version: UInt64
    public let rule: Rule
    /// Why it was refused or left pending (nil for stored and deleted).
    public let code: ConsentError.Kind?
    public let reason: String
    public let at: UInt64
    /// A version-2 deletion receipt's places (empty in version 1: it speaks for the hub only).
    public let places: [PlaceReport]
    public let encoded: [UInt8]

    /// The answer's format version: 2 when it reports places.
    public var formatVersion: UInt8 { encoded.first ?? 1 }

    public static func make(_ kind: Kind, request: [UInt8], member: Ed25519.PublicKey?, grantID: [UInt8]?, version: UInt64, rule: Rule = .none,
                            code: ConsentError.Kind? = nil, reason: String = "", at: UInt64, places: [PlaceReport] = [],
                            signer: Ed25519.PrivateKey) -> HubAnswer {
        precondition(places.isEmpty || kind == .deleted, "only a deletion receipt reports places")
        var w = ByteWriter()
        w.u8(places.isEmpty ? 1 : 2)
        w.u8(kind.rawValue)
        w.raw(BLAKE2b.hash(request))
        w.raw(member?.bytes ?? [UInt8](repeating: 0, count: 32))
        w.raw(grantID.flatMap { $0.count == 16 ? $0 : nil } ?? [UInt8](repeating: 0, count: 16))
        w.uvarint(version)
        w.u8(rule.rawValue)
        w.u8(code?.code ?? 0)
        w.text(String(reason.prefix(500)))
        w.u64(at)
        if !places.isEmpty {
            w.uvarint(places.count)
            for p in places {
                w.u8(p.place.kind.rawValue)
                w.text(p.place.name)
                w.u8(p.state.rawValue)
                w.u64(p.at)
            }
        }
        let body = w.bytes
        return try! HubAnswer(encoded: body + signer.signature(for: domain + body), organization: signer.publicKey)
    }

    /// A refusal or pending answer for an error.
    public static func make(for error: ConsentError, request: [UInt8], member: Ed25519.PublicKey?, grantID: [UInt8]?, at: UInt64,
                            signer: Ed25519.PrivateKey) -> HubAnswer {
        make(error.kind.isTransient ? .pending : .refused, request: request, member: member, grantID: grantID, version: 0,
             code: error.kind, reason: error.detail, at: at, signer: signer)
    }

    /// Parses and verifies against the organization's signing key.
    public init(encoded b: [UInt8], organization: Ed25519.PublicKey) throws(ConsentError) {
        try self.init(encoded: b, verifyingWith: organization)
    }

    /// An answer this hub signed itself and kept (a held record's receipt): parsed without
    /// checking its signature again.
    init(trusted b: [UInt8]) throws(ConsentError) {
        try self.init(encoded: b, verifyingWith: nil)
    }

    private init(encoded b: [UInt8], verifyingWith organization: Ed25519.PublicKey?) throws(ConsentError) {
        guard b.count > 64, b.count <= Self.maxLength else { throw ConsentError(.malformed, "a hub answer is too short or too long") }
        let body = Array(b[0..<(b.count - 64)])
        if let organization, !organization.isValidSignature(b[(b.count - 64)...], for: Self.domain + body) {
            throw ConsentError(.badSignature, "the hub's answer is not signed by organization \(organization)")
        }
        var r = ByteReader(body)
        do {
            let format = try r.u8()
            guard format == 1 || format == 2 else { throw DecodeError("unsupported hub answer version \(format)") }
            guard let k = Kind(rawValue: try r.u8()) else { throw DecodeError("unknown answer kind") }
            kind = k
            requestHash = Array(try r.raw(32))
            memberKey = Array(try r.raw(32))
            grantID = Array(try r.raw(16))
            version = try r.uvarint()
            guard let ru = Rule(rawValue: try r.u8()) else { throw DecodeError("unknown rule") }
            rule = ru
            let c = try r.u8()
            code = c == 0 ? nil : ConsentError.Kind(code: c) ?? .malformed
            reason = try r.text(max: 2_000)
            at = try r.u64()
            var places: [PlaceReport] = []
            if format == 2 {
                guard k == .deleted else { throw DecodeError("only a deletion receipt reports places") }
                let n = try r.count(max: 200, "places")
                guard n > 0 else { throw DecodeError("a version-2 receipt reports at least one place") }
                for _ in 0..<n {
                    guard let pk = RecordPlace.Kind(rawValue: try r.u8()) else { throw DecodeError("unknown place kind") }
                    let name = try r.text(max: 200)
                    guard let st = PlaceState(rawValue: try r.u8()), st != .delivered else { throw DecodeError("unknown place state") }
                    places.append(PlaceReport(place: RecordPlace(kind: pk, name: name), state: st, at: try r.u64()))
                }
            }
            self.places = places
            guard r.isAtEnd else { throw DecodeError("trailing bytes") }
            guard (k == .stored || k == .deleted) == (code == nil) else { throw DecodeError("a refusal or pending answer carries a code, a receipt none") }
        } catch {
            throw ConsentError(.malformed, "malformed hub answer: \(error)")
        }
        encoded = b
    }

    /// The longest answer accepted: the `hub-answer` message's limit (sync.md §4).
    public static let maxLength = 4_096

    /// Whether every place reported has finished deleting (a version-1 receipt: the hub only, yes).
    public var deletionComplete: Bool { places.allSatisfy(\.state.isFinal) }

    /// Whether this answers exactly `request` (the bytes the member sent).
    public func answers(_ request: [UInt8]) -> Bool { requestHash == BLAKE2b.hash(request) }
}

/// What a member's node makes of a reply to a record or revocation it sent (Protocol/consent.md
/// §6): only an answer signed by the organization's key for exactly that request counts;
/// anything else — unsigned, signed by another key, tampered, for another request, or a kind
/// that does not fit the request — is `unverified` and leaves it pending, to be sent again.
public enum DeliveryOutcome: Sendable, Equatable {
    case stored(HubAnswer)
    case deleted(HubAnswer)
    case refused(HubAnswer)
    /// The hub's signed "not now" (pending approval, or it could not store it): send again later.
    case pending(HubAnswer)
    /// No answer that verifies: send again later.
    case unverified(String)

    /// Judges `reply` (the signed answer bytes, or nil when no signed answer came) to `request`.
    public static func judge(_ reply: [UInt8]?, request: [UInt8], isRevocation: Bool, organization: Ed25519.PublicKey) -> DeliveryOutcome {
        guard let reply else { return .unverified("no signed answer from the hub") }
        let answer: HubAnswer
        do { answer = try HubAnswer(encoded: reply, organization: organization) } catch {
            return .unverified("the answer does not verify against the organization's key (\(error.detail))")
        }
        guard answer.answers(request) else { return .unverified("the signed answer is for another request") }
        switch (answer.kind, isRevocation) {
        case (.stored, false): return .stored(answer)
        case (.deleted, true): return .deleted(answer)
        case (.refused, _): return .refused(answer)
        case (.pending, _): return .pending(answer)
        default: return .unverified("the hub's answer does not fit the request")
        }
    }
}
