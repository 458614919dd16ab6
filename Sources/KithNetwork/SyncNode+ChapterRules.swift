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
    /// (each checked at a signature's cost); a peer over the allowance is cut off instead of
    /// freezing the node. Ops the node holds already (skipped by hash) and ops that extend the
    /// log's heads (applied as they come) cost nothing: during a wave of joins every peer
    /// forwards every new member's ops, far more often than once a second.
    static let membershipBurst = 120.0
    static let membershipPerSecond = 1.0

    /// Whether `peer`'s device has an allowance left for a costly membership message.
    func hasMembershipAllowance(_ peer: Int) -> Bool {
        guard let device = peers[peer]?.identity.device else { return false }
        let now = Double(clock()) / 1000
        var (allowance, at) = membershipAllowances[device] ?? (Self.membershipBurst, now)
        allowance = min(Self.membershipBurst, allowance + max(0, now - at) * Self.membershipPerSecond)
        membershipAllowances[device] = (allowance, now)
        return allowance >= 1
    }

    /// Takes one costly membership message from the allowance of `peer`'s device.
    func chargeMembershipMessage(_ peer: Int) {
        guard let device = peers[peer]?.identity.device, let (allowance, at) = membershipAllowances[device] else { return }
        membershipAllowances[device] = (allowance - 1, at)
    }
}
