import KithCRDT
import KithCrypto
import KithSync
import Testing

/// One side of an in-memory connection: a replica, its author, a sync session and the Noise
/// transport, moving real bytes (framing, fragments, encryption) in both directions.
struct Node {
    var replica: Replica
    var author: ChangeAuthor
    var session: SyncSession
    var transport: NoiseTransport
    var reader = LengthPrefixedReader()
    var reassembler = Reassembler()
    var outbox: [UInt8] = []
    var closedReason: String?
    var caughtUp: Set<ScopeID> = []
    var wireBytes = 0

    mutating func perform(_ actions: [SyncSession.Action]) {
        for a in actions {
            switch a {
            case let .send(m):
                for f in Fragmenter.fragments(of: m.encoded) {
                    let framed = LengthPrefixedReader.frame(try! transport.seal(f))
                    outbox += framed
                    wireBytes += framed.count
                }
            case let .deliver(_, changes):
                for c in changes { _ = try? replica.receive(c, nowMilliseconds: now + 1_000_000) }
            case let .caughtUp(scope):
                caughtUp.insert(scope)
            case .membership, .revocations, .forward, .forwardAnswer, .peerClock, .addresses:
                break // chapters are exercised in KithChapterTests and the daemon tests
            case let .close(reason):
                closedReason = reason
            }
        }
    }

    /// Takes bytes from the wire and runs the session on every complete message.
    mutating func ingest(_ bytes: [UInt8]) {
        reader.append(bytes)
        while closedReason == nil, let noiseMessage = reader.next() {
            do {
                let plain = try transport.open(noiseMessage)
                guard let message = try reassembler.feed(plain) else { continue }
                let decoded = try SyncMessage(decoding: message)
                let r = replica
                perform(session.receive(decoded, replica: { $0 == r.scope ? r : nil }))
            } catch {
                closedReason = "\(error)"
            }
        }
    }

    mutating func edit(_ edits: [ContactEdit], at t: UInt64) {
        let c = try! author.commit(edits, to: &replica, wallMilliseconds: t)
        perform(session.localChanges([c]))
    }
}

func connectedPair(scope: ScopeID) throws -> (Node, Node) {
    var hi = NoiseHandshake(role: .initiator, staticKey: X25519.PrivateKey(), prologue: Noise.kithPrologue)
    var hr = NoiseHandshake(role: .responder, staticKey: X25519.PrivateKey(), prologue: Noise.kithPrologue)
    _ = try hr.readMessage(hi.writeMessage(payload: []))
    _ = try hi.readMessage(hr.writeMessage(payload: []))
    _ = try hr.readMessage(hi.writeMessage(payload: []))
    let a = Node(replica: Replica(scope: scope), author: ChangeAuthor(signer: Ed25519.PrivateKey()), session: SyncSession(scopes: [scope]), transport: hi.transport()!)
    let b = Node(replica: Replica(scope: scope), author: ChangeAuthor(signer: Ed25519.PrivateKey()), session: SyncSession(scopes: [scope]), transport: hr.transport()!)
    return (a, b)
}

/// Delivers queued bytes both ways, `chunk` bytes at a time, until both sides are quiet.
func pump(_ a: inout Node, _ b: inout Node, chunk: Int = .max) {
    while !a.outbox.isEmpty || !b.outbox.isEmpty {
        let ab = a.outbox.prefix(chunk), ba = b.outbox.prefix(chunk)
        a.outbox.removeFirst(ab.count)
        b.outbox.removeFirst(ba.count)
        b.ingest(Array(ab))
        a.ingest(Array(ba))
    }
}

let now: UInt64 = 1_790_000_000_000
let scope = ScopeID(name: "private")

