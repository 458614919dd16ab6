import KithChapter
import KithCRDT
import KithCrypto

/// A grant as the hub knows it: grant ids are chosen by members and travel in the clear through
/// relaying peers, so the hub keys everything by the member who signed the grant as well.
public struct GrantKey: Hashable, Sendable, Comparable {
    public let member: Ed25519.PublicKey
    public let grant: [UInt8]

    public init(member: Ed25519.PublicKey, grant: [UInt8]) {
        self.member = member
        self.grant = grant
    }

    /// `member[32] ‖ grant_id[16]`: the hub store's row id.
    public var bytes: [UInt8] { member.bytes + grant }

    public static func < (a: GrantKey, b: GrantKey) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

/// The organization hub's rules, sans I/O (Protocol/consent.md §4): which chapters it takes
/// records from, which upward records it accepts, what it holds, what it deletes, and the
/// answers it signs. A storage layer persists the held records (their bytes are only there: the
/// ledger keeps a few facts of each, `Held`), the closed grants and the decisions; the network
/// layer feeds chapter logs, records and revocations in.
public struct HubLedger: Sendable {
    /// A record the hub currently holds, as the ledger decides on it: the few facts it needs, not
    /// the record. Its bytes, its receipt and its opened fields are in the store's sealed row
    /// (`HubStorage.heldRows`); a hub holding a million records keeps ~450 bytes for each
    /// here, not the 1.5 KB of the record and its receipt.
    public struct Held: Sendable {
        public let key: GrantKey
        public let chapter: ChapterID
        public let version: UInt64
        public let createdAt: UInt64
        public let expiresAt: UInt64?
        public let rule: HubAnswer.Rule
        public let chapterName: String
        /// The record's size in bytes (for the chapter's usage).
        public let size: Int
        /// BLAKE2b-256 of the record's bytes (its receipt's request hash: a retry is known by it),
        /// then the grant's key in the verification cache (forgotten when the grant closes): one
        /// allocation of 64 bytes.
        let digests: [UInt8]
        public var requestHash: ArraySlice<UInt8> { digests[0..<32] }
        var grantCacheKey: [UInt8] { Array(digests[32..<64]) }
        /// When its receipt was signed: with the fields above, the receipt is made again byte for
        /// byte (Ed25519 signatures are deterministic) when a retry asks for it.
        public let storedAt: UInt64

        init(record: UpwardRecord, answer: HubAnswer, chapterName: String) {
            key = GrantKey(member: record.grant.member, grant: record.grant.id)
            chapter = record.grant.chapter
            version = record.version
            createdAt = record.grant.createdAt
            expiresAt = record.grant.expiresAt
            rule = answer.rule
            self.chapterName = chapterName
            size = record.encoded.count
            digests = answer.requestHash + VerificationCache.key(domain: Grant.domain, record.grant.encoded)
            storedAt = answer.at
        }

        /// The receipt the hub signed for it (`request`: the record's bytes), made again.
        public func answer(request: [UInt8], signer: Ed25519.PrivateKey) -> HubAnswer {
            HubAnswer.make(.stored, request: request, member: key.member, grantID: key.grant, version: version, rule: rule, at: storedAt, signer: signer)
        }

        public func isExpired(nowMilliseconds now: UInt64) -> Bool { expiresAt.map { now >= $0 } ?? false }
    }

    /// What the hub holds for one chapter.
    public struct Usage: Sendable, Equatable {
        public var records: UInt64 = 0
        public var bytes: UInt64 = 0
        public init() {}
    }

    public let keys: OrganizationKeys
    public var limits: HubLimits
    /// (member, grant id) → the record held for it.
    public private(set) var held: [GrantKey: Held] = [:]
    /// (member, grant id) → the highest record version accepted of a grant no longer held (kept
    /// after deletion, so an old record replayed after a revocation is refused); a held grant's
    /// is its record's (`highestVersion(of:)`).
    private var closedVersion: [GrantKey: UInt64] = [:]
    /// Grants revoked (or expired): their records are refused from then on.
    public private(set) var closed: Set<GrantKey> = []
    /// Grant ids closed before the hub keyed grants by member (store schema 1): their owner is
    /// not known, so they stay closed for every member.
    public private(set) var legacyClosed: Set<[UInt8]> = []
    /// The organization's signed decision on each chapter that asked to affiliate.
    public private(set) var decisions: [ChapterID: ChapterDecision] = [:]
    public private(set) var usage: [ChapterID: Usage] = [:]
    /// Grants answered "pending approval", per chapter (since the hub started).
    public private(set) var waiting: [ChapterID: Set<GrantKey>] = [:]
    /// Where each record went beyond the hub, and the deletion at each place of every closed
    /// grant (§4.5). A grant absent here went nowhere but the hub.
    public private(set) var trails: [GrantKey: RecordTrail] = [:]

