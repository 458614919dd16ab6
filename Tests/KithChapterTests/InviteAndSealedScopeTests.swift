@testable import KithChapter
@testable import KithCRDT
import KithCrypto
import Testing

@Suite("Invites")
struct InviteTests {
    let nowSeconds: UInt64 = t0 / 1000
    let handshake = [UInt8](repeating: 0xAB, count: 64)

    func admit(_ log: inout MembershipLog, _ joiner: Person, _ proof: [UInt8], handshake h: [UInt8]? = nil, at: UInt64? = nil) throws -> [MembershipOp] {
        try log.admit(joiner: joiner.certificate, proof: proof, handshakeHash: h ?? handshake, certificate: alice.certificate,
                      device: alice.device, agreement: alice.agreement, nowMilliseconds: at ?? (t0 + 1000))
    }

    @Test func inviteStringRoundTripsAndAdmitsOnce() throws {
        var log = try threeMemberChapter()
        let (_, invite) = try log.openInvite(expiresAt: nowSeconds + 48 * 3600, uses: 1, hint: "192.0.2.7:7434",
                                             certificate: alice.certificate, device: alice.device, now: nowSeconds)
        let text = invite.text
        #expect(text.hasPrefix("kith:"))
        #expect(text.count < 150, "short enough for a text message: \(text.count) characters")
        let parsed = try ChapterInvite(text: "  \(text)\n", now: nowSeconds)
        #expect(parsed == invite)

        let made = try admit(&log, dave, parsed.proof(handshakeHash: handshake, certificate: dave.certificate))
        #expect(log.state.isMember(dave.key))
        #expect(dave.keys(log).count == 1, "the joiner's device got the epoch key")
        #expect(made.count == 2)
        // Reuse of a one-use invite, even with a fresh proof, is refused.
        let erin = Person(5)
        #expect(throws: MembershipError.self) { _ = try admit(&log, erin, parsed.proof(handshakeHash: handshake, certificate: erin.certificate)) }
    }

    @Test func forgedExpiredAndReplayedJoinsAreRefused() throws {
        var log = try threeMemberChapter()
        let (_, invite) = try log.openInvite(expiresAt: nowSeconds + 3600, uses: 5, hint: "",
                                             certificate: alice.certificate, device: alice.device, now: nowSeconds)
        // A proof made with a key that was never published in the log.
        let forged = ChapterInvite(chapter: log.chapter, seed: [UInt8](repeating: 7, count: 32), admin: invite.admin, expiresAt: invite.expiresAt, hint: "")
        #expect(throws: MembershipError.self) { _ = try admit(&log, dave, forged.proof(handshakeHash: handshake, certificate: dave.certificate)) }
        // A proof captured on another connection (other handshake hash) does not transfer…
        let captured = invite.proof(handshakeHash: [UInt8](repeating: 1, count: 64), certificate: dave.certificate)
        #expect(throws: MembershipError.self) { _ = try admit(&log, dave, captured) }
        // …nor to another person's certificate.
        let forDave = invite.proof(handshakeHash: handshake, certificate: dave.certificate)
        #expect(throws: MembershipError.self) { _ = try admit(&log, mallory, forDave) }
        // Expired at the admitting daemon's clock.
        #expect(throws: MembershipError.self) { _ = try admit(&log, dave, forDave, at: t0 + 3_601_000) }
        #expect(!log.state.isMember(dave.key))
        // Expired and damaged strings fail before any network use, with a message that says so.
        #expect { _ = try ChapterInvite(text: invite.text, now: nowSeconds + 7200) } throws: { ($0 as? MembershipError)?.detail.contains("expired") == true }
        let truncated = "kith:" + Base64URL.encode(Base64URL.decode(String(invite.text.dropFirst(5)))!.dropLast(4))
        #expect { _ = try ChapterInvite(text: truncated, now: nowSeconds) } throws: { ($0 as? MembershipError)?.detail.contains("damaged") == true }
        #expect(throws: MembershipError.self) { _ = try ChapterInvite(text: "hello", now: nowSeconds) }
        // Only admins may open invites.
        #expect(throws: MembershipError.self) {
            _ = try log.openInvite(expiresAt: nowSeconds + 60, uses: 1, hint: "", certificate: bob.certificate, device: bob.device, now: nowSeconds)
        }
    }
}

@Suite("Encrypted chapter scope")
struct SealedScopeTests {
    func setUp() throws -> (MembershipLog, ScopeID, BlockSealer) {
        let log = try threeMemberChapter()
        let ref = log.state.currentEpoch!.ref
        return (log, log.chapter.contentScope, BlockSealer(epoch: ref, key: alice.keys(log)[ref]!))
    }

