import KithCRDT
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The index as a snapshot holds it (Protocol/store.md §Snapshots, index section): flat arrays
/// already in order, so loading it is a few copies and one linear check, with no sorting and no
/// allocation per term. Immutable; a `ContactIndex` loaded from it answers from it and keeps
/// what changed afterwards beside it (`ContactIndex.retired` and the overlay).
final class FrozenIndex: Sendable {
    static let format: UInt8 = 1

    /// Every indexed contact, ascending: a contact's ordinal is its position here.
    let ids: [ContactID]
    /// Terms sorted by (bytes, owner): term i is `termBytes[termOffsets[i]..<termOffsets[i+1]]`.
    let termOffsets: [UInt32]
    let termBytes: [UInt8]
    let termOwners: [UInt32]
    /// Each contact's terms (positions in the term list): `contactTerms[contactTermStarts[o]..<contactTermStarts[o+1]]`.
    let contactTermStarts: [UInt32]
    let contactTerms: [UInt32]
    /// Ordinals in list order (folded display name, then id), with their folded names.
    let order: [UInt32]
    let nameOffsets: [UInt32]
    let nameBytes: [UInt8]
    /// Per ordinal: its position in `order`.
    let orderPosition: [UInt32]
    /// Match tokens and "same person" links of the contacts that have any.
    let tokens: [UInt32: [String]]
    let links: [UInt32: [ContactID]]

    var count: Int { ids.count }
    var termCount: Int { termOwners.count }

    init(ids: [ContactID], termOffsets: [UInt32], termBytes: [UInt8], termOwners: [UInt32], contactTermStarts: [UInt32],
         contactTerms: [UInt32], order: [UInt32], nameOffsets: [UInt32], nameBytes: [UInt8], orderPosition: [UInt32],
         tokens: [UInt32: [String]], links: [UInt32: [ContactID]]) {
        self.ids = ids
        self.termOffsets = termOffsets
        self.termBytes = termBytes
        self.termOwners = termOwners
        self.contactTermStarts = contactTermStarts
        self.contactTerms = contactTerms
        self.order = order
        self.nameOffsets = nameOffsets
        self.nameBytes = nameBytes
        self.orderPosition = orderPosition
        self.tokens = tokens
        self.links = links
    }

