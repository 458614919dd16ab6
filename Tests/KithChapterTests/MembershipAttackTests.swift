@testable import KithChapter
import KithCRDT
import KithCrypto
import KithSampleData
import Testing

/// The attacks of the outside review (issue 12), each performed against the log with the
/// attacker's real keys. Every one of them succeeded on f160b9b.
/// The three-member chapter with an invite of three uses that Dave has joined with.
func chapterWithDaveInvited() throws -> (MembershipLog, ChapterInvite, [UInt8]) {
    var log = try threeMemberChapter()
    let now = t0 / 1000
    let (_, invite) = try log.openInvite(expiresAt: now + 3600, uses: 3, hint: "", certificate: alice.certificate, device: alice.device, now: now)
    let hs = [UInt8](repeating: 3, count: 64)
    _ = try log.admit(joiner: dave.certificate, proof: invite.proof(handshakeHash: hs, certificate: dave.certificate), handshakeHash: hs,
                      certificate: alice.certificate, device: alice.device, agreement: alice.agreement, nowMilliseconds: t0 + 10)
    return (log, invite, hs)
}

@Suite("Membership attacks")
struct MembershipAttackTests {
    /// A device whose certificate Bob never signed: its own key pair and 64 random bytes.
    static let shadow = Person(42)

    static func forgedCertificate(member: Ed25519.PublicKey, for p: Person) throws -> DeviceCertificate {
        var b: [UInt8] = [1]
        b += member.bytes
        b += p.device.publicKey.bytes
        b += p.agreement.publicKey.bytes
        b.appendBigEndian(UInt64(1_700_000_000))
        b.appendBigEndian(UInt64(0))
        b += SecureRandom.bytes(64)
        return try DeviceCertificate(encoded: b)
    }

    func heads(_ log: MembershipLog) -> [OpID] { Array(log.heads) }

    /// A sealed change of one contact in the chapter scope, as the author's daemon would write it.
    func write(_ name: String, as author: Person, log: MembershipLog, at t: UInt64) throws -> Change {
        let epoch = log.state.currentEpoch!
        let key = try #require(EpochKeys.open(epoch, device: author.device.publicKey, agreement: author.agreement))
        var replica = Replica(scope: log.chapter.contentScope, mode: .encrypted, epochKeys: author.keys(log))
        var a = ChangeAuthor(signer: author.device)
        return try a.commit([ContactEdit(contact: ContactID(high: 7, low: UInt64(t)), ops: [.setField(.givenName, name)])],
                            to: &replica, wallMilliseconds: t, sealer: BlockSealer(epoch: epoch.ref, key: key))
    }

    /// Bytes of `change`'s blocks that `p`'s real keys decrypt.
    func bytesReadable(_ change: Change, by p: Person, log: MembershipLog) -> Int {
        change.plaintextBlocks(keys: p.keys(log)).compactMap { $0?.count }.reduce(0, +)
    }

    // MARK: 1. Shadow device

    @Test func aStolenSecondaryDeviceCannotListAShadowDevice() throws {
        var log = try threeMemberChapter()
        let bob2 = bob.secondDevice()
        _ = try bob.append(.addDevice(bob2.certificate), to: &log)
        _ = try log.shareMissingKeys(certificate: bob.certificate, device: bob.device, agreement: bob.agreement, now: t0 + 5)
        #expect(!bob2.keys(log).isEmpty)
        // The thief holds bob2's device key, not Bob's member key: the certificate it embeds for
        // its own key pair carries a random signature.
        let forged = try Self.forgedCertificate(member: bob.key, for: Self.shadow)
        let bytes = MembershipOp.signed(chapter: log.chapter, parents: heads(log), timestamp: t0 + 10, certificate: bob2.certificate,
                                        device: bob2.device, action: .addDevice(forged))
        #expect { _ = try MembershipOp(decoding: bytes) } throws: { ($0 as? MembershipError)?.kind == .badSignature }
        // The same through the log as a peer would deliver it: refused before it counts.
        #expect(throws: MembershipError.self) { _ = try MembershipLog(chapter: log.chapter, ops: log.allOps.map(\.encoded) + [bytes]) }
        #expect(log.state.member(ofDevice: Self.shadow.device.publicKey) == nil)

        // Bob revokes the stolen device; the next epoch is sealed to nobody the thief controls.
        _ = try bob.append(.revokeDeviceByMember(bob.revocation(of: bob2)), to: &log, at: t0 + 20)
        #expect(log.state.needsNewEpoch)
        _ = try log.startEpoch(certificate: alice.certificate, device: alice.device, now: t0 + 30)
        let after = try write("Written after the revocation", as: alice, log: log, at: t0 + 40)
        #expect(bytesReadable(after, by: bob2, log: log) == 0)
        #expect(bytesReadable(after, by: Self.shadow, log: log) == 0)
        #expect(bytesReadable(after, by: bob, log: log) > 0)
        #expect(Self.shadow.keys(log).isEmpty)
    }

