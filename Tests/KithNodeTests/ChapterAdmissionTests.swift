import Foundation
import KithChapter
import KithCRDT
import KithCrypto
@testable import KithNetwork
import Testing

/// Joins admitted by any online admin (chapters.md §4): an invite names the other admins'
/// daemons the issuer knew of, so it is redeemed while its issuer is offline — and only by a
/// current admin's daemon. Real node stacks over loopback (the overlay tests' members).
@Suite("Chapter admission by any admin", .serialized)
struct ChapterAdmissionTests {
    typealias Member = ChapterOverlayTests.Member
    let overlay = ChapterOverlayTests()

    /// The ops of `log` that list `member`'s device, by author member.
    func admitters(of member: Member, in log: MembershipLog?) -> [Ed25519.PublicKey] {
        guard let log else { return [] }
        return log.ops.values.compactMap { op -> Ed25519.PublicKey? in
            if case let .addMember(cert, _, _) = op.action, cert.deviceSigningKey == member.device.publicKey { return op.authorMember }
            return nil
        }
    }

    @Test func anotherAdminAdmitsWhileTheIssuerIsOfflineAndNoNonAdminOrRemovedAdminDoes() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 2, maxConnections: 8, graceSeconds: 1)
        let (all, id) = try await overlay.chapter(tmp, members: 3, settings: settings)
        let (a, b, c) = (all[0], all[1], all[2])
        var everyone = all
        defer { Task { [everyone] in for m in everyone { await m.offline() } } }
        let bKey = b.node.identity.member.description
        _ = try await a.node.setAdmin(chapter: nil, member: bKey, admin: true)
        // B knows it is an admin, and A's overlay knows where B listens.
        let bMember = b.node.identity.member, bDevice = b.device.publicKey.description
        #expect(try await overlay.eventually {
            let bAdmin = await b.node.chapterLog(id)?.state.isAdmin(bMember) == true
            let table = await a.node.addressTable(chapter: id)
            return bAdmin && table[bDevice] != nil
        })

        // A issues an invite: it names A's daemon first, then B's.
        let text = try await a.node.openInvite(chapter: nil, expiresIn: 3600, uses: 10, hint: "127.0.0.1:\(a.port)")
        let invite = try ChapterInvite(text: text, now: UInt64(Date().timeIntervalSince1970))
        #expect(invite.contacts.map(\.device) == [a.device.publicKey, b.device.publicKey])
        #expect(try await overlay.eventually { (await b.node.chapterLog(id)?.state.openInvites(nowMilliseconds: 0).count ?? 0) >= 2 })
        await a.offline()

        // A joiner redeems it with B: A's daemon is unreachable, B admits.
        let joiner = try Member(tmp.path("joiner"), settings: settings)
        everyone.append(joiner)
        try await joiner.online()
        _ = try await joiner.network.join(invite)
        let joined = await joiner.node.chapterLog(id)
        #expect(joined?.state.isMember(joiner.node.identity.member) == true)
        #expect(admitters(of: joiner, in: joined) == [b.node.identity.member])

        // A non-admin's daemon does not admit, even when an invite names it.
        let viaC = ChapterInvite(chapter: id, seed: invite.seed, admin: a.device.publicKey, expiresAt: invite.expiresAt,
                                 hint: ChapterInvite.hint(address: "", others: [.init(device: c.device.publicKey, address: "127.0.0.1:\(c.port)")]))
        let refused = try Member(tmp.path("refused"), settings: settings)
        everyone.append(refused)
        try await refused.online()
        await #expect(throws: ChapterCommandError.self) { _ = try await refused.network.join(viaC) }
        #expect(await refused.node.chapterLog(id) == nil)
        #expect(await c.node.chapterLog(id)?.state.isMember(refused.node.identity.member) == false)

        // A removed admin's daemon does not admit either: A comes back and removes B.
        try await a.online()
        _ = try await a.node.removeMember(chapter: nil, member: bKey)
        #expect(try await overlay.eventually { await b.node.chapterLog(id)?.state.isMember(b.node.identity.member) == false })
        let viaB = ChapterInvite(chapter: id, seed: invite.seed, admin: a.device.publicKey, expiresAt: invite.expiresAt,
                                 hint: ChapterInvite.hint(address: "", others: [.init(device: b.device.publicKey, address: "127.0.0.1:\(b.port)")]))
        let late = try Member(tmp.path("late"), settings: settings)
        everyone.append(late)
        try await late.online()
        await #expect(throws: ChapterCommandError.self) { _ = try await late.network.join(viaB) }
        #expect(await late.node.chapterLog(id) == nil)
        #expect(admitters(of: late, in: await b.node.chapterLog(id)).isEmpty)
        await overlay.shutdown(everyone)
    }

    /// A hostile admin's daemon named first in an invite's hint neither stalls the join (it
    /// takes the proof and never answers: the joiner gives up after 20 s) nor stops it with a
    /// false `join-held`: the joiner goes on to the issuer, which admits.
    @Test func aHostileDaemonNamedFirstNeitherStallsNorHoldsTheJoin() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 2, maxConnections: 8, graceSeconds: 1)
        let (all, id) = try await overlay.chapter(tmp, members: 2, settings: settings)
        let (a, b) = (all[0], all[1])
        var everyone = all
        defer { Task { [everyone] in for m in everyone { await m.offline() } } }
        _ = try await a.node.setAdmin(chapter: nil, member: b.node.identity.member.description, admin: true)
        let text = try await a.node.openInvite(chapter: nil, expiresIn: 3600, uses: 10, hint: "127.0.0.1:\(a.port)")
        let invite = try ChapterInvite(text: text, now: UInt64(Date().timeIntervalSince1970))
        // B, an admin whose daemon is hostile, takes joins once it holds the invite.
        let bMember = b.node.identity.member
        #expect(try await overlay.eventually {
            let log = await b.node.chapterLog(id)
            return log?.state.isAdmin(bMember) == true && log?.state.openInvites(nowMilliseconds: 0).isEmpty == false
        })
        let hostileFirst = ChapterInvite(chapter: id, seed: invite.seed, admin: a.device.publicKey, expiresAt: invite.expiresAt,
                                         hint: ChapterInvite.hint(address: "", others: [.init(device: b.device.publicKey, address: "127.0.0.1:\(b.port)"),
                                                                                         .init(device: a.device.publicKey, address: "127.0.0.1:\(a.port)")]))
        #expect(hostileFirst.contacts.map(\.device) == [b.device.publicKey, a.device.publicKey])
        for answer in [HostileJoinAnswer.held, .silent] {
            await b.node.setTestHookJoinAnswer(answer)
            let joiner = try Member(tmp.path("joiner-\(answer)"), settings: settings)
            everyone.append(joiner)
            try await joiner.online()
            _ = try await joiner.network.join(hostileFirst)
            let joined = await joiner.node.chapterLog(id)
            #expect(joined?.state.isMember(joiner.node.identity.member) == true, "joined past a daemon that answers \(answer)")
            #expect(admitters(of: joiner, in: joined) == [a.node.identity.member])
        }
        await overlay.shutdown(everyone)
    }

    @Test func resentKnownOpsCostNothingButRefusedOnesAreLimited() async throws {
        let tmp = try TempDir()
        let settings = OverlaySettings(target: 2, maxConnections: 8, graceSeconds: 1)
        let (all, id) = try await overlay.chapter(tmp, members: 2, settings: settings)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let (admin, mallory) = (all[0], all[1])
        let malloryDevice = mallory.device.publicKey.description
        #expect(try await overlay.eventually { await admin.node.peerInfo().contains { $0.device == malloryDevice } })
        // A wave of joins makes every peer forward every new op many times a second: the whole
        // log resent 300 times is skipped by hash and never counts against the sender.
        let known = try #require(await admin.node.chapterLog(id)).allOps.map(\.encoded)
        await mallory.node.testHookSendMembership(known, chapter: id, times: 300)
        _ = try await mallory.node.setName("Mallory", device: nil) // after the flood, on the same connection
        #expect(try await overlay.eventually { await admin.node.chapterLog(id)?.state.names[mallory.node.identity.member] == "Mallory" })
        #expect(await admin.node.membershipFloodsCut == 0)
        // Ops that fail their signature check cost a check each: a flood of them is cut off.
        var forged = known[known.count - 1]
        forged[forged.count - 1] ^= 1
        await mallory.node.testHookSendMembership([forged], chapter: id, times: 300)
        #expect(try await overlay.eventually { await admin.node.membershipFloodsCut > 0 })
        for m in all { await m.offline() }
    }
}
