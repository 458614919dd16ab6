@testable import KithCRDT
import KithCrypto
import Testing

/// The fields and sets of data model revision 2 (data-model.md §4): grammar checked on decode,
/// the stated merge rule for each, and the opcodes they use.
@Suite("Data model revision 2")
struct RevisionTwoTests {
    func decodes(_ op: Operation) -> Bool {
        (try? ContactEdit(decoding: ContactEdit(contact: alice, ops: [op]).encoded)) != nil
    }

    @Test func grammarOfTheNewFields() {
        #expect(decodes(.setField(.birthday, "1815-12-10")))
        #expect(decodes(.setField(.birthday, "--12-10")))
        #expect(!decodes(.setField(.birthday, "10/12/1815")))
        #expect(!decodes(.setField(.birthday, "--13-10")))
        #expect(decodes(.setField(.emailSubscription, "unsubscribed")))
        #expect(!decodes(.setField(.emailSubscription, "Unsubscribed")))
        #expect(!decodes(.setField(.smsSubscription, "yes")))
        #expect(decodes(.setField(.organization, "Analytical Engines")))
        #expect(decodes(.setField(.country, "")))
    }

    @Test func grammarOfTheNewSets() {
        #expect(decodes(.add(.externalIDs, "van:123456")))
        #expect(decodes(.add(.externalIDs, "voterfile:OH:123")))
        #expect(!decodes(.add(.externalIDs, "VAN:123")))
        #expect(!decodes(.add(.externalIDs, "van:")))
        #expect(!decodes(.add(.externalIDs, "123456")))
        #expect(!decodes(.add(.externalIDs, "van:1", payload: "x")))
        #expect(decodes(.add(.labels, "tel:+442079460018", payload: "work")))
        #expect(!decodes(.add(.labels, "tel:+442079460018")))
        #expect(!decodes(.add(.labels, "fax:+442079460018", payload: "work")))
        #expect(decodes(.add(.urls, "https://example.org", payload: "")))
        #expect(decodes(.add(.events, "mobilize:41234@2026-10-03", payload: "Canvass")))
        #expect(!decodes(.add(.events, "", payload: "Canvass")))
    }

    @Test func opcodes() {
        // Fields 12...15 take the free slots of 0x10 + f; 16 and up use 0x60 ‖ f.
        #expect(ContactEdit(contact: alice, ops: [.setField(.nickname, "A")]).encoded[16] == 0x1F)
        #expect(Array(ContactEdit(contact: alice, ops: [.setField(.country, "A")]).encoded[16...17]) == [0x60, 17])
        #expect(ContactEdit(contact: alice, ops: [.add(.labels, "email:a@b.c", payload: "home")]).encoded[16] == 0x2A)
        // 0x60 naming a field below 16 (which has its own opcode) or an unknown one is malformed.
        for bad: [UInt8] in [[0x60, 3, 1, 0x41], [0x60, 200, 1, 0x41], [0x2B, 1, 0x41, 0], [0x3B, 1, 0x41, 0]] {
            #expect(throws: DecodeError.self) { _ = try ContactEdit(decoding: alice.bytes + bad) }
        }
    }

    @Test func newFieldsAreLastWriterWinsAndNewSetsAddWins() {
        var p = Pair()
        p.onA(edit(alice, .setField(.organization, "Old Co"), .add(.externalIDs, "van:1"), .add(.labels, "email:a@b.org", payload: "work")), at: now)
        p.sync()
        let observed = p.rb.liveAdds(of: "email:a@b.org", in: .labels, contact: alice)
        p.onB(edit(alice, .setField(.organization, "New Co"), .remove(.labels, "email:a@b.org", observed: observed)), at: now + 10)
        p.onA(edit(alice, .add(.labels, "email:a@b.org", payload: "home"), .add(.externalIDs, "actionnetwork:x1")), at: now + 5)
        p.sync()
        let c = p.ra.contact(alice)!
        #expect(c[.organization] == "New Co")
        // B removed only the "work" add it had seen; A's concurrent "home" add survives.
        #expect(c.values(.labels).map(\.payload) == ["home"])
        #expect(c.values(.externalIDs).map(\.key) == ["actionnetwork:x1", "van:1"])
    }
}
