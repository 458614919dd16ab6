import ArgumentParser
import Foundation
import KithCrypto
import KithNode

struct DeviceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "Manage this member's devices.",
        subcommands: [Add.self, Revoke.self]
    )

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make this data directory a new device of an existing member.",
            discussion: """
                Reads the member key from the first device's data directory (it must be
                readable here: same machine, or a mounted copy), creates fresh device keys in
                --data-dir and certifies them. The new device does not store the member key.
                Both devices then sync the member's private contacts (kithd --peer).
                Pairing over the network with a one-time code arrives with chapters.

                Example:
                  kith device add --from ~/.local/share/kith --data-dir /srv/kith
                """
        )
        @OptionGroup var data: DataDirOption
        @Option(help: "The data directory of a device that holds the member key.") var from: String
        @Option(name: .customLong("from-passphrase-file"), help: "Passphrase of that device's key ring.") var fromPassphraseFile: String?
        @Option(name: .customLong("passphrase-file"), help: "Protect the new key ring with this passphrase.") var passphraseFile: String?

        func run() throws {
            let dir = data.directory
            let identity = try failing {
                let fromPass = try fromPassphraseFile.map { try NodeIdentity.readPassphrase(file: $0) }
                let (ring, _) = try NodeIdentity.unlock(DataDirectory(path: from), passphrase: fromPass)
                guard let member = ring.memberKey else {
                    throw CLIFailure(message: "\(from) does not hold the member key (it is itself a secondary device)")
                }
                let pass = try passphraseFile.map { try NodeIdentity.readPassphrase(file: $0) }
                return try NodeIdentity.addDevice(in: dir, member: member, passphrase: pass).1
            }
            print("Added a device of member \(identity.memberKey) in \(dir.path)")
            printIdentity(identity)
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a lost or stolen device of yours (run on the device that holds the member key, with kithd running).",
            discussion: """
                Signs a revocation with the member key. Your other devices refuse the revoked
                device from then on; in every chapter it is revoked and a new chapter key is sealed
                to the remaining devices, so it can read nothing written afterwards.

                Example:
                  kith device revoke mGpxgeDA        # a device key or a prefix of 4+ characters
                """
        )
        @OptionGroup var data: DataDirOption
        @Argument(help: "The device's signing key (kith whoami on that device), or a unique prefix.") var device: String

        func run() throws {
            let r = try daemonRequest(data, ["op": "device-revoke", "device": device])
            print("revoked device \(r["revoked"] ?? device); your other devices and your chapters refuse it from now on")
        }
    }
}