    /// Certificates and grants whose signatures were checked (shared with whoever prepares
    /// records for this ledger, `prepare`); a revoked or expired grant is forgotten here.
    public let verified: VerificationCache

    public init(keys: OrganizationKeys, limits: HubLimits = .defaults, verified: VerificationCache = VerificationCache()) {
        self.keys = keys
        self.limits = limits
        self.verified = verified
    }

    /// The highest record version accepted for a grant (held or closed), nil when none was.
    public func highestVersion(of key: GrantKey) -> UInt64? { held[key]?.version ?? closedVersion[key] }

    private mutating func setHeld(_ key: GrantKey, _ h: Held?) {
        if let old = held[key] {
            if h == nil { verified.forget(key: old.grantCacheKey) }
            usage[old.chapter, default: Usage()].records -= 1
            usage[old.chapter, default: Usage()].bytes -= UInt64(old.size)
            if h == nil { closedVersion[key] = max(closedVersion[key] ?? 0, old.version) }
        }
        if let h {
            usage[h.chapter, default: Usage()].records += 1
            usage[h.chapter, default: Usage()].bytes += UInt64(h.size)
            closedVersion[key] = nil
        }
        held[key] = h
    }

    /// The limits that apply to a chapter: its decision's, else the hub's.
    public func limits(of chapter: ChapterID) -> HubLimits {
        let d = decisions[chapter]
        return HubLimits(maxRecordsPerChapter: d.map(\.maxRecords).flatMap { $0 == 0 ? nil : $0 } ?? limits.maxRecordsPerChapter,
                         maxBytesPerChapter: d.map(\.maxBytes).flatMap { $0 == 0 ? nil : $0 } ?? limits.maxBytesPerChapter)
    }

    // MARK: Chapters

    /// Records the organization's decision on a chapter (made with `decide`, or restored).
    public mutating func apply(_ decision: ChapterDecision) {
        decisions[decision.chapter] = decision
        if decision.approved { waiting[decision.chapter] = nil }
    }

    /// Signs the organization's decision on a chapter. Approving a chapter whose affiliation
    /// relaxes contact consent needs `allowWithoutContactConsent` (the organization must see it).
    public mutating func decide(_ chapter: ChapterID, state: ChapterState?, approve: Bool, allowWithoutContactConsent: Bool = false,
                                maxRecords: UInt64 = 0, maxBytes: UInt64 = 0, nowMilliseconds now: UInt64) throws(ConsentError) -> ChapterDecision {
        if approve {
            guard let state, let a = state.affiliation, a.signingKey == keys.signing.publicKey else {
                throw ConsentError(.notAffiliated, "chapter \(chapter) has not asked to affiliate with \(keys.name) (no member has sent its log)")
            }
            if a.allowsWithoutContactConsent && !allowWithoutContactConsent {
                throw ConsentError(.noConsent, "chapter \"\(state.name)\" relaxes contact consent: its members may send contacts who agreed only to be contacted by the chapter, not to be shared with \(keys.name). Approve with --allow-without-contact-consent only if the organization accepts that")
            }
        }
        let d = ChapterDecision.make(chapter: chapter, approved: approve, allowsWithoutContactConsent: approve && allowWithoutContactConsent,
                                     maxRecords: maxRecords, maxBytes: maxBytes, at: now, signer: keys.signing)
        apply(d)
        return d
    }

    /// A chapter's standing at this hub, for `kithd hub chapters`.
    public enum Standing: String, Sendable {
        /// No decision yet: records are answered "pending approval".
        case pending
        case approved
        case refused
        /// Approved, but its affiliation now relaxes contact consent and the approval does not
        /// cover that: pending again until the organization approves the new terms.
        case reapproval
    }

