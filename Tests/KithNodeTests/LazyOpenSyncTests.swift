import Foundation
import KithCRDT
import KithCrypto
import KithSampleData
@testable import KithStore
import KithSync
import Testing

/// A store opened from its snapshot keeps the changes the snapshot covers in its rows (Protocol/
/// store.md §Snapshots, "Changes on demand"). A peer that holds nothing must still catch up
/// from it completely: two sync sessions, every message encoded and decoded, the receiving
/// store verifying every signature and writing durably.
@Suite("Sync from a store opened from its snapshot", .serialized)
struct LazyOpenSyncTests {
    @Test func peerCatchesUpFromALazilyOpenedStore() throws {
        let tmp = try TempDir()
        let member = Ed25519.PrivateKey()
        let scope = ScopeID.privateScope(of: member.publicKey)
        let mine = Ed25519.PrivateKey(), laptop = Ed25519.PrivateKey()
        let storage = SymmetricKey(), laptopStorage = SymmetricKey()
        for d in ["phone", "laptop"] { try FileManager.default.createDirectory(atPath: tmp.path(d), withIntermediateDirectories: true) }
        let gen = SyntheticContacts(seed: 21)
        do {
            let s = try ContactStore(directory: tmp.path("phone"), scope: scope, deviceKey: mine, storageKey: storage)
            for start in stride(from: 0, to: 2_000, by: 100) { try s.commit((start..<(start + 100)).map { gen.contact($0).edit }) }
            #expect(s.writeSnapshot())
            s.snapshotPolicy = SnapshotPolicy(minimumOps: .max / 2)
            try s.commit((2_000..<2_050).map { gen.contact($0).edit }) // a tail after the snapshot
        }
        let phone = try ContactStore(directory: tmp.path("phone"), scope: scope, deviceKey: mine, storageKey: storage)
        #expect(phone.snapshotStatus == .loaded(tail: 1))
        #expect(phone.replica.unloadedChangeCount == 19)
        let laptopStore = try ContactStore(directory: tmp.path("laptop"), scope: scope, deviceKey: laptop, storageKey: laptopStorage)

        var a = SyncSession(scopes: [scope]), b = SyncSession(scopes: [scope])
        var toB = a.start().compactMap(Self.message), toA = b.start().compactMap(Self.message)
        var rounds = 0
        while !(toA.isEmpty && toB.isEmpty) {
            rounds += 1
            guard rounds < 100 else { Issue.record("sync did not settle"); return }
            let forA = toA, forB = toB
            toA = []
            toB = []
            for bytes in forA {
                for action in a.receive(try SyncMessage(decoding: bytes), replica: { _ in phone.replica }) {
                    if let m = Self.message(action) { toB.append(m) }
                    if case let .deliver(_, changes) = action { _ = try phone.receive(changes) }
                }
            }
            for bytes in forB {
                for action in b.receive(try SyncMessage(decoding: bytes), replica: { _ in laptopStore.replica }) {
                    if let m = Self.message(action) { toA.append(m) }
                    if case let .deliver(_, changes) = action {
                        for r in try laptopStore.receive(changes) { #expect((try? r.get()) == .applied) }
                    }
                }
            }
        }
        #expect(laptopStore.replica.changeCount == 21)
        #expect(laptopStore.replica.versionVector() == phone.replica.versionVector())
        #expect(laptopStore.replica.stateDigest() == phone.replica.stateDigest())
        #expect(laptopStore.replica.contacts().count == 2_050)
        #expect(phone.changesReadOnDemand == 19, "the changes the snapshot covered were read when the peer asked")
        #expect(phone.heldChangeFailure == nil)
        // What the laptop wrote survives a reopen of its store, by replay or from a snapshot.
        #expect(laptopStore.writeSnapshot())
    }

    /// A message to send, encoded (so the test goes through the wire format).
    static func message(_ action: SyncSession.Action) -> [UInt8]? {
        if case let .send(m) = action { return m.encoded }
        return nil
    }
}
