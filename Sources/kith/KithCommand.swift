import ArgumentParser
import Foundation
import KithChapter
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

            Global options, before or after the subcommand:
              --data-dir DIR  the data directory; default $KITH_DATA_DIR, else
                              $XDG_DATA_HOME/kith, else ~/.local/share/kith
              --json          print data as JSON, with the HTTP API's keys
              --quiet         print only data and errors
              --no-pager      do not page long lists ($PAGER, default less -FRX)

            Contact ids are 26 characters (a-z, 2-7); any 4 or more leading characters will do \
            when they name one contact. Destructive commands ask first on a terminal; --yes \
            skips the question (and is required when standard input is not a terminal).

            Exit codes:
              0   success
              1   failure: one line on stderr says what went wrong and what to do
              2   an import skipped some records (each is named on stderr)
              64  the command line is wrong (unknown option, missing or bad value, no --yes)
            """,
        version: KithVersion.describe(tool: "kith"),
        subcommands: [Init.self, WhoAmI.self, ContactCommand.self, TagCommand.self, NoteCommand.self, LogConversation.self,
                      LinkCommand.self, UnlinkCommand.self, ImportCommand.self, ExportCommand.self, DeviceCommand.self, StatusCommand.self, PeersCommand.self, SyncCommand.self, GUIPasswordCommand.self, OpenCommand.self,
                      CompletionsCommand.self,
                      ChapterCommand.self, NameCommand.self, ShareCommand.self, UnshareCommand.self, ConsentCommand.self, AuditCommand.self, RepairCommand.self]
    )

    /// Parses the arguments with the global options moved after the subcommand.
    static func main() async {
        await main(GlobalOptions.reorder(Array(CommandLine.arguments.dropFirst())))
    }
}

/// The global options, part of every command (and accepted before the subcommand too:
/// `GlobalOptions.reorder`).
struct DataDirOption: ParsableArguments {
    @Option(name: .customLong("data-dir"), help: "The data directory (default: $KITH_DATA_DIR or ~/.local/share/kith).")
    var dataDir: String?

    @Flag(help: "Print only data and errors: no confirmations or hints.")
    var quiet = false

    @Flag(name: .customLong("no-pager"), help: "Do not page long output on a terminal (default pager: $PAGER, else less -FRX).")
    var noPager = false

    var directory: DataDirectory { DataDirectory(path: dataDir ?? DataDirectory.defaultPath()) }
}

/// Turns a library error into a one-line message on stderr ("kith: …") and exit status 1.
func failing<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as ExitCode {
        throw e
    } catch {
        fail(describe(error))
    }
}

/// A library error's message for a person (an ambiguous reference lists its candidates).
func describe(_ error: any Error) -> String {
    switch error {
    case let e as CLIFailure: e.message
    case let e as NodeError: e.detail
    case let e as CryptoError: e.detail
    case let e as StoreError: e.detail
    case let e as ChangeRejection: e.detail
    case let e as QueryError: e.candidates.isEmpty ? e.message : e.message + "\n" + e.candidates.map { "  " + $0 }.joined(separator: "\n")
    case let e as APIClient.Refused: e.description
    default: "\(error)"
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
    print("member          \(KeyFingerprint.of(id.memberKey))  key \(id.memberKey)")
    print("device          \(KeyFingerprint.of(id.deviceSigningKey))  key \(id.deviceSigningKey)")
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
        "memberFingerprint": KeyFingerprint.of(id.memberKey),
        "deviceFingerprint": KeyFingerprint.of(id.deviceSigningKey),
        "createdAt": id.certificate.createdAt,
    ]
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
    return String(decoding: data, as: UTF8.self)
}
