import Foundation
import KithCRDT
import KithCrypto

/// Signatures a hub has already checked, so that the many records one device sends are not
/// verified against its member's key again and again (issue 17's ingest rate).
///
/// It remembers only that *these exact bytes* carry a valid signature — a fact that cannot go
/// stale. Everything that can (a certificate's validity period, a device removed from its chapter,
/// a grant revoked or expired) is checked on every use, cached or not: a certificate found here is
/// still refused the moment its `expiresAt` passes (`DeviceSigned` re-checks the period and
/// verifies in full when it fails), and grants are looked up in the hub's closed set and their
/// expiry on every record. A revocation also forgets the grant (`forget`).
///
/// Bounded: two generations of at most `capacity / 2` entries each; a hit in the older one is
/// promoted, and when the newer fills the older is dropped (an approximate LRU, O(1) per use).
/// Thread-safe: member connections verify in parallel.
public final class VerificationCache: @unchecked Sendable {
    public let capacity: Int
    private let lock = NSLock()
    private var young: Set<[UInt8]> = []
    private var old: Set<[UInt8]> = []
    /// Lookups answered from the cache, and not (for tests and benchmarks).
    public private(set) var hits = 0
    public private(set) var misses = 0

    public init(capacity: Int = 100_000) {
        precondition(capacity >= 2)
        self.capacity = capacity
    }

    /// The cache key of a signed object: a 32-byte hash of its domain and its whole signed encoding.
    static func key(domain: [UInt8], _ bytes: some Collection<UInt8>) -> [UInt8] { BLAKE2b.hash(domain + bytes) }

    func contains(_ key: [UInt8]) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if young.contains(key) {
            hits += 1
            return true
        }
        if old.remove(key) != nil {
            hits += 1
            insertLocked(key)
            return true
        }
        misses += 1
        return false
    }

    func insert(_ key: [UInt8]) {
        lock.lock()
        defer { lock.unlock() }
        insertLocked(key)
    }

    private func insertLocked(_ key: [UInt8]) {
        if young.count >= capacity / 2 {
            old = young
            young = []
        }
        young.insert(key)
    }

    /// Forgets a signed object (a revoked grant's encoding): it is verified in full if it comes again.
    public func forget(domain: [UInt8], _ bytes: [UInt8]) {
        forget(key: Self.key(domain: domain, bytes))
    }

    /// Forgets a signed object by its cache key (`key(domain:_:)`).
    func forget(key k: [UInt8]) {
        lock.lock()
        defer { lock.unlock() }
        young.remove(k)
        old.remove(k)
    }

    /// Entries held now (at most `capacity`).
    public var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return young.count + old.count
    }
}
