import KithCRDT
import KithCrypto
import Testing

/// Issue 19, finding 2: the hybrid clock after the wall clock jumps back, and durations in words.
@Suite("hybrid clock and wall-clock faults")
struct ClockJumpTests {
    @Test func anAuthorsOwnEarlierStampsNeverBlockItsNextChange() throws {
        let scope = ScopeID(name: "test")
        var replica = Replica(scope: scope)
        var author = ChangeAuthor(signer: Ed25519.PrivateKey())
        let now: UInt64 = 1_796_073_637_000, threeHours: UInt64 = 3 * 3_600_000
        let id = ContactID(high: 1, low: 1)
        let ahead = try author.commit([ContactEdit(contact: id, ops: [.setField(.givenName, "Ahead")])], to: &replica, wallMilliseconds: now + threeHours)
        // The wall clock jumps back three hours: the next change still orders after the first.
        let later = try author.commit([ContactEdit(contact: id, ops: [.setField(.givenName, "Later")])], to: &replica, wallMilliseconds: now)
        #expect(later.timestamp > ahead.timestamp && later.seq == 2)
        #expect(replica.contact(id)?[.givenName] == "Later")
        // Another replica still refuses the stamp if its own clock is three hours behind it.
        var peer = Replica(scope: scope)
        #expect(throws: ChangeRejection.self) { try peer.receive(ahead, nowMilliseconds: now) }
    }

    @Test func durationsInWords() {
        #expect(HybridTimestamp.spoken(milliseconds: 7_199_990) == "2 h")
        #expect(HybridTimestamp.spoken(milliseconds: 7_200_002) == "2 h")
        #expect(HybridTimestamp.spoken(milliseconds: 2_700_000) == "45 min")
        #expect(HybridTimestamp.spoken(milliseconds: 7_500_000) == "2 h 5 min")
        #expect(HybridTimestamp.spoken(milliseconds: 30_400) == "30 s")
    }
}
