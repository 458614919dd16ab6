import Foundation
import KithCrypto

/// The local HTTP API's secret and address files in the data directory (Protocol/api.md §2):
/// `api-key` (mode 0600, 32 random bytes as base64url, made by `kith init` or, for an older data
/// directory, by kithd's first start) and `kithd.api` (the address the running daemon bound,
/// removed when it stops).
public enum APIKey {
    public static func keyPath(_ dir: DataDirectory) -> String { dir.path + "/api-key" }
    public static func addressPath(_ dir: DataDirectory) -> String { dir.path + "/kithd.api" }

    /// Creates the key file (refusing to replace one) and returns the key.
    @discardableResult
    public static func create(in dir: DataDirectory) throws -> String {
        let key = Base64URL.encode(SecureRandom.bytes(32))
        try SecureFiles.writeSecret(Array((key + "\n").utf8), to: keyPath(dir))
        return key
    }

    /// The key, read from its 0600 file (which must not be readable by others).
    public static func load(from dir: DataDirectory) throws -> String {
        let text = String(decoding: try SecureFiles.readSecret(keyPath(dir)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.count >= 32 else { throw NodeError(.io, "\(keyPath(dir)) does not hold an API key; delete it and start kithd to make a new one") }
        return text
    }

    public static func loadOrCreate(in dir: DataDirectory) throws -> String {
        FileManager.default.fileExists(atPath: keyPath(dir)) ? try load(from: dir) : try create(in: dir)
    }

    /// Records where the running daemon's API listens ("host:port pid").
    public static func writeAddress(_ address: String, in dir: DataDirectory) throws {
        try SecureFiles.writeSecret(Array((address + " \(getpid())\n").utf8), to: addressPath(dir), exclusive: false)
    }

    /// The running daemon's API address, or nil when no daemon wrote one — or the one that did
    /// is gone (killed without cleaning up): the key must not go to whatever listens on its
    /// old port now. The daemon is alive when its pid runs as this user.
    public static func address(in dir: DataDirectory) -> String? {
        guard let text = try? String(contentsOfFile: addressPath(dir), encoding: .utf8) else { return nil }
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard let address = parts.first.map(String.init), !address.isEmpty else { return nil }
        if parts.count > 1, let pid = Int32(parts[1]) {
            var st = stat()
            guard stat("/proc/\(pid)", &st) == 0, st.st_uid == geteuid() else { return nil }
        }
        return address
    }
}

/// The web GUI's password, as an Argon2id hash string in `<data-dir>/gui-password` (0600), set
/// by `kith gui-password`. A GUI listener beyond loopback (`gui_listen`) needs it.
public enum GUIPassword {
    public static func path(_ dir: DataDirectory) -> String { dir.path + "/gui-password" }

    public static func set(_ password: String, in dir: DataDirectory) throws {
        guard password.count >= 10 else { throw NodeError(.io, "a GUI password needs at least 10 characters") }
        let hash = try Argon2id.hashPassword(password)
        try SecureFiles.writeSecret(Array((hash + "\n").utf8), to: path(dir), exclusive: false)
    }

    /// The hash, or nil when no password was set.
    public static func hash(in dir: DataDirectory) throws -> String? {
        guard FileManager.default.fileExists(atPath: path(dir)) else { return nil }
        return String(decoding: try SecureFiles.readSecret(path(dir)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
