import Foundation
import KithCRDT
import KithCrypto
import KithStore

/// Opening a member's node for the CLI: unlock the key ring, open the store.
public enum NodeAccess {
    /// Opens the store of the node in `dir` (the member's private scope). A data directory that
    /// cannot be written (a read-only mount) opens read-only: reading commands work, writes are
    /// refused with a clear message.
    public static func openStore(_ dir: DataDirectory, passphrase: SecureBytes?) throws -> ContactStore {
        let (ring, identity) = try NodeIdentity.unlock(dir, passphrase: passphrase)
        return try ContactStore(
            directory: dir.path,
            scope: ScopeID.privateScope(of: identity.memberKey),
            deviceKey: ring.deviceSigningKey,
            storageKey: ring.storageKey,
            readOnly: access(dir.path, W_OK) != 0
        )
    }
}
