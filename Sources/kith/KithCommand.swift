import ArgumentParser
import Foundation
import KithCrypto
import KithCRDT
import KithNode
import KithQuery
import KithStore

/// Every command names itself (`commandName:`): without it ArgumentParser derives the name with
/// `String(describing:)`, a protocol-conformance scan of the whole binary that cost each `kith`
/// run ~8 ms (kith-bench cli).
@main
struct Kith: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kith",
        abstract: "Kith: your contact map, shared with your chapter on your terms.",
        discussion: """
            Kith keeps your contacts on your own devices, encrypted, and syncs them with your \
            chapter peer to peer. Nothing goes to your organization without your explicit consent.

            Examples:
              kith init                           create your identity
              kith init --passphrase-file pw.txt  protect your keys with a passphrase
              kith whoami                         print your member and device keys
              kith contact add --given Ada --family Lovelace --tag volunteer
              kith contact search lovelace        name, phone, email@ or #tag
              kith import contacts.vcf            vCard or CSV; bad records reported
              kith export --format csv -o out.csv

            Exit codes: 0 success, 1 failure (one line on stderr), 2 an import
            skipped some records.

            The data directory is --data-dir, else $KITH_DATA_DIR, else $XDG_DATA_HOME/kith, \
            else ~/.local/share/kith.
            """,
        version: KithVersion.describe(tool: "kith"),
        subcommands: [Init.self, WhoAmI.self, ContactCommand.self, TagCommand.self, NoteCommand.self, LogConversation.self,
                      LinkCommand.self, UnlinkCommand.self, ImportCommand.self, ExportCommand.self, DeviceCommand.self, StatusCommand.self, PeersCommand.self, SyncCommand.self, GUIPasswordCommand.self,
                      ChapterCommand.self, ShareCommand.self, UnshareCommand.self, ConsentCommand.self, AuditCommand.self, RepairCommand.self]
    )
}

struct DataDirOption: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "The data directory (default: $KITH_DATA_DIR or ~/.local/share/kith).")
    var dataDir: String?

    var directory: DataDirectory { DataDirectory(path: dataDir ?? DataDirectory.defaultPath()) }
}

/// Turns a library error into a one-line message on stderr ("kith: …") and exit status 1.
func failing<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as CLIFailure {
        fail(e.message)
    } catch let e as NodeError {
        fail(e.detail)
    } catch let e as CryptoError {
        fail(e.detail)
    } catch let e as StoreError {
        fail(e.detail)
    } catch let e as ChangeRejection {
        fail(e.detail)
    } catch let e as QueryError {
        fail(e.candidates.isEmpty ? e.message : e.message + "\n" + e.candidates.map { "  " + $0 }.joined(separator: "\n"))
    } catch let e as APIClient.Refused {
        fail(e.description)
    } catch {
        fail("\(error)")
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("kith: \(message)\n".utf8))
    Kith.exit(withError: ExitCode.failure)
}

struct CLIFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", 
        abstract: "Create your member identity and this device's keys.",
        discussion: """
            Generates a member signing key, this device's signing and transport keys and a storage \
            key, writes them to <data-dir>/keyring (mode 0600, directory 0700) and certifies the \
            device with the member key. Refuses to run twice in the same data directory.

            With --passphrase-file the key ring is wrapped with Argon2id + XChaCha20-Poly1305; \
            the first line of the file is the passphrase.
            """
    )

    @OptionGroup var data: DataDirOption

    @Option(name: .customLong("passphrase-file"), help: "Protect the key ring with the passphrase in this file (first line).")
    var passphraseFile: String?

    @Flag(help: "Print the new identity as JSON.")
    var json = false

    func run() throws {
        let dir = data.directory
        let identity = try failing {
            let pass = try passphraseFile.map { try NodeIdentity.readPassphrase(file: $0) }
            return try NodeIdentity.initialize(in: dir, passphrase: pass).1
        }
        if json {
            print(identityJSON(identity, dir: dir))
        } else {
            print("Created a new Kith identity in \(dir.path)")
            printIdentity(identity)
            if passphraseFile != nil { print("The key ring is protected by your passphrase.") }
        }
    }
}

struct WhoAmI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "whoami",
        abstract: "Print this node's member and device public keys (base64url)."
    )

    @OptionGroup var data: DataDirOption

    @Flag(help: "Print as JSON.")
    var json = false

    func run() throws {
        let dir = data.directory
        let identity = try failing { try NodeIdentity.loadPublic(from: dir) }
        if json {
            print(identityJSON(identity, dir: dir))
        } else {
            printIdentity(identity)
        }
    }
}

func printIdentity(_ id: PublicIdentity) {
    print("member          \(id.memberKey)")
    print("device          \(id.deviceSigningKey)")
    print("device (x25519) \(id.deviceAgreementKey)")
    let created = Date(timeIntervalSince1970: TimeInterval(id.certificate.createdAt))
    print("certified       \(ISO8601DateFormatter().string(from: created))")
}

func identityJSON(_ id: PublicIdentity, dir: DataDirectory) -> String {
    let object: [String: Any] = [
        "dataDir": dir.path,
        "member": id.memberKey.description,
        "deviceSigning": id.deviceSigningKey.description,
        "deviceAgreement": id.deviceAgreementKey.description,
        "certificate": Base64URL.encode(id.certificate.encoded),
        "createdAt": id.certificate.createdAt,
    ]
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
    return String(decoding: data, as: UTF8.self)
}
