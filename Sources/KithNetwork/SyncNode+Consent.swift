import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
import KithStore
import KithSync

/// The member's side of consent (Protocol/consent.md §6): grants, the records they send up,
/// revocations, receipts and the audit trail. Everything is kept in the private store.
extension SyncNode {
    /// A grant as this node tracks it (stored as JSON in the private store, record kind 7).
    struct GrantState: Codable, Sendable {
        var grant: String            // base64url of the signed grant
        var version: UInt64          // version of the last record made
        var lastValues: [[String]]   // the values of the last record made
        var acknowledged: UInt64     // version the hub acknowledged (0 = none)
        var pendingRecord: String?   // a record not yet acknowledged
        var state: String            // active, revoking, revoked, expired
        var pendingRevocation: String?
        var receipts: [String]
        /// The latest deletion receipt's places (`[place, state, at_ms]`), when it reported any.
        var deletion: [[String]]? = nil
        /// While a deletion receipt reports places not finished, the revocation is sent again
        /// (the hub answers with a fresh receipt) at this time, backing off (30 s doubling, ≤ 1 h).
        var recheckAt: UInt64? = nil
        var rechecks: UInt64? = nil
    }

    public struct AuditEntry: Codable, Sendable {
        public let at: UInt64
        public let event: String
        public let grant: String
        public let contact: String
        public let detail: String
    }

    /// Contacts whose grants are active or being revoked, read from the store at start-up.
    static func grantedContacts(in store: ContactStore, now: UInt64) -> Set<ContactID> {
        var out: Set<ContactID> = []
        for r in (try? store.records(.grant)) ?? [] {
            guard let g = try? JSONDecoder().decode(GrantState.self, from: Data(r.bytes)), g.state == "active" || g.state == "revoking",
                  let bytes = Base64URL.decode(g.grant), let grant = try? Grant(encoded: bytes, nowSeconds: now) else { continue }
            out.insert(grant.contact)
        }
        return out
    }

    private func loadGrants() throws -> [[UInt8]: GrantState] {
        var out: [[UInt8]: GrantState] = [:]
        for r in try store.records(.grant) {
            if let g = try? JSONDecoder().decode(GrantState.self, from: Data(r.bytes)) { out[r.id] = g }
        }
        return out
    }

    private func save(_ id: [UInt8], _ g: GrantState) throws {
        try store.putRecords(.grant, [(id, Array(try JSONEncoder().encode(g)))])
    }

    private func audit(_ event: String, grant: Grant, _ detail: String) {
        let e = AuditEntry(at: clock(), event: event, grant: Base64URL.encode(grant.id), contact: grant.contact.description, detail: detail)
        var id: [UInt8] = []
        id.appendBigEndian(e.at)
        id += SecureRandom.bytes(8)
        try? store.putRecords(.audit, [(id, Array((try? JSONEncoder().encode(e)) ?? Data()))])
        events.emit(NodeEvent(type: "consent", at: e.at, contacts: [e.contact], detail: "\(event): \(detail)"))
    }

    public func auditTrail() throws -> [AuditEntry] {
        try store.records(.audit).compactMap { try? JSONDecoder().decode(AuditEntry.self, from: Data($0.bytes)) }
    }

    /// `kith chapter affiliate`: an admin names the chapter's organization and hub.
    public func affiliate(chapter: String?, card text: String, hub: String, allowWithoutContactConsent: Bool) throws(ChapterCommandError) -> String {
        let (ch, log) = try memberChapter(chapter)
        let card: OrganizationCard
        do { card = try OrganizationCard(text: text) } catch { throw ChapterCommandError(error.detail) }
        var updated = log
        let id = identity, now = clock()
        let op = try wrap {
            try updated.append(.affiliate(Affiliation(signingKey: card.signingKey, agreementKey: card.agreementKey, name: card.name, hub: hub,
                                                      allowsWithoutContactConsent: allowWithoutContactConsent)),
                               certificate: id.certificate, device: id.deviceKey, now: now)
        }
        ch.log = updated
        try wrap { try logChanged(ch, new: [op]) }
        // The affiliation is a request: send the hub the chapter's log now, so the organization
        // sees it in `kithd hub chapters` (not with upward_via_peers: the log then goes up with
        // the first record, through a peer).
        if !upwardViaPeers { Task { await self.announceAffiliation(ch.id) } }
        return card.name
    }