@Suite("Sync session over Noise, in memory")
struct SyncSessionTests {
    @Test func initialSyncThenLiveGossip() throws {
        var (a, b) = try connectedPair(scope: scope)
        // A has 3,000 contacts before connecting (changes larger than one Noise message), B has 10.
        for batch in 0..<30 {
            a.edit((0..<100).map { i in
                ContactEdit(contact: ContactID(high: 1, low: UInt64(batch * 100 + i)), ops: [
                    .setField(.givenName, "Person \(batch * 100 + i)"), .setField(.notes, String(repeating: "n", count: 200)), .add(.tags, "t\(i % 7)"),
                ])
            }, at: now + UInt64(batch))
        }
        b.edit((0..<10).map { ContactEdit(contact: ContactID(high: 2, low: UInt64($0)), ops: [.setField(.city, "Lyon")]) }, at: now)
        a.perform(a.session.start())
        b.perform(b.session.start())
        pump(&a, &b, chunk: 61) // small odd-sized pieces: frames split anywhere
        #expect(a.closedReason == nil && b.closedReason == nil)
        #expect(a.caughtUp == [scope] && b.caughtUp == [scope])
        #expect(a.replica.stateDigest() == b.replica.stateDigest())
        #expect(b.replica.contacts().count == 3_010)

        // Live: one edit on each side reaches the other, and nothing is echoed back.
        let before = a.wireBytes
        a.edit([ContactEdit(contact: ContactID(high: 2, low: 3), ops: [.setField(.city, "Paris")])], at: now + 100)
        b.edit([ContactEdit(contact: ContactID(high: 1, low: 5), ops: [.add(.tags, "gotv")])], at: now + 101)
        pump(&a, &b)
        #expect(a.replica.stateDigest() == b.replica.stateDigest())
        #expect(b.replica.contact(ContactID(high: 2, low: 3))?[.city] == "Paris")
        let editBytes = a.wireBytes - before
        print("bytes on the wire for one small edit (framing, fragment flag, Noise tag included): \(editBytes)")
        #expect(editBytes < 400)
        let quiet = (a.wireBytes, b.wireBytes)
        a.perform(a.session.localChanges(a.replica.allChanges()))
        #expect(a.wireBytes == quiet.0) // the peer holds all of these: nothing resent
    }

    @Test func antiEntropyRepairsAMissedPush() throws {
        var (a, b) = try connectedPair(scope: scope)
        a.perform(a.session.start())
        b.perform(b.session.start())
        pump(&a, &b)
        // A change A made while its push was lost (not sent through the session).
        _ = try a.author.commit([ContactEdit(contact: ContactID(high: 9, low: 9), ops: [.setField(.city, "Missed")])], to: &a.replica, wallMilliseconds: now + 5)
        pump(&a, &b)
        #expect(b.replica.contact(ContactID(high: 9, low: 9)) == nil)
        let snapshot = b.replica
        b.perform(b.session.antiEntropy(replica: { _ in snapshot }))
        pump(&a, &b)
        #expect(b.replica.contact(ContactID(high: 9, low: 9))?[.city] == "Missed")
        #expect(a.closedReason == nil && b.closedReason == nil)
    }

    @Test func versionSkewUnknownTypesAndMalformedMessages() throws {
        var s = SyncSession(scopes: [scope])
        #expect(s.receive(.hello(version: 2, scopes: [scope]), replica: { _ in nil }) == [.close(reason: "version skew: peer speaks sync protocol 2, this build speaks 1")])
        var t = SyncSession(scopes: [scope])
        #expect(t.receive(.unknown(type: 0x7f), replica: { _ in nil }).isEmpty)
        #expect(t.receive(.vector(scope: scope, VersionVector()), replica: { _ in nil }).first == .close(reason: "vector before hello"))
        var u = SyncSession(scopes: [scope])
        _ = u.receive(.hello(version: 1, scopes: [ScopeID(name: "other")]), replica: { _ in nil })
        #expect(u.sharedScopes.isEmpty)
        if case .close = u.receive(.changes(scope: scope, []), replica: { _ in nil }).first {} else { Issue.record("changes for a scope not shared were accepted") }
        // Unknown types decode as .unknown; garbage after a known type is an error.
        #expect(try SyncMessage(decoding: [0x7f, 1, 2, 3]) == .unknown(type: 0x7f))
        #expect(throws: DecodeError.self) { _ = try SyncMessage(decoding: SyncMessage.caughtUp(scope: scope).encoded + [0]) }
        #expect(throws: DecodeError.self) { _ = try SyncMessage(decoding: [0x03, 1, 0x41, 1, 5, 1, 2]) }
    }

