import KithCRDT
import KithCrypto
import KithStore

/// What keeps the node from working normally, in plain words for `kith status` and the API:
/// a clock far from its peers', edits peers refuse for their timestamps.
extension SyncNode {
    /// A peer clock further than this from ours is reported (ms).
    public static let clockSkewThreshold: Int64 = 5 * 60 * 1000

    /// A peer told its wall clock reading at the start of the session.
    func notePeerClock(_ peer: Int, wallMilliseconds: UInt64) {
        guard peers[peer] != nil else { return }
        let skew = Int64(truncatingIfNeeded: wallMilliseconds &- clock())
        peers[peer]?.clockSkew = skew
        if abs(skew) > Self.clockSkewThreshold, let p = peers[peer] {
            let words = HybridTimestamp.spoken(milliseconds: UInt64(abs(skew)))
            logger.warning("\(skew > 0 ? "this computer's clock is \(words) behind a peer's" : "this computer's clock is \(words) ahead of a peer's"); check both clocks and fix the wrong one",
                           metadata: ["peer": "\(p.name)", "skewMs": "\(skew)"])
        }
    }

    /// What the operator is told about this computer's clock, from the clock readings of the
    /// connected peers (peer minus ours, ms, with each peer's member), or nil when it agrees.
    ///
    /// A peer's reading is only its word: one hostile member (or one wrong device) must not make
    /// a correct computer's owner "fix" its clock. The median of the readings is used, and this
    /// computer is called wrong only when at least 3 peers of at least 2 members (any of them
    /// our own devices) agree; otherwise both clocks are named as suspects.
    static func clockVerdict(_ readings: [(member: Ed25519.PublicKey, skew: Int64)], own: Ed25519.PublicKey) -> String? {
        let skews = readings.map(\.skew).sorted()
        guard !skews.isEmpty else { return nil }
        let m = skews[skews.count / 2]
        guard abs(m) > clockSkewThreshold else { return nil }
        let words = HybridTimestamp.spoken(milliseconds: UInt64(abs(m)))
        let members = Set(readings.map(\.member))
        if readings.count >= 3, members.count >= 2 || members == [own] {
            return "this computer's clock is \(words) \(m < 0 ? "ahead of" : "behind") your peers'; fix it (peers refuse changes stamped more than 1 h ahead of their clocks)"
        }
        let who = readings.count == 1 ? "the one peer" : "the \(readings.count) peers"
        return "this computer's clock is \(words) \(m < 0 ? "ahead of" : "behind") \(who) it can compare with: check both clocks and fix the wrong one (peers refuse changes stamped more than 1 h ahead of their clocks)"
    }

    /// After a write to `s`: logs when it starts failing and when it works again (once each,
    /// not per request).
    func noteStoreWrite(_ s: ContactStore) {
        if let failure = s.writeFailure {
            if storeWriteFailures[s.path] == nil {
                logger.error("cannot save changes: writes fail until this is fixed (kith status shows it)", metadata: ["store": "\(s.path)", "reason": "\(failure)"])
            }
            storeWriteFailures[s.path] = failure
        } else if storeWriteFailures.removeValue(forKey: s.path) != nil {
            logger.notice("the store can save changes again", metadata: ["store": "\(s.path)"])
        }
    }

    /// Problems an operator must fix, in plain words (empty when healthy).
    public func problems() -> [String] {
        var out: [String] = []
        var stores = [store]
        for ch in chapters.values { stores.append(ch.store) }
        for s in stores where storeWriteFailures[s.path] != nil {
            s.probeWrite() // the cause may be gone (space freed)
            noteStoreWrite(s)
            if let failure = storeWriteFailures[s.path] { out.append("cannot save changes to \(s.path): \(failure)") }
        }
        let readings = peers.values.compactMap { p in p.clockSkew.map { (member: p.identity.member, skew: $0) } }
        if let verdict = Self.clockVerdict(readings, own: identity.member) { out.append(verdict) }
        out += undeliveredEdits()
        return out
    }

    /// Own edits a connected peer refuses because they are stamped too far ahead of its clock.
    func undeliveredEdits() -> [String] {
        var out: [String] = []
        let now = Int64(truncatingIfNeeded: clock())
        let limit = Int64(ReplicaConfiguration().maxFutureSkewMilliseconds)
        for p in peers.values.sorted(by: { $0.name < $1.name }) {
            guard let skew = p.clockSkew else { continue }
            let accepted = now + skew + limit
            for scope in p.scopes.sorted(by: { $0.bytes.lexicographicallyPrecedes($1.bytes) }) {
                guard let r = replica(for: scope), var head = r.head(of: identity.device) else { continue }
                var count = 0
                let ahead = Int64(head.timestamp.milliseconds) - (now + skew)
                while Int64(head.timestamp.milliseconds) > accepted {
                    count += 1
                    guard head.seq > 1, let prev = r.change(device: identity.device, seq: head.seq - 1) else { break }
                    head = prev
                }
                guard count > 0 else { continue }
                out.append("\(count) edit(s) not delivered to \(p.name): stamped \(HybridTimestamp.spoken(milliseconds: UInt64(ahead))) ahead of its clock, and it refuses more than \(HybridTimestamp.spoken(milliseconds: UInt64(limit))); fix this computer's clock (they go out once the peer's clock reaches their stamps)")
            }
        }
        return out
    }
}
