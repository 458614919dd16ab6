import KithCrypto
@testable import KithNetwork
import Testing

/// A peer's clock reading is only its word (sync.md §5.4): a hostile member, or one device with
/// a wrong clock, must not make the owner of a correct computer "fix" its clock.
@Suite("Clock verdict from peers' readings")
struct ClockVerdictTests {
    static func key(_ n: UInt8) -> Ed25519.PublicKey { try! Ed25519.PublicKey(bytes: [UInt8](repeating: n, count: 32)) }
    let me = Self.key(1), mallory = Self.key(2), ann = Self.key(3), bob = Self.key(4)
    let twoHours: Int64 = 2 * 3_600_000

    @Test func agreeingClocksSayNothing() {
        #expect(SyncNode.clockVerdict([], own: me) == nil)
        #expect(SyncNode.clockVerdict([(ann, 40_000), (bob, -90_000)], own: me) == nil)
    }

    /// The attack: the only connected peer claims a clock 2 h ahead. The node must not tell its
    /// owner that this computer is wrong; it names both clocks.
    @Test func aLoneHostilePeerCannotBlameThisComputer() throws {
        let verdict = try #require(SyncNode.clockVerdict([(mallory, twoHours)], own: me))
        #expect(verdict.contains("2 h behind the one peer it can compare with: check both clocks"), "\(verdict)")
        #expect(!verdict.contains("fix it"))
    }

    /// One member with several devices is one voice, however many connections it opens.
    @Test func oneMembersDevicesAreOneVoice() throws {
        let verdict = try #require(SyncNode.clockVerdict([(mallory, twoHours), (mallory, twoHours), (mallory, twoHours)], own: me))
        #expect(verdict.contains("the 3 peers it can compare with: check both clocks"), "\(verdict)")
    }

    /// Among honest peers a liar is outvoted by the median: nothing is reported.
    @Test func aLiarAmongHonestPeersIsOutvoted() {
        #expect(SyncNode.clockVerdict([(mallory, twoHours), (ann, 1_000), (bob, -2_000)], own: me) == nil)
    }

    /// Three peers of two members agreeing (or three of this member's own devices): this
    /// computer's clock is the wrong one.
    @Test func peersThatAgreeBlameThisComputer() throws {
        let ahead = try #require(SyncNode.clockVerdict([(ann, -twoHours), (bob, -twoHours), (ann, -twoHours - 5_000)], own: me))
        #expect(ahead.contains("this computer's clock is 2 h ahead of your peers'; fix it"), "\(ahead)")
        let own = try #require(SyncNode.clockVerdict([(me, twoHours), (me, twoHours), (me, twoHours)], own: me))
        #expect(own.contains("2 h behind your peers'; fix it"), "\(own)")
    }
}