    public func standing(of chapter: ChapterID, affiliation: Affiliation?) -> Standing {
        guard let d = decisions[chapter] else { return .pending }
        if !d.approved { return .refused }
        if let affiliation, !d.covers(affiliation) { return .reapproval }
        return .approved
    }

    // MARK: Records

    /// Answers a record with a signed answer of any kind (stored, refused, pending).
    /// `parsed`: the record as `UpwardRecord(encoded: bytes)` already parsed and verified it (a hub
    /// checks signatures before its one-at-a-time section); nil parses here.
    public mutating func answer(record bytes: [UInt8], parsed: Result<UpwardRecord, ConsentError>? = nil, chapter: ChapterState?,
                                nowMilliseconds now: UInt64) -> HubAnswer {
        let r = parsed ?? Self.parse(bytes, now: now)
        do throws(ConsentError) {
            let record = try r.get()
            guard record.encoded == bytes else { throw ConsentError(.malformed, "the parsed record is not the one answered") }
            return try accept(bytes, parsed: record, chapter: chapter, nowMilliseconds: now)
        } catch {
            let p = try? r.get()
            return HubAnswer.make(for: error, request: bytes, member: p?.grant.member, grantID: p?.grant.id, at: now, signer: keys.signing)
        }
    }

    /// Parses and verifies a record (signatures, certificates, ownership): what `answer` needs.
    public static func parse(_ bytes: [UInt8], now: UInt64, cache: VerificationCache? = nil) -> Result<UpwardRecord, ConsentError> {
        do { return .success(try UpwardRecord(encoded: bytes, nowSeconds: now / 1000, cache: cache)) } catch { return .failure(error) }
    }

    /// A record made ready outside the hub's one-at-a-time section, where many members'
    /// records are handled in parallel: parsed and verified (`parse`), its sealed fields opened,
    /// and the receipt it gets if stored signed in advance. None of it depends on the ledger's
    /// state; `answer(prepared:)` decides, and uses the receipt only if it is the one it would sign.
    public struct Prepared: Sendable {
        public let bytes: [UInt8]
        public let parsed: Result<UpwardRecord, ConsentError>
        /// Its sealed fields, opened (nil when the record is not for this organization or did not parse).
        public let values: Result<[(String, String)], ConsentError>?
        let receipt: HubAnswer?
    }

    public static func prepare(_ bytes: [UInt8], keys: OrganizationKeys, now: UInt64, cache: VerificationCache?) -> Prepared {
        let parsed = parse(bytes, now: now, cache: cache)
        guard let record = try? parsed.get(), record.grant.organization == keys.signing.publicKey else {
            return Prepared(bytes: bytes, parsed: parsed, values: nil, receipt: nil)
        }
        let values: Result<[(String, String)], ConsentError>
        do { values = .success(try record.open(with: keys.agreement)) } catch { values = .failure(error) }
        // The rule it most likely gets: "contact" consent counts only in a chapter that relaxes
        // it, which `accept` checks (and signs afresh when the rule differs).
        let consent = ContactConsent(field: (try? values.get())?.first { $0.0 == "consent" }?.1)
        let receipt = consent.rule(chapterAllowsWithoutContactConsent: true).map {
            HubAnswer.make(.stored, request: bytes, member: record.grant.member, grantID: record.grant.id, version: record.version, rule: $0,
                           at: now, signer: keys.signing)
        }
        return Prepared(bytes: bytes, parsed: parsed, values: values, receipt: receipt)
    }

    /// `answer(record:…)` for a record `prepare` made ready.
    public mutating func answer(prepared p: Prepared, chapter: ChapterState?, nowMilliseconds now: UInt64) -> HubAnswer {
        do throws(ConsentError) {
            let record = try p.parsed.get()
            guard record.encoded == p.bytes else { throw ConsentError(.malformed, "the parsed record is not the one answered") }
            return try accept(p.bytes, parsed: record, opened: p.values, receipt: p.receipt, chapter: chapter, nowMilliseconds: now)
        } catch {
            let r = try? p.parsed.get()
            return HubAnswer.make(for: error, request: p.bytes, member: r?.grant.member, grantID: r?.grant.id, at: now, signer: keys.signing)
        }
    }

