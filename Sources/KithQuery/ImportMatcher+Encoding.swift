import KithCRDT

/// The matcher as bytes, so `kith import` keeps it in the store (store.md §Import index) and
/// does not rebuild it from the whole replica on every import. Only hashes, ids, names and
/// postal codes: what matching needs. The store seals it like every record.
extension ImportMatcher {
    static let encodingVersion: UInt8 = 1

    /// `u8 1 ‖ contacts ‖ index ‖ shared ‖ name+postal`, each a uvarint count of entries (store.md
    /// §Import index gives each entry's layout).
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 64 + known.count * 120)
        w.u8(Self.encodingVersion)
        w.uvarint(known.count)
        for (id, k) in known {
            Self.put(id, &w)
            w.text(k.name)
            w.text(k.postalCode)
            w.uvarint(k.values.count)
            for v in k.values { w.u64(v) }
        }
        w.uvarint(index.count)
        for (h, id) in index {
            w.u64(h)
            Self.put(id, &w)
        }
        w.uvarint(shared.count)
        for (h, ids) in shared {
            w.u64(h)
            w.uvarint(ids.count)
            for id in ids { Self.put(id, &w) }
        }
        w.uvarint(byNamePostal.count)
        for (h, id) in byNamePostal {
            w.u64(h)
            Self.put(id, &w)
        }
        return w.bytes
    }

    /// The matcher `encoded` gave; nil when the bytes are not one (the caller rebuilds it).
    public init?(encoded bytes: [UInt8]) {
        var r = ByteReader(bytes)
        do throws(DecodeError) {
            guard try r.u8() == Self.encodingVersion else { return nil }
            self.init()
            let n = try r.count(max: r.remaining / 19, "contacts")
            known.reserveCapacity(n)
            for _ in 0..<n {
                let id = try Self.id(&r)
                var k = Known()
                k.name = try r.text(max: 1 << 16)
                k.postalCode = try r.text(max: 1 << 16)
                let m = try r.count(max: r.remaining / 8, "values")
                k.values.reserveCapacity(m)
                for _ in 0..<m { k.values.insert(try r.u64()) }
                known[id] = k
            }
            let ni = try r.count(max: r.remaining / 24, "index")
            index.reserveCapacity(ni)
            for _ in 0..<ni { index[try r.u64()] = try Self.id(&r) }
            let ns = try r.count(max: r.remaining / 9, "shared")
            for _ in 0..<ns {
                let h = try r.u64()
                var ids = Set<ContactID>()
                for _ in 0..<(try r.count(max: r.remaining / 16, "ids")) { ids.insert(try Self.id(&r)) }
                shared[h] = ids
            }
            let np = try r.count(max: r.remaining / 24, "name+postal")
            byNamePostal.reserveCapacity(np)
            for _ in 0..<np { byNamePostal[try r.u64()] = try Self.id(&r) }
            guard r.isAtEnd else { return nil }
        } catch {
            return nil
        }
    }

    private static func put(_ id: ContactID, _ w: inout ByteWriter) {
        w.u64(id.high)
        w.u64(id.low)
    }

    private static func id(_ r: inout ByteReader) throws(DecodeError) -> ContactID {
        ContactID(high: try r.u64(), low: try r.u64())
    }
}

extension ImportMatcher: Equatable {
    public static func == (a: ImportMatcher, b: ImportMatcher) -> Bool {
        a.known == b.known && a.index == b.index && a.shared == b.shared && a.byNamePostal == b.byNamePostal
    }
}
