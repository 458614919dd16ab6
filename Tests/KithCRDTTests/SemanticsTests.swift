@testable import KithCRDT
import KithCrypto
import Testing

/// Two or three devices editing concurrently, then exchanging changes.
struct Pair {
    var a = ChangeAuthor(signer: deviceKey(1))
    var b = ChangeAuthor(signer: deviceKey(2))
    var ra = Replica(scope: testScope)
    var rb = Replica(scope: testScope)

    mutating func onA(_ edits: [ContactEdit], at t: UInt64) { try! a.commit(edits, to: &ra, wallMilliseconds: t) }
    mutating func onB(_ edits: [ContactEdit], at t: UInt64) { try! b.commit(edits, to: &rb, wallMilliseconds: t) }

    mutating func sync() {
        let toB = ra.changes(missingFrom: rb.versionVector())
        let toA = rb.changes(missingFrom: ra.versionVector())
        rb.take(toB)
        ra.take(toA)
        #expect(ra.stateDigest() == rb.stateDigest())
    }
}

let alice = contactID(1), bob = contactID(2), carol = contactID(3)
func edit(_ c: ContactID, _ ops: Operation...) -> [ContactEdit] { [ContactEdit(contact: c, ops: ops)] }

@Suite("Conflict rules")
struct SemanticsTests {
    @Test func lastWriterWinsByTimestampThenDevice() {
        var p = Pair()
        p.onA(edit(alice, .setField(.city, "Lyon")), at: now)
        p.onB(edit(alice, .setField(.city, "Paris")), at: now + 5)
        p.sync()
        #expect(p.ra.contact(alice)?[.city] == "Paris")
        // Equal timestamps: the larger device key wins, on both replicas.
        var q = Pair()
        q.onA(edit(bob, .setField(.city, "X")), at: now)
        q.onB(edit(bob, .setField(.city, "Y")), at: now)
        q.sync()
        let winner = deviceKey(1).publicKey < deviceKey(2).publicKey ? "Y" : "X"
        #expect(q.ra.contact(bob)?[.city] == winner)
        // Later op in the same change wins; empty value clears.
        var r = Pair()
        r.onA(edit(carol, .setField(.city, "1"), .setField(.city, "2")), at: now)
        #expect(r.ra.contact(carol)?[.city] == "2")
        r.onA(edit(carol, .setField(.city, "")), at: now + 1)
        #expect(r.ra.contact(carol)?[.city] == nil)
    }

    @Test func addWinsOverConcurrentRemove() {
        var p = Pair()
        p.onA(edit(alice, .add(.tags, "door-knock")), at: now)
        p.sync()
        // B removes the tag it saw; A concurrently adds it again.
        let observed = p.rb.liveAdds(of: "door-knock", in: .tags, contact: alice)
        #expect(observed.count == 1)
        p.onB(edit(alice, .remove(.tags, "door-knock", observed: observed)), at: now + 10)
        p.onA(edit(alice, .add(.tags, "door-knock")), at: now + 5)
        p.sync()
        #expect(p.ra.contact(alice)?.tags == ["door-knock"])
        // Now a remove that observed both adds wins.
        let both = p.ra.liveAdds(of: "door-knock", in: .tags, contact: alice)
        #expect(both.count == 1) // the first add was already removed
        p.onA(edit(alice, .remove(.tags, "door-knock", observed: both)), at: now + 20)
        p.sync()
        #expect(p.rb.contact(alice)?.tags == [])
    }

    @Test func removeArrivingBeforeItsAddStillWins() throws {
        var a = ChangeAuthor(signer: deviceKey(1)), b = ChangeAuthor(signer: deviceKey(2))
        var ra = Replica(scope: testScope), rb = Replica(scope: testScope)
        let add = try a.commit(edit(alice, .add(.emails, "ada@example.org")), to: &ra, wallMilliseconds: now)
        rb.take([add])
        let rm = try b.commit(edit(alice, .remove(.emails, "ada@example.org", observed: rb.liveAdds(of: "ada@example.org", in: .emails, contact: alice))), to: &rb, wallMilliseconds: now + 1)
        var rc = Replica(scope: testScope)
        rc.take([rm, add])
        #expect(rc.contact(alice)?.emails == [])
        #expect(rc.stateDigest() == rb.stateDigest())
    }

