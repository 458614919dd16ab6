@testable import KithChapter
import KithCRDT
import KithCrypto
import KithSampleData
import Testing

/// The log applies an op that extends its heads to the state as it stands, and re-evaluates
/// the whole log only for an op out of order or concurrent: both must give exactly the state a
/// full evaluation from scratch gives (chapters.md §3).
@Suite("Incremental membership evaluation")
struct IncrementalEvaluationTests {
    /// A seeded random history: several authors (some without the rights they use) signing on
    /// partial views, so it has concurrent branches, removals racing other ops and ignored ops.
    func history(_ rng: inout SplitMix64) throws -> (base: MembershipLog, ops: [MembershipOp]) {
        let base = try threeMemberChapter()
        var replicas = [base, base, base]
        let people = [alice, bob, carol]
        var all: [MembershipOp] = []
        for step in 0..<16 {
            let which = Int(rng.next() % 3)
            let p = people[Int(rng.next() % 3)]
            let action: MembershipAction
            switch rng.next() % 7 {
            case 0, 1: action = .addMember(Person(UInt8(20 + step)).certificate, admin: rng.next() % 2 == 0, invite: nil)
            case 2: action = .removeMember(people[Int(rng.next() % 3)].key)
            case 3: action = .setAdmin(people[Int(rng.next() % 3)].key, rng.next() % 2 == 0)
            case 4: action = .epoch(check: EpochKeys.check(SymmetricKey()), envelopes: EpochKeys.seal(SymmetricKey(), to: replicas[which].state.allDevices))
            case 5: action = .revokeDevice(people[Int(rng.next() % 3)].device.publicKey)
            default: action = .invite(key: Person(30).device.publicKey, expiresAt: t0 + 1000, uses: 1, approval: false)
            }
            let op = MembershipOp.make(chapter: replicas[which].chapter, parents: Array(replicas[which].heads),
                                       timestamp: t0 + 10 + UInt64(step), certificate: p.certificate, device: p.device, action: action)
            try replicas[which].receive([op])
            all.append(op)
            if rng.next() % 2 == 0 { // runs of ops on one replica's heads: the incremental path
                let other = Int(rng.next() % 3)
                try replicas[other].receive(replicas[which].allOps)
            }
        }
        return (base, all)
    }

    @Test func anyOrderBatchingAndDuplicationEqualsAFullEvaluation() throws {
        var rng = SplitMix64(seed: 0x1C2E)
        var incrementalSteps = 0, fullSteps = 0
        for round in 0..<25 {
            let (base, ops) = try history(&rng)
            var complete = base
            try complete.receive(ops)
            let fromScratch = ChapterState.evaluate(complete.ops)
            #expect(complete.state == fromScratch, "round \(round): in order")
            for trial in 0..<6 {
                var delivery = ops + ops.prefix(Int(rng.next() % 5))
                if trial > 0 { delivery.shuffle(using: &rng) } // trial 0: causal order, one op at a time
                var log = base
                var i = 0
                while i < delivery.count {
                    let n = trial == 0 ? 1 : 1 + Int(rng.next() % 4)
                    try log.receive(Array(delivery[i..<min(i + n, delivery.count)]))
                    i += n
                    // After every arrival: the state equals the full evaluation of what the log holds.
                    #expect(log.state == ChapterState.evaluate(log.ops), "round \(round) trial \(trial) after \(i) ops")
                }
                #expect(log.state == fromScratch, "round \(round) trial \(trial)")
                #expect(log.pendingCount == 0)
                incrementalSteps += delivery.count - log.fullEvaluations
                fullSteps += log.fullEvaluations
            }
        }
        // Both paths ran (the property covers the incremental one, not only re-evaluations).
        #expect(incrementalSteps > 0 && fullSteps > 0)
    }

    @Test func aChainInOrderNeverReEvaluatesTheLog() throws {
        var log = try MembershipLog.create(name: "Ward 9", certificate: alice.certificate, device: alice.device, now: t0)
        var replica = log
        for i in 0..<60 {
            let joiner = Person(UInt8(40 + i))
            var made = [try alice.append(.addMember(joiner.certificate, admin: false, invite: nil), to: &log, at: t0 + UInt64(i))]
            made += try log.shareMissingKeys(certificate: alice.certificate, device: alice.device, agreement: alice.agreement, now: t0 + UInt64(i))
            _ = try replica.receive(encoded: made.map(\.encoded))
        }
        #expect(log.fullEvaluations == 0 && replica.fullEvaluations == 0)
        #expect(replica.state == ChapterState.evaluate(replica.ops))
        #expect(replica.state.members.count == 61)
    }

