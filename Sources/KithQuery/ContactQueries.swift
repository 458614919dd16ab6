import KithCRDT

/// The read side of the contact API, shared by the daemon (answering HTTP from its replica) and
/// the CLI when no daemon runs (answering from the store it opened): one implementation, so both
/// give the same answers in the same JSON. Pure: a replica and its index in, DTOs out.
public enum ContactQueries {
    public static let defaultLimit = 50
    public static let maxLimit = 1000

    /// One page of contacts in list order: all of them, or those matching `q` and/or `tag`.
    public static func page(_ replica: Replica, _ index: ContactIndex, q: String?, tag: String?, limit: Int?, cursor: String?,
                            merged: Bool = false) throws(QueryError) -> ContactPage {
        let limit = limit ?? defaultLimit
        guard (1...maxLimit).contains(limit) else { throw QueryError(.invalid, "limit must be 1 to \(maxLimit)") }
        var after: ContactIndex.OrderKey?
        if let cursor, !cursor.isEmpty {
            guard let k = ContactIndex.OrderKey(cursor: cursor) else { throw QueryError(.invalid, "the cursor is not one this API gave out") }
            after = k
        }
        var query = ContactIndex.Query(q ?? "")
        if let tag, !tag.isEmpty { query.tags.append(ContactIndex.fold(tag.hasPrefix("#") ? String(tag.dropFirst()) : tag)) }
        let filtering = (q.map { !$0.allSatisfy(\.isWhitespace) } ?? false) || !(tag ?? "").isEmpty
        if filtering && query.isEmpty { throw QueryError(.invalid, "the query has nothing to search for") }
        let subset = filtering ? index.search(query) : nil
        let (ids, next) = index.page(subset, after: after, limit: limit)
        let contacts = ids.compactMap { (merged ? replica.mergedContact(group: index.sameGroup(of: $0)) : replica.contact($0)).map(ContactDTO.init) }
        return ContactPage(contacts: contacts, next: next?.cursor, total: subset?.count ?? index.count)
    }

    /// A contact reference → id: the full id (base32, or the older base64url form), or a unique
    /// prefix of at least 4 characters of either form. An ambiguous prefix lists the candidates
    /// (id and name); a prefix matches in the base32 form first, in base64url only when that finds nothing.
    public static func resolve(_ reference: String, _ replica: Replica, _ index: ContactIndex) throws(QueryError) -> ContactID {
        if let id = ContactID(text: reference), replica.contact(id) != nil { return id }
        guard reference.count >= 4 else { throw QueryError(.invalid, "no contact '\(reference)' (give the id or at least 4 characters of it)") }
        let readings = ContactIDPrefix.readings(of: reference)
        guard !readings.isEmpty else { throw QueryError(.notFound, "no contact with id '\(reference)' (an id has only the characters a–z and 2–7)") }
        var matches: [ContactID] = []
        for r in readings where matches.isEmpty { matches = index.ids(withPrefix: r, limit: 10) }
        if matches.count == 1 { return matches[0] }
        if matches.isEmpty { throw QueryError(.notFound, "no contact with id '\(reference)'") }
        let names = matches.map { id in "\(id)  \(replica.contact(id)?.displayName ?? "")" }
        throw QueryError(.ambiguous, "'\(reference)' matches \(matches.count == 10 ? "10 or more" : "\(matches.count)") contacts; give more characters of the id", candidates: names)
    }

    public static func show(_ reference: String, _ replica: Replica, _ index: ContactIndex, merged: Bool) throws(QueryError) -> ContactDTO {
        let id = try resolve(reference, replica, index)
        guard let c = merged ? replica.mergedContact(group: index.sameGroup(of: id)) : replica.contact(id) else { throw QueryError(.notFound, "no contact '\(reference)'") }
        return ContactDTO(c)
    }

    /// The edits of a delete (or, with `forget`, an erase everywhere).
    public static func deletion(_ reference: String, _ replica: Replica, _ index: ContactIndex, forget: Bool) throws(QueryError) -> [ContactEdit] {
        let id = try resolve(reference, replica, index)
        return [ContactEdit(contact: id, ops: [forget ? .forget : .delete])]
    }

    /// The edits of a patch to an existing contact (`reference`) or of a new one (nil: a fresh id).
    public static func edits(_ patch: ContactPatch, to reference: String?, _ replica: Replica, _ index: ContactIndex,
                             nowMilliseconds: UInt64) throws(QueryError) -> (ContactID, [ContactEdit]) {
        let id = try reference.map { r throws(QueryError) in try resolve(r, replica, index) } ?? ContactID.random()
        if reference == nil, (patch.removePhones ?? []).count + (patch.removeEmails ?? []).count + (patch.removeTags ?? []).count + (patch.unlink ?? []).count > 0 {
            throw QueryError(.invalid, "a new contact has nothing to remove")
        }
        let edits = try patch.edits(for: id, in: replica, nowMilliseconds: nowMilliseconds) { r throws(QueryError) in try resolve(r, replica, index) }
        return (id, edits)
    }
}
