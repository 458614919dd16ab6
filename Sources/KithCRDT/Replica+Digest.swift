import KithCrypto

extension Replica {
    /// A canonical encoding of the materialized state (what the member sees, not how it got
    /// there): two replicas with the same set of changes produce the same bytes.
    public func canonicalState() -> [UInt8] {
        var w = ByteWriter(capacity: records.count * 128)
        w.raw(scope.bytes)
        let ids = contactIndex.keys.sorted()
        w.uvarint(ids.count)
        for id in ids {
            let i = contactIndex[id]!
            w.raw(id.bytes)
            guard records.isVisible(i, devices) else {
                w.u8(0)
                continue
            }
            w.u8(1)
            let v = view(i)
            for f in Field.allCases {
                w.text(v.fields[f] ?? "")
            }
            for k in SetKind.allCases {
                let vals = v.values(k)
                w.uvarint(vals.count)
                for s in vals {
                    w.text(s.key)
                    w.text(s.payload)
                }
            }
            w.uvarint(v.log.count)
            for e in v.log {
                w.uvarint(UInt64(e.day))
                w.u8(e.channel.rawValue)
                w.text(e.outcome)
                w.text(e.note)
            }
        }
        w.uvarint(forgotten.count)
        for id in forgotten.sorted() { w.raw(id.bytes) }
        return w.bytes
    }

    /// BLAKE2b-256 of `canonicalState()`.
    public func stateDigest() -> [UInt8] {
        BLAKE2b.hash(canonicalState())
    }

    /// Every held change, encoded, in canonical order: the replica's "encoded state".
    public func encodedChanges() -> [UInt8] {
        var out: [UInt8] = []
        for c in allChanges() { out += c.encoded }
        return out
    }
}
