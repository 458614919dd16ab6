import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
import KithQuery
import KithStore
import KithSync

/// A chapter command that cannot be carried out, with a message for the user.
public struct ChapterCommandError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// A join that was not refused but held until an admin approves it.
    public let held: Bool
    public init(_ message: String, held: Bool = false) {
        self.message = message
        self.held = held
    }
    public var description: String { message }
}

/// The fields a member can share into a chapter (`kith share --fields`).
public enum ShareableField: String, CaseIterable, Sendable {
    case name, phones, emails, tags, support, address, city, postal, notes, relationship, voter, consent

    public static let defaults: [ShareableField] = [.name, .support, .tags]

    var fields: [Field] {
        switch self {
        case .name: [.givenName, .familyName, .displayName]
        case .support: [.support]
        case .address: [.address]
        case .city: [.city]
        case .postal: [.postalCode]
        case .notes: [.notes]
        case .relationship: [.relationship]
        case .voter: [.voterFileID]
        case .consent: [.consent]
        case .phones, .emails, .tags: []
        }
    }

    var set: SetKind? {
        switch self {
        case .phones: .phones
        case .emails: .emails
        case .tags: .tags
        default: nil
        }
    }

    /// Parses "name,phones,tags".
    public static func parse(_ text: String) throws -> [ShareableField] {
        var out: [ShareableField] = []
        for part in text.split(separator: ",") {
            let p = part.trimmingCharacters(in: .whitespaces).lowercased()
            guard let f = ShareableField(rawValue: p) else {
                throw ChapterCommandError("unknown field '\(p)'; shareable fields are \(allCases.map(\.rawValue).joined(separator: ", "))")
            }
            if !out.contains(f) { out.append(f) }
        }
        guard !out.isEmpty else { throw ChapterCommandError("name at least one field to share") }
        return out
    }
}

extension SyncNode {
    public struct ChapterSummary: Sendable, Codable {
        public let id: String
        public let name: String
        public let role: String
        public let members: Int
        public let contacts: Int
        public let changes: Int
        public let awaitingKeys: Int
    }

    public struct MemberInfo: Sendable, Codable {
        public let member: String
        public let admin: Bool
        public let devices: Int
        public let you: Bool
        /// The display name the member set (`set name`), if any.
        public let name: String?
    }

    // MARK: Finding chapters

    /// A chapter by id, id prefix (≥ 4 characters) or exact name; nil = the only chapter held.
    func findChapter(_ reference: String?) throws(ChapterCommandError) -> Chapter {
        let all = chapters.values.sorted { $0.id < $1.id }
        guard let reference, !reference.isEmpty else {
            let own = all.filter { !$0.relayOnly }
            if own.count == 1 { return own[0] }
            if own.isEmpty { throw ChapterCommandError("this node is in no chapter yet: `kith chapter create NAME` or `kith chapter join INVITE`") }
            throw ChapterCommandError("this node is in \(own.count) chapters; name one with --chapter (id or name)")
        }
        if let id = ChapterID(text: reference), let ch = chapters[id] { return ch }
        let byName = all.filter { $0.log?.state.name == reference }
        if byName.count == 1 { return byName[0] }
        let byPrefix = reference.count >= 4 ? all.filter { $0.id.description.hasPrefix(reference) } : []
        if byPrefix.count == 1 { return byPrefix[0] }
        if byName.count + byPrefix.count > 1 { throw ChapterCommandError("'\(reference)' matches several chapters; give the id") }
        throw ChapterCommandError("no chapter '\(reference)' on this node (see `kith chapter list`)")
    }

    func memberChapter(_ reference: String?) throws(ChapterCommandError) -> (Chapter, MembershipLog) {
        let ch = try findChapter(reference)
        guard !ch.relayOnly, let log = ch.log else { throw ChapterCommandError("this node only relays chapter \(ch.id)") }
        guard log.state.isMember(identity.member) else { throw ChapterCommandError("you are no longer a member of \"\(log.state.name)\"") }
        return (ch, log)
    }

    /// Runs `body`, turning any error into a command error with its one-line reason.
    func wrap<T>(_ body: () throws -> T) throws(ChapterCommandError) -> T {
        do { return try body() } catch let e as ChapterCommandError { throw e } catch let e as MembershipError {
            throw ChapterCommandError(e.detail)
        } catch let e as ConsentError { throw ChapterCommandError(e.detail) } catch let e as StoreError {
            throw ChapterCommandError(e.detail)
        } catch { throw ChapterCommandError("\(error)") }
    }

