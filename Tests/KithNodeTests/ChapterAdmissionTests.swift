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
    /// takes the proof and never answers: the joiner gives up after 30 s) nor stops it with a
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

    /// A chapter of an admin and a member (Mallory) whose nodes are connected.
    func adminAndMallory(_ tmp: TempDir) async throws -> ([Member], ChapterID) {
        let settings = OverlaySettings(target: 2, maxConnections: 8, graceSeconds: 1)
        let (all, id) = try await overlay.chapter(tmp, members: 2, settings: settings)
        let malloryDevice = all[1].device.publicKey.description
        #expect(try await overlay.eventually { await all[0].node.peerInfo().contains { $0.device == malloryDevice } })
        return (all, id)
    }

    @Test func resentKnownOpsCostNothingButRefusedOnesAreLimited() async throws {
        let tmp = try TempDir()
        let (all, id) = try await adminAndMallory(tmp)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let (admin, mallory) = (all[0], all[1])
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

    /// Ops held already cost a hash each, not nothing: a device that resends the log over and
    /// over in huge messages (review 8: ~32 MiB logs were never charged) is cut off by the byte
    /// allowance (64 MiB, then 1 MiB/s), though no op in them is new or refused.
    @Test func resendingHugeLogsIsCutOffByTheByteAllowance() async throws {
        let tmp = try TempDir()
        let (all, id) = try await adminAndMallory(tmp)
        defer { Task { [all] in for m in all { await m.offline() } } }
        let (admin, mallory) = (all[0], all[1])
        let known = try #require(await admin.node.chapterLog(id)).allOps.map(\.encoded)
        let size = known.reduce(0) { $0 + $1.count }
        // About 16 MiB a message, eight messages: twice the burst, far faster than it refills.
        let copies = Array(repeating: known, count: 16 * 1_048_576 / size + 1).flatMap { $0 }
        await mallory.node.testHookSendMembership(copies, chapter: id, times: 8)
        #expect(try await overlay.eventually { await admin.node.membershipFloodsCut > 0 })
        await overlay.shutdown(all)
    }

    /// The log a peer sends for a held join is taken up only from a device the invite names that
    /// is an admin's in that log (chapters.md §4), as on the direct path.
    @Test func aHeldJoinsLogIsCheckedLikeADirectAnswer() throws {
        let admin = Ed25519.PrivateKey(), member = Ed25519.PrivateKey(), joiner = Ed25519.PrivateKey()
        func device(_ m: Ed25519.PrivateKey) -> (DeviceCertificate, Ed25519.PrivateKey, X25519.PrivateKey) {
            let d = Ed25519.PrivateKey(), a = X25519.PrivateKey()
            return (DeviceCertificate.issue(member: m, deviceSigningKey: d.publicKey, deviceAgreementKey: a.publicKey, createdAt: 1_700_000_000), d, a)
        }
        let (aCert, aDev, aAgr) = device(admin), (mCert, _, _) = device(member), (jCert, _, _) = device(joiner)
        let now: UInt64 = 1_800_000_000
        var log = try MembershipLog.create(name: "Held", certificate: aCert, device: aDev, now: now * 1000)
        _ = try log.append(.addMember(mCert, admin: false, invite: nil), certificate: aCert, device: aDev, now: now * 1000 + 1)
        let (op, invite) = try log.openInvite(expiresAt: now + 3600, uses: 2, approval: true, hint: "", certificate: aCert, device: aDev, now: now)
        _ = try log.add(joiner: jCert, invite: op.id, certificate: aCert, device: aDev, agreement: aAgr, nowMilliseconds: now * 1000 + 3)
        let naming = ChapterInvite(chapter: invite.chapter, seed: invite.seed, admin: invite.admin, expiresAt: invite.expiresAt,
                                   hint: ChapterInvite.hint(address: "127.0.0.1:1", others: [.init(device: mCert.deviceSigningKey, address: "127.0.0.1:2")]))
        #expect(SyncNode.joinAnswerRefusal(log, invite: naming, answeredBy: aCert.deviceSigningKey, me: joiner.publicKey) == nil)
        // A member's device, even one the invite names, is no admin's.
        #expect(SyncNode.joinAnswerRefusal(log, invite: naming, answeredBy: mCert.deviceSigningKey, me: joiner.publicKey) != nil)
        // An admin's device the invite does not name.
        let other = ChapterInvite(chapter: invite.chapter, seed: invite.seed, admin: mCert.deviceSigningKey, expiresAt: invite.expiresAt, hint: "127.0.0.1:1")
        #expect(SyncNode.joinAnswerRefusal(log, invite: other, answeredBy: aCert.deviceSigningKey, me: joiner.publicKey) != nil)
        // A log that does not list the joiner.
        #expect(SyncNode.joinAnswerRefusal(log, invite: naming, answeredBy: aCert.deviceSigningKey, me: Ed25519.PrivateKey().publicKey) != nil)
    }
}