    /// Sends the chapter's log to its hub (nothing else; the hub answers nothing).
    func announceAffiliation(_ id: ChapterID) async {
        guard let ch = chapters[id], let a = ch.log?.state.affiliation else { return }
        let ops = ch.log?.allOps.map(\.encoded) ?? [], org = a.signingKey
        do {
            try await NoiseLink.connect(to: a.hub, staticKey: identity.agreementKey, certificate: identity.certificate, now: clock() / 1000) { link in
                guard link.peer.member == org else { throw NoiseLink.Failure(message: "the hub at \(a.hub) is not \(a.name)'s") }
                try await link.send(.membership(chapter: id.bytes, ops: ops))
                try await Task.sleep(nanoseconds: 1_000_000_000) // no answer comes: give the hub time to read it before closing
            }
        } catch {
            logger.info("could not reach the hub to ask for approval; the log goes up with the first record", metadata: ["reason": "\(error)"])
        }
    }

    /// The values a record of `grant` carries now: the granted fields of the contact (by
    /// shareable field name) and always the contact's own consent.
    private func values(for grant: Grant) -> [(String, String)]? {
        guard let c = store.replica.contact(grant.contact) else { return nil }
        var out: [(String, String)] = []
        for name in grant.fields {
            guard let f = ShareableField(rawValue: name) else { continue }
            let text: String
            if let set = f.set {
                text = c.values(set).map(\.key).joined(separator: ", ")
            } else if f == .name {
                text = c[.displayName] ?? [c[.givenName], c[.familyName]].compactMap { $0 }.joined(separator: " ")
            } else {
                text = f.fields.compactMap { c[$0] }.joined(separator: " ")
            }
            out.append((name, text))
        }
        out.append(("consent", c[.consent] ?? ""))
        return out
    }

    /// `kith consent grant`: checks the contact's own consent (unless the chapter allows
    /// without), signs a grant, and sends the first record to the hub.
    public func grantConsent(contacts: [ContactID], chapter: String?, organization: String? = nil, fields: [ShareableField], purpose: String,
                             expiresIn: UInt64?) async throws(ChapterCommandError) -> [[String: String]] {
        var reference = chapter
        if chapter == nil, let organization {
            // The chapter affiliated with that organization.
            let matching = chapters.values.filter { !$0.relayOnly && $0.log?.state.affiliation?.name == organization }
            guard matching.count == 1 else {
                throw ChapterCommandError(matching.isEmpty ? "none of your chapters is affiliated with \"\(organization)\"" : "several chapters are affiliated with \"\(organization)\"; add --chapter")
            }
            reference = matching[0].id.description
        }
        let (ch, log) = try memberChapter(reference)
        guard let a = log.state.affiliation else {
            throw ChapterCommandError("\"\(log.state.name)\" has no affiliated organization yet (an admin runs kith chapter affiliate)")
        }
        if let organization, organization != a.name {
            throw ChapterCommandError("\"\(log.state.name)\" is affiliated with \"\(a.name)\", not \"\(organization)\"")
        }
        guard !purpose.isEmpty else { throw ChapterCommandError("say what the organization may use it for: --purpose \"…\"") }
        var results: [[String: String]] = []
        for contact in contacts {
            guard let view = store.replica.contact(contact) else { throw ChapterCommandError("no contact \(contact)") }
            let consent = ContactConsent(field: view[.consent])
            guard consent.rule(chapterAllowsWithoutContactConsent: a.allowsWithoutContactConsent) != nil else {
                results.append(["contact": contact.description, "result": "refused",
                                "reason": "the contact has not agreed to be shared with the organization (consent: \(consent.rawValue)); record it with kith contact edit \(String(contact.description.prefix(8))) --consent share --consent-method …"])
                continue
            }
            let now = clock()
            let grant = Grant.make(chapter: ch.id, organization: a.signingKey, contact: contact, fields: fields.map(\.rawValue), purpose: purpose,
                                   createdAt: now, expiresAt: expiresIn.map { now + $0 * 1000 }, certificate: identity.certificate, device: identity.deviceKey)
            var state = GrantState(grant: Base64URL.encode(grant.encoded), version: 0, lastValues: [], acknowledged: 0, pendingRecord: nil,
                                   state: "active", pendingRevocation: nil, receipts: [])
            try wrap { try save(grant.id, state) }
            grantedContacts.insert(contact)
            audit("grant", grant: grant, "to \(a.name): \(grant.fields.joined(separator: ",")) for \"\(purpose)\"")
            try makeRecord(grant, &state, affiliation: a)
            let outcome = await deliver(grant: grant, state: state, chapter: ch, affiliation: a)
            results.append(["contact": contact.description, "grant": Base64URL.encode(grant.id), "result": outcome])
        }
        return results
    }

