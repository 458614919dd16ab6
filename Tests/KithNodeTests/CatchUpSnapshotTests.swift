import Foundation
import KithCRDT
import KithCrypto
@testable import KithNetwork
import KithSampleData
@testable import KithStore
import KithSync
import Logging
import Testing

extension SyncNode {
    /// Test access: the private store's snapshot policy, and what its snapshot covers once any
    /// background write finished.
    func setSnapshotPolicy(_ policy: SnapshotPolicy) { store.snapshotPolicy = policy }
    func snapshotCoverage() -> (covered: Int, ops: Int, file: Bool) {
        store.snapshotFile.waitIdle()
        return (store.snapshotFile.opsCovered, store.replica.opCount, FileManager.default.fileExists(atPath: store.snapshotPath))
    }
}

/// A node receiving what it lacked from a peer (an initial sync) puts its background snapshot
/// off until the peer says it is caught up (each snapshot rewrites the whole replica: several
/// during a transfer cost a third of the sync's CPU), yet stays bounded: a crash mid-transfer
/// never replays more than max(`catchUpMinimumOps`, half the store).
@Suite("Snapshots during a catch-up", .serialized)
struct CatchUpSnapshotTests {
    struct Device {
        let member: Ed25519.PrivateKey
        let device = Ed25519.PrivateKey()
        let agreement = X25519.PrivateKey()
        let certificate: DeviceCertificate
        init(member: Ed25519.PrivateKey) {
            self.member = member
            certificate = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey,
                                                  createdAt: UInt64(Date().timeIntervalSince1970) - 60)
        }
        var identity: SyncNode.Identity { .init(certificate: certificate, agreementKey: agreement, deviceKey: device, memberKey: member) }
    }

    /// Changes of the member's other device: 50 contacts per change.
    static func changes(_ count: Int, by author: inout ChangeAuthor, replica: inout Replica, from start: Int = 0) throws -> [Change] {
        let gen = SyntheticContacts(seed: 9)
        var out: [Change] = []
        for c in 0..<count {
            let edits = (0..<50).map { gen.contact(start + c * 50 + $0).edit }
            out.append(try author.commit(edits, to: &replica, wallMilliseconds: UInt64(Date().timeIntervalSince1970 * 1000)))
        }
        return out
    }

    @Test func policyWhileCatchingUpIsBoundedByHalfTheStore() {
        let p = SnapshotPolicy(minimumOps: 100, fraction: 8, catchUpMinimumOps: 1_000)
        #expect(p.isDue(behind: 150, total: 1_000))
        #expect(!p.isDue(behind: 150, total: 1_000, catchingUp: true))
        #expect(!p.isDue(behind: 999, total: 999, catchingUp: true))
        #expect(p.isDue(behind: 1_000, total: 1_000, catchingUp: true), "no snapshot yet: due at the absolute bound")
        #expect(!p.isDue(behind: 1_500, total: 4_000, catchingUp: true), "a tail shorter than half the store waits")
        #expect(p.isDue(behind: 2_000, total: 4_000, catchingUp: true), "a tail as long as the snapshot is written")
        #expect(!p.isDue(behind: 0, total: 4_000, catchingUp: true))
    }

    @Test func snapshotWaitsForCaughtUpButStaysBounded() async throws {
        let tmp = try TempDir()
        let member = Ed25519.PrivateKey()
        let mine = Device(member: member), other = Device(member: member)
        try FileManager.default.createDirectory(atPath: tmp.path("node"), withIntermediateDirectories: true)
        let node = try SyncNode(directory: tmp.path("node"), identity: mine.identity, storageKey: SymmetricKey(), logger: Logger(label: "test"))
        let scope = ScopeID.privateScope(of: member.publicKey)
        var author = ChangeAuthor(signer: other.device)
        var theirs = Replica(scope: scope)
        let all = try Self.changes(40, by: &author, replica: &theirs)
        let opsPerChange = theirs.opCount / all.count
        // Outside a catch-up every batch would be snapshotted; during one, only at 10 changes' ops.
        await node.setSnapshotPolicy(SnapshotPolicy(minimumOps: 1, fraction: 1_000_000, catchUpMinimumOps: 10 * opsPerChange))

        let peer = try PeerIdentity.authenticate(payload: other.certificate.encoded, remoteStatic: other.agreement.publicKey,
                                                 now: UInt64(Date().timeIntervalSince1970), allowed: { _ in true })
        let (_, continuation) = AsyncStream<ConnectionEvent>.makeStream()
        let id = try #require(await node.register(continuation, name: "other device", peer: peer, scopes: [scope], origin: .inbound, handshakeHash: [1]))

        await node.receive(Array(all[0..<6]), scope: scope, from: id, peerName: "other device")
        var c = await node.snapshotCoverage()
        #expect(c.ops > 0 && c.covered == 0 && !c.file, "no snapshot below the catch-up bound")
        await node.receive(Array(all[6..<12]), scope: scope, from: id, peerName: "other device")
        c = await node.snapshotCoverage()
        #expect(c.file && c.covered == c.ops, "the bound reached: a snapshot even though the peer is still sending")
        let covered = c.covered
        await node.receive(Array(all[12..<20]), scope: scope, from: id, peerName: "other device")
        c = await node.snapshotCoverage()
        #expect(c.covered == covered && c.ops > covered, "a tail shorter than the snapshot waits")
        await node.receive(Array(all[20..<30]), scope: scope, from: id, peerName: "other device")
        c = await node.snapshotCoverage()
        #expect(c.covered == c.ops, "a tail as long as the snapshot is written")
        await node.receive(Array(all[30..<34]), scope: scope, from: id, peerName: "other device")
        c = await node.snapshotCoverage()
        #expect(c.covered < c.ops)

        // Caught up: the put-off snapshot is written once, now.
        await node.noteCaughtUp(id, scope: scope)
        c = await node.snapshotCoverage()
        #expect(c.covered == c.ops)

        // Live pushes after that follow the usual policy (here: every write).
        await node.receive(Array(all[34..<35]), scope: scope, from: id, peerName: "other device")
        c = await node.snapshotCoverage()
        #expect(c.covered == c.ops)

        // A second connection's catch-up cut short by a disconnect: what arrived is snapshotted then.
        await node.unregister(id)
        let (_, continuation2) = AsyncStream<ConnectionEvent>.makeStream()
        let id2 = try #require(await node.register(continuation2, name: "other device again", peer: peer, scopes: [scope], origin: .inbound, handshakeHash: [2]))
        await node.receive(Array(all[35..<38]), scope: scope, from: id2, peerName: "other device again")
        c = await node.snapshotCoverage()
        #expect(c.covered < c.ops)
        await node.unregister(id2)
        c = await node.snapshotCoverage()
        #expect(c.covered == c.ops)

        // Changes from an unregistered source (not a peer's catch-up) follow the usual policy.
        await node.receive(Array(all[38..<40]), scope: scope, from: 0, peerName: "test")
        c = await node.snapshotCoverage()
        #expect(c.covered == c.ops && c.ops == theirs.opCount)
        #expect(await node.replica().changeCount == all.count)
    }
}