    @Test func revokingADeviceRevokesTheDevicesItListed() throws {
        var log = try threeMemberChapter()
        let bob2 = bob.secondDevice()
        let bob3 = Person(member: bob.member, deviceSeed: 210)
        _ = try bob.append(.addDevice(bob2.certificate), to: &log)
        // The stolen bob2 lists another of Bob's devices (a genuine certificate it copied).
        _ = try bob2.append(.addDevice(bob3.certificate), to: &log)
        #expect(log.state.member(ofDevice: bob3.device.publicKey) == bob.key)
        _ = try bob.append(.revokeDeviceByMember(bob.revocation(of: bob2)), to: &log)
        #expect(log.state.member(ofDevice: bob2.device.publicKey) == nil)
        #expect(log.state.member(ofDevice: bob3.device.publicKey) == nil, "what the revoked device listed goes with it")
        #expect(log.state.revoked.contains(bob2.device.publicKey))
        // A revoked device is never listed again, even causally after, even by an admin.
        #expect(throws: MembershipError.self) { _ = try alice.append(.addDevice(bob2.certificate), to: &log) }
        // Bob may list the genuine device again from a trusted one.
        _ = try bob.append(.addDevice(bob3.certificate), to: &log)
        #expect(log.state.member(ofDevice: bob3.device.publicKey) == bob.key)
    }

    @Test func aRevocationOfAnUnlistedDeviceBarsItFromTheChapter() throws {
        var log = try threeMemberChapter()
        let bob2 = bob.secondDevice()
        // A plain member cannot ban a device that never acted for them; an admin can.
        #expect(throws: MembershipError.self) { _ = try carol.append(.revokeDevice(bob2.device.publicKey), to: &log) }
        _ = try alice.append(.revokeDevice(bob2.device.publicKey), to: &log)
        #expect(log.state.revoked.contains(bob2.device.publicKey))
        #expect(throws: MembershipError.self) { _ = try bob.append(.addDevice(bob2.certificate), to: &log) }
        #expect(log.state.authorizes(changeBy: bob2.device.publicKey, stampedAt: t0) != .allowed)
    }

    @Test func certificatesAreCheckedNoEarlierThanTheOpsCausalPast() throws {
        var log = try threeMemberChapter()
        // Dave's device certificate expires at t0 + 100 s.
        let expiring = DeviceCertificate.issue(member: dave.member, deviceSigningKey: dave.device.publicKey,
                                               deviceAgreementKey: dave.agreement.publicKey, createdAt: 1_700_000_000,
                                               expiresAt: t0 / 1000 + 100)
        _ = try alice.append(.addMember(expiring, admin: false, invite: nil), to: &log, at: t0 + 1_000)
        _ = try alice.append(.setAdmin(carol.key, true), to: &log, at: t0 + 200_000)
        // After expiry, Dave's device backdates an op to before its expiry, on top of the heads.
        let backdated = MembershipOp.signed(chapter: log.chapter, parents: heads(log), timestamp: t0 + 50_000, certificate: expiring,
                                            device: dave.device, action: .leave)
        let op = try MembershipOp(decoding: backdated) // valid at its own timestamp…
        try log.receive([op])
        #expect(log.state.ignored[op.id]?.contains("before its parents") == true) // …but not after what it builds on
        #expect(log.state.isMember(dave.key))
        // An embedded certificate must be valid at the op's time too.
        let added = MembershipOp.signed(chapter: log.chapter, parents: heads(log), timestamp: t0 + 300_000, certificate: alice.certificate,
                                        device: alice.device, action: .addDevice(expiring))
        #expect { _ = try MembershipOp(decoding: added) } throws: { ($0 as? MembershipError)?.kind == .badSignature }
    }

    // MARK: 2. A removed member and the invite they already used

