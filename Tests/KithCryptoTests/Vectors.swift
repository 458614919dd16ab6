import Foundation
import KithCrypto
import Testing

/// Locates `../shared/vectors` (next to the repository), or `$KITH_VECTORS_DIR`.
enum Vectors {
    static var directory: URL? {
        if let env = ProcessInfo.processInfo.environment["KITH_VECTORS_DIR"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        // Tests/KithCryptoTests/Vectors.swift → repository root → ../shared/vectors
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = root.deletingLastPathComponent().appendingPathComponent("shared/vectors")
        return FileManager.default.fileExists(atPath: dir.path) ? dir : nil
    }

    /// The file's contents, or nil (with a printed notice) when the vectors folder is absent.
    /// When the folder exists but the file does not, that is a failure, not a skip.
    static func load(_ relative: String) throws -> Data? {
        guard let dir = directory else {
            print("SKIP: shared/vectors not found beside the repository; \(relative) not checked")
            return nil
        }
        let url = dir.appendingPathComponent(relative)
        return try Data(contentsOf: url)
    }

    static func hex(_ s: String) -> [UInt8] {
        guard let b = Hex.decode(s) else { fatalError("bad hex in vector: \(s.prefix(20))") }
        return b
    }
}

/// The subset of the Wycheproof JSON schema the tests read: one generic file type, per-suite groups.
struct WycheproofFile<Group: Decodable>: Decodable {
    let algorithm: String
    let numberOfTests: Int
    let testGroups: [Group]
}

enum WycheproofResult: String, Decodable {
    case valid, invalid, acceptable
}
