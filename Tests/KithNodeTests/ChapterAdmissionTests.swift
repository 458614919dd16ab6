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
        for m in everyone { await m.offline() }
    }
}
