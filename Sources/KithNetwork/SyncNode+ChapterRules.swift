import Foundation
import KithChapter
import KithCRDT
import KithCrypto
import KithStore
import KithSync

/// Who may write into a scope, invites an admin can list and close, and the limits on what one
/// peer can make this node evaluate. The rules themselves live in KithChapter; this only
/// applies them to what arrives.
extension SyncNode {
    /// The changes of `changes` whose author may write to `scope` (Protocol/chapters.md §3.3):
    /// in a chapter, a device the membership log lists, or listed when the change was stamped;
    /// in the private scope, any device of this member not revoked before the change was stamped.
    /// Changes by a device the log does not know yet are left out without complaint: the peer
    /// offers them again at the next exchange, which is asked for once the log grows.
    func authorizedChanges(_ changes: [Change], scope: ScopeID, peerName: String) -> [Change] {
        guard let cid = ChapterID(contentScope: scope) else {
            let revokedAt = Dictionary(revocations.map { ($0.device, $0.atMilliseconds) }, uniquingKeysWith: min)
            return changes.filter { c in
                guard let t = revokedAt[c.author], c.timestamp.milliseconds > t else { return true }
                logger.warning("refused a change by a revoked device", metadata: ["peer": "\(peerName)", "device": "\(c.author)"])
                return false
            }
        }
        guard let state = chapters[cid]?.log?.state else {
            chaptersAwaitingAuthors.insert(cid)
            return []
        }
        var out: [Change] = []
        var unknown = 0
        var refused: [String] = []
        for c in changes {
            switch state.authorizes(changeBy: c.author, stampedAt: c.timestamp.milliseconds) {
            case .allowed: out.append(c)
            case .unknown: unknown += 1
            case let .refused(reason): refused.append(reason)
            }
        }
        if let first = refused.first {
            logger.warning("refused chapter changes by a device that may not write there",
                           metadata: ["peer": "\(peerName)", "chapter": "\(cid)", "count": "\(refused.count)", "reason": "\(first)"])
        }
        if unknown > 0 {
            chaptersAwaitingAuthors.insert(cid)
            logger.info("left chapter changes by devices the membership log does not list yet",
                        metadata: ["peer": "\(peerName)", "chapter": "\(cid)", "count": "\(unknown)"])
        }
        return out
    }

    /// After a chapter's log grew: if changes were left waiting for it, ask that scope's peers
    /// for a new exchange; if the current epoch changed, re-publish this member's match tokens
    /// under the new epoch's key.
    func afterLogChange(_ ch: Chapter, previousEpoch: OpID?) {
        if chaptersAwaitingAuthors.remove(ch.id) != nil {
            for p in peers.values where p.scopes.contains(ch.id.contentScope) { p.events.yield(.antiEntropy) }
        }
        guard !ch.relayOnly, let current = ch.log?.state.currentEpoch?.id, current != previousEpoch, previousEpoch != nil else { return }
        let id = ch.id
        Task { self.refreshMatchTokens(id) }
    }

    /// Re-projects every contact this member shares into the chapter with phones or emails, so
    /// its match tokens use the current epoch's key.
    func refreshMatchTokens(_ cid: ChapterID) {
        guard let ch = chapters[cid], ch.log?.state.isMember(identity.member) == true else { return }
        var edits: [ContactEdit] = []
        for (contact, targets) in shares.sorted(by: { $0.key < $1.key }) {
            guard let fields = targets[cid], fields.contains(where: { $0 == .phones || $0 == .emails }),
                  let e = projection(of: contact, into: ch, fields: fields) else { continue }
            edits.append(e)
        }
        guard !edits.isEmpty else { return }
        do {
            _ = try commitToChapter(ch, stride(from: 0, to: edits.count, by: 500).map { Array(edits[$0..<min($0 + 500, edits.count)]) })
        } catch {
            logger.warning("could not refresh match tokens after a new epoch", metadata: ["chapter": "\(cid)", "reason": "\(error)"])
        }
    }

    /// A chapter's membership log as this node holds it.
    public func chapterLog(_ id: ChapterID) -> MembershipLog? { chapters[id]?.log }

    // MARK: Invites

    public struct InviteInfo: Sendable, Codable {
        public let id: String
        public let usesLeft: Int
        public let uses: Int
        public let expiresAt: UInt64
        public let approval: Bool
        public let author: String
    }

    /// `kith chapter invites`: the invites that can still admit someone.
    public func openInvites(chapter: String?) throws(ChapterCommandError) -> [InviteInfo] {
        let (_, log) = try memberChapter(chapter)
        return log.state.openInvites(nowMilliseconds: clock()).map {
            InviteInfo(id: $0.id.description, usesLeft: $0.uses - $0.used, uses: $0.uses, expiresAt: $0.expiresAt / 1000,
                       approval: $0.approval, author: $0.author.description)
        }
    }

