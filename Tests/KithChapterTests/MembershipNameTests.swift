@testable import KithChapter
import KithCRDT
import KithCrypto
import Testing

@Suite("Display names in the membership log")
struct MembershipNameTests {
    @Test func aMemberNamesThemselvesAndTheirDevices() throws {
        var log = try threeMemberChapter()
        let bob2 = bob.secondDevice()
        _ = try bob.append(.addDevice(bob2.certificate), to: &log)
        _ = try bob.append(.setName(subject: bob.key, name: "Bob Marley"), to: &log, at: t0 + 10)
        _ = try bob.append(.setName(subject: bob.device.publicKey, name: "Bob's laptop"), to: &log, at: t0 + 11)
        // From his second device, for that device: still Bob naming his own.
        _ = try log.append(.setName(subject: bob2.device.publicKey, name: "Bob's phone"), certificate: bob2.certificate, device: bob2.device, now: t0 + 12)
        #expect(log.state.names == [bob.key: "Bob Marley", bob.device.publicKey: "Bob's laptop", bob2.device.publicKey: "Bob's phone"])
        // The last applied wins; an empty name clears.
        _ = try bob.append(.setName(subject: bob.key, name: "Bob"), to: &log, at: t0 + 13)
        _ = try bob.append(.setName(subject: bob.device.publicKey, name: ""), to: &log, at: t0 + 14)
        #expect(log.state.names[bob.key] == "Bob" && log.state.names[bob.device.publicKey] == nil)
        // Every replica evaluates the same names.
        let copy = try MembershipLog(chapter: log.chapter, ops: log.allOps.map(\.encoded))
        #expect(copy.state.names == log.state.names)
    }

    /// The attack: someone other than the member (even an admin) names the member or one of
    /// the member's devices. Refused when authored, and ignored when a hostile node signs it
    /// anyway and sends it.
    @Test func aNameSetBySomeoneElseIsRefused() throws {
        var log = try threeMemberChapter()
        _ = try bob.append(.setName(subject: bob.key, name: "Bob"), to: &log, at: t0 + 10)
        for (attacker, subject) in [(alice, bob.key), (alice, bob.device.publicKey), (carol, bob.key), (carol, bob.device.publicKey)] {
            #expect(throws: MembershipError.self) { _ = try attacker.append(.setName(subject: subject, name: "Bozo"), to: &log, at: t0 + 20) }
            // Signed directly, bypassing the author's own check, and received by an honest replica.
            let forged = MembershipOp.make(chapter: log.chapter, parents: Array(log.heads), timestamp: t0 + 30, certificate: attacker.certificate,
                                           device: attacker.device, action: .setName(subject: subject, name: "Bozo"))
            var honest = log
            _ = try honest.receive([forged])
            #expect(honest.state.names[bob.key] == "Bob" && honest.state.names[bob.device.publicKey] == nil)
            #expect(honest.state.ignored[forged.id]?.contains("may name only themselves and their own devices") == true)
        }
        // A stranger's op is refused too.
        let stranger = MembershipOp.make(chapter: log.chapter, parents: Array(log.heads), timestamp: t0 + 40, certificate: mallory.certificate,
                                         device: mallory.device, action: .setName(subject: bob.key, name: "Bozo"))
        var honest = log
        _ = try? honest.receive([stranger])
        #expect(honest.state.names[bob.key] == "Bob")
    }

    @Test func malformedNamesAreRefused() throws {
        let log = try threeMemberChapter()
        for bad in [String(repeating: "x", count: 65), "tab\there", " padded", "new\nline"] {
            let bytes = MembershipOp.signed(chapter: log.chapter, parents: Array(log.heads), timestamp: t0 + 10, certificate: bob.certificate,
                                            device: bob.device, action: .setName(subject: bob.key, name: bad))
            #expect(throws: MembershipError.self) { _ = try MembershipOp(decoding: bytes) }
        }
    }

    /// Protocol/chapters.md "set name" golden vectors: the action tag and body.
    @Test func goldenVectors() throws {
        let log = try threeMemberChapter()
        for (name, hex) in [("Ada", "0e8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c03416461"),
                            ("Zoë", "0e8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c045a6fc3ab")] {
            let op = MembershipOp.make(chapter: log.chapter, parents: Array(log.heads), timestamp: t0 + 10, certificate: alice.certificate,
                                       device: alice.device, action: .setName(subject: alice.key, name: name))
            let body = Hex.decode(hex)!
            #expect(Array(op.encoded[(op.encoded.count - 64 - body.count)..<(op.encoded.count - 64)]) == body)
            #expect(try MembershipOp(decoding: op.encoded).action == .setName(subject: alice.key, name: name))
        }
    }
}