    // MARK: Commands

    /// `kith chapter create NAME`.
    public func createChapter(name: String) throws(ChapterCommandError) -> ChapterSummary {
        let id = identity
        let log = try wrap { try MembershipLog.create(name: name, certificate: id.certificate, device: id.deviceKey, now: clock()) }
        let ch = try install(log, relay: false)
        try wrap { try logChanged(ch, new: log.allOps) }
        return summary(ch)
    }

    func install(_ log: MembershipLog, relay: Bool) throws(ChapterCommandError) -> Chapter {
        let path = directory + (relay ? "/relays/" : "/chapters/") + log.chapter.description
        return try wrap {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let ch = try Self.openChapter(log.chapter, path: path, relay: relay, identity: identity, storageKey: storageKey, clock: clock)
            ch.log = log
            chapters[log.chapter] = ch
            return ch
        }
    }

    /// `kith chapter show`: the summary, admins and affiliation.
    public func chapterDetails(chapter: String?) throws(ChapterCommandError) -> Data {
        let ch = try findChapter(chapter)
        var out: [String: Any] = ["id": ch.id.description, "name": ch.log?.state.name ?? "?", "role": summary(ch).role,
                                  "admins": ch.log?.state.admins.map(\.description) ?? []]
        if let a = ch.log?.state.affiliation {
            out["organization"] = ["name": a.name, "key": a.signingKey.description, "hub": a.hub,
                                   "allowsWithoutContactConsent": a.allowsWithoutContactConsent] as [String: Any]
        }
        return (try? JSONSerialization.data(withJSONObject: out)) ?? Data("{}".utf8)
    }

    /// Refuses an invite to a chapter this member already belongs to (its own chapter, or an
    /// invite used already): the admin's daemon would treat this device as a member and sync
    /// instead of answering the join.
    public func checkNotMember(of id: ChapterID) throws(ChapterCommandError) {
        guard let ch = chapters[id], !ch.relayOnly, let state = ch.log?.state, state.isMember(identity.member) else { return }
        throw ChapterCommandError("you are already a member of \"\(state.name)\" (id \(id)): nothing to join with this invite (see kith chapter list)")
    }

    /// Every display name in a chapter's log, by key text (for the map's "known by").
    public func names(chapter: String?) throws(ChapterCommandError) -> [String: String] {
        names(in: try findChapter(chapter))
    }

    public func chapterList() -> [ChapterSummary] {
        chapters.values.sorted { $0.id < $1.id }.map(summary)
    }

    func summary(_ ch: Chapter) -> ChapterSummary {
        let s = ch.log?.state
        let role = ch.relayOnly ? "relay" : s?.isAdmin(identity.member) == true ? "admin" : s?.isMember(identity.member) == true ? "member" : "removed"
        let r = ch.store.replica
        return ChapterSummary(id: ch.id.description, name: s?.name ?? "(log not received yet)", role: role, members: s?.members.count ?? 0,
                              contacts: r.mode == .opaque ? 0 : index(of: ch.store).count, changes: r.changeCount, awaitingKeys: r.awaitingBlockCount)
    }

    public func members(chapter: String?) throws(ChapterCommandError) -> (ChapterSummary, [MemberInfo]) {
        let ch = try findChapter(chapter)
        guard let state = ch.log?.state else { throw ChapterCommandError("the membership log of \(ch.id) has not arrived yet") }
        let list = state.members.values.sorted { ($0.isAdmin ? 0 : 1, $0.key) < ($1.isAdmin ? 0 : 1, $1.key) }.map {
            MemberInfo(member: $0.key.description, admin: $0.isAdmin, devices: $0.devices.count, you: $0.key == identity.member, name: state.names[$0.key])
        }
        return (summary(ch), list)
    }