    /// `kith chapter invite --close ID`: an admin closes an open invite (id or a prefix of ≥ 4).
    public func closeInvite(chapter: String?, invite reference: String) throws(ChapterCommandError) -> String {
        let (ch, log) = try memberChapter(chapter)
        guard log.state.isAdmin(identity.member) else { throw ChapterCommandError("only an admin can close invites") }
        let open = log.state.openInvites(nowMilliseconds: clock())
        let matches = open.filter { $0.id.description == reference || (reference.count >= 4 && $0.id.description.hasPrefix(reference)) }
        guard matches.count == 1, let target = matches.first else {
            throw ChapterCommandError(matches.isEmpty ? "no open invite '\(reference)' in \"\(log.state.name)\" (see kith chapter invites)"
                                                      : "'\(reference)' matches \(matches.count) invites: \(matches.map(\.id.description).joined(separator: ", "))")
        }
        var updated = log
        let id = identity
        let op = try wrap { try updated.closeInvite(target.id, certificate: id.certificate, device: id.deviceKey, now: clock()) }
        ch.log = updated
        try wrap { try logChanged(ch, new: [op]) }
        return target.id.description
    }

    // MARK: Limits

    /// Costly membership messages a peer may send: a burst, then one a second. A message is
    /// costly when it made the node evaluate the whole log, or carried ops it refused or dropped
    /// (each checked at a signature's cost). Ops the node holds already (skipped by hash) and ops
    /// that extend the log's heads (applied as they come) are not costly: during a wave of joins
    /// every peer forwards every new member's ops, far more often than once a second. Every
    /// message's bytes (hashed even when held) and every op not held (its signatures checked)
    /// are charged to allowances of their own (chapters.md §3.1). A peer that finds one
    /// exhausted is cut off instead of freezing the node.
    static let membershipBurst = 120.0
    static let membershipPerSecond = 1.0
    static let membershipBytesBurst = 64.0 * 1_048_576
    static let membershipBytesPerSecond = 1_048_576.0
    static let membershipOpsBurst = Double(MembershipLog.maxOps + 10_000)
    static let membershipOpsPerSecond = 1_000.0

    /// Whether `peer`'s device has every allowance left for another membership message.
    func hasMembershipAllowance(_ peer: Int) -> Bool {
        guard let device = peers[peer]?.identity.device else { return false }
        let now = Double(clock()) / 1000
        var a = membershipAllowances[device] ?? MembershipAllowance(messages: Self.membershipBurst, bytes: Self.membershipBytesBurst, ops: Self.membershipOpsBurst, at: now)
        let elapsed = max(0, now - a.at)
        a.messages = min(Self.membershipBurst, a.messages + elapsed * Self.membershipPerSecond)
        a.bytes = min(Self.membershipBytesBurst, a.bytes + elapsed * Self.membershipBytesPerSecond)
        a.ops = min(Self.membershipOpsBurst, a.ops + elapsed * Self.membershipOpsPerSecond)
        a.at = now
        membershipAllowances[device] = a
        return a.messages >= 1 && a.bytes > 0 && a.ops > 0
    }

    /// Charges a membership message of `peer`'s device: one costly message (when it was), its
    /// bytes, and the ops it carried that the node did not hold.
    func chargeMembershipMessage(_ peer: Int, costly: Bool, bytes: Int, newOps: Int) {
        guard let device = peers[peer]?.identity.device, var a = membershipAllowances[device] else { return }
        if costly { a.messages -= 1 }
        a.bytes -= Double(bytes)
        a.ops -= Double(newOps)
        membershipAllowances[device] = a
    }

    /// Why a log a peer sent for a join is not one to install (nil: install it): it must list
    /// this member, and list the answering device — one the invite names — as a current device
    /// of an admin (chapters.md §4).
    static func joinAnswerRefusal(_ log: MembershipLog, invite: ChapterInvite, answeredBy device: Ed25519.PublicKey, me: Ed25519.PublicKey) -> String? {
        guard log.state.isMember(me) else { return "the admin's daemon answered, but its log does not list this device as a member" }
        guard invite.admin == device || invite.contacts.contains(where: { $0.device == device }) else {
            return "the daemon that answered (device \(device)) is not one the invite names; not joining"
        }
        guard let admitter = log.state.member(ofDevice: device), log.state.isAdmin(admitter) else {
            return "the daemon that answered (device \(device)) is not an admin's device in the log it sent; not joining"
        }
        return nil
    }
}

/// What one peer device may still make a node do with membership messages, and when that was
/// computed (seconds).
struct MembershipAllowance {
    var messages: Double
    var bytes: Double
    var ops: Double
    var at: Double
}