    @Test func heldOpsAreSkippedByHashAndForgeriesStillRefused() throws {
        var log = try threeMemberChapter()
        let before = log.count
        // The whole log again: nothing new, nothing refused.
        let again = try log.receive(encoded: log.allOps.map(\.encoded))
        #expect(again.added.isEmpty && again.refused.isEmpty && log.count == before)
        // A new op by a device whose certificate the log checked already, then the same op with
        // its signature broken, and one whose certificate's member signature is broken: the
        // certificate cache must not let either through.
        let op = MembershipOp.make(chapter: log.chapter, parents: Array(log.heads), timestamp: t0 + 5, certificate: alice.certificate,
                                   device: alice.device, action: .setName(subject: alice.key, name: "Alice"))
        var badSignature = op.encoded
        badSignature[badSignature.count - 1] ^= 1
        var badCertificate = op.encoded
        let certStart: Int = 1 + 16 + 1 + 32 * op.parents.count + 8
        badCertificate[certStart + DeviceCertificate.encodedLength - 1] ^= 1
        let result = try log.receive(encoded: [badSignature, badCertificate, op.encoded])
        #expect(result.added.map(\.id) == [op.id])
        #expect(result.refused.count == 2)
        #expect(result.refused.allSatisfy { $0.kind == .badSignature })
    }

    @Test func anExpiredCertificateIsRefusedEvenWhenItsSignatureWasCheckedBefore() throws {
        let member = Ed25519.PrivateKey(), device = Ed25519.PrivateKey()
        let cert = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: X25519.PrivateKey().publicKey,
                                           createdAt: 1_700_000_000, expiresAt: 1_800_000_100)
        var verified = Set<[UInt8]>()
        let early = MembershipOp.make(chapter: try threeMemberChapter().chapter, parents: [OpID(unchecked: [UInt8](repeating: 1, count: 32))],
                                      timestamp: 1_800_000_000_000, certificate: cert, device: device, action: .leave)
        _ = try MembershipOp(decoding: early.encoded, verifiedCertificates: &verified)
        #expect(verified.contains(cert.encoded))
        let late = MembershipOp.signed(chapter: early.chapter, parents: early.parents, timestamp: 1_800_000_200_000,
                                       certificate: cert, device: device, action: .leave)
        #expect(throws: MembershipError.self) { try MembershipOp(decoding: late, verifiedCertificates: &verified) }
    }
}

@Suite("Invite contacts")
struct InviteContactTests {
    @Test func theHintNamesTheIssuerThenOtherAdminsAndStaysWithinItsLimit() throws {
        let others = (0..<6).map { ChapterInvite.Contact(device: Person(UInt8(60 + $0)).device.publicKey, address: "10.0.0.\($0):7400") }
        let hint = ChapterInvite.hint(address: "192.168.1.5:7400", others: others)
        #expect(hint.utf8.count <= ChapterInvite.maxHintLength)
        let invite = ChapterInvite(chapter: try threeMemberChapter().chapter, seed: [UInt8](repeating: 7, count: 32),
                                   admin: alice.device.publicKey, expiresAt: 4_000_000_000, hint: hint)
        let parsed = try ChapterInvite(text: invite.text, now: 1_800_000_000)
        let contacts = parsed.contacts
        #expect(contacts.first == ChapterInvite.Contact(device: alice.device.publicKey, address: "192.168.1.5:7400"))
        #expect(contacts.count > 1 && contacts.count < 7) // as many others as fit in 255 bytes
        #expect(Array(contacts.dropFirst()) == Array(others.prefix(contacts.count - 1)))
        // A plain single-address hint reads as before: the issuer at that address.
        let plain = ChapterInvite(chapter: invite.chapter, seed: invite.seed, admin: alice.device.publicKey, expiresAt: 4_000_000_000, hint: "h:1")
        #expect(plain.contacts == [ChapterInvite.Contact(device: alice.device.publicKey, address: "h:1")])
    }

    @Test func damagedEntriesAreLeftOutAndABareAddressAfterTheFirstIsNotTheIssuers() {
        let bob64 = Base64URL.encode(bob.device.publicKey.bytes)
        let invite = ChapterInvite(chapter: try! ChapterID(bytes: [UInt8](repeating: 3, count: 16)), seed: [UInt8](repeating: 7, count: 32),
                                   admin: alice.device.publicKey, expiresAt: 4_000_000_000,
                                   hint: "a:1 notbase64!@b:2 \(bob64)@c:3 d:4 \(bob64)@e:5")
        #expect(invite.contacts == [ChapterInvite.Contact(device: alice.device.publicKey, address: "a:1"),
                                    ChapterInvite.Contact(device: bob.device.publicKey, address: "c:3")])
    }
}
