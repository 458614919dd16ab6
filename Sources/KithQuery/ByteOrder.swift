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
