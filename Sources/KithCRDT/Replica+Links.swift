/// "Same person" links, read as one: a union-find over the live links between known contacts.
/// The representative of a group is its smallest contact id, so every replica picks the same.
extension Replica {
    /// The groups of linked contacts with more than one member, each sorted, keyed by representative.
    public func sameAsGroups() -> [ContactID: [ContactID]] {
        var parent: [ContactID: ContactID] = [:]
        func find(_ x: ContactID) -> ContactID {
            var root = x
            while let p = parent[root], p != root { root = p }
            var cur = x
            while let p = parent[cur], p != root {
                parent[cur] = root
                cur = p
            }
            return root
        }
        func union(_ a: ContactID, _ b: ContactID) {
            let ra = find(a), rb = find(b)
            guard ra != rb else { return }
            if ra < rb { parent[rb] = ra } else { parent[ra] = rb }
        }
        for i in records.indices where records.isVisible(i, devices) {
            for m in records[i].members where m.kind == .links {
                guard let other = ContactID(text: m.key), !forgotten.contains(other),
                      let j = contactIndex[other], records.isVisible(j, devices) else { continue }
                let me = contactIDs[i]
                if parent[me] == nil { parent[me] = me }
                if parent[other] == nil { parent[other] = other }
                union(me, other)
            }
        }
        var groups: [ContactID: [ContactID]] = [:]
        for id in parent.keys { groups[find(id), default: []].append(id) }
        return groups.mapValues { $0.sorted() }
    }

    /// The representative (smallest id) of the contact's same-person group.
    public func representative(of id: ContactID) -> ContactID {
        sameAsGroups().first(where: { $0.value.contains(id) })?.key ?? id
    }

    /// The contact merged with every record linked to it: fields from the latest write across
    /// the group, sets and logs united. Nil when no record of the group is visible.
    public func mergedContact(_ id: ContactID) -> ContactView? {
        mergedContact(group: sameAsGroups().first(where: { $0.value.contains(id) })?.value ?? [id])
    }

    /// `mergedContact` for a group an index already knows (no scan of every link).
    public func mergedContact(group: [ContactID]) -> ContactView? {
        guard !group.isEmpty else { return nil }
        let indices = group.compactMap { contactIndex[$0] }.filter { records.isVisible($0, devices) }
        guard !indices.isEmpty else { return nil }
        var merged = ContactState()
        for i in indices {
            let r = records[i]
            for f in r.fields {
                if let j = merged.fields.firstIndex(where: { $0.field == f.field }) {
                    if devices.less(merged.fields[j].stamp, f.stamp) { merged.fields[j] = f }
                } else {
                    merged.fields.append(f)
                }
            }
            merged.members += r.members.filter { $0.kind != .links }
            merged.log += r.log
        }
        return view(of: merged, id: group.min()!)
    }
}