    /// A remove that names an add under another set or key removes nothing, whichever arrives
    /// first (found by reading the spec against the code: arriving first, it used to win).
    @Test func aRemoveNamingAnAddOfAnotherKeyRemovesNothingInEitherOrder() throws {
        var a = ChangeAuthor(signer: deviceKey(1)), b = ChangeAuthor(signer: deviceKey(2))
        var ra = Replica(scope: testScope), rb = Replica(scope: testScope)
        let add = try a.commit(edit(alice, .add(.emails, "ada@example.org")), to: &ra, wallMilliseconds: now)
        rb.take([add])
        let observed = rb.liveAdds(of: "ada@example.org", in: .emails, contact: alice)
        let rm = try b.commit(edit(alice, .remove(.emails, "someone@example.org", observed: observed)), to: &rb, wallMilliseconds: now + 1)
        var first = Replica(scope: testScope), second = Replica(scope: testScope)
        first.take([rm, add])
        second.take([add, rm])
        #expect(first.contact(alice)?.emails == ["ada@example.org"])
        #expect(first.stateDigest() == second.stateDigest())
    }

    @Test func phonesKeepRawInputAndLatestPayloadWins() {
        var p = Pair()
        p.onA(edit(alice, .add(.phones, "+33612345678", payload: "06 12 34 56 78")), at: now)
        p.onB(edit(alice, .add(.phones, "+33612345678", payload: "+33 6 12 34 56 78")), at: now + 1)
        p.sync()
        #expect(p.ra.contact(alice)?.values(.phones) == [SetValue(key: "+33612345678", payload: "+33 6 12 34 56 78")])
    }

    @Test func conversationLogGrowsAndIsOrdered() {
        var p = Pair()
        p.onA(edit(alice, .logConversation(ConversationEntry(day: 20_400, channel: .door, outcome: "supportive", note: "wants a yard sign"))), at: now)
        p.onB(edit(alice, .logConversation(ConversationEntry(day: 20_390, channel: .phone, outcome: "no answer", note: ""))), at: now + 1)
        p.sync()
        #expect(p.ra.contact(alice)?.log.map(\.day) == [20_390, 20_400])
    }

    @Test func deleteVersusConcurrentEdit() {
        // An edit stamped after the delete resurrects the contact with all its fields.
        var p = Pair()
        p.onA(edit(alice, .setField(.givenName, "Ada"), .add(.tags, "t")), at: now)
        p.sync()
        p.onA(edit(alice, .delete), at: now + 10)
        p.onB(edit(alice, .setField(.city, "London")), at: now + 20)
        p.sync()
        #expect(p.ra.contact(alice)?[.givenName] == "Ada")
        #expect(p.ra.contact(alice)?[.city] == "London")
        // An edit stamped before the delete is kept but hidden.
        var q = Pair()
        q.onA(edit(bob, .setField(.givenName, "Bob")), at: now)
        q.sync()
        q.onB(edit(bob, .setField(.city, "Leeds")), at: now + 5)
        q.onA(edit(bob, .delete), at: now + 10)
        q.sync()
        #expect(q.ra.contact(bob) == nil)
        #expect(q.rb.isDeleted(bob))
        // Re-adding later brings it back with everything, including the hidden edit.
        q.onA(edit(bob, .add(.tags, "back")), at: now + 30)
        q.sync()
        #expect(q.rb.contact(bob)?[.city] == "Leeds")
    }

