import Foundation
import KithChapter
import KithCRDT
import KithCrypto
@testable import KithNetwork
import KithStore
import Logging
import Testing

/// The chapter overlay (Protocol/sync.md §9) with real node stacks in one process over real
/// loopback sockets: peer exchange, the connection bound, churn, removal and forged records.
@Suite("Chapter overlay", .serialized)
struct ChapterOverlayTests {
    final class Member: @unchecked Sendable {
        // @unchecked: `tasks` is only touched by the test's driving task.
        let node: SyncNode
        let network: PeerNetwork
        let device: Ed25519.PrivateKey
        var tasks: [Task<Void, Never>] = []
        var port = 0

        init(_ dir: String, settings: OverlaySettings) throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let member = Ed25519.PrivateKey(), agreement = X25519.PrivateKey()
            device = Ed25519.PrivateKey()
            let cert = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey,
                                               createdAt: UInt64(Date().timeIntervalSince1970) - 60)
            var logger = Logger(label: "overlay-test")
            logger.logLevel = .critical
            node = try SyncNode(directory: dir, identity: .init(certificate: cert, agreementKey: agreement, deviceKey: device, memberKey: member),
                                storageKey: SymmetricKey(), logger: logger)
            network = PeerNetwork(node: node, logger: logger, now: ContactStore.systemClock)
            _ = settings
        }

        func online() async throws {
            let (p, serve) = try await network.listen(host: "127.0.0.1", port: 0)
            port = p
            await node.setAdvertisedAddress("127.0.0.1:\(p)")
            let network = self.network
            tasks = [Task { await serve() }, Task { await network.maintainOverlay(interval: 0.2) }]
        }

        func offline() async {
            for t in tasks { t.cancel() }
            for t in tasks { await t.value }
            tasks = []
        }
    }

    /// `n` members in one chapter, all joined by invite through the first (the admin).
    func chapter(_ tmp: TempDir, members n: Int, settings: OverlaySettings) async throws -> ([Member], ChapterID) {
        var all: [Member] = []
        for i in 0..<n {
            let m = try Member(tmp.path("m\(i)"), settings: settings)
            await m.node.setOverlaySettings(settings)
            all.append(m)
        }
        try await all[0].online()
        let id = try #require(ChapterID(text: try await all[0].node.createChapter(name: "Overlay").id))
        let text = try await all[0].node.openInvite(chapter: nil, expiresIn: 3600, uses: n, hint: "127.0.0.1:\(all[0].port)")
        let invite = try ChapterInvite(text: text, now: UInt64(Date().timeIntervalSince1970))
        for m in all.dropFirst() {
            try await m.online()
            _ = try await m.network.join(invite)
        }
        return (all, id)
    }

    func shutdown(_ all: [Member]) async { for m in all { await m.offline() } }

    /// Polls `condition` every 50 ms for up to `seconds`.
    func eventually(_ seconds: Double = 45, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        return try await condition()
    }

    func changes(_ m: Member, _ id: ChapterID) async -> Int { await m.node.replica(for: id.contentScope)?.changeCount ?? 0 }

    /// Shares a new contact from `m` into the chapter (one change of the chapter scope).
    func edit(_ m: Member, _ id: ChapterID, _ name: String) async throws {
        let contact = ContactID.random()
        _ = try await m.node.commit(batches: [[ContactEdit(contact: contact, ops: [.setField(.givenName, name)])]])
        _ = try await m.node.share(contacts: [contact], chapter: id.description, fields: [.name])
    }

    @Test func churnedOverlayConvergesWithBoundedConnections() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 2, maxConnections: 4, graceSeconds: 1)
        let (all, id) = try await chapter(tmp, members: 10, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        // Every member learns every other member's address by peer exchange, not from the admin alone.
        #expect(try await eventually {
            for m in all where await m.node.addressTable(chapter: id).count < all.count { return false } // own record included
            return true
        })
        // The bound holds once the admin's bootstrap connections are trimmed; nobody is connected to everyone.
        #expect(try await eventually {
            for m in all where await m.node.overlayInfo(chapter: id).connections > settings.maxConnections { return false }
            return true
        })
        for m in all { #expect(await m.node.overlayInfo(chapter: id).connections < all.count - 1) }
        // An edit reaches every member over the overlay.
        try await edit(all[3], id, "Before churn")
        let first = await changes(all[3], id)
        #expect(try await eventually { for m in all where await changes(m, id) < first { return false }; return true })
        // A third goes offline; the others keep editing; they come back on new ports.
        let away = [all[2], all[5], all[8]]
        for m in away { await m.offline() }
        let here = all.filter { m in !away.contains { $0 === m } }
        for (i, m) in here.enumerated().prefix(4) { try await edit(m, id, "While away \(i)") }
        var want = 0
        for m in here { want = max(want, await changes(m, id)) }
        #expect(try await eventually { for m in here where await changes(m, id) < want { return false }; return true })
        for m in away { try await m.online() }
        #expect(try await eventually(60) { for m in all where await changes(m, id) < want { return false }; return true })
        // The returning members' new addresses reach the others.
        #expect(try await eventually {
            for m in here {
                let table = await m.node.addressTable(chapter: id)
                for a in away where table[a.device.publicKey.description] != "127.0.0.1:\(a.port)" { return false }
            }
            return true
        })
        for m in all { #expect(await m.node.overlayInfo(chapter: id).connections <= settings.maxConnections + 2) }
        await shutdown(all)
    }

    @Test func removedMemberGetsNoNewAddressesAndCannotReconnect() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 3, maxConnections: 8, graceSeconds: 1)
        let (all, id) = try await chapter(tmp, members: 4, settings: settings)
        let (admin, bob, carol, mallory) = (all[0], all[1], all[2], all[3])
        #expect(try await eventually { await mallory.node.addressTable(chapter: id)[bob.device.publicKey.description] == "127.0.0.1:\(bob.port)" })
        let oldBob = "127.0.0.1:\(bob.port)"
        _ = try await admin.node.removeMember(chapter: nil, member: mallory.node.identity.member.description)
        // Every member drops mallory's connections and address.
        #expect(try await eventually {
            for m in [admin, bob, carol] {
                if await m.node.peerInfo().contains(where: { $0.device == mallory.device.publicKey.description }) { return false }
                if await m.node.addressTable(chapter: id)[mallory.device.publicKey.description] != nil { return false }
            }
            return true
        })
        // Bob moves; the remaining members learn the new address, mallory does not.
        await bob.offline()
        try await bob.online()
        let newBob = "127.0.0.1:\(bob.port)"
        #expect(try await eventually {
            for m in [admin, carol] where await m.node.addressTable(chapter: id)[bob.device.publicKey.description] != newBob { return false }
            return true
        })
        try await Task.sleep(nanoseconds: 1_000_000_000)
        let seen = await mallory.node.addressTable(chapter: id)[bob.device.publicKey.description]
        #expect(seen == nil || seen == oldBob)
        // Mallory dials every member it knows: each refuses it at the handshake.
        for m in [admin, bob, carol] { await mallory.network.dialOnce(host: "127.0.0.1", port: m.port) }
        for m in [admin, bob, carol] {
            #expect(await !m.node.peerInfo().contains(where: { $0.device == mallory.device.publicKey.description }))
        }
        await shutdown(all)
    }

    @Test func forgedAndMalformedRecordsAreRefusedAndTheConnectionStays() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 3, maxConnections: 8, graceSeconds: 1)
        let (all, id) = try await chapter(tmp, members: 3, settings: settings)
        let (admin, bob, mallory) = (all[0], all[1], all[2])
        #expect(try await eventually {
            let known = await admin.node.addressTable(chapter: id).count
            let connections = await mallory.node.overlayInfo(chapter: id).connections
            return known == 3 && connections >= 2 // the table holds the node's own record too
        })
        let bobKey = bob.device.publicKey.description
        let bobAddress = try #require(await admin.node.addressTable(chapter: id)[bobKey])
        let keys = try #require(await mallory.node.replica(for: id.contentScope)?.epochKeys)
        #expect(keys.count == 1)
        let (ref, key) = try #require(keys.first)
        let future = UInt64(Date().timeIntervalSince1970 * 1000) + 5_000
        // Mallory signs a record naming Bob's device with its own key (poisoning Bob's entry)…
        let forged = try PeerAddressRecord.make(address: "10.6.6.6:1", chapter: id, device: mallory.device, issuedMilliseconds: future,
                                                epoch: ref, epochKey: key)
        var poisoned = forged.encoded
        poisoned.replaceSubrange(0..<32, with: bob.device.publicKey.bytes)
        // …a record for a device that is in no chapter, garbage bytes, and a valid record of its own
        // with an address that is not host:port.
        let stranger = try PeerAddressRecord.make(address: "10.6.6.6:2", chapter: id, device: Ed25519.PrivateKey(), issuedMilliseconds: future,
                                                  epoch: ref, epochKey: key).encoded
        let notAnAddress = try PeerAddressRecord.make(address: "no-port-here", chapter: id, device: mallory.device, issuedMilliseconds: future,
                                                      epoch: ref, epochKey: key).encoded
        let refusedBefore = await admin.node.overlayInfo(chapter: id).refusedRecords
        await mallory.node.testHookSendAddresses([poisoned, stranger, [1, 2, 3], notAnAddress], chapter: id)
        #expect(try await eventually { await admin.node.overlayInfo(chapter: id).refusedRecords >= refusedBefore + 4 })
        #expect(await admin.node.addressTable(chapter: id)[bobKey] == bobAddress)
        #expect(await bob.node.addressTable(chapter: id)[bobKey] == bobAddress)
        // The connection that carried them stays up, and still carries the chapter's changes.
        #expect(await admin.node.peerInfo().contains { $0.device == mallory.device.publicKey.description })
        try await edit(mallory, id, "Still connected")
        let want = await changes(mallory, id)
        #expect(try await eventually {
            let a = await changes(admin, id), b = await changes(bob, id)
            return a >= want && b >= want
        })
        // A flood of valid records of its own: the admin takes at most one a second.
        var flood: [[UInt8]] = []
        for i in 0..<200 {
            flood.append(try PeerAddressRecord.make(address: "127.0.0.1:\(1_000 + i)", chapter: id, device: mallory.device,
                                                    issuedMilliseconds: future + UInt64(i + 1), epoch: ref, epochKey: key).encoded)
        }
        await mallory.node.testHookSendAddresses(flood, chapter: id)
        try await Task.sleep(nanoseconds: 500_000_000)
        let taken = await admin.node.addressTable(chapter: id)[mallory.device.publicKey.description]
        #expect(taken == nil || taken == "127.0.0.1:\(mallory.port)" || taken == "127.0.0.1:1000")
        await shutdown(all)
    }
}
