@testable import KithChapter
import KithCRDT
import KithCrypto
import Testing

/// Inputs that crashed chapter code under the fuzz targets (Fuzz/, scripts/fuzz), pinned.
@Suite("Fuzz regressions: chapters")
struct ChapterFuzzRegressionTests {
    /// Target `membership-log` (seed 02): a member's op dated 2^64-1 ms (it decodes: the
    /// certificate is valid then) became a head, and the next op anyone authored on top of it
    /// trapped on `latest + 1` in `MembershipLog.append` — one hostile op stopped every honest
    /// device of the chapter from starting epochs, inviting or removing anyone.
    @Test func appendingAfterAnOpDatedAtTheEndOfTime() throws {
        let admin = Person(1), member = Person(2)
        var log = try MembershipLog.create(name: "Riverside", certificate: admin.certificate, device: admin.device, now: 1_800_000_000_000)
        _ = try admin.append(.addMember(member.certificate, admin: false, invite: nil), to: &log)
        let late = MembershipOp.make(chapter: log.chapter, parents: Array(log.heads), timestamp: .max, certificate: member.certificate,
                                     device: member.device, action: .leave)
        let decoded = try MembershipOp(decoding: late.encoded)
        try log.receive([decoded])
        #expect(log.heads == [late.id])
        let next = try log.startEpoch(certificate: admin.certificate, device: admin.device, now: 1_800_000_001_000)
        #expect(next.parents == [late.id])
    }
}
