import KithCRDT

/// The matcher as bytes, so `kith import` keeps it in the store (store.md §Import index) and
/// does not rebuild it from the whole replica on every import. Only hashes, ids, names and
/// postal codes: what matching needs. The store seals it like every record.
extension ImportMatcher {
    static let encodingVersion: UInt8 = 1

    /// `u8 1 ‖ contacts ‖ index ‖ shared ‖ name+postal`, each a uvarint count of entries (store.md
    /// §Import index gives each entry's layout).
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 64 + ids.count * 40 + values.count * 8 + (index.count + byNamePostal.count) * 24)
        w.u8(Self.encodingVersion)
        w.uvarint(ids.count)
        for i in ids.indices {
            Self.put(ids[i], &w)
            w.text(names[i])
            w.text(postalCodes[i])
            let own = values(of: Int32(i)), later = more[Int32(i)] ?? []
            w.uvarint(own.count + later.count)
            for v in own { w.u64(v) }
            for v in later { w.u64(v) }
        }
        put(index, &w)
        w.uvarint(shared.count)
        for (h, ids) in shared {
            w.u64(h)
            w.uvarint(ids.count)
            for id in ids { Self.put(id, &w) }
        }
        put(byNamePostal, &w)
        return w.bytes
    }

    /// The matcher `encoded` gave; nil when the bytes are not one (the caller rebuilds it).
    public init?(encoded bytes: [UInt8]) {
        var r = ByteReader(bytes)
        do throws(DecodeError) {
            guard try r.u8() == Self.encodingVersion else { return nil }
            self.init()
            let n = try r.count(max: r.remaining / 19, "contacts")
            ids.reserveCapacity(n)
            names.reserveCapacity(n)
            postalCodes.reserveCapacity(n)
            valueEnd.reserveCapacity(n)
            var slotEntries: [FlatMap<ContactID>.Entry] = []
            slotEntries.reserveCapacity(n)
            for i in 0..<n {
                let id = try Self.id(&r)
                ids.append(id)
                slotEntries.append(.init(key: id, slot: Int32(i)))
                names.append(try r.text(max: 1 << 16))
                postalCodes.append(try r.text(max: 1 << 16))
                let m = try r.count(max: r.remaining / 8, "values")
                for _ in 0..<m { values.append(try r.u64()) }
                valueEnd.append(values.count)
            }
            guard let s = FlatMap(taking: &slotEntries) else { return nil }
            slots = s
            guard let ix = try slotMap(&r, "index") else { return nil }
            index = ix
            let ns = try r.count(max: r.remaining / 9, "shared")
            for _ in 0..<ns {
                let h = try r.u64()
                var ids = Set<ContactID>()
                for _ in 0..<(try r.count(max: r.remaining / 16, "ids")) { ids.insert(try Self.id(&r)) }
                shared[h] = ids
            }
            guard let np = try slotMap(&r, "name+postal") else { return nil }
            byNamePostal = np
            guard r.isAtEnd else { return nil }
        } catch {
            return nil
        }
    }

    /// `uvarint n ‖ n × (u64 hash ‖ id[16])`.
    private func put(_ map: FlatMap<UInt64>, _ w: inout ByteWriter) {
        w.uvarint(map.count)
        map.forEach { key, slot in
            w.u64(key)
            Self.put(ids[Int(slot)], &w)
        }
    }

    /// A section `put` wrote, each id read as the slot of that contact; nil when an id is not
    /// one of the contacts or a hash repeats.
    private func slotMap(_ r: inout ByteReader, _ what: String) throws(DecodeError) -> FlatMap<UInt64>? {
        let n = try r.count(max: r.remaining / 24, what)
        var entries: [FlatMap<UInt64>.Entry] = []
        entries.reserveCapacity(n)
        for _ in 0..<n {
            let h = try r.u64()
            guard let slot = slots[try Self.id(&r)] else { return nil }
            entries.append(.init(key: h, slot: slot))
        }
        return FlatMap(taking: &entries)
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
    /// The same contacts (ids, names, postal codes, value hashes) and the same maps, whatever
    /// order they were learned or decoded in.
    public static func == (a: ImportMatcher, b: ImportMatcher) -> Bool {
        a.canonical == b.canonical
    }

    struct Canonical: Equatable {
        var contacts: [ContactID: Contact]
        var index: [UInt64: ContactID]
        var shared: [UInt64: Set<ContactID>]
        var byNamePostal: [UInt64: ContactID]

        struct Contact: Equatable {
            var name: String
            var postalCode: String
            var values: Set<UInt64>
        }
    }

    var canonical: Canonical {
        var contacts: [ContactID: Canonical.Contact] = [:]
        for i in ids.indices {
            contacts[ids[i]] = .init(name: names[i], postalCode: postalCodes[i], values: Set(values(of: Int32(i))).union(more[Int32(i)] ?? []))
        }
        func map(_ m: FlatMap<UInt64>) -> [UInt64: ContactID] {
            var d: [UInt64: ContactID] = [:]
            m.forEach { d[$0] = ids[Int($1)] }
            return d
        }
        return Canonical(contacts: contacts, index: map(index), shared: shared, byNamePostal: map(byNamePostal))
    }
}