    /// `kith chapter invite`: an admin opens an invite; the string carries `hint` for the joiner.
    public func openInvite(chapter: String?, expiresIn seconds: UInt64, uses: Int, approval: Bool = false, hint: String) throws(ChapterCommandError) -> String {
        let (ch, log) = try memberChapter(chapter)
        guard log.state.isAdmin(identity.member) else { throw ChapterCommandError("only an admin of \"\(log.state.name)\" can invite; admins: \(log.state.admins.map(\.description).joined(separator: ", "))") }
        var updated = log
        let id = identity, now = clock() / 1000
        // The other admins' daemons whose addresses the overlay learned can admit with it too
        // (while this one is offline): the invite names their devices (chapters.md §4).
        let others = (overlay.tables[ch.id] ?? [:]).compactMap { device, entry -> ChapterInvite.Contact? in
            guard device != id.device, let m = log.state.member(ofDevice: device), log.state.isAdmin(m) else { return nil }
            return ChapterInvite.Contact(device: device, address: entry.address)
        }.sorted { $0.device < $1.device }
        let fullHint = ChapterInvite.hint(address: hint, others: others)
        let (op, invite) = try wrap { try updated.openInvite(expiresAt: now + seconds, uses: uses, approval: approval, hint: fullHint, certificate: id.certificate, device: id.deviceKey, now: now) }
        ch.log = updated
        try wrap { try logChanged(ch, new: [op]) }
        return invite.text
    }

    /// Admits a joiner that completed a handshake with this node and sent a join proof.
    /// Returns the chapter's whole log for the joiner.
    func admit(chapter bytes: [UInt8], proof: [UInt8], handshakeHash: [UInt8], joiner: DeviceCertificate) throws(ChapterCommandError) -> [[UInt8]] {
        guard let cid = try? ChapterID(bytes: bytes), let ch = chapters[cid], !ch.relayOnly, var log = ch.log else {
            throw ChapterCommandError("this node does not hold that chapter")
        }
        guard log.state.isAdmin(identity.member) else { throw ChapterCommandError("this node's member is not an admin of the chapter") }
        let id = identity, now = clock()
        let invite = try wrap { try log.verifyJoin(joiner: joiner, proof: proof, handshakeHash: handshakeHash, nowMilliseconds: now) }
        if invite.approval {
            var record = joiner.encoded + invite.id.bytes
            record.appendBigEndian(now)
            try wrap { try ch.store.putRecords(.joinRequest, [(joiner.memberKey.bytes, record)]) }
            logger.notice("join request held for approval", metadata: ["chapter": "\(cid)", "member": "\(joiner.memberKey)"])
            throw ChapterCommandError("held for approval by an admin of \"\(log.state.name)\"; your daemon joins as soon as one approves (kith chapter approve)", held: true)
        }
        let made = try wrap { try log.add(joiner: joiner, invite: invite.id, certificate: id.certificate, device: id.deviceKey,
                                          agreement: id.agreementKey, nowMilliseconds: now) }
        ch.log = log
        try wrap { try logChanged(ch, new: made) }
        return ch.encodedOps
    }

    public struct JoinRequest: Sendable, Codable {
        public let member: String
        public let device: String
        public let requestedAt: UInt64
    }

    private func requests(_ ch: Chapter) throws(ChapterCommandError) -> [(cert: DeviceCertificate, invite: OpID, at: UInt64)] {
        try wrap {
            try ch.store.records(.joinRequest).compactMap { r -> (DeviceCertificate, OpID, UInt64)? in
                guard r.bytes.count == DeviceCertificate.encodedLength + 40, let cert = try? DeviceCertificate(encoded: Array(r.bytes[0..<177])),
                      let invite = try? OpID(bytes: r.bytes[177..<209]) else { return nil }
                return (cert, invite, UInt64(bigEndianBytes: r.bytes[209..<217]))
            }
        }
    }

    /// `kith chapter requests`: joins held for approval.
    public func joinRequests(chapter: String?) throws(ChapterCommandError) -> [JoinRequest] {
        let (ch, log) = try memberChapter(chapter)
        return try requests(ch).filter { !log.state.isMember($0.cert.memberKey) }.map {
            JoinRequest(member: $0.cert.memberKey.description, device: $0.cert.deviceSigningKey.description, requestedAt: $0.at)
        }
    }

