@testable import KithChapter
import KithCRDT
import KithCrypto
import KithSampleData
import Testing

/// A member with one device: the keys a real node would hold.
struct Person {
    let member: Ed25519.PrivateKey
    let device: Ed25519.PrivateKey
    let agreement: X25519.PrivateKey
    let certificate: DeviceCertificate

    init(_ n: UInt8, device d: UInt8 = 0) {
        member = try! Ed25519.PrivateKey(seed: [UInt8](repeating: n, count: 32))
        device = try! Ed25519.PrivateKey(seed: [UInt8](repeating: n &+ 100 &+ d, count: 32))
        agreement = try! X25519.PrivateKey(bytes: [UInt8](repeating: n &+ 50 &+ d, count: 32))
        certificate = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey,
                                              deviceAgreementKey: agreement.publicKey, createdAt: 1_700_000_000)
    }

    /// Another device of the same member.
    func secondDevice() -> Person { Person(member: member, deviceSeed: 200) }

    init(member: Ed25519.PrivateKey, deviceSeed: UInt8) {
        self.member = member
        device = try! Ed25519.PrivateKey(seed: [UInt8](repeating: deviceSeed, count: 32))
        agreement = try! X25519.PrivateKey(bytes: [UInt8](repeating: deviceSeed &+ 1, count: 32))
        certificate = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey,
                                              deviceAgreementKey: agreement.publicKey, createdAt: 1_700_000_000)
    }

    var key: Ed25519.PublicKey { member.publicKey }

    /// This member's signed statement revoking another of their devices.
    func revocation(of other: Person, at t: UInt64 = 1_800_000_000_000) -> DeviceRevocation {
        DeviceRevocation.make(member: member, device: other.device.publicKey, atMilliseconds: t)
    }

    func append(_ action: MembershipAction, to log: inout MembershipLog, at t: UInt64 = 1_800_000_000_000) throws -> MembershipOp {
        try log.append(action, certificate: certificate, device: device, now: t)
    }

    func keys(_ log: MembershipLog) -> [EpochRef: SymmetricKey] {
        log.keys(device: device.publicKey, agreement: agreement)
    }
}

let t0: UInt64 = 1_800_000_000_000
let alice = Person(1), bob = Person(2), carol = Person(3), dave = Person(4), mallory = Person(9)

/// A chapter created by Alice with Bob and Carol added directly (admin ops), keys shared.
func threeMemberChapter() throws -> MembershipLog {
    var log = try MembershipLog.create(name: "Ward 5", certificate: alice.certificate, device: alice.device, now: t0)
    _ = try alice.append(.addMember(bob.certificate, admin: false, invite: nil), to: &log)
    _ = try alice.append(.addMember(carol.certificate, admin: false, invite: nil), to: &log)
    _ = try log.shareMissingKeys(certificate: alice.certificate, device: alice.device, agreement: alice.agreement, now: t0 + 1)
    return log
}

@Suite("Membership log")
struct MembershipTests {
    @Test func createMakesTheCreatorAdminWithAnEpochKey() throws {
        let log = try MembershipLog.create(name: "Ward 5", certificate: alice.certificate, device: alice.device, now: t0)
        #expect(log.state.name == "Ward 5")
        #expect(log.state.admins == [alice.key])
        #expect(log.chapter.bytes == Array(log.genesis.id.bytes.prefix(16)))
        #expect(log.state.epochs.count == 1)
        #expect(alice.keys(log).count == 1)
        #expect(!log.state.needsNewEpoch)
        // The log rebuilds from its encoded ops, in any order.
        let rebuilt = try MembershipLog(chapter: log.chapter, ops: log.allOps.reversed().map(\.encoded))
        #expect(rebuilt.state == log.state)
    }

    @Test func membersGetTheKeyAndRoundTrip() throws {
        let log = try threeMemberChapter()
        #expect(Set(log.state.members.keys) == [alice.key, bob.key, carol.key])
        let ref = log.state.currentEpoch!.ref
        #expect(bob.keys(log)[ref] == alice.keys(log)[ref])
        #expect(carol.keys(log)[ref] != nil)
        #expect(mallory.keys(log).isEmpty)
    }

