import ArgumentParser
import Foundation
import KithChapter
import KithCRDT
import KithNode
import KithStore

/// `kith repair`: accept a store that is behind what it acknowledged (a lost write-ahead log, a
/// store replaced by an older copy) or missing, so kithd can start and fetch this device's
/// changes back from its peers (Protocol/sync.md §5.3).
struct RepairCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "repair",
        abstract: "Accept damaged or missing stores as they are; kithd then fetches the lost changes back from peers.",
        discussion: """
            kithd refuses to open a store that holds fewer changes than it acknowledged, and a
            missing store beside an existing identity. Run this (with kithd stopped) to keep what
            the stores hold, then start kithd: its peers send back every change they hold, this
            device's own included, and new edits continue after them.
            """
    )
    @OptionGroup var data: DataDirOption
    @Option(name: .customLong("passphrase-file"), help: "Passphrase for a protected key ring (default: $KITH_PASSPHRASE_FILE).")
    var passphraseFile: String?

    func run() throws {
        let dir = data.directory
        let file = passphraseFile ?? ProcessInfo.processInfo.environment["KITH_PASSPHRASE_FILE"]
        let (ring, identity) = try failing {
            try NodeIdentity.unlock(dir, passphrase: try file.map { try NodeIdentity.readPassphrase(file: $0) })
        }
        var stores: [(String, ScopeID, ScopeMode)] = [(dir.path, ScopeID.privateScope(of: identity.memberKey), .plain)]
        for (sub, mode) in [("chapters", ScopeMode.encrypted), ("relays", .opaque)] {
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir.path + "/" + sub)) ?? []).sorted() {
                if let id = ChapterID(text: name) { stores.append((dir.path + "/\(sub)/" + name, id.contentScope, mode)) }
            }
        }
        for (path, scope, mode) in stores {
            let store = try failing {
                try ContactStore(directory: path, scope: scope, deviceKey: ring.deviceSigningKey, storageKey: ring.storageKey,
                                 mode: mode, acceptLoss: true)
            }
            print("\(path)/store.sqlite: \(store.replica.changeCount) changes kept")
        }
        print("start kithd: it fetches what is missing back from its peers")
    }
}
