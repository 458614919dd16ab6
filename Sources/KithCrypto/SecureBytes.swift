import CSodium

/// Secret bytes held in memory allocated by `sodium_malloc`: guarded pages, excluded from
/// core dumps where the OS allows it, and zeroed by `sodium_free` when the last reference goes.
///
/// Use it for long-lived secrets (private keys, storage keys). Short-lived plaintexts stay in
/// ordinary arrays and are wiped with `ConstantTime.wipe` where practical.
public final class SecureBytes: @unchecked Sendable, ContiguousBytesView {
    // @unchecked Sendable: the buffer is written only inside `init` and is read-only afterwards.
    private let pointer: UnsafeMutableRawPointer
    public let count: Int

    /// Allocates `count` bytes and lets `initializer` fill them.
    public init(count: Int, initializer: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        Sodium.ensureInitialized()
        guard let p = sodium_malloc(max(count, 1)) else {
            fatalError("sodium_malloc(\(count)) failed: out of memory")
        }
        self.pointer = p
        self.count = count
        // If the initializer throws, every stored property is already set, so `deinit` runs and
        // frees the buffer exactly once.
        try initializer(UnsafeMutableRawBufferPointer(start: p, count: count))
    }

    /// Copies `bytes` into secure memory. The caller should wipe its own copy.
    public convenience init(copying bytes: some ContiguousBytesView) {
        let n = bytes.withBytes { $0.count }
        self.init(count: n) { dst in
            bytes.withBytes { src in
                if n > 0 { dst.baseAddress!.copyMemory(from: src.baseAddress!, byteCount: n) }
            }
        }
    }

    /// Fresh random secret bytes.
    public static func random(count: Int) -> SecureBytes {
        SecureBytes(count: count) { buf in
            if count > 0 { randombytes_buf(buf.baseAddress!, count) }
        }
    }

    deinit {
        sodium_free(pointer)
    }

    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// A copy in an ordinary array, for writing to an encrypted key ring. Wipe it after use.
    public func unsafeCopy() -> [UInt8] {
        withBytes { [UInt8]($0) }
    }
}

extension SecureBytes: Equatable {
    /// Constant-time comparison.
    public static func == (lhs: SecureBytes, rhs: SecureBytes) -> Bool {
        ConstantTime.equals(lhs, rhs)
    }
}
