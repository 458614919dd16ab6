import KithChapter
import KithCRDT
import KithCrypto

/// The organization hub's rules, sans I/O (Protocol/consent.md §4): which upward records it
/// accepts, what it holds, what it deletes, and the receipts it signs. A storage layer persists
/// `held` and `history`; the network layer feeds records and revocations in.
public struct HubLedger: Sendable {
    /// A record the hub currently holds, opened.
    public struct Held: Sendable {
        public let record: UpwardRecord
        public let values: [(String, String)]
        public let rule: Receipt.Rule
        public let receipt: Receipt
        public let chapterName: String
    }

    public let keys: OrganizationKeys
    /// Grant id → the record held for it.
    public private(set) var held: [[UInt8]: Held] = [:]
    /// Grant id → the highest record version ever accepted (kept after deletion, so an old
    /// record replayed after a revocation or an update is refused).
    public private(set) var highestVersion: [[UInt8]: UInt64] = [:]
    /// Grants revoked (or expired): their records are refused from then on.
    public private(set) var closed: Set<[UInt8]> = []

    public init(keys: OrganizationKeys) { self.keys = keys }

    /// Checks and stores a record; returns the signed receipt. `chapter` is the hub's copy of
    /// the grant's chapter log state (nil when the hub has not received that chapter's log).
    public mutating func accept(_ bytes: [UInt8], chapter: ChapterState?, nowMilliseconds now: UInt64) throws(ConsentError) -> Receipt {
        let record = try UpwardRecord(encoded: bytes, nowSeconds: now / 1000)
        let grant = record.grant
        guard grant.organization == keys.signing.publicKey else {
            throw ConsentError(.wrongOrganization, "the grant is for organization \(grant.organization), not this hub's (\(keys.signing.publicKey))")
        }
        guard let chapter, let a = chapter.affiliation, a.signingKey == keys.signing.publicKey else {
            throw ConsentError(.notAffiliated, "chapter \(grant.chapter) is not affiliated with \(keys.name) (or its log has not reached this hub)")
        }
        guard chapter.isMember(grant.member), chapter.members[grant.member]?.devices[record.certificate.deviceSigningKey] != nil else {
            throw ConsentError(.notMember, "the sender is not a current member device of chapter \"\(chapter.name)\"")
        }
        guard !closed.contains(grant.id) else { throw ConsentError(.replayed, "grant \(Base64URL.encode(grant.id)) was revoked or expired") }
        guard !grant.isExpired(nowMilliseconds: now) else { throw ConsentError(.expired, "grant \(Base64URL.encode(grant.id)) has expired") }
        if let h = held[grant.id], h.record.version == record.version, h.record.encoded == bytes { return h.receipt } // a retry
        guard record.version > highestVersion[grant.id] ?? 0 else {
            throw ConsentError(.replayed, "record version \(record.version) of grant \(Base64URL.encode(grant.id)) is not newer than \(highestVersion[grant.id] ?? 0)")
        }
        let values = try record.open(with: keys.agreement)
        let allowed = Set(grant.fields + ["consent"])
        if let extra = values.first(where: { !allowed.contains($0.0) }) {
            throw ConsentError(.notCovered, "the record carries '\(extra.0)', which the grant does not cover (\(grant.fields.joined(separator: ",")))")
        }
        let consent = ContactConsent(field: values.first { $0.0 == "consent" }?.1)
        guard let rule = consent.rule(chapterAllowsWithoutContactConsent: a.allowsWithoutContactConsent) else {
            throw ConsentError(.noConsent, "the contact has not agreed to be shared with the organization (consent: \(consent.rawValue)), and the chapter does not allow it without")
        }
        let receipt = Receipt.make(.stored, grantID: grant.id, version: record.version, recordHash: record.hash, rule: rule,
                                   at: now, signer: keys.signing)
        held[grant.id] = Held(record: record, values: values, rule: rule, receipt: receipt, chapterName: chapter.name)
        highestVersion[grant.id] = record.version
        return receipt
    }

    /// Deletes the record of a revoked grant and returns the signed deletion receipt. Only a
    /// device of the grant's member may revoke; revoking a grant the hub never saw is
    /// acknowledged too (nothing is held), and closes it.
    public mutating func revoke(_ bytes: [UInt8], nowMilliseconds now: UInt64) throws(ConsentError) -> Receipt {
        let r = try GrantRevocation(encoded: bytes, nowSeconds: now / 1000)
        guard r.organization == keys.signing.publicKey else {
            throw ConsentError(.wrongOrganization, "the revocation is addressed to organization \(r.organization)")
        }
        if let h = held[r.grantID], h.record.grant.member != r.certificate.memberKey {
            throw ConsentError(.notOwner, "only the member who granted it may revoke grant \(Base64URL.encode(r.grantID))")
        }
        let version = highestVersion[r.grantID] ?? 0
        held[r.grantID] = nil
        closed.insert(r.grantID)
        return Receipt.make(.deleted, grantID: r.grantID, version: version, recordHash: [UInt8](repeating: 0, count: 32), rule: .none,
                            at: now, signer: keys.signing)
    }

    /// Deletes every record whose grant has expired; returns their grant ids.
    public mutating func expire(nowMilliseconds now: UInt64) -> [[UInt8]] {
        let gone = held.filter { $0.value.record.grant.isExpired(nowMilliseconds: now) }.map(\.key)
        for id in gone {
            held[id] = nil
            closed.insert(id)
        }
        return gone
    }

    /// Restores state from storage (records as accepted, with their receipts; closed grants).
    public mutating func restore(records: [(record: [UInt8], receipt: [UInt8], chapterName: String)], closed: [[UInt8]], versions: [[UInt8]: UInt64],
                                 nowMilliseconds now: UInt64) throws(ConsentError) {
        for (bytes, receiptBytes, name) in records {
            let record = try UpwardRecord(encoded: bytes, nowSeconds: now / 1000)
            let receipt = try Receipt(encoded: receiptBytes, organization: keys.signing.publicKey)
            held[record.grant.id] = Held(record: record, values: try record.open(with: keys.agreement), rule: receipt.rule,
                                         receipt: receipt, chapterName: name)
        }
        self.closed.formUnion(closed)
        for (k, v) in versions { highestVersion[k] = max(highestVersion[k] ?? 0, v) }
    }
}
