import KithCRDT
import KithInterchange
@testable import KithQuery

/// The matcher as it was before its flat layout (a hash set per contact, dictionaries of ids):
/// kept only as the reference the flat `ImportMatcher` must answer exactly as
/// (ImportMatcherFlatTests). Its hashing is ImportMatcher's own.
struct ReferenceImportMatcher {
    struct Known: Equatable {
        var values: Set<UInt64> = []
        var name = ""
        var postalCode = ""
    }

    var known: [ContactID: Known] = [:]
    var index: [UInt64: ContactID] = [:]
    var shared: [UInt64: Set<ContactID>] = [:]
    var byNamePostal: [UInt64: ContactID] = [:]

    typealias Decision = ImportMatcher.Decision

    mutating func plan(_ c: ConvertedContact) -> (decision: Decision, suggestion: ContactID?) {
        var target: ContactID?
        var how = ""
        if c.hasUID, known[c.edit.contact] != nil {
            target = c.edit.contact
            how = "id"
        } else if !c.isKithID {
            for (what, kind, keys) in [("external id", SetKind.externalIDs, c.keys.externalIDs), ("email", .emails, c.keys.emails),
                                       ("phone", .phones, c.keys.phones)] {
                var ids = Set<ContactID>()
                for k in keys {
                    let h = ImportMatcher.member(kind, k.utf8, EmptyCollection()).hash
                    if let many = shared[h] { ids.formUnion(many) } else if let one = index[h] { ids.insert(one) }
                }
                if ids.count > 1 { return (.conflict(ids.sorted(), matchedBy: what), nil) }
                if let id = ids.first {
                    target = id
                    how = what
                    break
                }
            }
        }
        let members = ImportMatcher.members(of: c.edit)
        guard let id = target else {
            let suggestion = c.isKithID ? nil : ImportMatcher.namePostal(c.keys.name, c.keys.postalCode ?? "").flatMap { byNamePostal[$0] }
            learn(c.edit.contact, members.compactMap(\.member), name: c.keys.name, postalCode: c.keys.postalCode)
            return (.create(c.edit), suggestion)
        }
        let have = known[id]?.values ?? []
        var ops: [KithCRDT.Operation] = []
        for (op, m) in members where m.map({ !have.contains($0.hash) }) ?? true { ops.append(op) }
        guard !ops.isEmpty else { return (.unchanged(id, matchedBy: how), nil) }
        learn(id, members.compactMap(\.member), name: c.keys.name, postalCode: c.keys.postalCode)
        return (.update(ContactEdit(contact: id, ops: ops), matchedBy: how), nil)
    }

    mutating func learn(_ id: ContactID, _ members: [ImportMatcher.Member], name: String, postalCode: String?) {
        var cur = known[id] ?? Known()
        for m in members {
            let h = m.hash
            cur.values.insert(h)
            guard m.isMatchKey else { continue }
            if var many = shared[h] {
                many.insert(id)
                shared[h] = many
            } else if let one = index[h], one != id {
                shared[h] = [one, id]
            } else {
                index[h] = id
            }
        }
        if !name.isEmpty { cur.name = name }
        if let postalCode, !postalCode.isEmpty { cur.postalCode = postalCode }
        known[id] = cur
        if let np = ImportMatcher.namePostal(cur.name, cur.postalCode), byNamePostal[np] == nil { byNamePostal[np] = id }
    }
}