    @Test func sameAsLinksReadAsOneAndUnlink() {
        var p = Pair()
        p.onA(edit(alice, .setField(.givenName, "Ada"), .add(.phones, "+15550001")), at: now)
        p.onB(edit(bob, .setField(.familyName, "Lovelace"), .add(.emails, "ada@example.org")), at: now + 1)
        p.onB(edit(carol, .setField(.givenName, "Augusta")), at: now + 2)
        p.sync()
        p.onA(edit(alice, .link(to: bob)), at: now + 3)
        p.onB(edit(carol, .link(to: bob)), at: now + 4)
        p.sync()
        let groups = p.ra.sameAsGroups()
        #expect(groups.count == 1)
        #expect(groups[alice] == [alice, bob, carol])
        #expect(p.rb.representative(of: carol) == alice)
        let merged = p.ra.mergedContact(bob)!
        #expect(merged.id == alice)
        #expect(merged[.givenName] == "Augusta") // latest write across the group
        #expect(merged[.familyName] == "Lovelace")
        #expect(merged.phones == ["+15550001"] && merged.emails == ["ada@example.org"])
        // Unlink carol (the link lives in carol's block, key bob).
        let obs = p.rb.liveLinkAdds(to: bob, contact: carol)
        p.onB(edit(carol, .unlink(from: bob, observed: obs)), at: now + 5)
        p.sync()
        #expect(p.ra.sameAsGroups()[alice] == [alice, bob])
        #expect(p.ra.representative(of: carol) == carol)
    }

    @Test func knowsEdgesWithStrength() {
        var p = Pair()
        let m1 = Ed25519.PrivateKey().publicKey, m2 = Ed25519.PrivateKey().publicKey
        p.onA(edit(alice, .knows(member: m1, strength: 3)), at: now)
        p.onB(edit(alice, .knows(member: m2, strength: 5)), at: now + 1)
        p.onB(edit(alice, .knows(member: m1, strength: 4)), at: now + 2)
        p.sync()
        let knows = Dictionary(uniqueKeysWithValues: p.ra.contact(alice)!.values(.knows).map { ($0.key, $0.payload) })
        #expect(knows == [m1.description: "4", m2.description: "5"])
    }
}

@Suite("Forget: erasure on every replica")
struct ForgetTests {
    @Test func forgetErasesEveryByteAndDropsLaterPayloads() throws {
        var p = Pair()
        let secretName = "Zebulon Quixotic-Marchbanks"
        p.onA(edit(alice, .setField(.givenName, secretName), .add(.phones, "+447700900123"), .add(.emails, "zebulon@example.net")), at: now)
        p.onA(edit(bob, .setField(.givenName, "Keep Me")), at: now + 1)
        p.onB(edit(alice, .logConversation(ConversationEntry(day: 1, channel: .door, outcome: "ok", note: "lives at 12 Quince Row"))), at: now + 2)
        p.sync()
        p.onB(edit(alice, .link(to: bob)), at: now + 3)
        // A change B makes concurrently with the forget, arriving at A after it.
        p.onB(edit(alice, .setField(.city, "Quimperlé-sur-Mer")), at: now + 4)
        p.onA(edit(alice, .forget), at: now + 5)
        p.sync()
        for r in [p.ra, p.rb] {
            #expect(r.contact(alice) == nil)
            #expect(r.forgotten == [alice])
            #expect(r.contact(bob)?[.givenName] == "Keep Me")
            let encoded = r.encodedChanges() + r.canonicalState()
            for s in [secretName, "+447700900123", "zebulon@example.net", "12 Quince Row", "Quimperlé-sur-Mer"] {
                #expect(!encoded.containsBytes(Array(s.utf8)), "\(s) still present")
            }
            // Erased changes still verify: signature and digest are unchanged.
            for c in r.allChanges() { try c.verify() }
        }
        // A fresh replica receiving the erased changes in any order converges too.
        var fresh = Replica(scope: testScope)
        fresh.take(p.ra.allChanges().reversed())
        #expect(fresh.stateDigest() == p.ra.stateDigest())
        // Anything arriving later about alice is accepted (chains continue) but its payload dropped.
        p.onB(edit(alice, .setField(.notes, "should vanish")), at: now + 10)
        p.sync()
        #expect(!p.ra.encodedChanges().containsBytes(Array("should vanish".utf8)))
        #expect(p.ra.contact(alice) == nil)
    }
}

