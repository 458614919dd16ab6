import KithQuery
import KithStore

extension SyncNode {
    /// Clean shutdown: writes the snapshot of every store whose replica changed since its last
    /// one (Protocol/store.md §Snapshots), so the next start loads it instead of replaying.
    /// Returns how many stores have a snapshot of their present state.
    @discardableResult
    public func writeSnapshots() -> Int {
        // With the index of each (saved in the snapshot; built now if no query needed it yet).
        _ = index(of: store)
        var written = store.writeSnapshot() ? 1 : 0
        for ch in chapters.values {
            _ = index(of: ch.store)
            if ch.store.writeSnapshot() { written += 1 }
        }
        return written
    }
}
