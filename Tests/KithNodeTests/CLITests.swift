import Foundation
import KithCrypto
import KithNode
import Testing

/// Runs the built `kith` / `kithd` executables as real processes.
enum Binaries {
    static var productsDirectory: URL {
        // The test bundle lives in the same build products directory as the executables.
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        while dir.path != "/" {
            if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("kith").path) { return dir }
            dir = dir.deletingLastPathComponent()
        }
        return exe.deletingLastPathComponent()
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static func run(_ tool: String, _ args: [String], environment: [String: String] = [:]) throws -> Result {
        try runAny(productsDirectory.appendingPathComponent(tool).path, args, environment: environment)
    }

    /// Any executable (a script of the repository), with the same environment rules.
    static func runAny(_ path: String, _ args: [String], environment: [String: String] = [:]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "KITH_DATA_DIR")
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardInput = FileHandle.nullDevice // never the terminal `swift test` may run in: kith would ask there
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}

/// A temporary directory removed when the test ends.
final class TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("kith-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
}

func mode(_ path: String) throws -> Int {
    let attrs = try FileManager.default.attributesOfItem(atPath: path)
    return (attrs[.posixPermissions] as! NSNumber).intValue & 0o777
}

@Suite("kith and kithd executables")
struct CLITests {
    @Test func helpAndVersion() throws {
        for tool in ["kith", "kithd"] {
            let v = try Binaries.run(tool, ["--version"])
            #expect(v.status == 0)
            #expect(v.stdout.hasPrefix("\(tool) \(KithVersion.release)"))
            let h = try Binaries.run(tool, ["--help"])
            #expect(h.status == 0)
            #expect(h.stdout.contains("USAGE"))
            #expect(h.stdout.contains("Examples"))
        }
    }

    @Test func initCreatesPrivateFilesAndRefusesTwice() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        let first = try Binaries.run("kith", ["init", "--data-dir", data])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("member"))
        #expect(try mode(data) == 0o700)
        #expect(try mode(data + "/keyring") == 0o600)
        #expect(try mode(data + "/device.cert") == 0o600)

        let second = try Binaries.run("kith", ["init", "--data-dir", data])
        #expect(second.status != 0)
        #expect(second.stderr.contains("already holds a Kith identity"))

        let who = try Binaries.run("kith", ["whoami", "--data-dir", data, "--json"])
        #expect(who.status == 0)
        let obj = try JSONSerialization.jsonObject(with: Data(who.stdout.utf8)) as! [String: Any]
        let member = obj["member"] as! String
        #expect(Base64URL.decode(member)?.count == 32)
        #expect(first.stdout.contains(member))
    }

    @Test func looseKeyFilePermissionsAreRefused() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        chmod(data + "/keyring", 0o644)
        let d = try Binaries.run("kithd", ["--data-dir", data])
        #expect(d.status != 0)
        #expect(d.stderr.contains("mode 0644"))
        chmod(data + "/keyring", 0o600)
        chmod(data, 0o755)
        let w = try Binaries.run("kith", ["whoami", "--data-dir", data])
        #expect(w.status != 0)
        #expect(w.stderr.contains("chmod 700"))
    }

    @Test func initUsesKithDataDirEnvironment() throws {
        let tmp = try TempDir()
        let data = tmp.path("from-env")
        let r = try Binaries.run("kith", ["init"], environment: ["KITH_DATA_DIR": data])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.fileExists(atPath: data + "/keyring"))
    }

    @Test func whoamiWithoutIdentityFailsClearly() throws {
        let tmp = try TempDir()
        let r = try Binaries.run("kith", ["whoami", "--data-dir", tmp.path("nothing")])
        #expect(r.status != 0)
        #expect(r.stderr.contains("kith init"))
    }
}

@Suite("Node identity on disk")
struct NodeIdentityTests {
    @Test func passphraseProtectedRing() throws {
        let tmp = try TempDir()
        let dir = DataDirectory(path: tmp.path("node"))
        let pass = SecureBytes(copying: Array("a long passphrase".utf8))
        let (ring, identity) = try NodeIdentity.initialize(in: dir, passphrase: pass, limits: .interactive)
        // whoami needs no passphrase
        #expect(try NodeIdentity.loadPublic(from: dir) == identity)
        #expect(throws: CryptoError(.passphraseRequired, "")) { _ = try NodeIdentity.unlock(dir, passphrase: nil) }
        #expect(throws: CryptoError(.wrongPassphrase, "")) {
            _ = try NodeIdentity.unlock(dir, passphrase: SecureBytes(copying: Array("wrong".utf8)))
        }
        let (opened, _) = try NodeIdentity.unlock(dir, passphrase: pass)
        #expect(opened.deviceSigningKey.publicKey == ring.deviceSigningKey.publicKey)
        // The raw key ring file does not contain the device seed.
        let raw = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.keyRingPath)))
        #expect(!raw.containsBytes(ring.deviceSigningKey.seed.unsafeCopy()))
    }

    @Test func mismatchedFilesAreReported() throws {
        let tmp = try TempDir()
        let a = DataDirectory(path: tmp.path("a")), b = DataDirectory(path: tmp.path("b"))
        try NodeIdentity.initialize(in: a, passphrase: nil)
        try NodeIdentity.initialize(in: b, passphrase: nil)
        try FileManager.default.removeItem(atPath: a.certificatePath)
        try FileManager.default.copyItem(atPath: b.certificatePath, toPath: a.certificatePath)
        #expect(throws: NodeError(.corrupt, "")) { _ = try NodeIdentity.unlock(a, passphrase: nil) }
    }

    @Test func symlinkedKeyFileIsRefused() throws {
        let tmp = try TempDir()
        let dir = DataDirectory(path: tmp.path("node"))
        try NodeIdentity.initialize(in: dir, passphrase: nil)
        try FileManager.default.moveItem(atPath: dir.keyRingPath, toPath: tmp.path("elsewhere"))
        try FileManager.default.createSymbolicLink(atPath: dir.keyRingPath, withDestinationPath: tmp.path("elsewhere"))
        #expect(throws: NodeError(.insecurePermissions, "")) { _ = try NodeIdentity.unlock(dir, passphrase: nil) }
    }

    @Test func passphraseFileFirstLine() throws {
        let tmp = try TempDir()
        let f = tmp.path("pw")
        try "secret words\r\nignored\n".write(toFile: f, atomically: true, encoding: .utf8)
        #expect(try NodeIdentity.readPassphrase(file: f).unsafeCopy() == Array("secret words".utf8))
        try "\n".write(toFile: f, atomically: true, encoding: .utf8)
        #expect(throws: NodeError(.invalidPassphrase, "")) { _ = try NodeIdentity.readPassphrase(file: f) }
    }
}

extension Array where Element == UInt8 {
    func containsBytes(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        for i in 0...(count - needle.count) where self[i..<(i + needle.count)].elementsEqual(needle) { return true }
        return false
    }
}