    /// sync.md §5.4: the wall clock reading follows the hello; it is a fixed 9-byte message, and
    /// an older build that does not know type 0x14 ignores it.
    @Test func clockReadingAfterHello() throws {
        var a = SyncSession(scopes: [scope])
        let start = a.start(wallMilliseconds: 1_796_073_637_000)
        #expect(start.count == 2 && start[1] == .send(.clock(wallMilliseconds: 1_796_073_637_000)))
        #expect(SyncMessage.clock(wallMilliseconds: 0x0102_0304_0506_0708).encoded == [0x14, 1, 2, 3, 4, 5, 6, 7, 8])
        var b = SyncSession(scopes: [scope])
        #expect(b.receive(.clock(wallMilliseconds: 5), replica: { _ in nil }) == [.close(reason: "clock before hello")])
        var c = SyncSession(scopes: [scope])
        _ = c.receive(.hello(version: 1, scopes: [scope]), replica: { _ in nil })
        #expect(c.receive(.clock(wallMilliseconds: 5), replica: { _ in nil }) == [.peerClock(wallMilliseconds: 5)])
        #expect(throws: DecodeError.self) { _ = try SyncMessage(decoding: [0x14, 1, 2]) }
    }

    @Test func framingLimits() throws {
        let big = [UInt8](repeating: 1, count: 200_000)
        let frags = Fragmenter.fragments(of: big)
        #expect(frags.count == 4 && frags.allSatisfy { $0.count <= Noise.maxMessageLength - Noise.tagLength })
        var r = Reassembler()
        var out: [UInt8]?
        for f in frags { out = try r.feed(f) }
        #expect(out == big)
        #expect(throws: FramingError.self) { _ = try r.feed([0x80, 1]) }
        #expect(throws: FramingError.self) { _ = try r.feed([]) }
        var r2 = Reassembler()
        let chunk = [UInt8(1)] + [UInt8](repeating: 0, count: Fragmenter.maxFragmentData)
        #expect(throws: FramingError.self) {
            for _ in 0...(Fragmenter.maxMessageLength / Fragmenter.maxFragmentData) { _ = try r2.feed(chunk) }
        }
        var lp = LengthPrefixedReader()
        lp.append([0, 3, 9, 9])
        #expect(lp.next() == nil)
        lp.append([9, 0])
        #expect(lp.next() == [9, 9, 9])
        #expect(lp.next() == nil)
    }
}

@Suite("Sync messages from a hostile peer")
struct HostileSyncTests {
    @Test func randomAndMutatedMessagesNeverCrash() throws {
        var a = ChangeAuthor(signer: Ed25519.PrivateKey())
        var r = Replica(scope: scope)
        let c = try a.commit([ContactEdit(contact: ContactID(high: 1, low: 1), ops: [.setField(.city, "Lyon")])], to: &r, wallMilliseconds: now)
        var vv = VersionVector()
        vv[a.device] = 1
        let valid = [SyncMessage.hello(version: 1, scopes: [scope]), .vector(scope: scope, vv), .changes(scope: scope, [c]), .caughtUp(scope: scope)]
        var state: UInt64 = 7
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 11
        }
        var decoded = 0
        for round in 0..<5_000 {
            var bytes = valid[round % valid.count].encoded
            for _ in 0..<(1 + Int(next() % 6)) where !bytes.isEmpty {
                let i = Int(next() % UInt64(bytes.count))
                if next() % 2 == 0 { bytes[i] = UInt8(truncatingIfNeeded: next()) } else { bytes.removeSubrange(i...) }
            }
            var session = SyncSession(scopes: [scope])
            _ = session.start()
            _ = session.receive(.hello(version: 1, scopes: [scope]), replica: { _ in r })
            if let m = try? SyncMessage(decoding: bytes) {
                decoded += 1
                for action in session.receive(m, replica: { _ in r }) {
                    if case let .deliver(_, changes) = action {
                        var copy = r
                        for ch in changes { _ = try? copy.receive(ch, nowMilliseconds: now) }
                    }
                }
            }
        }
        #expect(decoded > 0)
    }
}