    @Test func forgedAdminOpsAreRefusedAndIgnored() throws {
        var log = try threeMemberChapter()
        // Bob is a member but not an admin: his own log refuses to author it…
        #expect(throws: MembershipError.self) { _ = try bob.append(.addMember(mallory.certificate, admin: true, invite: nil), to: &log) }
        #expect(throws: MembershipError.self) { _ = try bob.append(.removeMember(alice.key), to: &log) }
        // …and a hand-made op (a modified client) is kept but has no effect on any replica.
        let forged = MembershipOp.make(chapter: log.chapter, parents: Array(log.heads), timestamp: t0 + 5,
                                       certificate: bob.certificate, device: bob.device,
                                       action: .addMember(mallory.certificate, admin: true, invite: nil))
        try log.receive([forged])
        #expect(!log.state.isMember(mallory.key))
        #expect(log.state.ignored[forged.id]?.contains("only an admin") == true)
        // An outsider with a perfectly valid certificate of their own cannot act at all.
        let outsider = MembershipOp.make(chapter: log.chapter, parents: Array(log.heads), timestamp: t0 + 6,
                                         certificate: mallory.certificate, device: mallory.device,
                                         action: .addMember(mallory.certificate, admin: true, invite: nil))
        try log.receive([outsider])
        #expect(!log.state.isMember(mallory.key))
        // A device key that is not the certified one cannot sign for Alice.
        var bytes = MembershipOp.make(chapter: log.chapter, parents: Array(log.heads), timestamp: t0 + 7,
                                      certificate: mallory.certificate, device: mallory.device, action: .leave).encoded
        let certAt = 1 + 16 + 1 + 32 * log.heads.count + 8
        bytes.replaceSubrange(certAt..<(certAt + DeviceCertificate.encodedLength), with: alice.certificate.encoded)
        #expect(throws: MembershipError.self) { _ = try MembershipOp(decoding: bytes) }
    }

    @Test func tamperedOpsAreRefused() throws {
        let log = try threeMemberChapter()
        let op = log.allOps.last!
        for i in stride(from: 0, to: op.encoded.count, by: 7) {
            var b = op.encoded
            b[i] ^= 0x20
            #expect(throws: MembershipError.self) { _ = try MembershipOp(decoding: b) }
        }
        #expect(throws: MembershipError.self) { _ = try MembershipOp(decoding: Array(op.encoded.dropLast())) }
        // An op of another chapter is refused by the log.
        var other = try MembershipLog.create(name: "Ward 6", certificate: bob.certificate, device: bob.device, now: t0)
        #expect(throws: MembershipError.self) { try other.receive([op]) }
    }

    @Test func removalRotatesTheKeyAndLocksTheRemovedDeviceOut() throws {
        var log = try threeMemberChapter()
        let oldRef = log.state.currentEpoch!.ref
        let bobKeysBefore = bob.keys(log)
        _ = try alice.append(.removeMember(bob.key), to: &log)
        #expect(log.state.needsNewEpoch) // the current key was sealed to Bob's device
        try log.startEpoch(certificate: alice.certificate, device: alice.device, now: t0 + 10)
        #expect(!log.state.needsNewEpoch)
        let newRef = log.state.currentEpoch!.ref
        #expect(newRef != oldRef)
        // Bob's actual keys open the old epoch only.
        #expect(Set(bob.keys(log).keys) == [oldRef])
        #expect(carol.keys(log)[newRef] != nil)
        #expect(log.state.currentEpoch!.envelopes[bob.device.publicKey] == nil)

        // A change Carol writes after the removal, captured by Bob from the wire: unreadable to him.
        let scope = log.chapter.contentScope
        let carolKeys = carol.keys(log)
        var carolReplica = Replica(scope: scope, mode: .encrypted, epochKeys: carolKeys)
        var author = ChangeAuthor(signer: carol.device)
        let secret = ContactEdit(contact: ContactID(high: 1, low: 2), ops: [.setField(.givenName, "Secret")])
        let captured = try author.commit([secret], to: &carolReplica, wallMilliseconds: t0 + 20,
                                         sealer: BlockSealer(epoch: newRef, key: carolKeys[newRef]!))
        #expect(carolReplica.contacts().first?[.givenName] == "Secret")
        var bobReplica = Replica(scope: scope, mode: .encrypted, epochKeys: bobKeysBefore)
        try bobReplica.receive(captured, nowMilliseconds: t0 + 30)
        #expect(bobReplica.contacts().isEmpty)
        #expect(bobReplica.awaitingBlockCount == 1)
        // Nor can he forge his way in: a new epoch he makes himself is ignored (not a member).
        let bobEpoch = MembershipOp.make(chapter: log.chapter, parents: Array(log.heads), timestamp: t0 + 40,
                                         certificate: bob.certificate, device: bob.device,
                                         action: .epoch(check: EpochKeys.check(SymmetricKey()), envelopes: []))
        try log.receive([bobEpoch])
        #expect(log.state.currentEpoch!.ref == newRef)
    }

