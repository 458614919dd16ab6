import ArgumentParser
import Foundation
import KithChapter
import KithCrypto
import KithNetwork
import KithNode

struct DeviceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "Manage this member's devices.",
        subcommands: [Add.self, Pair.self, Revoke.self, List.self]
    )

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list",
            abstract: "List this member's devices known here: fingerprint, name, connected or revoked (needs kithd running).",
            discussion: """
                Name a device with `kith name set "Ada's phone" --device FINGERPRINT`; names travel in \
                your chapters' membership logs, signed by you. --json prints the full keys.
                """
        )
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false

        func run() throws {
            let list = try daemonRequest(data, ["op": "device-list"])["devices"] as? [[String: Any]] ?? []
            if json { return printJSONObject(list) }
            for d in list {
                var state: [String] = []
                if d["current"] as? Bool == true { state.append("this device") }
                if d["connected"] as? Bool == true { state.append("connected") }
                if d["revoked"] as? Bool == true { state.append("revoked") }
                let name = (d["name"] as? String).map { "\"\($0)\"  " } ?? ""
                print("\(fingerprint(d["device"]))  \(name)\(state.joined(separator: ", "))")
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", 
            abstract: "Make this data directory a new device of an existing member.",
            discussion: """
                Over the network (usual): on the device that holds the member key, with its kithd \
                running, `kith device pair` prints a one-time code; here, `kith device add --pair \
                CODE` creates fresh device keys, connects to that daemon, checks it is the member's, \
                and receives a certificate for them. The member key never leaves its device.

                Locally: --from DIR reads the member key from the first device's data directory \
                (same machine, or a mounted copy) and certifies the new keys directly.

                Examples:
                  kith device add --pair kith-pair:AQ… --data-dir /srv/kith
                  kith device add --from ~/.local/share/kith --data-dir /srv/kith
                Then run kithd on both (the new one with --peer pointing at the first).
                """
        )
        @OptionGroup var data: DataDirOption
        @Option(help: "A pairing code from `kith device pair` on the member's first device.") var pair: String?
        @Option(help: "The data directory of a device that holds the member key.") var from: String?
        @Option(name: .customLong("from-passphrase-file"), help: "Passphrase of that device's key ring.") var fromPassphraseFile: String?
        @Option(name: .customLong("passphrase-file"), help: "Protect the new key ring with this passphrase.") var passphraseFile: String?
        @Flag(help: "Print the new identity as JSON.") var json = false

        func validate() throws {
            guard (pair == nil) != (from == nil) else { throw ValidationError("give exactly one of --pair CODE or --from DIR") }
        }

        func run() async throws {
            let dir = data.directory
            if dir.isInitialized { fail("\(dir.path) already holds a Kith identity; choose another --data-dir") }
            let pass = try failing { try passphraseFile.map { try NodeIdentity.readPassphrase(file: $0) } }
            let identity: PublicIdentity
            if let pair {
                let code: PairingCode
                do { code = try PairingCode(text: pair, now: UInt64(Date().timeIntervalSince1970)) } catch { fail(error.detail) }
                let ring = KeyRing.generate(includingMemberKey: false)
                let cert: DeviceCertificate
                do {
                    cert = try await PairingClient.pair(code, signing: ring.deviceSigningKey, agreement: ring.deviceAgreementKey)
                } catch {
                    fail("pairing failed: \(error)")
                }
                identity = try failing { try NodeIdentity.install(in: dir, ring: ring, certificate: cert, passphrase: pass).1 }
            } else {
                identity = try failing {
                    let fromPass = try fromPassphraseFile.map { try NodeIdentity.readPassphrase(file: $0) }
                    let (ring, _) = try NodeIdentity.unlock(DataDirectory(path: from!), passphrase: fromPass)
                    guard let member = ring.memberKey else {
                        throw CLIFailure(message: "\(from!) does not hold the member key (it is itself a secondary device)")
                    }
                    return try NodeIdentity.addDevice(in: dir, member: member, passphrase: pass).1
                }
            }
            if json { return print(identityJSON(identity, dir: dir)) }
            print("Added a device of member \(identity.memberKey) in \(dir.path)")
            printIdentity(identity)
        }
    }

    struct Pair: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "pair", 
            abstract: "Print a one-time code that makes another machine a device of yours (needs kithd running here).",
            discussion: """
                Run on the device holding the member key. On the new machine:
                  kith device add --pair <code> --data-dir DIR
                """
        )
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @Option(help: "How long the code stays valid (e.g. 10m, 1h).") var expires = "10m"
        @Option(help: "host:port the new device reaches this daemon at (default: kithd's advertised address).") var hint: String?

        func validate() throws { _ = try parseDuration(expires) }

        func run() throws {
            var req: [String: Any] = ["op": "device-pair", "expires": try parseDuration(expires)]
            if let hint { req["hint"] = hint }
            let r = try daemonRequest(data, req)
            if json { return printJSONObject(r) }
            print(r["code"] as? String ?? "")
            note("valid for \(expires), one use; the new device connects to \(r["hint"] ?? "?")")
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "revoke", 
            abstract: "Revoke a lost or stolen device of yours (run on the device that holds the member key, with kithd running).",
            discussion: """
                Signs a revocation with the member key. Your other devices refuse the revoked \
                device from then on; in every chapter it is revoked and a new chapter key is sealed \
                to the remaining devices, so it can read nothing written afterwards.

                Example:
                  kith device revoke mGpxgeDA        # a device key or a prefix of 4+ characters
                """
        )
        @OptionGroup var data: DataDirOption
        @Flag(help: "Print the daemon's answer as JSON (the API's field names).") var json = false
        @Argument(help: "The device's signing key (kith whoami on that device), or a unique prefix.") var device: String
        @OptionGroup var confirm: ConfirmOption

        func run() throws {
            Terminal.confirm("Revoke device \(device) for good (it cannot sync or read anything written from now on; this cannot be undone)", yes: confirm.yes)
            let r = try daemonRequest(data, ["op": "device-revoke", "device": device])
            if json { return printJSONObject(r) }
            say("revoked device \(r["revoked"] ?? device); your other devices and your chapters refuse it from now on")
        }
    }
}
