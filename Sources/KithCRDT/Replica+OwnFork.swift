import KithCrypto

/// What a device needs when its own chain turns out to have forked from what its peers hold
/// (it was restored from an older copy and wrote again before it heard from them): drop its
/// changes from the fork on, take the real tail, and author the dropped edits again after it
/// (Protocol/sync.md §5.3).
extension Replica {
    /// The edits of `change` this replica can read, as its author wrote them (erased and
    /// unreadable blocks are left out).
    public func readableEdits(of change: Change) -> [ContactEdit] {
        switch mode {
        case .plain:
            return ((try? change.decodeEdits()) ?? []).map(\.edit)
        case .opaque:
            return []
        case .encrypted:
            return change.openBlocks(keys: epochKeys).edits.map(\.edit)
        }
    }

    /// A replica holding every change of this one except `device`'s from `seq` on (and the
    /// buffered changes), with the same configuration and epoch keys. Changes are re-applied
    /// without verifying signatures again: this replica verified them when they came.
    public func dropping(device: DeviceKey, from seq: UInt64) -> Replica {
        var out = Replica(scope: scope, configuration: ReplicaConfiguration(maxFutureSkewMilliseconds: .max / 2, verifySignatures: false),
                          mode: mode, epochKeys: epochKeys)
        for (i, chain) in chains.enumerated() {
            let dropped = devices[UInt32(i)] == device
            for c in chain.changes.all where !dropped || c.seq < seq { _ = try? out.receive(c, nowMilliseconds: 0) }
            for c in chain.pending.values where !dropped { _ = try? out.receive(c, nowMilliseconds: 0) }
        }
        _ = out.takeRewrittenChanges()
        out.configuration = configuration
        return out
    }
}