    @Test func removalWinsOverAConcurrentActionOfTheRemovedAdmin() throws {
        var base = try threeMemberChapter()
        _ = try alice.append(.setAdmin(bob.key, true), to: &base)
        // Partition: Alice removes Bob while Bob, still an admin on his side, adds Dave.
        var aliceSide = base, bobSide = base
        let removal = try alice.append(.removeMember(bob.key), to: &aliceSide, at: t0 + 100)
        let add = try bob.append(.addMember(dave.certificate, admin: true, invite: nil), to: &bobSide, at: t0 + 100)
        #expect(bobSide.state.isMember(dave.key))
        // Every replica, whichever it hears first, ends with Bob removed and Dave not a member.
        for order in [[removal, add], [add, removal]] {
            var r = base
            for op in order { try r.receive([op]) }
            #expect(!r.state.isMember(bob.key))
            #expect(!r.state.isMember(dave.key))
            #expect(r.state.ignored[add.id]?.contains("excluded") == true || r.state.ignored[add.id] != nil)
        }
        // Mutual concurrent removal of two admins resolves the same way everywhere.
        var a2 = base, b2 = base
        let r1 = try alice.append(.removeMember(bob.key), to: &a2, at: t0 + 200)
        let r2 = try bob.append(.removeMember(alice.key), to: &b2, at: t0 + 200)
        var x = base, y = base
        try x.receive([r1, r2])
        try y.receive([r2])
        try y.receive([r1])
        #expect(x.state == y.state)
        #expect(x.state.members.count == 2) // exactly one of the two admins survives, with Carol
        #expect(!x.state.admins.isEmpty)
    }

    @Test func secondDeviceAndRevocation() throws {
        var log = try threeMemberChapter()
        let bob2 = bob.secondDevice()
        _ = try bob.append(.addDevice(bob2.certificate), to: &log)
        #expect(log.state.members[bob.key]!.devices.count == 2)
        #expect(bob2.keys(log).isEmpty)
        _ = try log.shareMissingKeys(certificate: bob.certificate, device: bob.device, agreement: bob.agreement, now: t0 + 50)
        #expect(bob2.keys(log).count == 1)
        // Carol may not add devices for Bob.
        #expect(throws: MembershipError.self) { _ = try carol.append(.addDevice(Person(7).certificate), to: &log) }
        // Bob revokes the second device (stolen): it is out, and the next epoch excludes it.
        _ = try bob.append(.revokeDeviceByMember(bob.revocation(of: bob2)), to: &log)
        #expect(log.state.member(ofDevice: bob2.device.publicKey) == nil)
        #expect(log.state.needsNewEpoch)
        try log.startEpoch(certificate: bob.certificate, device: bob.device, now: t0 + 60)
        #expect(bob2.keys(log)[log.state.currentEpoch!.ref] == nil)
        // Ops the revoked device signs afterwards are ignored.
        let late = MembershipOp.make(chapter: log.chapter, parents: Array(log.heads), timestamp: t0 + 70,
                                     certificate: bob2.certificate, device: bob2.device, action: .leave)
        try log.receive([late])
        #expect(log.state.isMember(bob.key))
    }

    @Test func anyDeliveryOrderGivesTheSameState() throws {
        // Seeded random histories: several authors acting on partial views, delivered in
        // shuffled orders and duplicated, always evaluate to one state.
        var rng = SplitMix64(seed: 0x5EED)
        for round in 0..<20 {
            let base = try threeMemberChapter()
            var replicas = [base, base, base]
            let people = [alice, bob, carol]
            var all: [MembershipOp] = []
            for step in 0..<12 {
                let who = Int(rng.next() % 3), which = Int(rng.next() % 3)
                let p = people[who]
                let action: MembershipAction
                switch rng.next() % 6 {
                case 0: action = .addMember(Person(UInt8(20 + step)).certificate, admin: rng.next() % 2 == 0, invite: nil)
                case 1: action = .removeMember(people[Int(rng.next() % 3)].key)
                case 2: action = .setAdmin(people[Int(rng.next() % 3)].key, rng.next() % 2 == 0)
                case 3: action = .epoch(check: EpochKeys.check(SymmetricKey()), envelopes: EpochKeys.seal(SymmetricKey(), to: replicas[which].state.allDevices))
                case 4: action = .leave
                default: action = .invite(key: Person(30).device.publicKey, expiresAt: t0 + 1000, uses: 1, approval: false)
                }
                // Sign regardless of rights (a modified client), on this replica's heads.
                let op = MembershipOp.make(chapter: replicas[which].chapter, parents: Array(replicas[which].heads),
                                           timestamp: t0 + UInt64(step), certificate: p.certificate, device: p.device, action: action)
                try replicas[which].receive([op])
                all.append(op)
                if rng.next() % 3 == 0 { // occasional sync between two replicas
                    let other = Int(rng.next() % 3)
                    try replicas[other].receive(replicas[which].allOps)
                }
            }
            var referenceLog = base
            try referenceLog.receive(all)
            let reference = referenceLog.state
            for _ in 0..<4 {
                var r = base
                var shuffled = all + all.prefix(3)
                shuffled.shuffle(using: &rng)
                for op in shuffled { try r.receive([op]) }
                #expect(r.state == reference, "round \(round)")
                #expect(r.pendingCount == 0)
            }
        }
    }
}