    @Test func membersReadRelaysDoNotAndNoPlaintextIsOnTheWire() throws {
        let (log, scope, sealer) = try setUp()
        var aliceReplica = Replica(scope: scope, mode: .encrypted, epochKeys: alice.keys(log))
        var author = ChangeAuthor(signer: alice.device)
        let edit = ContactEdit(contact: ContactID(high: 9, low: 9), ops: [.setField(.givenName, "Rosa"), .add(.phones, "+15550100")])
        let change = try author.commit([edit], to: &aliceReplica, wallMilliseconds: t0, sealer: sealer)
        #expect(!change.encoded.containsSubsequence(Array("Rosa".utf8)))
        #expect(!change.encoded.containsSubsequence(Array("+15550100".utf8)))

        var bobReplica = Replica(scope: scope, mode: .encrypted, epochKeys: bob.keys(log))
        try bobReplica.receive(change, nowMilliseconds: t0)
        #expect(bobReplica.contacts() == aliceReplica.contacts())

        var relay = Replica(scope: scope, mode: .opaque)
        try relay.receive(change, nowMilliseconds: t0)
        #expect(relay.contacts().isEmpty)
        #expect(relay.versionVector() == aliceReplica.versionVector())
        // The relay forwards the exact bytes; Carol reads them.
        var carolReplica = Replica(scope: scope, mode: .encrypted, epochKeys: carol.keys(log))
        carolReplica.take(relay.changes(missingFrom: VersionVector()))
        #expect(carolReplica.contacts() == aliceReplica.contacts())
    }

    @Test func blocksWaitForTheirKeyThenApply() throws {
        let (log, scope, sealer) = try setUp()
        var a = Replica(scope: scope, mode: .encrypted, epochKeys: alice.keys(log))
        var author = ChangeAuthor(signer: alice.device)
        let c = try author.commit([ContactEdit(contact: ContactID(high: 1, low: 1), ops: [.setField(.city, "Leeds")])], to: &a,
                                  wallMilliseconds: t0, sealer: sealer)
        var late = Replica(scope: scope, mode: .encrypted)
        try late.receive(c, nowMilliseconds: t0)
        #expect(late.contacts().isEmpty && late.awaitingBlockCount == 1)
        late.addEpochKeys(dave.keys(log)) // not his: nothing opens
        #expect(late.awaitingBlockCount == 1)
        late.addEpochKeys(carol.keys(log))
        #expect(late.awaitingBlockCount == 0)
        #expect(late.contacts() == a.contacts())
    }

    @Test func tamperedOrMisplacedBlocksAreRefusedOrSkipped() throws {
        let (log, scope, sealer) = try setUp()
        var a = Replica(scope: scope, mode: .encrypted, epochKeys: alice.keys(log))
        var author = ChangeAuthor(signer: alice.device)
        let c = try author.commit([ContactEdit(contact: ContactID(high: 1, low: 1), ops: [.setField(.city, "Leeds")])], to: &a,
                                  wallMilliseconds: t0, sealer: sealer)
        // Flipping a ciphertext byte breaks the signed digest: refused by members and relays alike.
        var bytes = c.encoded
        bytes[bytes.count - 5] ^= 1
        var b = Replica(scope: scope, mode: .encrypted, epochKeys: bob.keys(log))
        #expect(throws: ChangeRejection.self) { try b.receive(encoded: bytes, nowMilliseconds: t0) }
        var relay = Replica(scope: scope, mode: .opaque)
        #expect(throws: ChangeRejection.self) { try relay.receive(encoded: bytes, nowMilliseconds: t0) }
        // An erased-block variant (a relay trying to censor) is refused in encrypted scopes.
        let erased = c.erasing([ContactID(high: 1, low: 1)])
        #expect(erased == c, "erasure never touches sealed blocks")
        // Mallory, a member, copies Alice's sealed block into her own signed change: the block is
        // bound to its author, so it does not open, and is skipped rather than applied.
        let stolenBlock = Array(c.encoded[c.blockRanges[0]!])
        let resigned = try resign(scope: scope, signer: mallory.device, block: stolenBlock)
        try b.receive(resigned, nowMilliseconds: t0)
        #expect(b.contacts().isEmpty)
        #expect(b.unreadableBlocks.count == 1)
        // A writer cannot use forget in an encrypted scope.
        #expect(throws: ChangeRejection.self) {
            _ = try author.makeChange(scope: scope, edits: [ContactEdit(contact: ContactID(high: 1, low: 1), ops: [.forget])],
                                      wallMilliseconds: t0 + 1, sealer: sealer)
        }
    }

    /// Builds a validly signed change whose only block is `block`, verbatim.
    func resign(scope: ScopeID, signer: Ed25519.PrivateKey, block: [UInt8]) throws -> Change {
        var h = ByteWriter()
        h.u8(Change.format)
        h.u8(UInt8(scope.bytes.count))
        h.raw(scope.bytes)
        h.raw(signer.publicKey.bytes)
        h.uvarint(UInt64(1))
        h.raw(ChangeID.zero.bytes)
        h.u64(HybridTimestamp(milliseconds: t0).rawValue)
        h.uvarint(1)
        h.raw(Change.bodyDigest(blockHashes: [BLAKE2b.hash(block)]))
        let sig = signer.signature(for: Change.signatureDomain + h.bytes)
        var w = ByteWriter()
        w.uvarint(UInt64(block.count) << 1)
        w.raw(block)
        return try Change(decoding: h.bytes + sig + w.bytes)
    }
}

extension Replica {
    mutating func take(_ changes: [Change]) {
        for c in changes { _ = try! receive(c, nowMilliseconds: t0 + 10_000_000) }
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        for i in 0...(count - needle.count) where self[i..<(i + needle.count)].elementsEqual(needle) { return true }
        return false
    }
}
