import Foundation
import KithCRDT
import KithQuery
import KithStore

/// The query side of the node (Protocol/api.md §3): answered from the replicas it holds and an
/// index per scope kept beside each, patched from what changed since the last query, so no
/// request rebuilds or sorts the store. Writes go through `commit` (one signed change per batch,
/// durable before the answer, gossiped).
extension SyncNode {
    /// The store of a scope: nil or "private" for the member's own contacts, else a chapter
    /// reference (its map).
    func queryStore(_ scope: String?) throws(QueryError) -> ContactStore {
        guard let scope, !scope.isEmpty, scope != "private" else { return store }
        do {
            let ch = try findChapter(scope == APIRoute.onlyChapter ? nil : scope)
            return ch.store
        } catch {
            throw QueryError(.notFound, error.message)
        }
    }

    /// The index of `store`'s scope, brought up to date.
    func index(of store: ContactStore) -> ContactIndex {
        store.currentIndex(indexCache(of: store))
    }

    /// The index cache of `store`'s scope (made on first use).
    func indexCache(of store: ContactStore) -> ContactIndexCache {
        let scope = store.replica.scope
        if let cache = queryIndexes[scope] { return cache }
        let cache = ContactIndexCache()
        queryIndexes[scope] = cache
        return cache
    }

    public func contactPage(scope: String?, q: String?, tag: String?, limit: Int?, cursor: String?, merged: Bool) throws(QueryError) -> ContactPage {
        let s = try queryStore(scope)
        return try ContactQueries.page(s.replica, index(of: s), q: q, tag: tag, limit: limit, cursor: cursor, merged: merged)
    }

    public func contactDetails(scope: String?, reference: String, merged: Bool) throws(QueryError) -> ContactDTO {
        let s = try queryStore(scope)
        return try ContactQueries.show(reference, s.replica, index(of: s), merged: merged)
    }

    /// Adds a contact (`reference` nil) or changes one; returns it as stored.
    public func applyPatch(_ patch: ContactPatch, to reference: String?) throws(QueryError) -> ContactDTO {
        let (id, edits) = try ContactQueries.edits(patch, to: reference, store.replica, index(of: store), nowMilliseconds: clock())
        try commitEdits([edits])
        guard let c = store.replica.contact(id) else { throw QueryError(.failed, "the contact is not visible after the change") }
        return ContactDTO(c)
    }

    /// Deletes (or forgets) a contact; returns its id.
    public func deleteContact(_ reference: String, forget: Bool) throws(QueryError) -> String {
        let edits = try ContactQueries.deletion(reference, store.replica, index(of: store), forget: forget)
        try commitEdits([edits])
        return edits[0].contact.description
    }

    /// Commits edits a client built (an import): one change per batch.
    public func commitEdits(_ batches: [[ContactEdit]]) throws(QueryError) {
        do {
            _ = try commit(batches: batches)
        } catch let e as StoreError {
            throw QueryError(e.code == .rejected ? .invalid : .failed, e.detail)
        } catch {
            throw QueryError(.failed, "\(error)")
        }
    }

    /// Changes of a scope the client lacks (`since`: its version vector), oldest first per
    /// device, at most `limit`; `more` when there are others.
    public func changes(scope: String?, since: VersionVector, limit: Int) throws(QueryError) -> (changes: [[UInt8]], more: Bool) {
        let s = try queryStore(scope)
        let missing = s.replica.changes(missingFrom: since)
        return (missing.prefix(limit).map(\.encoded), missing.count > limit)
    }

    /// Every visible contact of the private scope (export).
    public func allContacts() -> [ContactView] { store.replica.contacts() }

    /// The contacts of a `#tag` (consent and sharing by tag).
    func contacts(tagged tag: String) -> Set<ContactID> {
        index(of: store).search(ContactIndex.Query("#" + tag))
    }

    func emitChanged(_ scope: String, _ ids: some Collection<ContactID>) {
        guard !ids.isEmpty, events.subscriberCount > 0 else { return }
        events.emit(NodeEvent(type: "contacts-changed", at: clock(), scope: scope, contacts: ids.prefix(100).map(\.description), count: ids.count))
    }
}
