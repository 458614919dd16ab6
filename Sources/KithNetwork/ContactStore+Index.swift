import KithQuery
import KithStore

extension ContactStore {
    /// The index of this store's replica kept in `cache`, brought up to date: patched with what
    /// changed since, or loaded from the snapshot's index section (and patched with the tail), or
    /// built. The first call also makes the store save that index in its snapshots
    /// (`snapshotIndexSource`), so the next open loads it instead of building it.
    public func currentIndex(_ cache: ContactIndexCache) -> ContactIndex {
        if snapshotIndexSource == nil {
            cache.index = nil // a cache of another store object of the same scope
            snapshotIndexSource = { [cache] store in
                let index = store.refreshIndex(cache)
                return { index.snapshotBytes() }
            }
        }
        return refreshIndex(cache)
    }

    private func refreshIndex(_ cache: ContactIndexCache) -> ContactIndex {
        let index = ContactIndex.current(cache.index, snapshot: cache.index == nil ? takeSnapshotIndex() : nil,
                                         changed: takeChangedContacts(), replica: replica)
        cache.index = index
        return index
    }
}
