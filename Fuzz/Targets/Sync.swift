import KithCRDT
import KithCrypto
import KithSync

enum SyncTargets {
    /// One application message of a sync session, as decrypted and reassembled.
    static func message(_ data: [UInt8]) {
        guard let m = try? SyncMessage(decoding: data) else { return }
        switch m {
        case .unknown: return
        // The encoder shortens reasons to 500 characters; longer ones do not round-trip.
        case let .joinRefused(s), let .joinHeld(s), let .notDelivered(s): if s.count > 500 { return }
        default: break
        }
        let again = try? SyncMessage(decoding: m.encoded)
        check(again == m, "a sync message decodes to itself after re-encoding")
    }

    /// The byte stream of a connection: length-prefixed Noise messages, then fragments.
    static func framing(_ data: [UInt8]) {
        guard !data.isEmpty else { return }
        // One input in eight is repeated past 64 KiB, where the reader compacts its buffer.
        var stream = data
        if data[0] % 8 == 0 { while stream.count < 70_000 { stream += data } }
        var whole = LengthPrefixedReader()
        whole.append(stream)
        var expected: [[UInt8]] = []
        while let m = whole.next() { expected.append(m) }
        // However TCP chunks the bytes, the same messages come out.
        var chunked = LengthPrefixedReader()
        var got: [[UInt8]] = []
        var i = 0, k = 0
        while i < stream.count {
            let n = 1 + (Int(data[k % data.count]) * 37 + k) % 1500
            chunked.append(stream[i..<min(stream.count, i + n)])
            while let m = chunked.next() { got.append(m) }
            i += n
            k += 1
        }
        check(got == expected, "chunking does not change the messages read")
        // Every message as a decrypted plaintext: fragments reassembled, messages decoded.
        var reassembler = Reassembler()
        for m in expected.prefix(64) {
            do {
                if let message = try reassembler.feed(m) { _ = try? SyncMessage(decoding: message) }
            } catch {
                reassembler = Reassembler()
            }
        }
        // Fragmenting any message and reassembling it gives it back.
        var message = data
        if data[0] % 8 == 1 { while message.count < Fragmenter.maxFragmentData * 2 + Int(data.last!) { message += data } }
        var back = Reassembler()
        var out: [UInt8]?
        let fragments = Fragmenter.fragments(of: message)
        for (n, f) in fragments.enumerated() {
            do { out = try back.feed(f) } catch { check(false, "a fragment of our own was refused: \(error)") }
            check((out == nil) == (n < fragments.count - 1), "only the last fragment completes the message")
        }
        check(out == message, "fragments reassemble to the message")
    }

    static let sessionScopes: Set<ScopeID> = [CRDTTargets.scope, ScopeID(name: "other")]

    /// A replica holding the seed chain: what the session offers the peer.
    static let sessionReplica: Replica = {
        var r = Replica(scope: CRDTTargets.scope)
        for c in Seeds.chain { _ = try! r.receive(c, nowMilliseconds: Keys.nowMilliseconds) }
        return r
    }()

    /// A sync session after the handshake: the peer's messages (`u16 length ‖ message`,
    /// repeated; a length past the end takes the rest, so growing the last message needs no
    /// second mutation) drive the session, delivered changes go to the replica, and what the
    /// session answers must be well-formed.
    static func session(_ data: [UInt8]) {
        var cursor = Cursor(data)
        var session = SyncSession(scopes: sessionScopes)
        var replica = sessionReplica
        _ = session.start()
        var count = 0
        while let b = cursor.chunk(), count < 32 {
            count += 1
            guard let m = try? SyncMessage(decoding: b) else { continue }
            let current = replica
            let actions = session.receive(m) { $0 == current.scope ? current : nil }
            for a in actions {
                switch a {
                case let .send(out):
                    let back = try? SyncMessage(decoding: out.encoded)
                    if case .run = out { check(back != nil, "a run the session sends decodes") } else { check(back == out, "what the session sends decodes to itself") }
                case let .deliver(_, changes):
                    var applied: [Change] = []
                    for c in changes where (try? replica.receive(c, nowMilliseconds: Keys.nowMilliseconds)) != nil { applied.append(c) }
                    _ = session.localChanges(applied)
                default:
                    break
                }
            }
            let now = replica
            _ = session.antiEntropy { $0 == now.scope ? now : nil }
        }
    }

