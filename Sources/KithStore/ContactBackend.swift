import KithCRDT

/// What the `kith` CLI needs from a node: read the contact map, write edits durably. Today the
/// only implementation is `ContactStore` (the CLI opens the store itself, under its lock). When
/// a daemon holds the store, the CLI talks to it through the control socket instead, with a
/// second implementation of this protocol (the sync issue); commands do not change.
public protocol ContactBackend: AnyObject {
    /// The current replica of the member's private scope (a value: a snapshot).
    var replica: Replica { get }
    /// Authors one change per batch and returns once all are durable.
    @discardableResult
    func commit(batches: [[ContactEdit]]) throws(StoreError) -> [Change]
    /// A full id or a unique prefix (≥ 4 characters) → id.
    func resolve(_ reference: String) throws(StoreError) -> ContactID
}

extension ContactStore: ContactBackend {
    @discardableResult
    public func commit(batches: [[ContactEdit]]) throws(StoreError) -> [Change] {
        try commit(batches: batches, sealer: nil)
    }
}

extension Replica {
    /// Resolves a contact reference: a full id (either text form) or a unique prefix of at least
    /// 4 characters (`ContactQueries.resolve`'s rule; an ambiguous prefix names the candidates).
    public func resolve(_ reference: String) throws(StoreError) -> ContactID {
        if let id = ContactID(text: reference), contact(id) != nil { return id }
        guard reference.count >= 4 else { throw StoreError(.notFound, "no contact '\(reference)' (give the id or at least 4 characters of it)") }
        var matches: [ContactID] = []
        for r in ContactIDPrefix.readings(of: reference) where matches.isEmpty {
            matches = visibleContactIDs.filter { r.matches($0) }.sorted()
        }
        if matches.count == 1 { return matches[0] }
        if matches.isEmpty { throw StoreError(.notFound, "no contact with id '\(reference)'") }
        let list = matches.prefix(10).map { "\($0)  \(contact($0)?.displayName ?? "")" }.joined(separator: "\n  ")
        throw StoreError(.ambiguous, "'\(reference)' matches \(matches.count) contacts; give more characters of the id:\n  \(list)")
    }
}
