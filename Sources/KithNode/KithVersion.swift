import KithCrypto

/// Versions reported by `kith --version` and `kithd --version`.
public enum KithVersion {
    /// The release of this build.
    public static let release = "0.1.0"
    /// The wire protocol and data model version this build speaks (see `Protocol/`).
    public static let protocolVersion = 1

    public static func describe(tool: String) -> String {
        "\(tool) \(release) (protocol \(protocolVersion), libsodium \(Sodium.version))"
    }
}
