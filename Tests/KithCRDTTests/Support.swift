@testable import KithCRDT
import KithCrypto

/// A small seeded generator (SplitMix64) so every randomized test is reproducible from its seed.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &self) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
    mutating func pick<T>(_ a: [T]) -> T { a[int(0..<a.count)] }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

/// A deterministic device key from a small number.
func deviceKey(_ n: UInt8) -> Ed25519.PrivateKey {
    try! Ed25519.PrivateKey(seed: [UInt8](repeating: n, count: 32))
}

func contactID(_ n: UInt64) -> ContactID { ContactID(high: 0, low: n) }

let testScope = ScopeID(name: "private")
let now: UInt64 = 1_790_000_000_000

extension Replica {
    /// Receives, ignoring duplicates; traps on any rejection (tests of honest devices).
    mutating func take(_ changes: [Change]) {
        for c in changes { _ = try! receive(c, nowMilliseconds: now + 10_000_000) }
    }
}