    /// Makes the next record version of a grant if its values changed.
    private func makeRecord(_ grant: Grant, _ state: inout GrantState, affiliation a: Affiliation) throws(ChapterCommandError) {
        guard let values = values(for: grant) else { return }
        let flat = values.map { [$0.0, $0.1] }
        guard flat != state.lastValues || state.version == 0 else { return }
        state.version += 1
        state.lastValues = flat
        let id = identity
        let record = try wrap {
            try UpwardRecord.make(grant: grant, version: state.version, values: values, to: a.agreementKey,
                                  certificate: id.certificate, device: id.deviceKey)
        }
        state.pendingRecord = Base64URL.encode(record.encoded)
        try wrap { try save(grant.id, state) }
    }

    /// Sends what is pending for a grant (a record or a revocation) to the hub; records the
    /// answer. Only an answer signed by the organization for exactly what was sent counts
    /// (`DeliveryOutcome.judge`); anything else leaves it pending, retried every maintenance
    /// round. Returns "acknowledged", "deleted", "refused: …" or "pending: …".
    private func deliver(grant: Grant, state initial: GrantState, chapter ch: Chapter, affiliation a: Affiliation) async -> String {
        var state = initial
        let request: [UInt8], message: SyncMessage, isRevocation: Bool
        if let rev = state.pendingRevocation.flatMap(Base64URL.decode) {
            (request, message, isRevocation) = (rev, .revokeGrant(revocation: rev), true)
        } else if let rec = state.pendingRecord.flatMap(Base64URL.decode) {
            (request, message, isRevocation) = (rec, .upward(record: rec), false)
        } else {
            return "nothing to send"
        }
        let judge = { (m: SyncMessage) -> DeliveryOutcome in
            guard case let .hubAnswer(bytes) = m else { return .unverified("no signed answer from the hub") }
            return DeliveryOutcome.judge(bytes, request: request, isRevocation: isRevocation, organization: a.signingKey)
        }
        var reached: DeliveryOutcome?
        var direct = "this node sends upward records through chapter peers"
        if !upwardViaPeers {
            switch await hubExchange(ch, a, message) {
            case let .success(m): reached = judge(m)
            case let .failure(error): direct = "\(error)"
            }
        }
        if reached == nil {
            // Through a connected chapter peer: it cannot read the sealed record, and an answer
            // it might forge does not verify (then the next peer is tried, and the next round).
            guard let relayed = await viaPeer(ch.id, message, judge: judge) else {
                audit("pending", grant: grant, "hub \(a.hub) not reached directly (\(direct)) nor through a chapter peer with a signed answer")
                return "pending: the hub at \(a.hub) was not reached (\(direct)); kithd retries"
            }
            reached = relayed
            audit("relayed", grant: grant, "delivered through a chapter peer")
        }
        guard let outcome = reached else { return "pending" }
        switch outcome {
        case let .stored(answer), let .deleted(answer):
            state.receipts.append(Base64URL.encode(answer.encoded))
            if answer.kind == .deleted {
                state.state = state.state == "expired" ? "expired" : "revoked"
                state.pendingRecord = nil
                let places = answer.places.map { [$0.place.description, $0.state.label, String($0.at)] }
                let changed = state.deletion.map { $0.map { Array($0.prefix(2)) } } != places.map { Array($0.prefix(2)) }
                if answer.deletionComplete {
                    state.pendingRevocation = nil
                    state.recheckAt = nil
                } else {
                    // Ask again later: the hub's receipt says what is still being deleted.
                    let n = changed ? 0 : (state.rechecks ?? 0) + 1
                    state.rechecks = n
                    state.recheckAt = clock() + min(30_000 << min(n, 7), 3_600_000)
                }
                if changed || state.deletion == nil {
                    state.deletion = places
                    audit("deletion-receipt", grant: grant, (answer.places.isEmpty ? "the hub deleted the record" : PlaceReport.summary(answer.places))
                        + " (receipt verified)")
                } else {
                    state.receipts.removeLast() // the same statement again: keep one
                }
            } else {
                state.acknowledged = answer.version
                state.pendingRecord = nil
                audit("receipt", grant: grant, "version \(answer.version) stored under rule \(answer.rule) (receipt verified)")
            }
            try? save(grant.id, state)
            return answer.kind == .deleted ? "deleted" : "acknowledged"
        case let .refused(answer):
            // Signed by the organization: final for a record. A revocation stays pending (the
            // member keeps asking for deletion).
            if !isRevocation {
                state.pendingRecord = nil
                try? save(grant.id, state)
            }
            audit("refused", grant: grant, "\(answer.reason) (signed by the organization)")
            return "refused: \(answer.reason)"
        case let .pending(answer):
            audit("pending", grant: grant, "\(answer.reason) (signed by the organization)")
            return "pending: \(answer.reason); kithd retries"
        case let .unverified(why):
            audit("unverified", grant: grant, why)
            return "pending: \(why); kithd retries"
        }
    }

