import CSodium

/// BLAKE2b (libsodium `crypto_generichash`), plain or keyed.
public enum BLAKE2b {
    public static let minOutputLength = 16
    public static let maxOutputLength = 64
    public static let maxKeyLength = 64

    /// One-shot hash of `data`, `outputLength` bytes (16...64), optionally keyed (≤ 64-byte key).
    public static func hash(_ data: some ContiguousBytesView, outputLength: Int = 32, key: (some ContiguousBytesView)? = [UInt8]?.none) -> [UInt8] {
        Sodium.ensureInitialized()
        precondition((minOutputLength...maxOutputLength).contains(outputLength), "BLAKE2b output length must be 16...64")
        var out = [UInt8](repeating: 0, count: outputLength)
        data.withBytes { d in
            withOptionalBytes(key) { k in
                precondition(k.count <= maxKeyLength, "BLAKE2b key must be at most 64 bytes")
                out.withUnsafeMutableBufferPointer { o in
                    _ = crypto_generichash(
                        o.baseAddress!, outputLength,
                        d.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(d.count),
                        k.baseAddress?.assumingMemoryBound(to: UInt8.self), k.count
                    )
                }
            }
        }
        return out
    }

    /// Incremental BLAKE2b. libsodium's state must be 64-byte aligned, so it is allocated here
    /// and wiped and freed in `deinit`. Not Sendable: one hasher belongs to one task.
    public final class Hasher {
        private let state: UnsafeMutableRawPointer
        private let stateSize: Int
        private let outputLength: Int
        private var finished = false

        public init(outputLength: Int = 32, key: (some ContiguousBytesView)? = [UInt8]?.none) {
            Sodium.ensureInitialized()
            precondition((BLAKE2b.minOutputLength...BLAKE2b.maxOutputLength).contains(outputLength))
            self.outputLength = outputLength
            self.stateSize = crypto_generichash_statebytes()
            self.state = UnsafeMutableRawPointer.allocate(byteCount: stateSize, alignment: 64)
            withOptionalBytes(key) { k in
                precondition(k.count <= BLAKE2b.maxKeyLength)
                _ = crypto_generichash_init(OpaquePointer(state), k.baseAddress?.assumingMemoryBound(to: UInt8.self), k.count, outputLength)
            }
        }

        deinit {
            sodium_memzero(state, stateSize)
            state.deallocate()
        }

        public func update(_ data: some ContiguousBytesView) {
            precondition(!finished, "BLAKE2b.Hasher used after finalize()")
            data.withBytes { d in
                _ = crypto_generichash_update(OpaquePointer(state), d.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(d.count))
            }
        }

        public func finalize() -> [UInt8] {
            precondition(!finished, "BLAKE2b.Hasher finalized twice")
            finished = true
            var out = [UInt8](repeating: 0, count: outputLength)
            out.withUnsafeMutableBufferPointer { o in
                _ = crypto_generichash_final(OpaquePointer(state), o.baseAddress!, outputLength)
            }
            return out
        }
    }
}

@inline(__always)
func withOptionalBytes<R>(_ bytes: (some ContiguousBytesView)?, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    if let bytes { return try bytes.withBytes(body) }
    return try body(UnsafeRawBufferPointer(start: nil, count: 0))
}
