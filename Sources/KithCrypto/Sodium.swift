import CSodium

/// One-time libsodium initialisation. Every entry point of this module calls
/// `Sodium.ensureInitialized()` first; the work is done once per process.
public enum Sodium {
    private static let initResult: Int32 = sodium_init()

    /// Initialises libsodium (idempotent, thread-safe). Traps only if libsodium
    /// itself cannot start, which means the process has no usable randomness.
    @inline(__always)
    public static func ensureInitialized() {
        precondition(initResult >= 0, "libsodium failed to initialise (sodium_init returned \(initResult))")
    }

    /// The libsodium version string, for `--version` and bug reports.
    public static var version: String {
        ensureInitialized()
        return String(cString: sodium_version_string())
    }
}

/// Cryptographically secure random bytes from libsodium.
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        Sodium.ensureInitialized()
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) }
        return out
    }

    /// A uniformly random integer in `0..<upperBound`.
    public static func uniform(_ upperBound: UInt32) -> UInt32 {
        Sodium.ensureInitialized()
        return randombytes_uniform(upperBound)
    }
}

/// Comparisons and wiping that do not leak timing or leave secrets behind.
public enum ConstantTime {
    /// Compares two byte strings in time that depends only on their length.
    /// Different lengths compare unequal (lengths are not secret here).
    public static func equals(_ a: some ContiguousBytesView, _ b: some ContiguousBytesView) -> Bool {
        Sodium.ensureInitialized()
        return a.withBytes { pa in
            b.withBytes { pb in
                guard pa.count == pb.count else { return false }
                if pa.count == 0 { return true }
                return sodium_memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0
            }
        }
    }

    /// Overwrites `bytes` with zeros in a way the compiler may not optimise away.
    public static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buf in
            if let base = buf.baseAddress, buf.count > 0 { sodium_memzero(base, buf.count) }
        }
    }
}

/// Anything whose bytes can be read contiguously: `[UInt8]`, `ArraySlice<UInt8>`, `SecureBytes`.
public protocol ContiguousBytesView {
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}

extension Array: ContiguousBytesView where Element == UInt8 {
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }
}

extension ArraySlice: ContiguousBytesView where Element == UInt8 {
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeBytes(body)
    }
}
