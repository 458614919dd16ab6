#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Byte strings in lexicographic order with one `memcmp`: the index sorts and searches millions of
/// terms and list keys at start-up, and `==` followed by `lexicographicallyPrecedes` walked every
/// shared prefix twice, element by element (the sorts were half of a cold `kith contact search`).
@inline(__always)
func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> Int {
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            let n = min(pa.count, pb.count)
            if n > 0 {
                let c = memcmp(pa.baseAddress!, pb.baseAddress!, n)
                if c != 0 { return Int(c) }
            }
            return pa.count - pb.count
        }
    }
}

/// The first 8 bytes, big-endian, zero-padded: comparing two of these orders byte strings as
/// `compareBytes` does whenever they differ (equal prefixes need the full comparison).
@inline(__always)
func bytePrefix(_ b: [UInt8]) -> UInt64 {
    var v: UInt64 = 0
    let n = min(b.count, 8)
    for i in 0..<n { v |= UInt64(b[i]) << (56 - 8 * UInt64(i)) }
    return v
}

extension ContactIndex {
    /// `terms.sorted()`, faster: sorts (prefix, position) pairs, which moves no reference-counted
    /// bytes and settles most comparisons on one integer.
    static func sortedTerms(_ terms: [Term]) -> [Term] {
        var order = terms.indices.map { (bytePrefix(terms[$0].bytes), UInt32($0)) }
        terms.withUnsafeBufferPointer { t in
            order.sort { a, b in a.0 != b.0 ? a.0 < b.0 : t[Int(a.1)] < t[Int(b.1)] }
        }
        return order.map { terms[Int($0.1)] }
    }

    /// `keys.sorted()`, the same way.
    static func sortedKeys(_ keys: [OrderKey]) -> [OrderKey] {
        var order = keys.indices.map { (bytePrefix(keys[$0].name), UInt32($0)) }
        keys.withUnsafeBufferPointer { k in
            order.sort { a, b in a.0 != b.0 ? a.0 < b.0 : k[Int(a.1)] < k[Int(b.1)] }
        }
        return order.map { keys[Int($0.1)] }
    }
}