    /// `kith chapter approve` / `deny`: an admin decides on a held join.
    public func decideJoin(chapter: String?, member reference: String, approve: Bool) throws(ChapterCommandError) -> String {
        let (ch, log) = try memberChapter(chapter)
        guard log.state.isAdmin(identity.member) else { throw ChapterCommandError("only an admin can approve or deny joins") }
        let matches = try requests(ch).filter { KeyFingerprint.names($0.cert.memberKey, reference) }
        guard matches.count == 1, let request = matches.first else {
            throw ChapterCommandError(matches.isEmpty ? "no held join request from '\(reference)' (see kith chapter requests)" : "'\(reference)' matches several requests")
        }
        try wrap { try ch.store.deleteRecords(.joinRequest, ids: [request.cert.memberKey.bytes]) }
        guard approve else { return request.cert.memberKey.description }
        var updated = log
        let id = identity, now = clock()
        guard let invite = log.state.invites[request.invite], invite.used < invite.uses else {
            throw ChapterCommandError("the invite this request used has no uses left; send a new invite")
        }
        let made = try wrap { try updated.add(joiner: request.cert, invite: invite.id, certificate: id.certificate, device: id.deviceKey,
                                              agreement: id.agreementKey, nowMilliseconds: now) }
        ch.log = updated
        try wrap { try logChanged(ch, new: made) }
        return request.cert.memberKey.description
    }

    /// The joiner's side of a held join: remember the invite and keep dialling its hint, so the
    /// chapter is taken up as soon as an admin approves.
    func recordPendingJoin(_ invite: ChapterInvite) throws(ChapterCommandError) {
        try wrap { try store.putRecords(.pendingJoin, [(invite.chapter.bytes, Array(invite.text.utf8))]) }
        pendingJoins[invite.chapter] = invite
        for c in invite.contacts where HostPort.parse(c.address) != nil { requestDial(c.address) }
    }

    /// Installs a chapter this device just joined from the log the daemon of `admittedBy` (a
    /// device the invite names) returned: the log must list this device, and list `admittedBy`
    /// as a current device of an admin.
    func installJoined(invite: ChapterInvite, ops: [[UInt8]], admittedBy: Ed25519.PublicKey) throws(ChapterCommandError) -> ChapterSummary {
        let log = try wrap { try MembershipLog(chapter: invite.chapter, ops: ops, nowMilliseconds: clock()) }
        if let refusal = Self.joinAnswerRefusal(log, invite: invite, answeredBy: admittedBy, me: identity.member) { throw ChapterCommandError(refusal) }
        if let existing = chapters[invite.chapter], !existing.relayOnly {
            var merged = existing.log!
            let added = try wrap { try merged.receive(log.allOps, nowMilliseconds: clock()) }
            existing.log = merged
            try wrap { try logChanged(existing, new: added) }
            return summary(existing)
        }
        let ch = try install(log, relay: false)
        try wrap {
            try logChanged(ch, new: log.allOps)
            try rememberAddresses(of: invite, in: ch)
        }
        // The hint is the overlay's bootstrap address: its next round dials it (SyncNode+Overlay).
        overlay.wakeRequested = true
        return summary(ch)
    }

    /// Sends raw membership messages to every peer sharing the chapter (tests of the limits).
    func testHookSendMembership(_ ops: [[UInt8]], chapter id: ChapterID, times: Int) {
        for (_, p) in peers where p.scopes.contains(id.contentScope) {
            for _ in 0..<times { p.events.yield(.membership(chapter: id.bytes, ops: ops)) }
        }
    }

    /// Keeps the addresses of the admins' daemons an invite names as the chapter's bootstrap
    /// hints (the overlay's first contacts).
    func rememberAddresses(of invite: ChapterInvite, in ch: Chapter) throws(StoreError) {
        let addresses = invite.contacts.map(\.address).filter { HostPort.parse($0) != nil }
        try ch.store.putRecords(.peerHint, addresses.map { (Array($0.utf8), Array($0.utf8)) })
    }

    /// Makes a member an admin (or takes admin rights away): an admin's daemon admits joins
    /// with any invite of the chapter, so an invite stays usable while its issuer is offline.
    public func setAdmin(chapter: String?, member reference: String, admin: Bool) throws(ChapterCommandError) -> String {
        let (ch, log) = try memberChapter(chapter)
        let matches = log.state.members.keys.filter { KeyFingerprint.names($0, reference) }
        guard matches.count == 1, let target = matches.first else {
            throw ChapterCommandError(matches.isEmpty ? "no member '\(reference)' in \"\(log.state.name)\" (see `kith chapter members`)" : "'\(reference)' matches several members; give more characters")
        }
        var updated = log
        let id = identity, now = clock()
        // A demoted admin's open invites are closed too (the log voids them anyway).
        let closing = admin || !log.state.isAdmin(target) ? [] : Self.invitesToClose(removing: target, joinedWith: false, from: log, now: now)
        let made = try wrap {
            var made = [try updated.append(.setAdmin(target, admin), certificate: id.certificate, device: id.deviceKey, now: now)]
            for invite in closing { made.append(try updated.closeInvite(invite, certificate: id.certificate, device: id.deviceKey, now: now)) }
            return made
        }
        ch.log = updated
        try wrap { try logChanged(ch, new: made) }
        return target.description
    }

