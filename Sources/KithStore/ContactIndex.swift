import Foundation
import KithCRDT

/// An in-memory search index over the visible contacts, rebuilt from the replica when the store
/// opens (nothing of it is written to disk). Pure: no I/O.
///
/// Terms (bytes, sorted): name words (case- and accent-folded) for prefix search; phone digits
/// reversed for "ends with" search in any format; emails for prefix search; tags exact (folded).
public struct ContactIndex: Sendable {
    /// The kinds of term; a store builds the index of a kind when a query first needs it.
    public enum Kind: CaseIterable, Sendable {
        case name, phone, email, tag
    }

    private var terms: [[UInt8]] = []
    private var ids: [ContactID] = []
    public let kinds: Set<Kind>

    public init(replica: Replica, kinds: Set<Kind> = Set(Kind.allCases)) {
        self.kinds = kinds
        var pairs: [([UInt8], ContactID)] = []
        pairs.reserveCapacity(replica.knownContactCount * 3 * kinds.count)
        replica.forEachSearchTerm { id, field, set, text in
            if field != nil {
                guard kinds.contains(.name) else { return }
                for w in Self.words(text) { pairs.append((Self.tagged(0x6E, w), id)) } // n
            } else if set == .phones {
                guard kinds.contains(.phone) else { return }
                let digits = Self.digits(text)
                if !digits.isEmpty { pairs.append((Self.tagged(0x70, digits.reversed()), id)) } // p
            } else if set == .emails {
                guard kinds.contains(.email) else { return }
                pairs.append((Self.tagged(0x65, Array(text.lowercased().utf8)), id)) // e
            } else if set == .tags {
                guard kinds.contains(.tag) else { return }
                pairs.append((Self.tagged(0x74, Self.fold(text)), id)) // t
            }
        }
        pairs.sort { $0.0.lexicographicallyPrecedes($1.0) }
        terms = pairs.map(\.0)
        ids = pairs.map(\.1)
    }

    public var termCount: Int { terms.count }

    static func tagged(_ tag: UInt8, _ bytes: some Collection<UInt8>) -> [UInt8] {
        var out: [UInt8] = [tag, 0x3A]
        out.append(contentsOf: bytes)
        return out
    }

    /// Base letters of U+00C0…U+024F (Latin-1 Supplement, Latin Extended-A and -B), from their
    /// canonical decompositions; 0 where there is none (generated, see data in the git history).
    static let latinFold: [UInt8] = [97, 97, 97, 97, 97, 97, 97, 99, 101, 101, 101, 101, 105, 105, 105, 105, 100, 110, 111, 111, 111, 111, 111, 0, 111, 117, 117, 117, 117, 121, 116, 115, 97, 97, 97, 97, 97, 97, 97, 99, 101, 101, 101, 101, 105, 105, 105, 105, 100, 110, 111, 111, 111, 111, 111, 0, 111, 117, 117, 117, 117, 121, 116, 121, 97, 97, 97, 97, 97, 97, 99, 99, 99, 99, 99, 99, 99, 99, 100, 100, 100, 100, 101, 101, 101, 101, 101, 101, 101, 101, 101, 101, 103, 103, 103, 103, 103, 103, 103, 103, 104, 104, 104, 104, 105, 105, 105, 105, 105, 105, 105, 105, 105, 105, 0, 0, 106, 106, 107, 107, 107, 108, 108, 108, 108, 108, 108, 108, 108, 108, 108, 110, 110, 110, 110, 110, 110, 0, 110, 110, 111, 111, 111, 111, 111, 111, 111, 111, 114, 114, 114, 114, 114, 114, 115, 115, 115, 115, 115, 115, 115, 115, 116, 116, 116, 116, 116, 116, 117, 117, 117, 117, 117, 117, 117, 117, 117, 117, 117, 117, 119, 119, 121, 121, 121, 122, 122, 122, 122, 122, 122, 115, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 111, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 117, 117, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 97, 97, 105, 105, 111, 111, 117, 117, 117, 117, 117, 117, 117, 117, 117, 117, 0, 97, 97, 97, 97, 0, 0, 0, 0, 103, 103, 107, 107, 111, 111, 111, 111, 0, 0, 106, 0, 0, 0, 103, 103, 0, 0, 110, 110, 97, 97, 0, 0, 0, 0, 97, 97, 97, 97, 101, 101, 101, 101, 105, 105, 105, 105, 111, 111, 111, 111, 114, 114, 114, 114, 117, 117, 117, 117, 115, 115, 116, 116, 0, 0, 104, 104, 0, 0, 0, 0, 0, 0, 97, 97, 101, 101, 111, 111, 111, 111, 111, 111, 111, 111, 121, 121, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]

