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

        init(_ dir: String, settings: OverlaySettings, member: Ed25519.PrivateKey = Ed25519.PrivateKey()) throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let agreement = X25519.PrivateKey()
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

    /// Stops every member's dialling first, then the listeners: a listener closed while a dial
    /// arrives leaves NIO an accepted channel nobody consumes (a debug-build trap in NIO).
    func shutdown(_ all: [Member]) async {
        for m in all { for t in m.tasks.dropFirst() { t.cancel(); await t.value } }
        for m in all { await m.offline() }
    }

    /// `n` further devices of `owner`'s member key: each connects to `owner`'s node, which lists
    /// it in the chapter (and seals it the key), until every one holds the chapter.
    func moreDevices(_ n: Int, of owner: Member, key: Ed25519.PrivateKey, in id: ChapterID, _ tmp: TempDir, name: String,
                     settings: OverlaySettings) async throws -> [Member] {
        var devices: [Member] = []
        for i in 0..<n {
            let d = try Member(tmp.path("\(name)-\(i)"), settings: settings, member: key)
            await d.node.setOverlaySettings(settings)
            await d.network.dialOnce(host: "127.0.0.1", port: owner.port) // ends when the log changes
            devices.append(d)
        }
        #expect(try await eventually {
            for d in devices where await d.node.replica(for: id.contentScope) == nil { return false }
            return true
        })
        return devices
    }

    /// Each of `dialers` dials `target` again and again, `nanoseconds` apart, until cancelled.
    func keepDialling(_ dialers: [Member], _ target: Member, every nanoseconds: UInt64) -> [Task<Void, Never>] {
        let port = target.port
        return dialers.map { d in
            Task {
                while !Task.isCancelled {
                    await d.network.dialOnce(host: "127.0.0.1", port: port)
                    try? await Task.sleep(nanoseconds: nanoseconds)
                }
            }
        }
    }

    /// Polls `condition` every 50 ms for up to `seconds`.
    func eventually(_ seconds: Double = 45, _ condition: () async throws -> Bool) async throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try await condition() { return true }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        return try await condition()
    }

    /// For a failure message: each member whose table lacks `address` for `device`: its port,
    /// its table, its overlay numbers, its peers (port label, device, scopes) and whether its log
    /// waits for a new epoch.
    func overlayReport(_ all: [Member], _ id: ChapterID, lacking device: Ed25519.PublicKey, _ address: String) async -> String {
        var out: [String] = []
        for (i, m) in all.enumerated() {
            let table = await m.node.addressTable(chapter: id)
            guard table[device.description] != address else { continue }
            let info = await m.node.overlayInfo(chapter: id)
            let peers = await m.node.peerInfo().map { "\($0.name) \($0.device.prefix(8)) scopes=\($0.scopes.count)" }
            let current = await m.node.testHookCurrentEpochKey(chapter: id)?.0.description.prefix(8) ?? "none"
            let held = try? (await m.node.testHookOwnRecordOf(device, chapter: id)).map { try PeerAddressRecord(decoding: $0) }
            let heldText = held.map { "epoch \($0.epoch.description.prefix(8)) issued \($0.issuedMilliseconds)" } ?? "none"
            out.append("member \(i) (port \(m.port), device \(m.device.publicKey.description.prefix(8))): current epoch \(current), held record \(heldText), table \(table), "
                       + "connections \(info.connections), dialing \(info.dialing), refused \(info.refusedRecords), "
                       + "needsNewEpoch \(String(describing: await m.node.testHookNeedsNewEpoch(chapter: id))), peers \(peers)")
        }
        return out.joined(separator: "; ")
    }

    /// `leaver` leaves the chapter and goes offline once every one of `others` holds the leave:
    /// a node stopped right after `leave` may not have pushed the op yet, and a node that left
    /// dials nobody for the chapter, so the others would keep it as a member (and the epoch).
    func leaveAndGoOffline(_ leaver: Member, seenBy others: [Member], _ id: ChapterID) async throws {
        _ = try await leaver.node.leave(chapter: nil)
        let device = leaver.device.publicKey
        #expect(try await eventually {
            for m in others where await m.node.testHookIsCurrentDevice(device, chapter: id) != false { return false }
            return true
        }, "the leave reached every other member")
        await leaver.offline()
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
        try await Task.sleep(nanoseconds: 1_100_000_000) // past the second in which the admin took Bob's and Mallory's records
        let refusedBefore = await admin.node.overlayInfo(chapter: id).refusedRecords
        // (two messages: one with more records than the chapter's 3 devices would be refused whole)
        await mallory.node.testHookSendAddresses([poisoned, stranger], chapter: id)
        await mallory.node.testHookSendAddresses([[1, 2, 3], notAnAddress], chapter: id)
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
        for start in stride(from: 0, to: flood.count, by: 3) {
            await mallory.node.testHookSendAddresses(Array(flood[start..<min(start + 3, flood.count)]), chapter: id)
        }
        try await Task.sleep(nanoseconds: 500_000_000)
        let taken = await admin.node.addressTable(chapter: id)[mallory.device.publicKey.description]
        #expect(taken == nil || taken == "127.0.0.1:\(mallory.port)" || taken == "127.0.0.1:1000")
        await shutdown(all)
    }

    /// Findings 1 (connection takeover): a member's device that dials a node many times holds one
    /// connection; the node keeps its honest peers and keeps dialling.
    @Test func aMemberDiallingManyTimesHoldsOneConnectionAndDisplacesNoOne() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 2, maxConnections: 4, graceSeconds: 1)
        let (all, id) = try await chapter(tmp, members: 6, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let admin = all[0], mallory = all[5], honest = Array(all[1...4])
        let malloryDevice = mallory.device.publicKey.description
        #expect(try await eventually {
            for m in all where await m.node.addressTable(chapter: id).count < all.count { return false }
            return true
        })
        // Mallory opens 24 connections to the admin at once and holds them.
        let flood = (0..<24).map { _ in Task { await mallory.network.dialOnce(host: "127.0.0.1", port: admin.port) } }
        defer { for t in flood { t.cancel() } }
        var most = 0
        let deadline = Date().addingTimeInterval(6)
        while Date() < deadline {
            let peers = await admin.node.peerInfo()
            most = max(most, peers.filter { $0.device == malloryDevice }.count)
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(most <= 1, "the admin held \(most) connections of one device")
        // The admin still has honest members (at least its target of distinct members) within its bound.
        let honestDevices = Set(honest.map { $0.device.publicKey.description })
        #expect(try await eventually {
            let peers = await admin.node.peerInfo()
            let info = await admin.node.overlayInfo(chapter: id)
            return Set(peers.map(\.device)).intersection(honestDevices).count >= settings.target && info.connections <= settings.maxConnections
        })
        // An edit still reaches every member.
        try await edit(honest[0], id, "Despite the flood")
        let want = await changes(honest[0], id)
        #expect(try await eventually { for m in all where await changes(m, id) < want { return false }; return true })
        await shutdown(all)
    }

    /// A port that accepts TCP connections (the kernel's backlog) and never answers.
    func tarpit() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(rc == 0)
        rc = listen(fd, 64)
        try #require(rc == 0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// Findings 2 and 6 (tarpit addresses, dials not bound to a device): a member's record that
    /// points at a listener that never answers, or at another member's node, is not a good dial:
    /// it backs off and is never remembered as a bootstrap hint; the honest member's is.
    @Test func tarpitAndMisdirectedAddressesAreNotCountedGoodNorRemembered() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 4, maxConnections: 8, graceSeconds: 1, hintAfterSeconds: 1)
        let (all, id) = try await chapter(tmp, members: 5, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let (admin, bob, carol, mallory, trudy) = (all[0], all[1], all[2], all[3], all[4])
        let pit = try tarpit()
        defer { close(pit.fd) }
        let pitAddress = "127.0.0.1:\(pit.port)", bobAddress = "127.0.0.1:\(bob.port)"
        #expect(try await eventually {
            for m in all where await m.node.addressTable(chapter: id).count < all.count { return false }
            return true
        })
        let (ref, key) = try #require(await mallory.node.testHookCurrentEpochKey(chapter: id))
        let later = UInt64(Date().timeIntervalSince1970 * 1000) + 5_000
        let pitRecord = try PeerAddressRecord.make(address: pitAddress, chapter: id, device: mallory.device, issuedMilliseconds: later,
                                                   epoch: ref, epochKey: key).encoded
        let misdirected = try PeerAddressRecord.make(address: bobAddress, chapter: id, device: trudy.device, issuedMilliseconds: later,
                                                     epoch: ref, epochKey: key).encoded
        try await Task.sleep(nanoseconds: 1_100_000_000) // past the second in which each member took their records
        await mallory.node.testHookSendAddresses([pitRecord], chapter: id)
        await trudy.node.testHookSendAddresses([misdirected], chapter: id)
        #expect(try await eventually {
            let table = await carol.node.addressTable(chapter: id)
            return table[mallory.device.publicKey.description] == pitAddress && table[trudy.device.publicKey.description] == bobAddress
        })
        // Mallory and Trudy go away; Carol comes back and dials what her table says.
        for m in [mallory, trudy, carol] { await m.offline() }
        try await carol.online()
        #expect(try await eventually(60) {
            let pitFailures = await carol.node.testHookDialFailures(device: mallory.device.publicKey)
            let misdirectedFailures = await carol.node.testHookDialFailures(device: trudy.device.publicKey)
            return pitFailures >= 1 && misdirectedFailures >= 1
        })
        let hints = await carol.node.testHookHints(chapter: id)
        #expect(!hints.contains { $0.address == pitAddress }, "\(hints)")
        #expect(!hints.contains { $0.address == bobAddress && $0.device == trudy.device.publicKey }, "\(hints)")
        // Honest dials do count: Carol is connected to Bob and the admin and remembers them with their devices.
        #expect(try await eventually {
            let h = await carol.node.testHookHints(chapter: id)
            return h.contains { $0.address == bobAddress && $0.device == bob.device.publicKey }
                || h.contains { $0.address == "127.0.0.1:\(admin.port)" && $0.device == admin.device.publicKey }
        })
        // Removing Bob drops his remembered hint.
        _ = try await admin.node.removeMember(chapter: nil, member: bob.node.identity.member.description)
        #expect(try await eventually { await !carol.node.testHookHints(chapter: id).contains { $0.device == bob.device.publicKey } })
        await shutdown(all)
    }

    /// Finding 3: the per-(chapter, device) rate limit applies before any signature check, a
    /// message with more records than the chapter has devices is refused, and a connection that
    /// keeps sending forged records is closed.
    @Test func addressFloodsAreCheapToRefuseAndCloseTheConnection() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 3, maxConnections: 8, graceSeconds: 1)
        let (all, id) = try await chapter(tmp, members: 3, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let (admin, bob, mallory) = (all[0], all[1], all[2])
        #expect(try await eventually {
            let known = await admin.node.addressTable(chapter: id).count
            let peers = await admin.node.peerInfo()
            return known == 3 && peers.contains { $0.device == mallory.device.publicKey.description }
        })
        let (ref, key) = try #require(await mallory.node.testHookCurrentEpochKey(chapter: id))
        let later = UInt64(Date().timeIntervalSince1970 * 1000) + 5_000
        try await Task.sleep(nanoseconds: 1_100_000_000) // past the second since the admin took Mallory's record
        // A valid record, then forged ones for the same device in the same message: the forged ones
        // fall under the rate limit and are not even verified (not refused).
        let valid = try PeerAddressRecord.make(address: "127.0.0.1:\(mallory.port)", chapter: id, device: mallory.device,
                                               issuedMilliseconds: later, epoch: ref, epochKey: key)
        var forged: [[UInt8]] = []
        for i in 1...2 {
            var bytes = try PeerAddressRecord.make(address: "10.6.6.6:\(i)", chapter: id, device: mallory.device,
                                                   issuedMilliseconds: later + UInt64(i), epoch: ref, epochKey: key).encoded
            bytes[bytes.count - 1] ^= 1 // a broken signature
            forged.append(bytes)
        }
        let before = await admin.node.overlayInfo(chapter: id)
        await mallory.node.testHookSendAddresses([valid.encoded] + forged, chapter: id)
        #expect(try await eventually { await admin.node.testHookOwnRecordOf(mallory.device.publicKey, chapter: id) == valid.encoded })
        #expect(await admin.node.overlayInfo(chapter: id).refusedRecords == before.refusedRecords)
        // More records than the chapter has devices: refused whole.
        await mallory.node.testHookSendAddresses(Array(repeating: valid.encoded, count: 4), chapter: id)
        #expect(try await eventually { await admin.node.overlayInfo(chapter: id).refusedRecords >= before.refusedRecords + 1 })
        // Forged records naming Bob's device (signature by Mallory's key): past the limit, the connection closes.
        let bobKey = bob.device.publicKey
        for i in 0..<9 {
            var pair: [[UInt8]] = []
            for j in 0..<2 {
                var bytes = try PeerAddressRecord.make(address: "10.6.6.6:\(i * 2 + j)", chapter: id, device: mallory.device,
                                                       issuedMilliseconds: later + 100 + UInt64(i * 2 + j), epoch: ref, epochKey: key).encoded
                bytes.replaceSubrange(0..<32, with: bobKey.bytes)
                pair.append(bytes)
            }
            await mallory.node.testHookSendAddresses(pair, chapter: id)
        }
        #expect(try await eventually { await admin.node.overlayInfo(chapter: id).closedForRefusals >= 1 })
        #expect(await admin.node.addressTable(chapter: id)[bobKey.description] == "127.0.0.1:\(bob.port)")
        await shutdown(all)
    }

    /// Finding 4: after a member leaves, the current epoch's key is one it holds until a member
    /// starts a new epoch; meanwhile nobody announces or passes on an address record.
    @Test func noRecordIsSentUnderAnEpochKeyALeaverHolds() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 3, maxConnections: 8, graceSeconds: 1, epochRenewalDelay: nil) // only a write renews: see the next test
        let (all, id) = try await chapter(tmp, members: 4, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let (admin, bob, carol, mallory) = (all[0], all[1], all[2], all[3])
        let bobKey = bob.device.publicKey.description, oldBob = "127.0.0.1:\(bob.port)"
        #expect(try await eventually {
            for m in all where await m.node.addressTable(chapter: id)[bobKey] != oldBob { return false }
            return true
        })
        _ = try await mallory.node.leave(chapter: nil)
        #expect(try await eventually {
            for m in [admin, bob, carol] where await m.node.testHookNeedsNewEpoch(chapter: id) != true { return false }
            return true
        })
        await bob.offline()
        try await bob.online()
        let newBob = "127.0.0.1:\(bob.port)"
        #expect(try await eventually { await bob.node.overlayInfo(chapter: id).connections >= 1 })
        try await Task.sleep(nanoseconds: 2_000_000_000)
        for m in [admin, bob, carol] { #expect(await m.node.addressTable(chapter: id)[bobKey] == oldBob) }
        // An edit starts a new epoch sealed to the remaining devices: Bob's new address goes out.
        try await edit(admin, id, "After the leave")
        #expect(try await eventually {
            for m in [admin, carol] where await m.node.addressTable(chapter: id)[bobKey] != newBob { return false }
            return true
        })
        #expect(await mallory.node.addressTable(chapter: id)[bobKey] != newBob)
        await shutdown(all)
    }

    /// Review leftover: a chapter whose epoch needs renewing (a member left) gets a new epoch
    /// from one of its members after a short random delay, with nobody writing; the overlay then
    /// passes new addresses on again, and the leaver gets none of them.
    @Test func aChapterWhoseEpochNeedsRenewingRenewsItWithoutAWrite() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 3, maxConnections: 8, graceSeconds: 1, epochRenewalDelay: 1...3)
        let (all, id) = try await chapter(tmp, members: 4, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let (admin, bob, carol, mallory) = (all[0], all[1], all[2], all[3])
        let bobKey = bob.device.publicKey.description
        #expect(try await eventually {
            for m in all where await m.node.addressTable(chapter: id)[bobKey] != "127.0.0.1:\(bob.port)" { return false }
            return true
        })
        let changesBefore = await changes(admin, id)
        try await leaveAndGoOffline(mallory, seenBy: [admin, bob, carol], id)
        #expect(try await eventually {
            for m in [admin, bob, carol] where await m.node.testHookNeedsNewEpoch(chapter: id) != false { return false }
            return true
        })
        await bob.offline()
        try await bob.online()
        let newBob = "127.0.0.1:\(bob.port)"
        #expect(try await eventually {
            for m in [admin, carol] where await m.node.addressTable(chapter: id)[bobKey] != newBob { return false }
            return true
        })
        #expect(await changes(admin, id) == changesBefore, "nobody wrote: the epoch was renewed by the overlay")
        #expect(await mallory.node.addressTable(chapter: id)[bobKey] != newBob)
        await shutdown(all)
    }

    /// Review leftover: a record issued by a clock running fast (here forged 9 minutes ahead)
    /// under an older epoch does not pin that device's address: the device's record of the new
    /// epoch, issued earlier by the clock, replaces it.
    @Test func aFastClockRecordOfAnOlderEpochDoesNotPinTheAddress() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 3, maxConnections: 8, graceSeconds: 1, epochRenewalDelay: 1...3)
        let (all, id) = try await chapter(tmp, members: 4, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let (admin, carol, mallory, leaver) = (all[0], all[1], all[2], all[3])
        let malloryKey = mallory.device.publicKey.description, real = "127.0.0.1:\(mallory.port)"
        let everyoneHasIt = try await eventually {
            for m in all where await m.node.addressTable(chapter: id)[malloryKey] != real { return false }
            return true
        }
        let report = everyoneHasIt ? "" : await overlayReport(all, id, lacking: mallory.device.publicKey, real)
        #expect(everyoneHasIt, "members lacking Mallory's address \(real): \(report)")
        let (ref, key) = try #require(await mallory.node.testHookCurrentEpochKey(chapter: id))
        let ahead = UInt64(Date().timeIntervalSince1970 * 1000) + 540_000
        let fast = try PeerAddressRecord.make(address: "127.0.0.1:1", chapter: id, device: mallory.device, issuedMilliseconds: ahead,
                                              epoch: ref, epochKey: key).encoded
        try await Task.sleep(nanoseconds: 1_100_000_000) // past the second in which each member took the record
        await mallory.node.testHookSendAddresses([fast], chapter: id)
        #expect(try await eventually {
            for m in [admin, carol] where await m.node.addressTable(chapter: id)[malloryKey] != "127.0.0.1:1" { return false }
            return true
        })
        // A member leaves; the chapter renews its epoch; Mallory's node announces under the new one.
        try await leaveAndGoOffline(leaver, seenBy: [admin, carol, mallory], id)
        let renewed = try await eventually {
            for m in [admin, carol] where await m.node.addressTable(chapter: id)[malloryKey] != real { return false }
            return true
        }
        let renewedReport = renewed ? "" : await overlayReport(all, id, lacking: mallory.device.publicKey, real)
        #expect(renewed, "members still lacking Mallory's address \(real): \(renewedReport)")
        await shutdown(all)
    }

    /// Finding 1 with many devices: a member whose six devices keep dialling a node takes no
    /// honest member's place there (the surplus is trimmed from the most represented member) and
    /// the node stays connected to at least `target` honest members.
    @Test func aMemberWithManyDevicesDoesNotCrowdOutHonestMembers() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 2, maxConnections: 4, graceSeconds: 1)
        let (all, id) = try await chapter(tmp, members: 5, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let admin = all[0], mallory = all[4], honest = Array(all[1...3])
        // Mallory's further devices: each connects to Mallory's first node, which lists it in the
        // chapter (and seals it the key); then it takes up the chapter itself.
        let memberKey = try #require(mallory.node.identity.memberKey)
        let devices = try await moreDevices(5, of: mallory, key: memberKey, in: id, tmp, name: "mallory-device", settings: settings)
        // Every device of Mallory's keeps dialling the admin.
        let flood = keepDialling([mallory] + devices, admin, every: 100_000_000)
        defer { for t in flood { t.cancel() } }
        let honestDevices = Set(honest.map { $0.device.publicKey.description })
        // Mallory counts as one member: the admin stays connected to at least `target` members,
        // so to at least `target - 1` honest ones, for the whole flood.
        func honestAtAdmin() async -> Int { Set(await admin.node.peerInfo().map(\.device)).intersection(honestDevices).count }
        #expect(try await eventually {
            let honestCount = await honestAtAdmin()
            let members = await admin.node.overlayInfo(chapter: id).members
            return honestCount >= settings.target - 1 && members >= settings.target
        })
        var fewest = Int.max, fewestMembers = Int.max
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            fewest = min(fewest, await honestAtAdmin())
            fewestMembers = min(fewestMembers, await admin.node.overlayInfo(chapter: id).members)
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(fewest >= settings.target - 1, "the admin kept only \(fewest) honest members under the flood")
        #expect(fewestMembers >= settings.target, "the admin was connected to only \(fewestMembers) members under the flood")
        for t in flood { t.cancel(); await t.value }
        for d in devices { await d.offline() }
        await shutdown(all)
    }

    /// Review 1: a member with many devices that all dial a node holds at most `maxPerMember` connections there at any moment; the rest are
    /// refused when they authenticate.
    @Test func aMemberWithManyDeviceCertificatesCannotExceedThePerMemberCap() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 2, maxConnections: 8, graceSeconds: 1, maxPerMember: 2)
        let (all, id) = try await chapter(tmp, members: 3, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let admin = all[0], mallory = all[2]
        let memberKey = try #require(mallory.node.identity.memberKey)
        let malloryMember = memberKey.publicKey.description
        // Six further devices of Mallory's, listed by Mallory's first node (which seals them the
        // chapter key) so they hold the chapter and may sync it with the admin.
        let devices = try await moreDevices(6, of: mallory, key: memberKey, in: id, tmp, name: "mallory-cert", settings: settings)
        let flood = keepDialling([mallory] + devices, admin, every: 50_000_000)
        defer { for t in flood { t.cancel() } }
        var most = 0
        let deadline = Date().addingTimeInterval(6)
        while Date() < deadline {
            most = max(most, await admin.node.peerInfo().filter { $0.member == malloryMember }.count)
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        #expect(most >= 1)
        #expect(most <= settings.maxPerMember, "the admin held \(most) connections of one member")
        // Bob (honest) still gets his connection to the admin.
        let bobDevice = all[1].device.publicKey.description
        #expect(try await eventually { await admin.node.peerInfo().contains { $0.device == bobDevice } })
        for t in flood { t.cancel(); await t.value }
        for d in devices { await d.offline() }
        await shutdown(all)
    }

    /// Review 2: the dial backoff is kept per (chapter, device): new records of an unreachable
    /// device, with other address strings, do not make a node dial it again before its backoff ends.
    @Test func newAddressStringsForABackedOffDeviceCauseNoRedials() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 3, maxConnections: 8, graceSeconds: 1)
        let (all, id) = try await chapter(tmp, members: 3, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let (admin, carol, mallory) = (all[0], all[1], all[2])
        #expect(try await eventually {
            for m in all where await m.node.addressTable(chapter: id).count < all.count { return false }
            return await admin.node.peerInfo().contains { $0.device == carol.device.publicKey.description }
        })
        let (ref, key) = try #require(await mallory.node.testHookCurrentEpochKey(chapter: id))
        let port = mallory.port
        await mallory.offline() // its port now refuses: Carol's dials fail and back off
        let device = mallory.device.publicKey
        #expect(try await eventually(60) { await carol.node.testHookDialFailures(device: device) >= 3 })
        // Now the backoff is 8 s; Mallory's key signs records with new spellings and addresses, sent through the admin.
        let before = await carol.node.testHookDialsStarted(device: device)
        var issued = UInt64(Date().timeIntervalSince1970 * 1000) + 1_000
        for address in ["localhost:\(port)", "127.0.0.2:\(port)", "127.0.0.3:\(port)"] {
            issued += 10
            let record = try PeerAddressRecord.make(address: address, chapter: id, device: mallory.device, issuedMilliseconds: issued,
                                                    epoch: ref, epochKey: key)
            await admin.node.testHookSendAddresses([record.encoded], chapter: id)
            #expect(try await eventually(10) { await carol.node.addressTable(chapter: id)[device.description] == address })
            try await Task.sleep(nanoseconds: 1_100_000_000) // past the one-record-a-second limit
        }
        let after = await carol.node.testHookDialsStarted(device: device)
        #expect(after - before <= 1, "Carol dialled Mallory's device \(after - before) times for its new address strings")
        await shutdown(all)
    }

    /// Review 4, 5: an oversized message counts as one refusal, and the message that passes the
    /// limit closes the connection at that record: the rest of it is never checked.
    @Test func refusalsPastTheLimitCloseTheConnectionMidMessage() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 3, maxConnections: 8, graceSeconds: 1)
        let (all, id) = try await chapter(tmp, members: 3, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let (admin, bob, mallory) = (all[0], all[1], all[2])
        #expect(try await eventually {
            let known = await admin.node.addressTable(chapter: id).count
            let peers = await admin.node.peerInfo()
            return known == 3 && peers.contains { $0.device == mallory.device.publicKey.description }
        })
        let (ref, key) = try #require(await mallory.node.testHookCurrentEpochKey(chapter: id))
        let later = UInt64(Date().timeIntervalSince1970 * 1000) + 5_000
        var serial: UInt64 = 0
        /// Records naming Bob's device, signed by Mallory's: they pass the cheap checks and fail the signature.
        func forged(_ n: Int) throws -> [[UInt8]] {
            try (0..<n).map { _ in
                serial += 1
                var bytes = try PeerAddressRecord.make(address: "10.6.6.6:\(serial)", chapter: id, device: mallory.device,
                                                       issuedMilliseconds: later + serial, epoch: ref, epochKey: key).encoded
                bytes.replaceSubrange(0..<32, with: bob.device.publicKey.bytes)
                return bytes
            }
        }
        try await Task.sleep(nanoseconds: 1_100_000_000) // past the second in which the admin took Bob's record
        let before = await admin.node.overlayInfo(chapter: id)
        // Four messages with more records than the chapter's 3 devices (one refusal each), then 12 forged records: 16, the limit.
        for _ in 0..<4 { await mallory.node.testHookSendAddresses(try forged(4), chapter: id) }
        for _ in 0..<6 { await mallory.node.testHookSendAddresses(try forged(2), chapter: id) }
        let reached = try await eventually(20) { await admin.node.overlayInfo(chapter: id).refusedRecords >= before.refusedRecords + 16 }
        let refused = await admin.node.overlayInfo(chapter: id).refusedRecords - before.refusedRecords
        #expect(reached, "refused \(refused)")
        try await Task.sleep(nanoseconds: 500_000_000)
        #expect(await admin.node.overlayInfo(chapter: id).closedForRefusals == before.closedForRefusals, "closed at the limit, not past it")
        // One message of three forged records: the first passes the limit and closes; the other two are never checked.
        await mallory.node.testHookSendAddresses(try forged(3), chapter: id)
        #expect(try await eventually { await admin.node.overlayInfo(chapter: id).closedForRefusals > before.closedForRefusals })
        try await Task.sleep(nanoseconds: 500_000_000)
        #expect(await admin.node.overlayInfo(chapter: id).refusedRecords == before.refusedRecords + 17)
        await shutdown(all)
    }
}