    /// `kith chapter remove MEMBER`: removes the member and starts a new epoch at once, so
    /// nothing written afterwards is readable with the removed member's keys.
    public func removeMember(chapter: String?, member reference: String) throws(ChapterCommandError) -> String {
        let (ch, log) = try memberChapter(chapter)
        let matches = log.state.members.keys.filter { KeyFingerprint.names($0, reference) }
        guard matches.count == 1, let target = matches.first else {
            throw ChapterCommandError(matches.isEmpty ? "no member '\(reference)' in \"\(log.state.name)\" (see `kith chapter members`)" : "'\(reference)' matches several members; give more characters")
        }
        guard target != identity.member else { throw ChapterCommandError("to remove yourself, use `kith chapter leave`") }
        var updated = log
        let id = identity, now = clock()
        // The invite the removed member joined with, and those they opened, are closed too if
        // they have uses left: they may hold them, and could come back under a new identity.
        let closing = Self.invitesToClose(removing: target, from: log, now: now)
        let made = try wrap {
            var made = [try updated.append(.removeMember(target), certificate: id.certificate, device: id.deviceKey, now: now)]
            for invite in closing {
                made.append(try updated.closeInvite(invite, certificate: id.certificate, device: id.deviceKey, now: now))
            }
            made.append(try updated.startEpoch(certificate: id.certificate, device: id.deviceKey, now: now))
            return made
        }
        ch.log = updated
        try wrap { try logChanged(ch, new: made) }
        return target.description
    }

    /// The open invites to close when `member` is removed (or, `joinedWith` false, demoted):
    /// those they opened (the log voids them anyway, chapters.md §3; closing them tells older
    /// builds and `kith chapter invites`) and the one they joined with.
    static func invitesToClose(removing member: Ed25519.PublicKey, joinedWith: Bool = true, from log: MembershipLog, now: UInt64) -> [OpID] {
        var mine = Set(log.state.invites.values.filter { $0.author == member }.map(\.id))
        if joinedWith {
            for op in log.ops.values {
                if case let .addMember(cert, _, invite?) = op.action, cert.memberKey == member { mine.insert(invite) }
            }
        }
        return log.state.invites.values.filter { mine.contains($0.id) && !$0.closed && $0.expiresAt > now && $0.used < $0.uses }.map(\.id).sorted()
    }

    /// `kith chapter leave`.
    public func leave(chapter: String?) throws(ChapterCommandError) -> String {
        let (ch, log) = try memberChapter(chapter)
        let state = log.state
        if state.admins == [identity.member] && state.members.count > 1 {
            throw ChapterCommandError("you are the only admin of \"\(state.name)\": promote another member first, or the chapter cannot admit or remove anyone")
        }
        var updated = log
        let id = identity, now = clock()
        let op = try wrap { try updated.append(.leave, certificate: id.certificate, device: id.deviceKey, now: now) }
        ch.log = updated
        try wrap { try logChanged(ch, new: [op]) }
        return state.name
    }

    // MARK: Writing to a chapter