@Suite("Erased and present variants of a change")
struct VariantTests {
    @Test func presentWinsUnlessForgottenHere() throws {
        var a = ChangeAuthor(signer: deviceKey(1))
        var source = Replica(scope: testScope)
        let c1 = try a.commit(edit(alice, .setField(.givenName, "Ada")) + edit(bob, .setField(.givenName, "Bob")), to: &source, wallMilliseconds: now)
        let erased = c1.erasing([alice])
        #expect(erased.hasErasedBlocks && erased.id == c1.id)
        try erased.verify()
        // Erased first, then the full variant: alice's block is restored and applied.
        var r1 = Replica(scope: testScope)
        #expect(try r1.receive(erased, nowMilliseconds: now) == .applied)
        #expect(r1.contact(alice) == nil && r1.contact(bob) != nil)
        #expect(try r1.receive(c1, nowMilliseconds: now) == .applied)
        #expect(r1.contact(alice)?[.givenName] == "Ada")
        #expect(try r1.receive(erased, nowMilliseconds: now) == .duplicate)
        var r2 = Replica(scope: testScope)
        r2.take([c1, erased])
        #expect(r1.stateDigest() == r2.stateDigest() && r1.encodedChanges() == r2.encodedChanges())
        // Where alice is forgotten, the full variant restores nothing.
        let forget = try a.commit(edit(alice, .forget), to: &source, wallMilliseconds: now + 1)
        var r3 = Replica(scope: testScope)
        r3.take([erased, forget])
        #expect(try r3.receive(c1, nowMilliseconds: now) == .duplicate)
        #expect(!r3.encodedChanges().containsBytes(Array("Ada".utf8)))
        // A tampered "full" variant is refused, not restored; one that adds nothing is ignored.
        var bad = c1.encoded
        let i = bad.lastIndex(of: UInt8(ascii: "A"))!
        bad[i] = UInt8(ascii: "E")
        var r4 = Replica(scope: testScope)
        r4.take([erased])
        #expect(throws: ChangeRejection(.tampered, "")) { try r4.receive(try Change(decoding: bad), nowMilliseconds: now) }
        #expect(r4.contact(alice) == nil)
        #expect(try r1.receive(try Change(decoding: bad), nowMilliseconds: now) == .duplicate)
    }
}

extension Array where Element == UInt8 {
    func containsBytes(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return false }
        let first = needle[0]
        var i = 0
        while i <= count - needle.count {
            if self[i] == first, self[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}

@Suite("Normalization")
struct NormalizationTests {
    @Test func phones() {
        #expect(Normalization.phone("+33 6 12 34 56 78") == "+33612345678")
        #expect(Normalization.phone("0033 6 12 34 56 78") == "+33612345678")
        #expect(Normalization.phone("06 12 34 56 78", region: PhoneRegion(code: "FR")) == "+33612345678")
        #expect(Normalization.phone("(555) 867-5309", region: PhoneRegion(code: "US")) == "+15558675309")
        #expect(Normalization.phone("1-555-867-5309", region: PhoneRegion(code: "US")) == "+15558675309")
        #expect(Normalization.phone("867-5309") == "8675309")
        #expect(Normalization.phone("call me") == nil)
    }

    @Test func emailsAndTags() {
        #expect(Normalization.email("  Ada@Example.ORG ") == "ada@example.org")
        #expect(Normalization.email("not an email") == nil)
        #expect(Normalization.email("a@b") == nil)
        #expect(Normalization.tag("  door   knock ") == "door knock")
        #expect(Normalization.tag("   ") == nil)
    }
}