    /// Checks and stores a record; returns the signed receipt. `chapter` is the hub's copy of
    /// the grant's chapter log state (nil when the hub has not received that chapter's log).
    public mutating func accept(_ bytes: [UInt8], chapter: ChapterState?, nowMilliseconds now: UInt64) throws(ConsentError) -> HubAnswer {
        try accept(bytes, parsed: try UpwardRecord(encoded: bytes, nowSeconds: now / 1000), chapter: chapter, nowMilliseconds: now)
    }

    mutating func accept(_ bytes: [UInt8], parsed record: UpwardRecord, opened: Result<[(String, String)], ConsentError>? = nil, receipt: HubAnswer? = nil,
                         chapter: ChapterState?, nowMilliseconds now: UInt64) throws(ConsentError) -> HubAnswer {
        let grant = record.grant
        let key = GrantKey(member: grant.member, grant: grant.id)
        let gid = Base64URL.encode(grant.id)
        guard grant.organization == keys.signing.publicKey else {
            throw ConsentError(.wrongOrganization, "the grant is for organization \(grant.organization), not this hub's (\(keys.signing.publicKey))")
        }
        guard let chapter, let a = chapter.affiliation, a.signingKey == keys.signing.publicKey else {
            throw ConsentError(.notAffiliated, "chapter \(grant.chapter) is not affiliated with \(keys.name) (or its log has not reached this hub)")
        }
        guard chapter.isMember(grant.member), chapter.members[grant.member]?.devices[record.certificate.deviceSigningKey] != nil else {
            throw ConsentError(.notMember, "the sender is not a current member device of chapter \"\(chapter.name)\"")
        }
        switch standing(of: grant.chapter, affiliation: a) {
        case .pending:
            waiting[grant.chapter, default: []].insert(key)
            throw ConsentError(.pendingApproval, "chapter \"\(chapter.name)\" awaits \(keys.name)'s approval of its affiliation; the record stays with the member, who sends it again")
        case .reapproval:
            waiting[grant.chapter, default: []].insert(key)
            throw ConsentError(.pendingApproval, "chapter \"\(chapter.name)\" now relaxes contact consent, which \(keys.name)'s approval does not cover; it awaits a new approval")
        case .refused:
            throw ConsentError(.chapterRefused, "\(keys.name) refused the affiliation of chapter \"\(chapter.name)\"")
        case .approved:
            break
        }
        guard !closed.contains(key), !legacyClosed.contains(grant.id) else { throw ConsentError(.replayed, "grant \(gid) was revoked or expired") }
        guard !grant.isExpired(nowMilliseconds: now) else { throw ConsentError(.expired, "grant \(gid) has expired") }
        if let h = held[key], h.version == record.version, h.requestHash.elementsEqual(BLAKE2b.hash(bytes)) { // a retry: the same receipt
            return h.answer(request: bytes, signer: keys.signing)
        }
        guard record.version > highestVersion(of: key) ?? 0 else {
            throw ConsentError(.replayed, "record version \(record.version) of grant \(gid) is not newer than \(highestVersion(of: key) ?? 0)")
        }
        let values: [(String, String)]
        if let opened { values = try opened.get() } else { values = try record.open(with: keys.agreement) }
        let allowed = Set(grant.fields + ["consent"])
        if let extra = values.first(where: { !allowed.contains($0.0) }) {
            throw ConsentError(.notCovered, "the record carries '\(extra.0)', which the grant does not cover (\(grant.fields.joined(separator: ",")))")
        }
        let consent = ContactConsent(field: values.first { $0.0 == "consent" }?.1)
        guard let rule = consent.rule(chapterAllowsWithoutContactConsent: a.allowsWithoutContactConsent) else {
            throw ConsentError(.noConsent, "the contact has not agreed to be shared with the organization (consent: \(consent.rawValue)), and the chapter does not allow it without")
        }
        let lim = limits(of: grant.chapter)
        var after = usage[grant.chapter] ?? Usage()
        if let old = held[key] {
            after.records -= 1
            after.bytes -= UInt64(old.size)
        }
        after.records += 1
        after.bytes += UInt64(bytes.count)
        guard after.records <= lim.maxRecordsPerChapter, after.bytes <= lim.maxBytesPerChapter else {
            throw ConsentError(.overLimit, "chapter \"\(chapter.name)\" is at \(keys.name)'s limit (\(lim.maxRecordsPerChapter) records, \(lim.maxBytesPerChapter) bytes); the organization can raise it")
        }
        let answer = receipt.flatMap { $0.kind == .stored && $0.rule == rule && $0.version == record.version && $0.grantID == grant.id ? $0 : nil }
            ?? HubAnswer.make(.stored, request: bytes, member: grant.member, grantID: grant.id, version: record.version, rule: rule,
                              at: now, signer: keys.signing)
        setHeld(key, Held(record: record, answer: answer, chapterName: chapter.name))
        waiting[grant.chapter]?.remove(key)
        return answer
    }