    /// Commits edits to a chapter's scope, sealed under the current epoch key (starting a new
    /// epoch first when the current one was sealed to a device that has since left).
    func commitToChapter(_ ch: Chapter, _ batches: [[ContactEdit]]) throws(ChapterCommandError) -> [Change] {
        guard !ch.relayOnly, var log = ch.log, log.state.isMember(identity.member) else {
            throw ChapterCommandError("you are not a member of chapter \(ch.id)")
        }
        let id = identity
        // A new epoch first when the current key reached a device that is not current, or when
        // the current epoch holds an envelope for this device that does not open (a member
        // sealed garbage to others to keep a key only they hold in use).
        if log.needsNewEpoch(device: id.device, agreement: id.agreementKey) {
            if !log.state.needsNewEpoch { logger.warning("the chapter's current epoch key sealed to this device does not open; starting a new epoch", metadata: ["chapter": "\(ch.id)"]) }
            let op = try wrap { try log.startEpoch(certificate: id.certificate, device: id.deviceKey, now: clock()) }
            ch.log = log
            try wrap { try logChanged(ch, new: [op]) }
        }
        guard let epoch = log.state.currentEpoch, let key = EpochKeys.open(epoch, device: id.device, agreement: id.agreementKey) else {
            throw ChapterCommandError("this device has not received the chapter's current key yet; it arrives when another member's daemon is reached")
        }
        defer { noteStoreWrite(ch.store) }
        let made = try wrap { try ch.store.commit(batches: batches, sealer: BlockSealer(epoch: epoch.ref, key: key)) }
        push(made, scope: ch.id.contentScope)
        return made
    }

    // MARK: Sharing

    private static func shareRecordID(_ chapter: ChapterID, _ contact: ContactID) -> [UInt8] { chapter.bytes + contact.bytes }

    /// `kith share`: publishes the chosen fields of each contact into the chapter and keeps
    /// them updated as the owner edits them (until `unshare`).
    public func share(contacts: [ContactID], chapter: String?, fields: [ShareableField]) throws(ChapterCommandError) -> Int {
        let (ch, _) = try memberChapter(chapter)
        let spec = Array(fields.map(\.rawValue).joined(separator: ",").utf8)
        try wrap { try store.putRecords(.share, contacts.map { (Self.shareRecordID(ch.id, $0), spec) }) }
        for c in contacts { shares[c, default: [:]][ch.id] = fields }
        var batch: [ContactEdit] = []
        for c in contacts { if let e = projection(of: c, into: ch, fields: fields) { batch.append(e) } }
        if !batch.isEmpty { _ = try commitToChapter(ch, stride(from: 0, to: batch.count, by: 500).map { Array(batch[$0..<min($0 + 500, batch.count)]) }) }
        return batch.count
    }

    /// `kith unshare`: stops updates and retracts the contacts from the chapter (a delete that
    /// every chapter replica applies; what members already saw cannot be recalled).
    public func unshare(contacts: [ContactID], chapter: String?) throws(ChapterCommandError) -> Int {
        let (ch, _) = try memberChapter(chapter)
        try wrap { try store.deleteRecords(.share, ids: contacts.map { Self.shareRecordID(ch.id, $0) }) }
        for c in contacts { shares[c]?[ch.id] = nil }
        let present = contacts.filter { ch.store.replica.contact($0) != nil }
        if !present.isEmpty { _ = try commitToChapter(ch, [present.map { ContactEdit(contact: $0, ops: [.delete]) }]) }
        return present.count
    }

    /// The ops that bring the chapter's copy of `contact` to the owner's current values of the
    /// shared fields: set what differs, add missing set members, remove members only this
    /// device added, and say "I know them".
    func projection(of contact: ContactID, into ch: Chapter, fields: [ShareableField]) -> ContactEdit? {
        guard let mine = store.replica.contact(contact) else { return nil }
        let theirs = ch.store.replica.contact(contact) ?? ContactView(id: contact)
        var ops: [KithCRDT.Operation] = []
        for f in fields.flatMap(\.fields) where (mine[f] ?? "") != (theirs[f] ?? "") {
            ops.append(.setField(f, mine[f] ?? ""))
        }
        for kind in fields.compactMap(\.set) {
            let have = Set(theirs.values(kind).map(\.key))
            let want = mine.values(kind)
            for v in want where !have.contains(v.key) { ops.append(.add(kind, v.key, payload: v.payload)) }
            let wanted = Set(want.map(\.key))
            for key in have.subtracting(wanted) {
                let adds = ch.store.replica.liveAdds(of: key, in: kind, contact: contact)
                if !adds.isEmpty, adds.allSatisfy({ $0.device == identity.device }) { ops.append(.remove(kind, key, observed: adds)) }
            }
        }
        // Blind match tokens for the phones and emails that are shared (and only those), under
        // the current epoch's match key: likely duplicates are found across members even when
        // numbers were typed differently, and nothing unshared is revealed to a guesser.
        if let (_, key) = ch.log?.matchKey(device: identity.device, agreement: identity.agreementKey) {
            var want: Set<String> = []
            for (kind, set) in [("phone", SetKind.phones), ("email", SetKind.emails)] where fields.contains(where: { $0.set == set }) {
                for v in mine.values(set) {
                    want.insert(Base64URL.encode(MatchTokens.token(kind: kind, normalized: v.key, key: key)))
                }
            }
            let have = Set(theirs.values(.matchTokens).map(\.key))
            for text in want.sorted() where !have.contains(text) {
                ops.append(.add(.matchTokens, key: ArraySlice(Base64URL.decode(text)!), payload: []))
            }
            for text in have.sorted() where !want.contains(text) {
                let adds = ch.store.replica.liveAdds(of: text, in: .matchTokens, contact: contact)
                if !adds.isEmpty, adds.allSatisfy({ $0.device == identity.device }) {
                    ops.append(.remove(.matchTokens, key: ArraySlice(Base64URL.decode(text)!), observed: adds))
                }
            }
        }
        if !theirs.values(.knows).contains(where: { $0.key == identity.member.description }) || ch.store.replica.isDeleted(contact) {
            ops.append(.knows(member: identity.member, strength: 1))
        }
        return ops.isEmpty ? nil : ContactEdit(contact: contact, ops: ops)
    }

