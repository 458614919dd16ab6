import KithCrypto

/// Writes this device's changes: keeps its hybrid clock and, per scope, its chain head (seq
/// and id of its latest change). Pure: the wall clock is passed in.
public struct ChangeAuthor: Sendable {
    public let signer: Ed25519.PrivateKey
    public private(set) var clock: HybridClock

    struct Head: Sendable {
        var seq: UInt64
        var id: ChangeID
    }

    private var heads: [ScopeID: Head] = [:]

    public var device: DeviceKey { signer.publicKey }

    public init(signer: Ed25519.PrivateKey, clock: HybridClock = HybridClock()) {
        self.signer = signer
        self.clock = clock
    }

    /// Continues this device's chain in `replica`'s scope and moves the clock past everything
    /// the replica has seen.
    public mutating func resume(from replica: Replica) {
        clock.observe(replica.maxTimestamp)
        if let head = replica.head(of: device) {
            heads[replica.scope] = Head(seq: head.seq, id: head.id)
            clock.observe(head.timestamp)
        }
    }

    /// Builds and signs the next change of this device in `scope`.
    /// Nothing changes in the author when the edits are refused.
    public mutating func makeChange(scope: ScopeID, edits: [ContactEdit], wallMilliseconds: UInt64,
                                    sealer: BlockSealer? = nil) throws(ChangeRejection) -> Change {
        let head = heads[scope] ?? Head(seq: 0, id: .zero)
        var nextClock = clock
        let ts = nextClock.tick(wallMilliseconds: wallMilliseconds)
        let change = try Change.make(scope: scope, signer: signer, seq: head.seq + 1, previous: head.id, timestamp: ts, edits: edits, sealer: sealer)
        clock = nextClock
        heads[scope] = Head(seq: change.seq, id: change.id)
        return change
    }

    /// Makes a change and applies it to `replica` (which must be for `scope`).
    @discardableResult
    public mutating func commit(_ edits: [ContactEdit], to replica: inout Replica, wallMilliseconds: UInt64,
                                sealer: BlockSealer? = nil) throws(ChangeRejection) -> Change {
        let saved = self
        clock.observe(replica.maxTimestamp)
        let change = try makeChange(scope: replica.scope, edits: edits, wallMilliseconds: wallMilliseconds, sealer: sealer)
        do {
            // Its own change is never "from the future" for its author: after the wall clock
            // jumped back, the hybrid clock keeps stamping after its earlier changes.
            try replica.receive(change, nowMilliseconds: max(wallMilliseconds, change.timestamp.milliseconds))
        } catch {
            self = saved // the change was not kept: do not chain onto it
            throw error
        }
        return change
    }
}