    static let initiatorStatic = Keys.x(0x51)
    static let initiatorEphemeral = Keys.x(0x52)
    static let responderStatic = Keys.x(0x53)
    static let responderEphemeral = Keys.x(0x54)

    /// Both sides of an XX handshake with fixed keys, driven by a script: each step is
    /// `action u8 ‖ length u8 ‖ data`. Actions: 0/1 initiator/responder writes a message with
    /// payload `data`; 2/3 the pending message is delivered to the responder/initiator, with the
    /// byte at `data[0]` XORed with `data[1]` when `data` has two bytes; 4/5 `data` itself is read by the
    /// initiator/responder; 6/7 once both are done, `data` is sealed by one side and opened by the
    /// other; 8 `data` is opened as a transport message by the responder.
    static func noise(_ data: [UInt8]) {
        var cursor = Cursor(data)
        var a = NoiseHandshake(role: .initiator, staticKey: initiatorStatic, prologue: Noise.kithPrologue, ephemeral: initiatorEphemeral)
        var b = NoiseHandshake(role: .responder, staticKey: responderStatic, prologue: Noise.kithPrologue, ephemeral: responderEphemeral)
        var toB: [UInt8]?, toA: [UInt8]?
        var ta: NoiseTransport?, tb: NoiseTransport?
        var steps = 0
        while let action = cursor.byte(), let arg = cursor.shortChunk(), steps < 64 {
            steps += 1
            switch action % 9 {
            case 0: toB = try? a.writeMessage(payload: arg)
            case 1: toA = try? b.writeMessage(payload: arg)
            case 2:
                guard let m = toB else { continue }
                toB = nil
                authenticate(try? b.readMessage(tamper(m, arg)), b)
            case 3:
                guard let m = toA else { continue }
                toA = nil
                authenticate(try? a.readMessage(tamper(m, arg)), a)
            case 4: authenticate(try? a.readMessage(arg), a)
            case 5: authenticate(try? b.readMessage(arg), b)
            case 6, 7:
                guard var s = action % 9 == 6 ? ta : tb, var r = action % 9 == 6 ? tb : ta else { continue }
                guard let sealed = try? s.seal(arg) else { check(false, "sealing \(arg.count) bytes failed"); continue }
                let opened = try? r.open(sealed)
                check(opened == arg, "a transport message opens to what was sealed")
                if action % 9 == 6 { ta = s; tb = r } else { tb = s; ta = r }
            default:
                if var r = tb {
                    _ = try? r.open(arg)
                    tb = r
                }
            }
            if a.isComplete, b.isComplete, ta == nil {
                // Both sides finished: whatever was tampered with, they agree on everything.
                check(a.handshakeHash == b.handshakeHash, "completed handshakes agree on the transcript hash")
                check(a.remoteStatic == responderStatic.publicKey && b.remoteStatic == initiatorStatic.publicKey,
                      "completed handshakes authenticated the real static keys")
                ta = a.transport()
                tb = b.transport()
                check(ta != nil && tb != nil, "a completed handshake gives a transport")
            }
        }
    }

    static func tamper(_ m: [UInt8], _ arg: [UInt8]) -> [UInt8] {
        guard arg.count >= 2, !m.isEmpty else { return m }
        var out = m
        out[Int(arg[0]) % m.count] ^= arg[1]
        return out
    }

    /// What a node does with a handshake payload: it must be a valid device certificate.
    static func authenticate(_ payload: [UInt8]?, _ h: NoiseHandshake) {
        guard let payload, let rs = h.remoteStatic else { return }
        _ = try? PeerIdentity.authenticate(payload: payload, remoteStatic: rs, now: Keys.nowSeconds, allowed: { _ in true })
    }

    static let lanKey = LANAnnouncement.memberKey(Keys.identities[0].member.publicKey)

    /// A UDP discovery datagram.
    static func lan(_ data: [UInt8]) {
        if let a = LANAnnouncement.verify(data, key: lanKey, nowSeconds: Keys.nowSeconds) {
            check(a.encoded == data, "an accepted announcement re-encodes to its bytes")
        }
    }
}
