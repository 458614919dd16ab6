import Foundation
import KithCRDT

/// An in-memory search index over the visible contacts, rebuilt from the replica when the store
/// opens (nothing of it is written to disk). Pure: no I/O.
///
/// Terms: name words (case- and accent-folded) for prefix search; phone digits reversed for
/// "ends with" search in any format; emails for prefix search; tags exact (folded).
public struct ContactIndex: Sendable {
    struct Entry: Sendable {
        var term: String
        var id: ContactID
    }

    private var entries: [Entry] = []

    public init(replica: Replica) {
        var e: [Entry] = []
        e.reserveCapacity(replica.knownContactCount * 8)
        for c in replica.contacts() {
            for f in [Field.givenName, .familyName, .displayName] {
                guard let v = c[f] else { continue }
                for w in Self.words(v) { e.append(Entry(term: "n:" + w, id: c.id)) }
            }
            for p in c.values(.phones) {
                let digits = Self.digits(p.key)
                if !digits.isEmpty { e.append(Entry(term: "p:" + String(digits.reversed()), id: c.id)) }
            }
            for m in c.values(.emails) { e.append(Entry(term: "e:" + m.key.lowercased(), id: c.id)) }
            for t in c.values(.tags) { e.append(Entry(term: "t:" + Self.fold(t.key), id: c.id)) }
        }
        e.sort { $0.term < $1.term }
        entries = e
    }

    public var termCount: Int { entries.count }

    static func fold(_ s: String) -> String {
        s.folding(options: [.caseInsensitive, .diacriticInsensitive, .widthInsensitive], locale: nil)
    }

    static func words(_ s: String) -> [String] {
        fold(s).split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map(String.init)
    }

    static func digits(_ s: String) -> String { String(s.filter(\.isASCIIDigit)) }

    /// Ids whose term starts with `prefix` (or equals it, when `exact`).
    private func matching(prefix: String, exact: Bool = false) -> Set<ContactID> {
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].term < prefix { lo = mid + 1 } else { hi = mid }
        }
        var out = Set<ContactID>()
        var i = lo
        while i < entries.count, entries[i].term.hasPrefix(prefix) {
            if !exact || entries[i].term == prefix { out.insert(entries[i].id) }
            i += 1
        }
        return out
    }

    /// Contacts matching `query`:
    /// - `#tag` or `tag:x`: the tag (case- and accent-insensitive);
    /// - anything with `@`: emails starting with it;
    /// - mostly digits (with `+ ( ) - . space`): phones ending with those digits, in any format;
    /// - otherwise: every word must start a word of the given, family or display name.
    public func search(_ query: String) -> Set<ContactID> {
        let q = query.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !q.isEmpty else { return [] }
        if q.hasPrefix("#") || q.lowercased().hasPrefix("tag:") {
            let tag = q.hasPrefix("#") ? String(q.dropFirst()) : String(q.dropFirst(4))
            return matching(prefix: "t:" + Self.fold(tag), exact: true)
        }
        if q.contains("@") { return matching(prefix: "e:" + q.lowercased()) }
        let phoneChars = q.filter { $0.isASCIIDigit || "+()-. ".contains($0) }
        let digits = Self.digits(q)
        if phoneChars.count == q.count, digits.count >= 3 {
            return matching(prefix: "p:" + String(digits.reversed()))
        }
        let words = Self.words(q)
        guard var result = words.first.map({ matching(prefix: "n:" + $0) }) else { return [] }
        for w in words.dropFirst() { result.formIntersection(matching(prefix: "n:" + w)) }
        return result
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