    /// One exchange with the chapter's hub: send the chapter log and `message`, return its answer.
    private func hubExchange(_ ch: Chapter, _ a: Affiliation, _ message: SyncMessage) async -> Result<SyncMessage, any Error> {
        let logOps = ch.log?.allOps.map(\.encoded) ?? []
        let chapterBytes = ch.id.bytes
        do {
            let org = a.signingKey
            return .success(try await NoiseLink.connect(to: a.hub, staticKey: identity.agreementKey, certificate: identity.certificate, now: clock() / 1000) { link in
                guard link.peer.member == org else {
                    throw NoiseLink.Failure(message: "the hub at \(a.hub) is not \(a.name)'s (its key is \(link.peer.member))")
                }
                try await link.send(.membership(chapter: chapterBytes, ops: logOps))
                try await link.send(message)
                return try await link.receive()
            })
        } catch {
            return .failure(error)
        }
    }

    /// Asks connected peers of the chapter, one after another, to forward `message` to the hub;
    /// the first answer that `judge` does not find unverified wins (a peer's forgery is skipped).
    /// Nil when no peer brings one within 20 s each.
    private func viaPeer(_ chapter: ChapterID, _ message: SyncMessage, judge: (SyncMessage) -> DeliveryOutcome) async -> DeliveryOutcome? {
        let candidates = peers.filter { $0.value.scopes.contains(chapter.contentScope) }.map(\.key).shuffled().prefix(3)
        for pid in candidates {
            guard let p = peers[pid] else { continue }
            let requestID = UInt64.random(in: 1...UInt64.max)
            let answer: [UInt8]? = await withCheckedContinuation { (c: CheckedContinuation<[UInt8]?, Never>) in
                pendingForwards[requestID] = c
                p.events.yield(.forward(id: requestID, chapter: chapter.bytes, message: message.encoded))
                Task {
                    try? await Task.sleep(nanoseconds: 20_000_000_000)
                    self.completeForward(requestID, nil)
                }
            }
            guard let answer, let m = try? SyncMessage(decoding: answer) else { continue }
            let outcome = judge(m)
            if case let .unverified(why) = outcome {
                if case .notDelivered = m { continue }
                logger.warning("a chapter peer's answer from the hub does not verify; ignored", metadata: ["peer": "\(p.name)", "reason": "\(why)"])
                continue
            }
            return outcome
        }
        return nil
    }

    func completeForward(_ id: UInt64, _ answer: [UInt8]?) {
        pendingForwards.removeValue(forKey: id)?.resume(returning: answer)
    }

    /// A chapter peer asked this node to deliver an upward record or revocation to the
    /// chapter's hub (it cannot read it). Answers with the hub's reply verbatim, or an unsigned
    /// `not-delivered` when this node cannot reach the hub either.
    func forwardToHub(chapter bytes: [UInt8], message: [UInt8], from peer: Int) async -> [UInt8] {
        guard let id = try? ChapterID(bytes: bytes), let p = peers[peer], p.scopes.contains(id.contentScope),
              let ch = chapters[id], let a = ch.log?.state.affiliation else {
            return SyncMessage.notDelivered(reason: "this peer does not relay for that chapter").encoded
        }
        guard let inner = try? SyncMessage(decoding: message) else { return SyncMessage.notDelivered(reason: "malformed").encoded }
        switch inner {
        case .upward, .revokeGrant: break
        default: return SyncMessage.notDelivered(reason: "only upward records and revocations are forwarded").encoded
        }
        switch await hubExchange(ch, a, inner) {
        case let .success(answer):
            if let forged = forgedHubAnswer(for: inner, genuine: answer) { return forged.encoded }
            logger.info("forwarded an upward message to the hub for a chapter peer", metadata: ["chapter": "\(id)", "peer": "\(p.name)"])
            return answer.encoded
        case let .failure(error):
            return SyncMessage.notDelivered(reason: "unreachable: \(error)").encoded
        }
    }

