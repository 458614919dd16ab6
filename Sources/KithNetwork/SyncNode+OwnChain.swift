import KithChapter
import KithCRDT
import KithStore
import KithSync

/// A device never reuses a seq of its own chain (Protocol/sync.md §5.3). Its store may be behind
/// what its peers hold — restored from a backup, or a damaged file — so until a peer has sent
/// its whole own chain back identical in this run, it advertises its own entry only up to the
/// seq a peer confirmed: peers then send its newer own changes back, and the node
/// - takes them when they chain onto what it holds (the next change continues after them), or
/// - when it wrote different changes with those seqs since the restore, drops its own, takes
///   the peers', and authors the dropped edits again after them (nothing acknowledged is lost,
///   no equivocation is ever shown to anyone: the forked changes never reach a peer that holds
///   the real ones, which refuses them as a broken chain).
extension SyncNode {
    /// The vectors this node advertises for `scopes`: its own device's entry capped at the
    /// seq confirmed by a peer.
    func advertisedVectors(_ scopes: Set<ScopeID>) -> [ScopeID: VersionVector] {
        var out: [ScopeID: VersionVector] = [:]
        for s in scopes {
            guard let r = replica(for: s) else { continue }
            var v = r.versionVector()
            let mine = v[identity.device]
            // Once a peer confirmed the whole chain in this run, later own changes chain onto
            // it and cannot have forked: advertise them (no echo of every new change).
            if mine > 0 && !ownSettled.contains(s) { v[identity.device] = min(mine, ownConfirmed[s] ?? 0) }
            out[s] = v
        }
        return out
    }

    /// Before `target` takes `changes` from a peer: when some of them are this device's own and
    /// differ from the held ones at the same seq, this device's chain forked (restored, then
    /// written). Re-authors and returns true (the caller is done with the batch).
    func handleOwnFork(_ changes: [Change], in target: ContactStore, scope: ScopeID, peerName: String) -> Bool {
        let me = identity.device
        let forked = changes.contains { c in
            c.author == me && target.replica.change(device: me, seq: c.seq).map { $0.id != c.id } == true
        }
        guard forked else { return false }
        do {
            let sealer = try sealer(for: scope)
            guard let fork = try target.reauthorOwnFork(real: changes, sealer: sealer) else { return false }
            let real = target.replica.head(of: me).map { $0.seq - UInt64(fork.reauthored.count) } ?? 0
            try confirmOwn(real, scope: scope, in: target)
            let message = "this device's data was behind its peers (restored from an older copy?): it had made \(fork.dropped.count) change(s) with seq \(fork.seq) and later that its peers already held different ones for; those edits were written again after the \(real) changes peers hold (no edit lost)"
            logger.warning("\(message)", metadata: ["scope": "\(scope)", "peer": "\(peerName)"])
            noteRestore(message)
            push(fork.reauthored, scope: scope)
            // Connections whose sessions believe the peer holds the dropped changes re-exchange
            // vectors from scratch (the peers dial back, or are dialled again).
            for (pid, p) in peers where p.scopes.contains(scope) {
                p.events.yield(.close(reason: "this device's own changes were authored again after a restore; reconnecting"))
                unregister(pid)
            }
            emitChanged(scope == privateScope ? "private" : scope.description,
                        Set((fork.dropped + fork.reauthored).flatMap { $0.blockContacts.compactMap { $0 } }))
        } catch {
            logger.error("this device's own changes forked from what its peers hold and could not be written again", metadata: ["scope": "\(scope)", "peer": "\(peerName)", "reason": "\(error)"])
        }
        return true
    }

    /// After `target` took `changes`: own changes that came back identical are confirmed; own
    /// changes this device did not hold any more are reported.
    func noteOwnChangesBack(_ changes: [Change], in target: ContactStore, scope: ScopeID, headBefore: UInt64, peerName: String) {
        let me = identity.device
        let identical = changes.filter { c in c.author == me && target.replica.change(device: me, seq: c.seq)?.id == c.id }.map(\.seq)
        guard let top = identical.max() else { return }
        let head = target.replica.head(of: me)?.seq ?? 0
        if head > headBefore {
            let message = "this device's data was behind its peers (restored from an older copy?): took back \(head - headBefore) of its own change(s) from a peer; new edits continue after them"
            logger.warning("\(message)", metadata: ["scope": "\(scope)", "peer": "\(peerName)"])
            noteRestore(message)
        }
        // Confirmed up to the highest seq such that all below it are held (chains are contiguous).
        do { try confirmOwn(min(top, head), scope: scope, in: target) } catch {
            logger.warning("could not record the confirmed head of this device's own changes", metadata: ["scope": "\(scope)", "reason": "\(error)"])
        }
    }

    private func confirmOwn(_ seq: UInt64, scope: ScopeID, in target: ContactStore) throws {
        if seq >= target.replica.head(of: identity.device)?.seq ?? 0 { ownSettled.insert(scope) }
        guard seq > ownConfirmed[scope] ?? 0 else { return }
        try target.setOwnConfirmedSeq(seq)
        ownConfirmed[scope] = seq
    }

    private func noteRestore(_ message: String) {
        restoreNotices.append(message)
        if restoreNotices.count > 10 { restoreNotices.removeFirst() }
    }

    /// The sealer new changes of `scope` are written with (nil in the private scope).
    private func sealer(for scope: ScopeID) throws -> BlockSealer? {
        guard scope != privateScope else { return nil }
        guard let cid = ChapterID(contentScope: scope), let ch = chapters[cid], !ch.relayOnly,
              let epoch = ch.log?.state.currentEpoch,
              let key = EpochKeys.open(epoch, device: identity.device, agreement: identity.agreementKey) else {
            throw ChapterCommandError("this device holds no current key of chapter scope \(scope)")
        }
        return BlockSealer(epoch: epoch.ref, key: key)
    }

    /// The confirmed own seq of every store (read at start).
    static func ownConfirmedSeqs(_ store: ContactStore, private scope: ScopeID, chapters: [ChapterID: Chapter]) -> [ScopeID: UInt64] {
        var out = [scope: (try? store.ownConfirmedSeq()) ?? 0]
        for ch in chapters.values { out[ch.id.contentScope] = (try? ch.store.ownConfirmedSeq()) ?? 0 }
        return out
    }
}

extension SyncNode {
    /// Things the operator should know that do not stop the node (`kith status`).
    public func notices() -> [String] { restoreNotices }
}