    @Test func aRemovedMemberCannotRejoinWithAnOldInvite() throws {
        var (log, invite, hs) = try chapterWithDaveInvited()
        let now = t0 / 1000
        _ = try alice.append(.removeMember(dave.key), to: &log, at: t0 + 20)
        _ = try log.startEpoch(certificate: alice.certificate, device: alice.device, now: t0 + 20)
        // The invite still has two uses; Dave's real keys and a fresh proof are refused.
        #expect {
            _ = try log.verifyJoin(joiner: dave.certificate, proof: invite.proof(handshakeHash: hs, certificate: dave.certificate),
                                   handshakeHash: hs, nowMilliseconds: t0 + 30)
        } throws: { ($0 as? MembershipError)?.detail.contains("removed") == true }
        // Even an admin's daemon that skipped the check cannot make the log admit him with it.
        let readd = MembershipOp.signed(chapter: log.chapter, parents: heads(log), timestamp: t0 + 40, certificate: alice.certificate,
                                        device: alice.device, action: .addMember(dave.certificate, admin: false, invite: log.state.invites.keys.first!))
        try log.receive([try MembershipOp(decoding: readd)])
        #expect(!log.state.isMember(dave.key))
        #expect(dave.keys(log)[log.state.currentEpoch!.ref] == nil)
        // Another person can still use the open invite (closing it is the admin's call)…
        let erin = Person(5)
        _ = try log.verifyJoin(joiner: erin.certificate, proof: invite.proof(handshakeHash: hs, certificate: erin.certificate),
                               handshakeHash: hs, nowMilliseconds: t0 + 50)
        // …and re-admitting Dave takes a new invite, made after the removal.
        let (_, again) = try log.openInvite(expiresAt: now + 3600, uses: 1, hint: "", certificate: alice.certificate, device: alice.device, now: now + 1)
        _ = try log.admit(joiner: dave.certificate, proof: again.proof(handshakeHash: hs, certificate: dave.certificate), handshakeHash: hs,
                          certificate: alice.certificate, device: alice.device, agreement: alice.agreement, nowMilliseconds: t0 + 2_000)
        #expect(log.state.isMember(dave.key))
    }

    @Test func aClosedInviteAdmitsNobody() throws {
        var log = try threeMemberChapter()
        let now = t0 / 1000
        let (op, invite) = try log.openInvite(expiresAt: now + 3600, uses: 5, hint: "", certificate: alice.certificate, device: alice.device, now: now)
        #expect(log.state.openInvites(nowMilliseconds: t0).map(\.id) == [op.id])
        // Only an admin closes invites.
        #expect(throws: MembershipError.self) { _ = try log.closeInvite(op.id, certificate: bob.certificate, device: bob.device, now: t0 + 1) }
        _ = try log.closeInvite(op.id, certificate: alice.certificate, device: alice.device, now: t0 + 1)
        #expect(log.state.openInvites(nowMilliseconds: t0).isEmpty)
        let hs = [UInt8](repeating: 4, count: 64)
        #expect {
            _ = try log.verifyJoin(joiner: dave.certificate, proof: invite.proof(handshakeHash: hs, certificate: dave.certificate),
                                   handshakeHash: hs, nowMilliseconds: t0 + 10)
        } throws: { ($0 as? MembershipError)?.detail.contains("closed") == true }
        let cited = MembershipOp.signed(chapter: log.chapter, parents: heads(log), timestamp: t0 + 20, certificate: alice.certificate,
                                        device: alice.device, action: .addMember(dave.certificate, admin: false, invite: op.id))
        try log.receive([try MembershipOp(decoding: cited)])
        #expect(!log.state.isMember(dave.key))
        // The rebuilt log agrees.
        #expect(try MembershipLog(chapter: log.chapter, ops: log.allOps.map(\.encoded)).state == log.state)
    }

    // MARK: 3. An epoch concurrent with a removal

    @Test func anEpochRacingARemovalNeverLeavesTheRemovedDeviceReading() throws {
        var base = try threeMemberChapter()
        _ = try alice.append(.setAdmin(bob.key, true), to: &base)
        // Alice removes Carol and starts a clean epoch; Bob, who has not heard, starts an epoch
        // sealed to everyone he knows — Carol included — and shares a key with her as well.
        var aliceSide = base, bobSide = base
        let remove = try alice.append(.removeMember(carol.key), to: &aliceSide, at: t0 + 100)
        let clean = try aliceSide.startEpoch(certificate: alice.certificate, device: alice.device, now: t0 + 100)
        let racing = try bobSide.startEpoch(certificate: bob.certificate, device: bob.device, now: t0 + 100)
        let all = [remove, clean, racing]
        var states: [ChapterState] = []
        for order in permutations(all) {
            var log = base
            for op in order { try log.receive([op]) }
            states.append(log.state)
            // Whoever writes next on this replica: if the current epoch reached Carol, a new one first.
            #expect(log.needsNewEpoch(device: bob.device.publicKey, agreement: bob.agreement) == log.state.isExposed(log.state.currentEpoch!))
            if log.state.needsNewEpoch { _ = try log.startEpoch(certificate: bob.certificate, device: bob.device, now: t0 + 200) }
            #expect(!log.state.needsNewEpoch)
            let after = try write("After the removal", as: bob, log: log, at: t0 + 300)
            #expect(bytesReadable(after, by: carol, log: log) == 0, "Carol's real keys open nothing written after her removal")
            #expect(bytesReadable(after, by: alice, log: log) > 0)
        }
        #expect(Set(states.map { $0.currentEpoch!.id }).count == 1, "every arrival order evaluates the same")
        #expect(states.allSatisfy { $0 == states[0] })
        #expect(states[0].exposure(of: racing.id).contains(carol.device.publicKey))
    }

    @Test func aKeyShareRacingARemovalMakesTheEpochUnclean() throws {
        var base = try threeMemberChapter()
        var aliceSide = base, bobSide = base
        let remove = try alice.append(.removeMember(carol.key), to: &aliceSide, at: t0 + 100)
        // Bob re-seals the current key to Carol's device (as a share would) concurrently.
        let epoch = base.state.currentEpoch!
        let key = try #require(EpochKeys.open(epoch, device: bob.device.publicKey, agreement: bob.agreement))
        let share = try bob.append(.shareKey(epoch: epoch.id, envelopes: EpochKeys.seal(key, to: [carol.certificate])), to: &bobSide, at: t0 + 100)
        for order in [[remove, share], [share, remove]] {
            var log = base
            for op in order { try log.receive([op]) }
            #expect(log.state.needsNewEpoch)
        }
        try base.receive([remove, share])
        _ = try base.startEpoch(certificate: bob.certificate, device: bob.device, now: t0 + 200)
        #expect(bytesReadable(try write("later", as: bob, log: base, at: t0 + 300), by: carol, log: base) == 0)
    }

    // MARK: 4. One member keeping everyone else from writing

    @Test func anEpochSealedOnlyToItsAuthorIsIgnored() throws {
        var log = try threeMemberChapter()
        let before = log.state.currentEpoch!.id
        let key = SymmetricKey()
        let selfish = MembershipOp.signed(chapter: log.chapter, parents: heads(log), timestamp: t0 + 10, certificate: carol.certificate,
                                          device: carol.device,
                                          action: .epoch(check: EpochKeys.check(key), envelopes: EpochKeys.seal(key, to: [carol.certificate])))
        let op = try MembershipOp(decoding: selfish)
        try log.receive([op])
        #expect(log.state.ignored[op.id]?.contains("without an envelope") == true)
        #expect(log.state.currentEpoch!.id == before)
        #expect(!log.needsNewEpoch(device: bob.device.publicKey, agreement: bob.agreement))
        _ = try write("Bob still writes", as: bob, log: log, at: t0 + 20)
    }

    @Test func anEpochWithGarbageForOthersMakesThemStartANewOne() throws {
        var log = try threeMemberChapter()
        let key = SymmetricKey()
        var envelopes = EpochKeys.seal(key, to: log.state.allDevices)
        // Envelopes for Alice and Bob are sealed boxes of a different key: nobody else can tell.
        let other = SymmetricKey()
        let devices = log.state.allDevices
        envelopes = envelopes.map { e in
            e.device == carol.device.publicKey ? e : EpochKeys.seal(other, to: devices.filter { $0.deviceSigningKey == e.device })[0]
        }
        _ = try carol.append(.epoch(check: EpochKeys.check(key), envelopes: envelopes), to: &log, at: t0 + 10)
        #expect(!log.state.needsNewEpoch)
        #expect(log.needsNewEpoch(device: bob.device.publicKey, agreement: bob.agreement))
        _ = try log.startEpoch(certificate: bob.certificate, device: bob.device, now: t0 + 20)
        #expect(!log.needsNewEpoch(device: alice.device.publicKey, agreement: alice.agreement))
    }

    @Test func anEpochConcurrentWithAnAddIsKept() throws {
        var base = try threeMemberChapter()
        var aliceSide = base, bobSide = base
        let add = try alice.append(.addMember(dave.certificate, admin: false, invite: nil), to: &aliceSide, at: t0 + 100)
        let epoch = try bobSide.startEpoch(certificate: bob.certificate, device: bob.device, now: t0 + 100)
        try base.receive([add, epoch])
        #expect(base.state.ignored[epoch.id] == nil, "Bob could not know of Dave: his epoch stands")
        #expect(base.state.epochs.contains { $0.id == epoch.id })
    }

    // MARK: 5. Chapter changes by devices the log does not list

    @Test func onlyListedDevicesWriteAndRetiredOnesOnlyBeforeTheyLeft() throws {
        var log = try threeMemberChapter()
        #expect(log.state.authorizes(changeBy: bob.device.publicKey, stampedAt: t0) == .allowed)
        #expect(log.state.authorizes(changeBy: mallory.device.publicKey, stampedAt: t0) == .unknown)
        _ = try alice.append(.removeMember(bob.key), to: &log, at: t0 + 5_000)
        #expect(log.state.authorizes(changeBy: bob.device.publicKey, stampedAt: t0 + 4_000) == .allowed)
        guard case .refused = log.state.authorizes(changeBy: bob.device.publicKey, stampedAt: t0 + 6_000) else {
            Issue.record("a removed device's change stamped after the removal must be refused")
            return
        }
    }

    // MARK: 10. A flood of ops

    @Test func oneMemberCannotFillTheLog() throws {
        var log = try threeMemberChapter()
        var made: [MembershipOp] = []
        var parents = heads(log)
        for i in 0..<(MembershipLog.maxOpsPerMember + 10) {
            let op = try MembershipOp(decoding: MembershipOp.signed(chapter: log.chapter, parents: parents, timestamp: t0 + 10 + UInt64(i),
                                                                    certificate: bob.certificate, device: bob.device, action: .setAdmin(bob.key, true)))
            made.append(op)
            parents = [op.id]
        }
        // Bob is no admin: his ops are ignored, but they would be stored — until his quota is used up.
        try log.receive(made)
        #expect(log.refusedOverQuota > 0)
        #expect(log.count <= 4 + MembershipLog.maxOpsPerMember + 2)
        _ = try alice.append(.addMember(dave.certificate, admin: false, invite: nil), to: &log)
        #expect(log.state.isMember(dave.key))
    }

    @Test func incrementalArrivalEvaluatesLikeAFullRebuild() throws {
        var rng = SplitMix64(seed: 99)
        for _ in 0..<20 {
            var log = try threeMemberChapter()
            var sides = [log, log, log]
            let people = [alice, bob, carol]
            var ops: [MembershipOp] = []
            for step in 0..<30 {
                let s = Int(rng.next() % 3)
                let p = people[s]
                let actions: [MembershipAction] = [.removeMember(people[Int(rng.next() % 3)].key), .setAdmin(people[Int(rng.next() % 3)].key, rng.next() % 2 == 0),
                                                   .addMember(people[Int(rng.next() % 3)].certificate, admin: false, invite: nil), .leave]
                if let op = try? p.append(actions[Int(rng.next() % 4)], to: &sides[s], at: t0 + UInt64(step)) { ops.append(op) }
                if let e = try? sides[s].startEpoch(certificate: p.certificate, device: p.device, now: t0 + UInt64(step)) { ops.append(e) }
                if rng.next() % 3 == 0 { for i in 0..<3 { try sides[i].receive(ops) } }
            }
            for op in ops { try log.receive([op]) }
            let rebuilt = try MembershipLog(chapter: log.chapter, ops: log.allOps.reversed().map(\.encoded))
            #expect(rebuilt.state == log.state)
        }
    }
}