    /// `kith consent revoke`: revokes every active grant of the contacts (or the grant named).
    public func revokeConsent(contacts: [ContactID]) async throws(ChapterCommandError) -> [[String: String]] {
        var results: [[String: String]] = []
        let grants = try wrap { try loadGrants() }
        for (id, var state) in grants where state.state == "active" {
            guard let bytes = Base64URL.decode(state.grant), let grant = try? Grant(encoded: bytes, nowSeconds: clock() / 1000),
                  contacts.contains(grant.contact) else { continue }
            let revocation = GrantRevocation.make(grant: grant, at: clock(), certificate: identity.certificate, device: identity.deviceKey)
            state.state = "revoking"
            state.pendingRevocation = Base64URL.encode(revocation.encoded)
            try wrap { try save(id, state) }
            audit("revoke", grant: grant, "revocation signed")
            guard let ch = chapters[grant.chapter], let a = ch.log?.state.affiliation else { continue }
            let outcome = await deliver(grant: grant, state: state, chapter: ch, affiliation: a)
            results.append(["contact": grant.contact.description, "grant": Base64URL.encode(id), "result": outcome])
        }
        if results.isEmpty { throw ChapterCommandError("no active grant for that contact") }
        return results
    }

    /// Periodic (and after edits): expire grants, make new record versions for edited granted
    /// fields, and retry anything pending.
    public func consentMaintenance() async {
        guard let grants = try? loadGrants() else { return }
        let now = clock()
        for (id, var state) in grants where state.state == "active" || state.state == "revoking" || state.pendingRevocation != nil {
            if let at = state.recheckAt, at > now { continue }
            guard let bytes = Base64URL.decode(state.grant), let grant = try? Grant(encoded: bytes, nowSeconds: clock() / 1000),
                  let ch = chapters[grant.chapter], let a = ch.log?.state.affiliation else { continue }
            if state.state == "active" && grant.isExpired(nowMilliseconds: now) {
                state.state = "expired"
                state.pendingRecord = nil
                let revocation = GrantRevocation.make(grant: grant, at: now, certificate: identity.certificate, device: identity.deviceKey)
                state.pendingRevocation = Base64URL.encode(revocation.encoded)
                try? save(id, state)
                audit("expired", grant: grant, "the grant expired; asking the hub to delete")
            } else if state.state == "active" {
                try? makeRecord(grant, &state, affiliation: a)
            }
            if state.pendingRecord != nil || state.pendingRevocation != nil {
                _ = await deliver(grant: grant, state: state, chapter: ch, affiliation: a)
            }
        }
    }

    /// `kith consent show`: what the organization holds about the contact right now.
    public func consentShow(contact: ContactID) throws(ChapterCommandError) -> Data {
        let grants = try wrap { try loadGrants() }
        let list: [[String: Any]] = grants.values.compactMap { s -> [String: Any]? in
            guard let bytes = Base64URL.decode(s.grant), let g = try? Grant(encoded: bytes, nowSeconds: clock() / 1000), g.contact == contact else { return nil }
            let org = chapters[g.chapter]?.log?.state.affiliation?.name ?? "?"
            let holds = s.acknowledged > 0 && (s.state == "active" || s.state == "revoking")
            var entry: [String: Any] = ["grant": Base64URL.encode(g.id), "organization": org, "purpose": g.purpose, "fields": g.fields,
                                        "state": s.state, "receipts": s.receipts.count, "acknowledgedVersion": s.acknowledged]
            if let e = g.expiresAt { entry["expires"] = e }
            if let d = s.deletion, !d.isEmpty {
                entry["deletion"] = d.map { ["place": $0[0], "state": $0[1], "at": UInt64($0[2]) ?? 0] as [String: Any] }
                entry["deletionComplete"] = s.pendingRevocation == nil
            }
            // The contact's consent as the contact object shows it ({level, date, method}), not its packed field text.
            let held = s.lastValues.map { v -> (String, Any) in
                if v[0] == "consent", let c = try? ContactConsent(encoded: v[1]) { return (v[0], ["level": c.level.rawValue, "date": c.date, "method": c.method]) }
                return (v[0], v[1])
            }
            entry["organizationHolds"] = holds ? Dictionary(held, uniquingKeysWith: { a, _ in a }) : [String: Any]()
            return entry
        }
        return (try? JSONSerialization.data(withJSONObject: list)) ?? Data("[]".utf8)
    }
}