    /// Lowercased with Latin accents removed (é→e, ß→s, ł→l); other scripts lowercased only.
    /// Pure Swift: no locale, identical on every platform.
    static func fold(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        for u in s.unicodeScalars { foldScalar(u, into: &out) }
        return out
    }

    @inline(__always)
    static func foldScalar(_ u: Unicode.Scalar, into out: inout [UInt8]) {
        let v = u.value
        if v < 0x80 {
            let b = UInt8(v)
            out.append((65...90).contains(b) ? b + 32 : b)
        } else if v >= 0xC0, v < 0x250, latinFold[Int(v - 0xC0)] != 0 {
            out.append(latinFold[Int(v - 0xC0)])
        } else {
            out.append(contentsOf: u.properties.lowercaseMapping.utf8)
        }
    }

    /// Folded words: runs of letters and digits.
    static func words(_ s: String) -> [[UInt8]] {
        var out: [[UInt8]] = []
        var cur: [UInt8] = []
        for u in s.unicodeScalars {
            let v = u.value
            let isWordChar = v < 0x80
                ? (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A)
                : (u.properties.isAlphabetic || u.properties.numericType != nil)
            if isWordChar {
                foldScalar(u, into: &cur)
            } else if !cur.isEmpty {
                out.append(cur)
                cur = []
            }
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    static func digits(_ s: String) -> [UInt8] { s.utf8.filter { (48...57).contains($0) } }

    /// Ids whose term starts with `prefix` (or equals it, when `exact`).
    private func matching(_ prefix: [UInt8], exact: Bool = false) -> Set<ContactID> {
        var lo = 0, hi = terms.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if terms[mid].lexicographicallyPrecedes(prefix) { lo = mid + 1 } else { hi = mid }
        }
        var out = Set<ContactID>()
        var i = lo
        while i < terms.count, terms[i].starts(with: prefix) {
            if !exact || terms[i].count == prefix.count { out.insert(ids[i]) }
            i += 1
        }
        return out
    }

    /// Which kind of term `query` searches (see `search`).
    public static func kind(of query: String) -> Kind {
        let q = query.trimmingCharacters(in: .whitespacesAndNewlines)
        if q.hasPrefix("#") || q.lowercased().hasPrefix("tag:") { return .tag }
        if q.contains("@") { return .email }
        if q.allSatisfy({ $0.isASCII && ($0.isNumber || "+()-. ".contains($0)) }), digits(q).count >= 3 { return .phone }
        return .name
    }

    /// Contacts matching `query`:
    /// - `#tag` or `tag:x`: the tag (case- and accent-insensitive);
    /// - anything with `@`: emails starting with it;
    /// - mostly digits (with `+ ( ) - . space`): phones ending with those digits, in any format;
    /// - otherwise: every word must start a word of the given, family or display name.
    public func search(_ query: String) -> Set<ContactID> {
        let q = query.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !q.isEmpty else { return [] }
        switch Self.kind(of: q) {
        case .tag:
            let tag = q.hasPrefix("#") ? String(q.dropFirst()) : String(q.dropFirst(4))
            return matching(Self.tagged(0x74, Self.fold(tag)), exact: true)
        case .email:
            return matching(Self.tagged(0x65, Array(q.lowercased().utf8)))
        case .phone:
            return matching(Self.tagged(0x70, Self.digits(q).reversed()))
        case .name:
            break
        }
        let words = Self.words(q)
        guard var result = words.first.map({ matching(Self.tagged(0x6E, $0)) }) else { return [] }
        for w in words.dropFirst() { result.formIntersection(matching(Self.tagged(0x6E, w))) }
        return result
    }
}
