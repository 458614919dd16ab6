import Foundation
import KithChapter
import KithCRDT
import KithCrypto
@testable import KithNetwork
import Logging
import Testing

/// What a node takes into a chapter's scope from its peers, and the match tokens it publishes:
/// the node's own code paths (SyncNode), in process, with the attackers' real keys.
@Suite("Chapter write rules in a node")
struct ChapterWriteRulesTests {
    struct Keys {
        let member: Ed25519.PrivateKey
        let device = Ed25519.PrivateKey()
        let agreement = X25519.PrivateKey()
        let certificate: DeviceCertificate
        init() {
            member = Ed25519.PrivateKey()
            certificate = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey,
                                                  createdAt: UInt64(Date().timeIntervalSince1970) - 60)
        }
        var identity: SyncNode.Identity { .init(certificate: certificate, agreementKey: agreement, deviceKey: device, memberKey: member) }
    }

    static func now() -> UInt64 { UInt64(Date().timeIntervalSince1970 * 1000) }

    /// Alice's node with a chapter; `joiners` admitted by invite.
    func node(_ tmp: TempDir, admitting joiners: [Keys]) async throws -> (SyncNode, ChapterID, Keys) {
        let alice = Keys()
        try FileManager.default.createDirectory(atPath: tmp.path("alice"), withIntermediateDirectories: true)
        let node = try SyncNode(directory: tmp.path("alice"), identity: alice.identity, storageKey: SymmetricKey(), logger: Logger(label: "test"))
        _ = try await node.createChapter(name: "Ward 5")
        for j in joiners { try await admit(j, to: node) }
        let id = try #require(await node.chapterList().first.flatMap { ChapterID(text: $0.id) })
        return (node, id, alice)
    }

    func admit(_ j: Keys, to node: SyncNode) async throws {
        let text = try await node.openInvite(chapter: nil, expiresIn: 3600, uses: 1, hint: "127.0.0.1:1")
        let invite = try ChapterInvite(text: text, now: Self.now() / 1000)
        let hs = SecureRandom.bytes(64)
        _ = try await node.admit(chapter: invite.chapter.bytes, proof: invite.proof(handshakeHash: hs, certificate: j.certificate),
                                 handshakeHash: hs, joiner: j.certificate)
    }

    /// A change by `author` sealed under the chapter's current epoch key as `author` can open it.
    func write(_ name: String, by author: Keys, seq author_: inout ChangeAuthor, log: MembershipLog, at t: UInt64) throws -> Change {
        let epoch = try #require(log.state.epochs.last { EpochKeys.open($0, device: author.device.publicKey, agreement: author.agreement) != nil })
        let key = EpochKeys.open(epoch, device: author.device.publicKey, agreement: author.agreement)!
        var replica = Replica(scope: log.chapter.contentScope, mode: .encrypted, epochKeys: log.keys(device: author.device.publicKey, agreement: author.agreement))
        return try author_.commit([ContactEdit(contact: ContactID.random(), ops: [.setField(.givenName, name)])], to: &replica,
                                  wallMilliseconds: t, sealer: BlockSealer(epoch: epoch.ref, key: key))
    }

    func names(_ node: SyncNode, _ id: ChapterID) async -> Set<String> {
        Set((await node.replica(for: id.contentScope)?.contacts() ?? []).compactMap { $0[.givenName] })
    }

    @Test func changesOnlyFromDevicesTheLogListsAtTheirTime() async throws {
        let tmp = try TempDir()
        let bob = Keys(), carol = Keys(), mallory = Keys()
        let (node, id, _) = try await node(tmp, admitting: [bob, carol])
        let scope = id.contentScope
        let log = try #require(await node.chapterLog(id))

        // A member's change is taken.
        var bobAuthor = ChangeAuthor(signer: bob.device)
        await node.receive([try write("From Bob", by: bob, seq: &bobAuthor, log: log, at: Self.now())], scope: scope, from: 0, peerName: "test")
        #expect(await names(node, id).contains("From Bob"))

        // A device the log has never listed, relayed by a member: not taken (it waits for the log).
        var malloryAuthor = ChangeAuthor(signer: mallory.device)
        let epoch = log.state.currentEpoch!
        var malloryReplica = Replica(scope: scope, mode: .encrypted)
        let forged = try malloryAuthor.commit([ContactEdit(contact: ContactID.random(), ops: [.setField(.givenName, "From Mallory")])], to: &malloryReplica,
                                              wallMilliseconds: Self.now(), sealer: BlockSealer(epoch: epoch.ref, key: SymmetricKey()))
        await node.receive([forged], scope: scope, from: 0, peerName: "test")
        #expect(await node.replica(for: scope)!.versionVector()[mallory.device.publicKey] == 0, "nothing by an unlisted device is stored or relayed")

        // Carol wrote before her removal (relayed late: taken) and, with the old key, after it (refused).
        var carolAuthor = ChangeAuthor(signer: carol.device)
        let before = try write("Before removal", by: carol, seq: &carolAuthor, log: log, at: Self.now() - 5_000)
        let after = try write("After removal", by: carol, seq: &carolAuthor, log: log, at: Self.now() + 5_000)
        _ = try await node.removeMember(chapter: nil, member: carol.certificate.memberKey.description)
        await node.receive([before, after], scope: scope, from: 0, peerName: "test")
        let seen = await names(node, id)
        #expect(seen.contains("Before removal"))
        #expect(!seen.contains("After removal"))
        #expect(await node.replica(for: scope)!.versionVector()[carol.device.publicKey] == before.seq)
    }

    @Test func matchTokensOnlyForSharedFieldsAndUnderTheCurrentEpoch() async throws {
        let tmp = try TempDir()
        let bob = Keys()
        let (node, id, alice) = try await node(tmp, admitting: [bob])
        let contact = ContactID.random()
        _ = try await node.commit(batches: [[ContactEdit(contact: contact, ops: [.setField(.givenName, "Rosa"), .add(.phones, "+15550100")])]])
        func tokens() async -> Set<String> {
            Set(await node.replica(for: id.contentScope)?.contact(contact)?.values(.matchTokens).map(\.key) ?? [])
        }
        _ = try await node.share(contacts: [contact], chapter: nil, fields: [.name])
        #expect(await tokens().isEmpty, "the phone is not shared: no token for it")
        _ = try await node.share(contacts: [contact], chapter: nil, fields: [.name, .phones])
        let first = await tokens()
        #expect(first.count == 1)
        let log1 = try #require(await node.chapterLog(id))
        let key1 = try #require(log1.matchKey(device: alice.device.publicKey, agreement: alice.agreement))
        #expect(first == [Base64URL.encode(MatchTokens.token(kind: "phone", normalized: "+15550100", key: key1.key))])
        // A removal starts a new epoch: the token is re-made under the new key, which Bob never gets.
        _ = try await node.removeMember(chapter: nil, member: bob.certificate.memberKey.description)
        let log2 = try #require(await node.chapterLog(id))
        let key2 = try #require(log2.matchKey(device: alice.device.publicKey, agreement: alice.agreement))
        #expect(key2.epoch != key1.epoch)
        #expect(log2.matchKey(device: bob.device.publicKey, agreement: bob.agreement) == nil)
        let expected: Set<String> = [Base64URL.encode(MatchTokens.token(kind: "phone", normalized: "+15550100", key: key2.key))]
        var current = await tokens()
        for _ in 0..<50 where current != expected {
            try await Task.sleep(nanoseconds: 50_000_000)
            current = await tokens()
        }
        #expect(current == expected)
    }
}
