import Foundation
import KithCRDT
import KithNode
import KithQuery
import KithStore

/// Where `kith import` takes the contacts to match against and writes its durable batches: the
/// running kithd's API, or — no kithd — the store appended to here (`AppendImport`).
protocol ImportTarget: AnyObject {
    /// Writes the batches durably (one change each); returns when they are.
    func commit(_ batches: [[ContactEdit]]) throws
    /// The import is over; `matcher` knows everything written.
    func finish(matcher: ImportMatcher, dryRun: Bool) throws
}

/// Through a `ContactClient`: the daemon's API, or a store opened read-only here.
final class ClientImport: ImportTarget {
    let client: any ContactClient
    init(_ client: any ContactClient) { self.client = client }
    func commit(_ batches: [[ContactEdit]]) throws { try client.commitEdits(batches) }
    func finish(matcher: ImportMatcher, dryRun: Bool) throws { (client as? LocalClient)?.importFinished() }
}

/// No kithd: changes are appended to the store without opening its replica, so memory holds
/// only the matching index. The index is kept sealed in the store (store.md §Import index)
/// with the heads it was built over: read back when the store has not changed since, rebuilt
/// from the replica (once) when it has.
final class AppendImport: ImportTarget {
    let appender: ContactStoreAppender
    /// The stored index was not used as it is (rebuilt, or changed by this import): save it.
    var indexChanged: Bool

    init(_ appender: ContactStoreAppender, indexChanged: Bool) {
        self.appender = appender
        self.indexChanged = indexChanged
    }

    func commit(_ batches: [[ContactEdit]]) throws {
        try appender.append(batches)
        indexChanged = true
    }

    func finish(matcher: ImportMatcher, dryRun: Bool) throws {
        guard indexChanged, !dryRun else { return }
        try appender.saveIndex(matcher.encoded)
    }
}

extension NodeOptions {
    /// The import's target and a matcher over the contacts it holds.
    func openImport() throws -> (target: any ImportTarget, matcher: ImportMatcher) {
        if let api = try APIClient(directory: data.directory) {
            do { return (ClientImport(api), try api.importMatcher()) } catch is APIClient.Unreachable {}
        }
        let dir = data.directory
        let file = passphraseFile ?? ProcessInfo.processInfo.environment["KITH_PASSPHRASE_FILE"]
        let pass = try file.map { try NodeIdentity.readPassphrase(file: $0) }
        let (ring, identity) = try NodeIdentity.unlock(dir, passphrase: pass)
        let scope = ScopeID.privateScope(of: identity.memberKey)
        func openStore(readOnly: Bool) throws -> ContactStore {
            try ContactStore(directory: dir.path, scope: scope, deviceKey: ring.deviceSigningKey, storageKey: ring.storageKey, readOnly: readOnly)
        }
        guard access(dir.path, W_OK) == 0 else {
            // Read-only: --dry-run works; a write is refused with the store's reason.
            let local = LocalClient(store: try openStore(readOnly: true), directory: dir)
            return (ClientImport(local), try local.importMatcher())
        }
        func appender() throws -> ContactStoreAppender {
            try ContactStoreAppender(directory: dir.path, scope: scope, deviceKey: ring.deviceSigningKey, storageKey: ring.storageKey)
        }
        do {
            let a = try appender()
            if let bytes = a.takeStoredIndex(), let matcher = ImportMatcher(encoded: bytes) { return (AppendImport(a, indexChanged: false), matcher) }
        }
        // No index, or one built over another state of the store: build it from the replica
        // (the store checks itself as every open does), close the store, then append.
        func build() throws -> (ImportMatcher, ImportIndexState) {
            let store = try openStore(readOnly: false)
            return (ImportMatcher(replica: store.replica), try store.importIndexState())
        }
        let (matcher, state) = try build()
        let a = try appender()
        guard a.adopt(state) else {
            throw CLIFailure(message: "the store \(dir.path) was changed by another process while the import read it; run the import again")
        }
        return (AppendImport(a, indexChanged: true), matcher)
    }
}