    // MARK: Revocations

    /// Answers a revocation with a signed answer (deleted, or refused).
    /// `parsed`: `GrantRevocation(encoded: bytes, …)` made before the one-at-a-time section (`parseRevocation`).
    public mutating func answer(revocation bytes: [UInt8], parsed: Result<GrantRevocation, ConsentError>? = nil, nowMilliseconds now: UInt64) -> HubAnswer {
        do { return try revoke(bytes, parsed: parsed, nowMilliseconds: now) } catch {
            let r = parsed.flatMap { try? $0.get() } ?? (try? GrantRevocation(encoded: bytes, nowSeconds: now / 1000))
            return HubAnswer.make(for: error, request: bytes, member: r?.member, grantID: r?.grantID, at: now, signer: keys.signing)
        }
    }

    /// Deletes the record of a revoked grant and returns the signed deletion receipt. A
    /// revocation acts only on the grant of that id *of the member who signed it*: another
    /// member's revocation of the same id touches nothing of the owner's. Revoking a grant the
    /// hub never saw is acknowledged too (nothing is held), and closes it for that member.
    public mutating func revoke(_ bytes: [UInt8], parsed: Result<GrantRevocation, ConsentError>? = nil, nowMilliseconds now: UInt64) throws(ConsentError) -> HubAnswer {
        let r = try (parsed ?? Self.parseRevocation(bytes, now: now, cache: nil)).get()
        guard r.encoded == bytes else { throw ConsentError(.malformed, "the parsed revocation is not the one answered") }
        guard r.organization == keys.signing.publicKey else {
            throw ConsentError(.wrongOrganization, "the revocation is addressed to organization \(r.organization)")
        }
        let key = GrantKey(member: r.member, grant: r.grantID)
        let version = highestVersion(of: key) ?? 0
        setHeld(key, nil)
        closed.insert(key)
        trails[key, default: RecordTrail()].startRetraction(.revoked, now: now)
        return HubAnswer.make(.deleted, request: bytes, member: r.member, grantID: r.grantID, version: version, at: now,
                              places: trails[key]?.report ?? [], signer: keys.signing)
    }

    /// Parses and verifies a revocation (its certificate through `cache`).
    public static func parseRevocation(_ bytes: [UInt8], now: UInt64, cache: VerificationCache?) -> Result<GrantRevocation, ConsentError> {
        do { return .success(try GrantRevocation(encoded: bytes, nowSeconds: now / 1000, cache: cache)) } catch { return .failure(error) }
    }

    /// Deletes every record whose grant has expired; returns their keys.
    public mutating func expire(nowMilliseconds now: UInt64) -> [GrantKey] {
        let gone = held.filter { $0.value.isExpired(nowMilliseconds: now) }.map(\.key)
        for key in gone {
            setHeld(key, nil)
            closed.insert(key)
            trails[key, default: RecordTrail()].startRetraction(.expired, now: now)
        }
        return gone
    }

    // MARK: Places and deletion work (§4.5)

    /// The record of `key` (that version) reached `place`; returns the trail to store. A
    /// delivery that lands after the grant closed gets its deletion item at once.
    public mutating func delivered(_ key: GrantKey, to place: RecordPlace, version: UInt64, externalID: String = "", nowMilliseconds now: UInt64) -> RecordTrail {
        if closed.contains(key) { trails[key, default: RecordTrail()].startRetraction(.revoked, now: now) }
        trails[key, default: RecordTrail()].delivered(to: place, version: version, externalID: externalID, now: now)
        return trails[key]!
    }