    func ordinal(of id: ContactID) -> Int? {
        var lo = 0, hi = ids.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ids[mid] < id { lo = mid + 1 } else { hi = mid }
        }
        return lo < ids.count && ids[lo] == id ? lo : nil
    }

    /// memcmp-order comparison of term `i` with `b`; `prefixOnly` compares only `b.count` bytes.
    @inline(__always)
    func compareTerm(_ i: Int, _ b: [UInt8], prefixOnly: Bool = false) -> Int {
        let start = Int(termOffsets[i]), length = Int(termOffsets[i + 1]) - start
        return Self.compare(termBytes, start, length, b, prefixOnly: prefixOnly)
    }

    @inline(__always)
    static func compare(_ blob: [UInt8], _ start: Int, _ length: Int, _ b: [UInt8], prefixOnly: Bool) -> Int {
        blob.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                let n = min(length, pb.count)
                if n > 0 {
                    let c = memcmp(pa.baseAddress! + start, pb.baseAddress!, n)
                    if c != 0 { return Int(c) }
                }
                if prefixOnly && length >= pb.count { return 0 }
                return length - pb.count
            }
        }
    }

    func termLength(_ i: Int) -> Int { Int(termOffsets[i + 1] - termOffsets[i]) }

    func term(_ i: Int) -> [UInt8] { Array(termBytes[Int(termOffsets[i])..<Int(termOffsets[i + 1])]) }

    /// The first term whose bytes are not less than `bytes`.
    func lowerBound(_ bytes: [UInt8]) -> Int {
        var lo = 0, hi = termCount
        while lo < hi {
            let mid = (lo + hi) / 2
            if compareTerm(mid, bytes) < 0 { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Whether contact `o` has a term starting with `prefix` (equal to it when `exact`).
    func has(_ o: Int, _ prefix: [UInt8], exact: Bool) -> Bool {
        for p in contactTerms[Int(contactTermStarts[o])..<Int(contactTermStarts[o + 1])] {
            let i = Int(p)
            if compareTerm(i, prefix, prefixOnly: true) == 0 && (!exact || termLength(i) == prefix.count) { return true }
        }
        return false
    }

    /// The list key at order position `p`.
    func key(atOrder p: Int) -> ContactIndex.OrderKey {
        ContactIndex.OrderKey(name: Array(nameBytes[Int(nameOffsets[p])..<Int(nameOffsets[p + 1])]), id: ids[Int(order[p])])
    }

    /// The first order position whose key is not less than `key` (greater, when `after`).
    func orderPosition(of key: ContactIndex.OrderKey, after: Bool) -> Int {
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) / 2
            let start = Int(nameOffsets[mid]), length = Int(nameOffsets[mid + 1]) - start
            var c = Self.compare(nameBytes, start, length, key.name, prefixOnly: false)
            if c == 0 { let id = ids[Int(order[mid])]; c = id < key.id ? -1 : (id == key.id ? 0 : 1) }
            if c < 0 || (after && c == 0) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

// MARK: - Encoding

/// Little-endian flat arrays (the index section's integers; store.md §Snapshots).
private struct FlatWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32s(_ vs: [UInt32]) {
        u32(UInt32(vs.count))
        #if _endian(big)
        for v in vs { u32(v) }
        #else
        vs.withUnsafeBytes { bytes.append(contentsOf: $0) }
        #endif
    }
    mutating func blob(_ b: [UInt8]) {
        u32(UInt32(b.count))
        bytes.append(contentsOf: b)
    }
    mutating func id(_ id: ContactID) {
        withUnsafeBytes(of: id.high.bigEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: id.low.bigEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Why an index section was not used (the index is then rebuilt from the replica).
public struct IndexSnapshotError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

private struct FlatReader {
    let bytes: [UInt8]
    var at = 0

    mutating func take(_ n: Int) throws(IndexSnapshotError) -> Range<Int> {
        guard n >= 0, n <= bytes.count - at else { throw IndexSnapshotError("index section truncated at byte \(at)") }
        defer { at += n }
        return at..<(at + n)
    }
    mutating func u8() throws(IndexSnapshotError) -> UInt8 { bytes[try take(1).lowerBound] }
    mutating func u32() throws(IndexSnapshotError) -> UInt32 {
        let r = try take(4)
        var v: UInt32 = 0
        for (k, i) in r.enumerated() { v |= UInt32(bytes[i]) << (8 * UInt32(k)) }
        return v
    }
    mutating func u32s(_ expected: Int? = nil) throws(IndexSnapshotError) -> [UInt32] {
        let n = Int(try u32())
        if let expected, n != expected { throw IndexSnapshotError("index section array of \(n) where \(expected) belong") }
        let r = try take(n * 4)
        var out = [UInt32](repeating: 0, count: n)
        out.withUnsafeMutableBytes { dst in
            bytes.withUnsafeBytes { src in dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[r])) }
        }
        #if _endian(big)
        for i in out.indices { out[i] = UInt32(littleEndian: out[i]) }
        #endif
        return out
    }
    mutating func blob() throws(IndexSnapshotError) -> [UInt8] {
        Array(bytes[try take(Int(try u32()))])
    }
    mutating func id() throws(IndexSnapshotError) -> ContactID {
        let r = try take(16)
        var high: UInt64 = 0, low: UInt64 = 0
        for i in 0..<8 {
            high = high << 8 | UInt64(bytes[r.lowerBound + i])
            low = low << 8 | UInt64(bytes[r.lowerBound + 8 + i])
        }
        return ContactID(high: high, low: low)
    }
    mutating func text() throws(IndexSnapshotError) -> String {
        let b = try blob()
        guard let s = String(validating: b, as: UTF8.self) else { throw IndexSnapshotError("index section holds text that is not UTF-8") }
        return s
    }
}

extension ContactIndex {
    /// The index section of a snapshot (store.md §Snapshots): the whole index as flat sorted
    /// arrays. Merges what was loaded (minus what changed since) with what was indexed after, in
    /// one linear pass: nothing is sorted but the contacts indexed since the load.
    public func snapshotBytes() -> [UInt8] {
        // Contacts: the frozen ones still current, and the overlay's; both ascending, disjoint.
        let frozenLive: [Int] = frozen.map { f in f.ids.indices.filter { retired.isEmpty || !retired.contains(f.ids[$0]) } } ?? []
        let overlayIDs = entries.keys.sorted()
        var ids: [ContactID] = []
        ids.reserveCapacity(frozenLive.count + overlayIDs.count)
        var newOrdinalOfFrozen = [UInt32](repeating: .max, count: frozen?.count ?? 0)
        var newOrdinalOfOverlay: [ContactID: UInt32] = [:]
        newOrdinalOfOverlay.reserveCapacity(overlayIDs.count)
        do {
            var a = 0, b = 0
            while a < frozenLive.count || b < overlayIDs.count {
                if b == overlayIDs.count || (a < frozenLive.count && frozen!.ids[frozenLive[a]] < overlayIDs[b]) {
                    newOrdinalOfFrozen[frozenLive[a]] = UInt32(ids.count)
                    ids.append(frozen!.ids[frozenLive[a]])
                    a += 1
                } else {
                    newOrdinalOfOverlay[overlayIDs[b]] = UInt32(ids.count)
                    ids.append(overlayIDs[b])
                    b += 1
                }
            }
        }
        // Terms: merge the frozen list (skipping retired owners) with the overlay's.
        var termOffsets: [UInt32] = [0], termBytes: [UInt8] = [], owners: [UInt32] = []
        let overlayTerms = terms.elements
        let frozenTermCount = frozen?.termCount ?? 0
        termOffsets.reserveCapacity(frozenTermCount + overlayTerms.count + 1)
        owners.reserveCapacity(frozenTermCount + overlayTerms.count)
        Self.merge(frozenTermCount, overlayTerms.count, skip: { newOrdinalOfFrozen[Int(frozen!.termOwners[$0])] == .max },
                   frozenFirst: { a, b in
                       let f = frozen!, t = overlayTerms[b]
                       let c = f.compareTerm(a, t.bytes)
                       return c < 0 || (c == 0 && f.ids[Int(f.termOwners[a])] < t.id)
                   }, take: { isFrozen, i in
                       if isFrozen {
                           let f = frozen!
                           termBytes.append(contentsOf: f.termBytes[Int(f.termOffsets[i])..<Int(f.termOffsets[i + 1])])
                           owners.append(newOrdinalOfFrozen[Int(f.termOwners[i])])
                       } else {
                           termBytes.append(contentsOf: overlayTerms[i].bytes)
                           owners.append(newOrdinalOfOverlay[overlayTerms[i].id]!)
                       }
                       termOffsets.append(UInt32(termBytes.count))
                   })
        // Each contact's terms, by a counting pass over the owners.
        var starts = [UInt32](repeating: 0, count: ids.count + 1)
        for o in owners { starts[Int(o) + 1] += 1 }
        for i in 0..<ids.count { starts[i + 1] += starts[i] }
        var fill = starts
        var contactTerms = [UInt32](repeating: 0, count: owners.count)
        for (p, o) in owners.enumerated() {
            contactTerms[Int(fill[Int(o)])] = UInt32(p)
            fill[Int(o)] += 1
        }
        // List order: merge the frozen order (skipping retired) with the overlay's.
        var order: [UInt32] = [], nameOffsets: [UInt32] = [0], nameBytes: [UInt8] = []
        order.reserveCapacity(ids.count)
        nameOffsets.reserveCapacity(ids.count + 1)
        let overlayOrder = self.order.elements
        Self.merge(frozen?.order.count ?? 0, overlayOrder.count, skip: { newOrdinalOfFrozen[Int(frozen!.order[$0])] == .max },
                   frozenFirst: { a, b in frozen!.key(atOrder: a) < overlayOrder[b] },
                   take: { isFrozen, i in
                       if isFrozen {
                           let f = frozen!
                           nameBytes.append(contentsOf: f.nameBytes[Int(f.nameOffsets[i])..<Int(f.nameOffsets[i + 1])])
                           order.append(newOrdinalOfFrozen[Int(f.order[i])])
                       } else {
                           nameBytes.append(contentsOf: overlayOrder[i].name)
                           order.append(newOrdinalOfOverlay[overlayOrder[i].id]!)
                       }
                       nameOffsets.append(UInt32(nameBytes.count))
                   })
        var w = FlatWriter()
        w.u8(FrozenIndex.format)
        w.u32(UInt32(ids.count))
        for id in ids { w.id(id) }
        w.u32s(termOffsets)
        w.blob(termBytes)
        w.u32s(owners)
        w.u32s(starts)
        w.u32s(contactTerms)
        w.u32s(order)
        w.u32s(nameOffsets)
        w.blob(nameBytes)
        // Tokens and links of the contacts that have any, by ordinal.
        var extras: [(UInt32, [String], [ContactID])] = []
        if let f = frozen {
            for (o, n) in newOrdinalOfFrozen.enumerated() where n != .max {
                let t = f.tokens[UInt32(o)] ?? [], l = f.links[UInt32(o)] ?? []
                if !t.isEmpty || !l.isEmpty { extras.append((n, t, l)) }
            }
        }
        for (id, e) in entries where !e.tokens.isEmpty || !e.links.isEmpty {
            extras.append((newOrdinalOfOverlay[id]!, e.tokens.sorted(), e.links.sorted()))
        }
        extras.sort { $0.0 < $1.0 }
        w.u32(UInt32(extras.count))
        for (o, t, l) in extras {
            w.u32(o)
            w.u32(UInt32(t.count))
            for s in t { w.blob(Array(s.utf8)) }
            w.u32(UInt32(l.count))
            for id in l { w.id(id) }
        }
        return w.bytes
    }

    /// Loads an index section written by `snapshotBytes()`. Checks every offset, ordinal and
    /// order: a malformed section throws, it never traps. (It was sealed with the state it
    /// indexes; `current` also checks the count once patched with the tail.)
    public init(snapshot bytes: [UInt8]) throws(IndexSnapshotError) {
        var r = FlatReader(bytes: bytes)
        guard try r.u8() == FrozenIndex.format else { throw IndexSnapshotError("index section format is not \(FrozenIndex.format)") }
        let n = Int(try r.u32())
        guard n <= bytes.count / 16 else { throw IndexSnapshotError("index section counts \(n) contacts in \(bytes.count) bytes") }
        var ids: [ContactID] = []
        ids.reserveCapacity(n)
        for i in 0..<n {
            let id = try r.id()
            guard i == 0 || ids[i - 1] < id else { throw IndexSnapshotError("index section contacts are not ascending") }
            ids.append(id)
        }
        let termOffsets = try r.u32s()
        guard let firstOffset = termOffsets.first, firstOffset == 0 else { throw IndexSnapshotError("index section has no term offsets") }
        let termBytes = try r.blob()
        let t = termOffsets.count - 1
        let owners = try r.u32s(t)
        let starts = try r.u32s(n + 1)
        let contactTerms = try r.u32s(t)
        let order = try r.u32s(n)
        let nameOffsets = try r.u32s(n + 1)
        let nameBytes = try r.blob()
        guard Self.ascending(termOffsets, end: termBytes.count), Self.ascending(nameOffsets, end: nameBytes.count),
              Self.ascending(starts, end: t), starts[0] == 0, nameOffsets[0] == 0 else {
            throw IndexSnapshotError("index section offsets are out of order or out of range")
        }
        guard owners.allSatisfy({ Int($0) < n }), contactTerms.allSatisfy({ Int($0) < t }) else {
            throw IndexSnapshotError("index section names a contact or term out of range")
        }
        var orderPosition = [UInt32](repeating: .max, count: n)
        for (p, o) in order.enumerated() {
            guard Int(o) < n, orderPosition[Int(o)] == .max else { throw IndexSnapshotError("index section order is not a permutation") }
            orderPosition[Int(o)] = UInt32(p)
        }
        var tokens: [UInt32: [String]] = [:], links: [UInt32: [ContactID]] = [:]
        let extraCount = Int(try r.u32())
        guard extraCount <= n else { throw IndexSnapshotError("index section lists \(extraCount) contacts with tokens or links") }
        for _ in 0..<extraCount {
            let o = try r.u32()
            guard Int(o) < n, tokens[o] == nil, links[o] == nil else { throw IndexSnapshotError("index section lists a contact's tokens twice") }
            let tc = Int(try r.u32())
            guard tc <= bytes.count else { throw IndexSnapshotError("index section token count out of range") }
            var ts: [String] = []
            for _ in 0..<tc { ts.append(try r.text()) }
            let lc = Int(try r.u32())
            guard lc <= bytes.count / 16 else { throw IndexSnapshotError("index section link count out of range") }
            var ls: [ContactID] = []
            for _ in 0..<lc { ls.append(try r.id()) }
            if !ts.isEmpty { tokens[o] = ts }
            if !ls.isEmpty { links[o] = ls }
        }
        guard r.at == bytes.count else { throw IndexSnapshotError("\(bytes.count - r.at) trailing bytes after the index section") }
        let f = FrozenIndex(ids: ids, termOffsets: termOffsets, termBytes: termBytes, termOwners: owners, contactTermStarts: starts,
                            contactTerms: contactTerms, order: order, nameOffsets: nameOffsets, nameBytes: nameBytes,
                            orderPosition: orderPosition, tokens: tokens, links: links)
        self.init(frozen: f)
    }

    /// Merges the sorted frozen run `0..<frozenCount` (without the entries `skip` names) with
    /// the sorted overlay run `0..<overlayCount`: `take(isFrozen, i)` gets each in order.
    private static func merge(_ frozenCount: Int, _ overlayCount: Int, skip: (Int) -> Bool, frozenFirst: (Int, Int) -> Bool,
                              take: (Bool, Int) -> Void) {
        var a = 0, b = 0
        while a < frozenCount, skip(a) { a += 1 }
        while a < frozenCount || b < overlayCount {
            if b == overlayCount || (a < frozenCount && frozenFirst(a, b)) {
                take(true, a)
                a += 1
                while a < frozenCount, skip(a) { a += 1 }
            } else {
                take(false, b)
                b += 1
            }
        }
    }

    private static func ascending(_ offsets: [UInt32], end: Int) -> Bool {
        guard let last = offsets.last, Int(last) == end else { return false }
        for i in 1..<offsets.count where offsets[i] < offsets[i - 1] { return false }
        return true
    }

    /// The index of `replica`: `cached` brought up to date, else the snapshot's index section
    /// (when given and usable) patched with what changed since, else built from scratch.
    /// `changed` is what the replica changed since `cached` (or since the snapshot was loaded).
    /// A loaded index that, once patched, does not index as many contacts as the replica shows
    /// (only a bug could do that) is dropped for a rebuilt one.
    public static func current(_ cached: ContactIndex?, snapshot: [UInt8]?, changed: Replica.ChangedContacts,
                               replica: Replica) -> ContactIndex {
        var index: ContactIndex
        if let cached {
            index = cached
        } else if let snapshot, let loaded = try? ContactIndex(snapshot: snapshot) {
            index = loaded
            guard case let .some(ids) = changed else { return ContactIndex(replica: replica) }
            index.update(ids, from: replica)
            return index.count == replica.visibleContactIDs.count ? index : ContactIndex(replica: replica)
        } else {
            return ContactIndex(replica: replica)
        }
        switch changed {
        case .all: return ContactIndex(replica: replica)
        case let .some(ids): index.update(ids, from: replica)
        }
        return index
    }
}

/// One store's index, shared between the code answering queries and the store's snapshot writer
/// (which saves it beside the state). Not Sendable: used by the store's one owner.
public final class ContactIndexCache {
    public var index: ContactIndex?
    public init() {}
}