    /// Re-projects shared contacts after the owner edited them.
    func refreshShares(touching contacts: Set<ContactID>) throws {
        var work: [ChapterID: [ContactEdit]] = [:]
        for contact in contacts {
            guard let targets = shares[contact] else { continue }
            for (cid, fields) in targets {
                guard let ch = chapters[cid], ch.log?.state.isMember(identity.member) == true else { continue }
                if store.replica.contact(contact) == nil {
                    // Deleted or forgotten by the owner: retract it from the chapter too.
                    if ch.store.replica.contact(contact) != nil { work[cid, default: []].append(ContactEdit(contact: contact, ops: [.delete])) }
                    try store.deleteRecords(.share, ids: [Self.shareRecordID(cid, contact)])
                    shares[contact]?[cid] = nil
                } else if let e = projection(of: contact, into: ch, fields: fields) {
                    work[cid, default: []].append(e)
                }
            }
        }
        for (cid, edits) in work { _ = try commitToChapter(chapters[cid]!, [edits]) }
    }

    /// `kith chapter know/tag/log-conversation`: a member adds to a contact someone shared —
    /// "I know them too", a tag, a conversation — in the chapter scope only.
    public func annotate(chapter: String?, contact reference: String, ops given: [KithCRDT.Operation], knows: UInt8?) throws(ChapterCommandError) -> ContactID {
        let (ch, _) = try memberChapter(chapter)
        let id: ContactID
        do { id = try ch.store.replica.resolve(reference) } catch { throw ChapterCommandError("\(error.detail) in the chapter map") }
        for op in given {
            switch op {
            case .add(.tags, _, _), .logConversation: continue
            default: throw ChapterCommandError("only knows, tags and conversation entries can be added to someone else's shared contact")
            }
        }
        var ops = given
        if let knows {
            guard (1...5).contains(knows) else { throw ChapterCommandError("knows strength is 1 to 5") }
            ops.append(.knows(member: identity.member, strength: knows))
        }
        guard !ops.isEmpty else { throw ChapterCommandError("nothing to add") }
        _ = try commitToChapter(ch, [[ContactEdit(contact: id, ops: ops)]])
        return id
    }

    /// The chapter's shared contacts (what `kith chapter map` shows) and the groups of them that
    /// share a blind match token (same phone or email) and are not linked yet: likely duplicates.
    /// One page of a chapter's shared map (who knows whom is each contact's `knows`), and the
    /// likely duplicates: contacts sharing a match token not already linked as one person.
    public func chapterContacts(chapter: String?, q: String?, limit: Int?, cursor: String?,
                                duplicates maxGroups: Int = 100) throws -> (ChapterSummary, ContactPage, [[ContactID]]) {
        let ch = try findChapter(chapter)
        let r = ch.store.replica
        let idx = index(of: ch.store)
        let page = try ContactQueries.page(r, idx, q: q, tag: nil, limit: limit, cursor: cursor)
        let groups = idx.sharedTokenGroups(limit: maxGroups)
        return (summary(ch), page, groups)
    }
}