    /// A connector's deletion attempt ended; returns the trail to store.
    public mutating func settle(_ key: GrantKey, at place: RecordPlace, result: Result<PlaceState, RetractionFailure>, reference: String = "",
                                nowMilliseconds now: UInt64) -> RecordTrail? {
        guard trails[key] != nil else { return nil }
        trails[key]!.settle(place, result: result, reference: reference, now: now)
        return trails[key]
    }

    /// Staff confirmed they deleted the listed rows of exported file `name`; returns the trails changed.
    public mutating func confirmFile(_ name: String, nowMilliseconds now: UInt64) -> [GrantKey: RecordTrail] {
        var changed: [GrantKey: RecordTrail] = [:]
        for key in trails.keys where trails[key]!.entry(.file(name))?.state == .awaitingStaff {
            if trails[key]!.confirmFile(name, now: now) { changed[key] = trails[key] }
        }
        return changed
    }

    /// Deletion work due now (`RecordTrail.isDue`), oldest request first.
    public func dueDeletions(nowMilliseconds now: UInt64) -> [(key: GrantKey, entry: RecordTrail.Entry)] {
        trails.flatMap { key, t in
            t.isRetracting ? t.entries.filter { RecordTrail.isDue($0, now: now) }.map { (key, $0, t.requestedAt) } : []
        }.sorted { ($0.2, $0.0) < ($1.2, $1.0) }.map { ($0.0, $0.1) }
    }

    /// Every deletion not finished: (grant, place entry, asked at).
    public func outstandingDeletions() -> [(key: GrantKey, entry: RecordTrail.Entry, requestedAt: UInt64)] {
        trails.flatMap { key, t in t.isRetracting ? t.entries.filter { !$0.state.isFinal }.map { (key, $0, t.requestedAt) } : [] }
            .sorted { ($0.requestedAt, $0.key) < ($1.requestedAt, $1.key) }
    }

    /// Held records not (or not in this version) at any place `owns` accepts: what a connector
    /// delivers next.
    public func undelivered(limit: Int, to owns: (RecordPlace) -> Bool) -> [Held] {
        var out: [Held] = []
        for h in held.values where (trails[h.key]?.entries.filter({ owns($0.place) }).map(\.version).max() ?? 0) < h.version {
            out.append(h)
            if out.count == limit { break }
        }
        return out
    }

    // MARK: Storage

    /// Restores state from storage: records as accepted with their answers, closed grants
    /// (`member` nil for a schema-1 closure of unknown owner), and decisions.
    public mutating func restore(records: [(record: [UInt8], answer: [UInt8], chapterName: String)],
                                 closed: [(member: Ed25519.PublicKey?, grant: [UInt8], version: UInt64)],
                                 decisions: [[UInt8]], trails: [(id: [UInt8], bytes: [UInt8])] = [], nowMilliseconds now: UInt64) throws(ConsentError) {
        for row in trails {
            guard let k = HubStoreSchema.decodeGrantKey(row.id), let t = try? RecordTrail(encoded: row.bytes) else {
                throw ConsentError(.malformed, "a record trail in the hub's store does not parse")
            }
            self.trails[k] = t
        }
        try restoreHeld(records)
        for c in closed {
            if let m = c.member {
                let key = GrantKey(member: m, grant: c.grant)
                self.closed.insert(key)
                if held[key] == nil { closedVersion[key] = max(closedVersion[key] ?? 0, c.version) }
            } else {
                legacyClosed.insert(c.grant)
            }
        }
        for d in decisions { apply(try ChapterDecision(encoded: d, organization: keys.signing.publicKey)) }
    }

    /// Restores held records (a page of the store's rows at a time: a restart does not read the
    /// whole store into memory at once).
    public mutating func restoreHeld(_ records: [(record: [UInt8], answer: [UInt8], chapterName: String)]) throws(ConsentError) {
        for (bytes, answerBytes, name) in records {
            // The store's rows are authenticated (sealed under the storage key) and were
            // verified when they arrived: parsed, not verified or opened again (a restart of a
            // hub holding a million records would otherwise check three million signatures).
            let record = try UpwardRecord(trusted: bytes)
            let answer = try HubAnswer(trusted: answerBytes)
            guard answer.kind == .stored, answer.answers(bytes) else { throw ConsentError(.malformed, "a held record's receipt in the hub's store is not its own") }
            let h = Held(record: record, answer: answer, chapterName: name)
            setHeld(h.key, h)
        }
    }
}