func permutations<T>(_ items: [T]) -> [[T]] {
    guard items.count > 1 else { return [items] }
    return items.indices.flatMap { i -> [[T]] in
        var rest = items
        let x = rest.remove(at: i)
        return permutations(rest).map { [x] + $0 }
    }
}

/// The attacks an independent review found against the first round of fixes, kept as
/// regression tests.
@Suite("Membership attacks, second round")
struct MembershipReviewTests {
    func heads(_ log: MembershipLog) -> [OpID] { Array(log.heads).sorted() }

    /// Signs `action` on `parents` until its id sorts before `below` (an attacker grinding ids).
    func ground(_ p: Person, _ action: MembershipAction, chapter: ChapterID, parents: [OpID], from t: UInt64, below: OpID) throws -> MembershipOp {
        for i in 0..<10_000 as Range<UInt64> {
            let op = try MembershipOp(decoding: MembershipOp.signed(chapter: chapter, parents: parents, timestamp: t + i,
                                                                    certificate: p.certificate, device: p.device, action: action))
            if op.id < below { return op }
        }
        throw MembershipError(.malformed, "no luck")
    }

    @Test func leavingConcurrentlyDoesNotDodgeARemoval() throws {
        var (log, invite, hs) = try chapterWithDaveInvited()
        let remove = try alice.append(.removeMember(dave.key), to: &log, at: t0 + 20)
        let leave = try ground(dave, .leave, chapter: log.chapter, parents: remove.parents, from: remove.timestamp, below: remove.id)
        try log.receive([leave])
        #expect(log.state.ignored[remove.id] == nil)
        #expect(log.state.removedAt[dave.key] != nil)
        #expect(throws: MembershipError.self) {
            _ = try log.verifyJoin(joiner: dave.certificate, proof: invite.proof(handshakeHash: hs, certificate: dave.certificate),
                                   handshakeHash: hs, nowMilliseconds: t0 + 30_000)
        }
    }

    /// A removed admin who reaches a node that has not seen their removal can make a counter-
    /// removal that sorts first and wins (SECURITY.md says so): what is guaranteed is that every
    /// replica resolves it the same way, and exactly one of the two stays.
    @Test func aMutualRemovalResolvesTheSameWayInEveryOrder() throws {
        var base = try threeMemberChapter()
        _ = try alice.append(.setAdmin(bob.key, true), to: &base)
        for counterAction in [MembershipAction.removeMember(alice.key), .setAdmin(alice.key, false)] {
            var log = base
            let remove = try alice.append(.removeMember(bob.key), to: &log, at: t0 + 100)
            let counter = try ground(bob, counterAction, chapter: log.chapter, parents: remove.parents, from: remove.timestamp, below: remove.id)
            var states: [ChapterState] = []
            for order in [[remove, counter], [counter, remove]] {
                var l = base
                for op in order { try l.receive([op]) }
                states.append(l.state)
                #expect(l.state.isAdmin(alice.key) != l.state.isAdmin(bob.key))
            }
            #expect(states[0] == states[1])
        }
    }

    @Test func revokingTheDeviceThatListedTheRevokerKeepsTheRevoker() throws {
        let bobPhone = bob.secondDevice()
        var log = try MembershipLog.create(name: "Ward 5", certificate: bobPhone.certificate, device: bobPhone.device, now: t0)
        _ = try bobPhone.append(.addDevice(bob.certificate), to: &log)
        _ = try bobPhone.append(.addMember(carol.certificate, admin: false, invite: nil), to: &log)
        _ = try log.shareMissingKeys(certificate: bobPhone.certificate, device: bobPhone.device, agreement: bobPhone.agreement, now: t0 + 1)
        _ = try bob.append(.revokeDeviceByMember(bob.revocation(of: bobPhone)), to: &log, at: t0 + 10)
        #expect(log.state.isCurrentDevice(bob.device.publicKey))
        #expect(!log.state.isCurrentDevice(bobPhone.device.publicKey))
        _ = try log.startEpoch(certificate: bob.certificate, device: bob.device, now: t0 + 11)
        #expect(bobPhone.keys(log)[log.state.currentEpoch!.ref] == nil)
        // A plain member cannot ban another member's devices.
        let laptop2 = Person(member: bob.member, deviceSeed: 220)
        #expect(throws: MembershipError.self) { _ = try carol.append(.revokeDevice(laptop2.device.publicKey), to: &log, at: t0 + 13) }
    }

    @Test func opsFromTheFarFutureAreRefusedOnArrival() throws {
        var log = try threeMemberChapter()
        let now = t0 + 1_000
        for stamp in [t0 + 1000 * 365 * 24 * 3600 * 1000, UInt64.max] {
            let poison = try MembershipOp(decoding: MembershipOp.signed(chapter: log.chapter, parents: heads(log), timestamp: stamp,
                                                                        certificate: bob.certificate, device: bob.device, action: .leave))
            try log.receive([poison], nowMilliseconds: now)
            #expect(log.ops[poison.id] == nil)
        }
        #expect(log.refusedFromTheFuture == 2)
        let (_, invite) = try log.openInvite(expiresAt: now / 1000 + 3600, uses: 1, hint: "", certificate: alice.certificate, device: alice.device, now: now / 1000)
        let hs = [UInt8](repeating: 3, count: 64)
        _ = try log.admit(joiner: dave.certificate, proof: invite.proof(handshakeHash: hs, certificate: dave.certificate), handshakeHash: hs,
                          certificate: alice.certificate, device: alice.device, agreement: alice.agreement, nowMilliseconds: now + 10)
        #expect(log.state.isMember(dave.key))
    }

    @Test func opsByDevicesTheLogNeverListedAreNotKept() throws {
        var log = try threeMemberChapter()
        var made: [MembershipOp] = []
        for n in 0..<3 {
            let fake = Person(member: try Ed25519.PrivateKey(seed: [UInt8](repeating: UInt8(150 + n), count: 32)), deviceSeed: UInt8(160 + n))
            for i in 0..<100 {
                made.append(try MembershipOp(decoding: MembershipOp.signed(chapter: log.chapter, parents: heads(log), timestamp: t0 + UInt64(i),
                                                                           certificate: fake.certificate, device: fake.device, action: .leave)))
            }
        }
        let before = log.count
        try log.receive(made)
        #expect(log.count == before)
        #expect(log.refusedUnknownAuthor == 300)
    }

    @Test func aMemberOverQuotaCannotSplitNodesApart() throws {
        let base = try threeMemberChapter()
        func flood(_ tag: UInt64) throws -> [MembershipOp] {
            var parents = heads(base), out: [MembershipOp] = []
            for i in 0..<UInt64(MembershipLog.maxOpsPerMember) {
                let op = try MembershipOp(decoding: MembershipOp.signed(chapter: base.chapter, parents: parents, timestamp: t0 + tag * 10_000 + i,
                                                                        certificate: bob.certificate, device: bob.device, action: .setAdmin(bob.key, true)))
                out.append(op)
                parents = [op.id]
            }
            return out
        }
        var x = base, y = base
        try x.receive(try flood(1))
        try y.receive(try flood(2))
        _ = try alice.append(.removeMember(carol.key), to: &x, at: t0 + 100_000)
        try y.receive(x.allOps)
        try x.receive(y.allOps)
        #expect(!y.state.isMember(carol.key), "Alice's removal reached Y through Bob's ops it builds on")
        #expect(y.pendingCount == 0)
        // Over quota, an honest append fails loudly instead of being dropped.
        var z = base
        try z.receive(try flood(3))
        #expect(throws: MembershipError.self) { _ = try z.startEpoch(certificate: bob.certificate, device: bob.device, now: t0 + 200_000) }
    }

    @Test func aStolenDeviceCannotRevokeTheMembersOthers() throws {
        var log = try threeMemberChapter()
        let bob2 = bob.secondDevice()
        _ = try bob.append(.addDevice(bob2.certificate), to: &log)
        // The thief on bob2 holds no member key: no plain revocation (admins only) and no statement.
        #expect(throws: MembershipError.self) { _ = try bob2.append(.revokeDevice(bob.device.publicKey), to: &log) }
        let forged = DeviceRevocation.make(member: mallory.member, device: bob.device.publicKey, atMilliseconds: t0)
        #expect(throws: MembershipError.self) { _ = try bob2.append(.revokeDeviceByMember(forged), to: &log) }
        #expect(log.state.isCurrentDevice(bob.device.publicKey))
        // Bob's own statement (member key) revokes bob2, and a never-listed device of his too.
        let bob3 = Person(member: bob.member, deviceSeed: 230)
        _ = try bob.append(.revokeDeviceByMember(bob.revocation(of: bob2)), to: &log)
        _ = try bob.append(.revokeDeviceByMember(bob.revocation(of: bob3)), to: &log)
        #expect(log.state.revoked.isSuperset(of: [bob2.device.publicKey, bob3.device.publicKey]))
        // Bob's statement cannot ban Carol's device.
        #expect(throws: MembershipError.self) {
            _ = try bob.append(.revokeDeviceByMember(DeviceRevocation.make(member: bob.member, device: carol.device.publicKey, atMilliseconds: t0)), to: &log)
        }
    }

    @Test func aRemovedMemberCannotVouchForMintedIdentities() throws {
        var log = try threeMemberChapter()
        _ = try alice.append(.removeMember(carol.key), to: &log)
        let fake = Person(member: try Ed25519.PrivateKey(seed: [UInt8](repeating: 170, count: 32)), deviceSeed: 171)
        let vouch = try MembershipOp(decoding: MembershipOp.signed(chapter: log.chapter, parents: heads(log), timestamp: t0 + 10, certificate: carol.certificate,
                                                                   device: carol.device, action: .addMember(fake.certificate, admin: false, invite: nil)))
        var made = [vouch]
        for i in 0..<50 {
            made.append(try MembershipOp(decoding: MembershipOp.signed(chapter: log.chapter, parents: [vouch.id], timestamp: t0 + 20 + UInt64(i),
                                                                       certificate: fake.certificate, device: fake.device, action: .leave)))
        }
        try log.receive(made)
        #expect(log.refusedUnknownAuthor == 50)
    }

    @Test func aMemberListsAtMostSoManyDevices() throws {
        var log = try threeMemberChapter()
        var listed = 1
        for i in 0..<(ChapterState.maxDevicesPerMember + 5) {
            let d = Person(member: bob.member, deviceSeed: UInt8(10 + i))
            if (try? bob.append(.addDevice(d.certificate), to: &log, at: t0 + 10 + UInt64(i))) != nil { listed += 1 }
        }
        #expect(listed == ChapterState.maxDevicesPerMember)
    }

    @Test func aGarbageShareDoesNotHideTheHonestOne() throws {
        var log = try threeMemberChapter()
        let old = log.state.currentEpoch!
        _ = try log.startEpoch(certificate: alice.certificate, device: alice.device, now: t0 + 5)
        var aliceSide = log, carolSide = log
        let add = try alice.append(.addMember(dave.certificate, admin: false, invite: nil), to: &aliceSide, at: t0 + 10)
        carolSide = aliceSide
        let honest = try aliceSide.shareMissingKeys(certificate: alice.certificate, device: alice.device, agreement: alice.agreement, now: t0 + 12)
        let garbage = try carol.append(.shareKey(epoch: old.id, envelopes: EpochKeys.seal(SymmetricKey(), to: [dave.certificate])), to: &carolSide, at: t0 + 11)
        for order in [[garbage] + honest, honest + [garbage]] {
            var l = log
            try l.receive([add])
            for op in order { try l.receive([op]) }
            #expect(dave.keys(l)[old.ref] != nil, "Dave opens the old epoch with the honest envelope")
        }
    }

    @Test func manyRevocationsRacingTheirDevicesResolveInOneRound() throws {
        var log = try threeMemberChapter()
        var parents = heads(log)
        var made: [MembershipOp] = []
        var t = t0 + 100
        for i in 0..<(ChapterState.maxDevicesPerMember - 2) {
            let seed = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ i) }
            let dev = try Ed25519.PrivateKey(seed: seed)
            let agr = try X25519.PrivateKey(bytes: seed)
            let cert = DeviceCertificate.issue(member: bob.member, deviceSigningKey: dev.publicKey, deviceAgreementKey: agr.publicKey, createdAt: 1_700_000_000)
            t += 2
            let add = try MembershipOp(decoding: MembershipOp.signed(chapter: log.chapter, parents: parents, timestamp: t, certificate: bob.certificate,
                                                                     device: bob.device, action: .addDevice(cert)))
            let byDevice = try MembershipOp(decoding: MembershipOp.signed(chapter: log.chapter, parents: [add.id], timestamp: t + 1, certificate: cert,
                                                                          device: dev, action: .setName(subject: dev.publicKey, name: "device \(i)")))
            let revoke = try MembershipOp(decoding: MembershipOp.signed(chapter: log.chapter, parents: [add.id], timestamp: t + 1, certificate: bob.certificate,
                                                                        device: bob.device, action: .revokeDeviceByMember(DeviceRevocation.make(member: bob.member, device: dev.publicKey, atMilliseconds: t))))
            made += [add, byDevice, revoke]
            parents = [byDevice.id, revoke.id].sorted()
        }
        try log.receive(made)
        // Every device's op concurrent with its revocation is excluded, and a rebuild agrees.
        #expect(made.enumerated().filter { $0.offset % 3 == 1 }.allSatisfy { log.state.ignored[$0.element.id] != nil })
        #expect(try MembershipLog(chapter: log.chapter, ops: log.allOps.reversed().map(\.encoded)).state == log.state)
    }
}