@Suite("Device revocations")
struct DeviceRevocationTests {
    @Test func onlyTheMemberKeySignsOneAndTamperingIsCaught() throws {
        let r = DeviceRevocation.make(member: alice.member, device: alice.secondDevice().device.publicKey, atMilliseconds: t0)
        let parsed = try DeviceRevocation(encoded: r.encoded)
        #expect(parsed.member == alice.key && parsed.device == alice.secondDevice().device.publicKey)
        for i in [0, 5, 40, 70, 100, DeviceRevocation.encodedLength - 1] {
            var b = r.encoded
            b[i] ^= 1
            #expect(throws: MembershipError.self) { _ = try DeviceRevocation(encoded: b) }
        }
        // A device key signing in place of the member key does not verify as the member.
        var forged = r.encoded
        let sig = alice.device.signature(for: DeviceRevocation.domain + Array(forged[0..<73]))
        forged.replaceSubrange(73..., with: sig)
        #expect(throws: MembershipError.self) { _ = try DeviceRevocation(encoded: forged) }
    }
}

@Suite("Removal wins over concurrent re-adds")
struct ConcurrentReAddTests {
    @Test func aRevokedDeviceReListedConcurrentlyStaysRevoked() throws {
        var base = try threeMemberChapter()
        let bob2 = bob.secondDevice()
        _ = try bob.append(.addDevice(bob2.certificate), to: &base)
        // Bob revokes his stolen second device while Alice, an admin who has not heard yet,
        // lists it again (a daemon adopting a device it just saw connect).
        var bobSide = base, aliceSide = base
        let revoke = try bob.append(.revokeDeviceByMember(bob.revocation(of: bob2)), to: &bobSide, at: t0 + 500)
        let relist = try alice.append(.addDevice(bob2.certificate), to: &aliceSide, at: t0 + 500)
        for order in [[revoke, relist], [relist, revoke]] {
            var r = base
            for op in order { try r.receive([op]) }
            #expect(r.state.member(ofDevice: bob2.device.publicKey) == nil)
            #expect(r.state.revoked.contains(bob2.device.publicKey))
        }
        // A removed member re-added concurrently by another admin stays removed.
        _ = try alice.append(.setAdmin(carol.key, true), to: &base)
        var a = base, c = base
        let remove = try alice.append(.removeMember(bob.key), to: &a, at: t0 + 600)
        let readd = try carol.append(.addMember(bob.certificate, admin: false, invite: nil), to: &c, at: t0 + 600)
        for order in [[remove, readd], [readd, remove]] {
            var r = base
            for op in order { try r.receive([op]) }
            #expect(!r.state.isMember(bob.key))
        }
    }
}

/// Which received ops a node may store without waiting for the disk (chapters.md §3.1, storing
/// ops): only those that add to what the chapter allows; losing any other to a power cut could
/// bring back a right that was taken away.
@Suite("Ops that only grant")
struct OnlyGrantsTests {
    @Test func onlyAdditionsGrant() throws {
        let log = try threeMemberChapter()
        let id = log.genesis.id
        let grants: [MembershipAction] = [
            .addMember(dave.certificate, admin: false, invite: nil), .addMember(dave.certificate, admin: true, invite: id),
            .addDevice(bob.secondDevice().certificate), .shareKey(epoch: id, envelopes: []),
            .invite(key: mallory.key, expiresAt: t0, uses: 1, approval: false), .setName(subject: bob.key, name: "Bob"),
        ]
        let others: [MembershipAction] = [
            .create(name: "x", nonce: [UInt8](repeating: 0, count: 16)), .removeMember(bob.key), .revokeDevice(bob.device.publicKey),
            .setAdmin(bob.key, true), .setAdmin(bob.key, false), .epoch(check: [UInt8](repeating: 0, count: 16), envelopes: []), .leave,
            .closeInvite(id), .revokeDeviceByMember(bob.revocation(of: bob.secondDevice())),
        ]
        for a in grants { #expect(a.onlyGrants, "\(a.verb)") }
        for a in others { #expect(!a.onlyGrants, "\(a.verb)") }
    }
}
