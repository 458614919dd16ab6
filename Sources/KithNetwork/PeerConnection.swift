import Foundation
import KithChapter
import KithCRDT
import KithCrypto
import KithSync
import Logging
import NIOCore
import NIOPosix

/// Drives one TCP connection: the Noise XX handshake with device certificates as payloads,
/// peer authentication, then the sync session. One loop consumes network bytes and pushed
/// changes in order, so Noise nonces always match the order bytes are written.
enum PeerConnection {
    struct Closed: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    /// `onHandshake` runs once the Noise handshake completed (the gate stops counting the
    /// connection as evictable).
    static func run(_ channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, role: NoiseHandshake.Role, node: SyncNode,
                    label: String, logger: Logger, now: @escaping @Sendable () -> UInt64, purpose: Purpose = .sync,
                    onHandshake: @escaping @Sendable () -> Void = {}) async {
        do {
            try await channel.executeThenClose { inbound, outbound in
                let (events, eventsIn) = AsyncStream<ConnectionEvent>.makeStream()
                // Writes go straight to the channel and wait while it is not writable (SwiftNIO's
                // backpressure): nothing is queued beyond the message being sent. Inbound bytes are
                // read as they arrive, so two nodes sending to each other at once cannot deadlock.
                let send: @Sendable ([UInt8]) async throws -> Void = { bytes in
                    await node.countWire(in: 0, out: bytes.count)
                    try await outbound.write(ByteBuffer(bytes: bytes))
                }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        do {
                            for try await buffer in inbound {
                                await node.countWire(in: buffer.readableBytes, out: 0)
                                eventsIn.yield(.bytes(Array(buffer.readableBytesView)))
                            }
                        } catch {}
                        eventsIn.yield(.closed)
                    }
                    defer {
                        eventsIn.finish()
                        group.cancelAll()
                    }
                    try await process(events: events, eventsIn: eventsIn, send: send,
                                      role: role, node: node, label: label, logger: logger, now: now, purpose: purpose, onHandshake: onHandshake)
                }
            }
        } catch let e as Closed {
            logger.info("peer connection closed", metadata: ["peer": "\(label)", "reason": "\(e.reason)"])
        } catch let e as PeerIdentity.Refusal {
            logger.warning(limitedBy: node.logLimiter, "peer-refused", "peer refused", metadata: ["peer": "\(label)", "reason": "\(e.reason)"])
        } catch let e as Noise.Error {
            logger.warning(limitedBy: node.logLimiter, "handshake-failed", "peer handshake or transport failed", metadata: ["peer": "\(label)", "reason": "\(e.detail)"])
        } catch {
            logger.info("peer connection ended", metadata: ["peer": "\(label)", "reason": "\(error)"])
        }
    }

    /// What a connection is for: syncing, or presenting an invite to join a chapter.
    enum Purpose: Sendable {
        case sync
        /// An overlay dial (sync.md §9.3): syncs like `.sync`, but when the dial is bound to a
        /// device the handshake is aborted (before this node sends its certificate) unless the
        /// responder proves it is that device.
        case overlay(OverlayDial)
        /// Presents `invite` to `admin`, one of the invite's contacts: the proof goes to no other device.
        case join(ChapterInvite, admin: Ed25519.PublicKey, reply: @Sendable (Result<[[UInt8]], ChapterCommandError>) -> Void)
    }

    static func process(events: AsyncStream<ConnectionEvent>, eventsIn: AsyncStream<ConnectionEvent>.Continuation,
                        send: @escaping @Sendable ([UInt8]) async throws -> Void, role: NoiseHandshake.Role, node: SyncNode,
                        label: String, logger: Logger, now: @escaping @Sendable () -> UInt64, purpose: Purpose = .sync,
                        onHandshake: @Sendable () -> Void = {}) async throws {
        var reader = LengthPrefixedReader()
        var iterator = events.makeAsyncIterator()
        var pendingPushes: [Change] = []

        /// The next Noise message from the wire (pushes that arrive meanwhile are kept for later).
        func nextMessage() async throws -> [UInt8] {
            while true {
                if let m = reader.next() { return m }
                switch await iterator.next() {
                case let .bytes(b)?: reader.append(b)
                case let .push(cs)?: pendingPushes += cs
                case .antiEntropy?, .membership?, .revocations?, .forward?, .forwardAnswer?, .addresses?: break // the session starts with a full exchange anyway
                case let .close(reason)?: throw Closed(reason: reason)
                case .closed?, nil: throw Closed(reason: "connection closed by peer")
                }
            }
        }

        // Handshake: certificates travel in messages 2 and 3. A peer that does not complete it
        // within 10 seconds is dropped (a stalled connection must not hold resources).
        let handshakeDeadline = Task {
            try await Task.sleep(nanoseconds: 10_000_000_000)
            eventsIn.yield(.close(reason: "handshake not completed within 10 seconds"))
        }
        defer { handshakeDeadline.cancel() }
        let identity = node.identity
        var hs = NoiseHandshake(role: role, staticKey: identity.agreementKey, prologue: Noise.kithPrologue)
        let certificate = identity.certificate.encoded
        var peerPayload: [UInt8]
        if role == .initiator {
            try await send(LengthPrefixedReader.frame(try hs.writeMessage(payload: [])))
            peerPayload = try hs.readMessage(try await nextMessage())
            if case let .overlay(dial) = purpose, let expected = dial.device {
                guard let remoteStatic = hs.remoteStatic else { throw Closed(reason: "handshake did not complete") }
                let responder = try PeerIdentity.authenticate(payload: peerPayload, remoteStatic: remoteStatic, now: now() / 1000, allowed: { _ in true })
                guard responder.device == expected else {
                    throw PeerIdentity.Refusal(reason: "overlay dial to \(label): the responder is device \(responder.device), not \(expected), which the address record names")
                }
            }
            try await send(LengthPrefixedReader.frame(try hs.writeMessage(payload: certificate)))
        } else {
            _ = try hs.readMessage(try await nextMessage())
            try await send(LengthPrefixedReader.frame(try hs.writeMessage(payload: certificate)))
            peerPayload = try hs.readMessage(try await nextMessage())
        }
        let handshakeHash = hs.handshakeHash
        handshakeDeadline.cancel()
        onHandshake()
        guard var transport = hs.transport() else { throw Closed(reason: "handshake did not complete") }
        let peer = try PeerIdentity.authenticate(payload: peerPayload, remoteStatic: transport.remoteStatic, now: now() / 1000,
                                                 allowed: { _ in true })
        var reassembler = Reassembler()

        func sendMessage(_ message: SyncMessage) async throws {
            for fragment in Fragmenter.fragments(of: message.encoded) {
                try await send(LengthPrefixedReader.frame(try transport.seal(fragment)))
            }
        }
        func receiveMessage() async throws -> SyncMessage {
            while true {
                guard let plain = try reassembler.feedOrThrow(try transport.open(try await nextMessage())) else { continue }
                do { return try SyncMessage(decoding: plain) } catch { throw Closed(reason: "malformed sync message: \(error)") }
            }
        }

        // A joiner presents its proof and takes the log home; nothing else happens on this connection.
        if case let .join(invite, admin, reply) = purpose {
            guard peer.device == admin else {
                reply(.failure(ChapterCommandError("the daemon at \(label) is not the admin device the invite names for that address (it is \(peer.device)); check the invite's address")))
                throw PeerIdentity.Refusal(reason: "join: the responder is not the admin device the invite names")
            }
            try await sendMessage(.join(chapter: invite.chapter.bytes, proof: invite.proof(handshakeHash: handshakeHash, certificate: identity.certificate)))
            // A daemon that takes the proof and never answers must not stall the join: the
            // joiner gives up on it after 30 s (an honest admin on a loaded machine answers well within it) and tries the invite's next daemon (§4).
            let answerDeadline = Task {
                try await Task.sleep(nanoseconds: PeerNetwork.joinAnswerSeconds * 1_000_000_000)
                eventsIn.yield(.close(reason: "no answer to the join within \(PeerNetwork.joinAnswerSeconds) seconds"))
            }
            defer { answerDeadline.cancel() }
            switch try await receiveMessage() {
            case let .membership(chapter, ops) where chapter == invite.chapter.bytes:
                reply(.success(ops))
            case let .joinRefused(reason):
                reply(.failure(ChapterCommandError("the admin's daemon refused: \(reason)")))
            case let .joinHeld(reason):
                reply(.failure(ChapterCommandError(reason, held: true)))
            default:
                reply(.failure(ChapterCommandError("the admin's daemon already counts this member as one of the chapter's (the invite was used already, or the chapter is your own) and started syncing instead of answering the join; nothing to join: see kith chapter list")))
            }
            throw Closed(reason: "join finished")
        }

        let awaitingApproval = role == .initiator ? await node.isPendingJoinAdmin(peer.device) : false
        let allowed = await node.isAllowed(peer)
        guard awaitingApproval || allowed else {
            // An unknown device may only present a join proof, and only to an admin with an open invite.
            guard role == .responder, await node.acceptsJoins else {
                throw PeerIdentity.Refusal(reason: "member \(peer.member) (device \(peer.device)) is not allowed to sync with this node")
            }
            logger.info("unknown device connected to join", metadata: ["peer": "\(label)", "member": "\(peer.member)"])
            let deadline = Task {
                try await Task.sleep(nanoseconds: 15_000_000_000)
                eventsIn.yield(.close(reason: "no join request within 15 seconds"))
            }
            defer { deadline.cancel() }
            let request = try await receiveMessage()
            if case let .pair(proof) = request {
                do {
                    let cert = try await node.completePairing(proof: proof, handshakeHash: handshakeHash, temporary: peer.certificate)
                    try await sendMessage(.paired(certificate: cert.encoded))
                } catch let e as ChapterCommandError {
                    try await sendMessage(.joinRefused(reason: e.message))
                    throw PeerIdentity.Refusal(reason: "pairing refused: \(e.message)")
                }
                throw Closed(reason: "pairing handled; the new device connects with its certificate")
            }
            guard case let .join(chapter, proof) = request else {
                throw PeerIdentity.Refusal(reason: "member \(peer.member) is not allowed to sync, and sent no join request")
            }
            switch await node.testHookJoinAnswer {
            case .silent?:
                try? await Task.sleep(nanoseconds: 2 * PeerNetwork.joinAnswerSeconds * 1_000_000_000)
                throw Closed(reason: "test hook: a silent admin's daemon")
            case .held?:
                try await sendMessage(.joinHeld(reason: "held (test hook: a hostile admin's daemon)"))
                throw Closed(reason: "test hook: a false join-held")
            case nil: break
            }
            do {
                let ops = try await node.admit(chapter: chapter, proof: proof, handshakeHash: handshakeHash, joiner: peer.certificate)
                try await sendMessage(.membership(chapter: chapter, ops: ops))
                logger.notice("admitted a new member by invite", metadata: ["member": "\(peer.member)", "device": "\(peer.device)"])
            } catch let e as ChapterCommandError where e.held {
                try await sendMessage(.joinHeld(reason: e.message))
                throw Closed(reason: "join held for approval")
            } catch let e as ChapterCommandError {
                try await sendMessage(.joinRefused(reason: e.message))
                throw PeerIdentity.Refusal(reason: "join refused: \(e.message)")
            }
            throw Closed(reason: "join handled; the new member reconnects to sync")
        }

        let peerName = "\(label) device \(peer.device)"
        logger.info("peer authenticated", metadata: ["peer": "\(label)", "member": "\(peer.member)", "device": "\(peer.device)"])
        let scopes = await node.scopes(for: peer)
        let origin: PeerOrigin
        switch (role, purpose) {
        case (.responder, _): origin = .inbound
        case let (.initiator, .overlay(dial)): origin = .overlay(dial)
        case (.initiator, _): origin = .dialled
        }
        guard let id = await node.register(eventsIn, name: peerName, peer: peer, scopes: scopes, origin: origin, handshakeHash: handshakeHash) else {
            throw Closed(reason: "this device is connected already")
        }
        defer { Task { await node.unregister(id) } }
        var session = SyncSession(scopes: scopes)

        /// What the node does with the session's actions, in order. `perform` hands these to
        /// one task at a time, so the node applies a message's changes while this loop already
        /// reads, decrypts and decodes the next one (receive → verify → apply → write overlap).
        /// At most one batch waits behind the one being applied: memory stays bounded, and a slow
        /// node slows the reads (TCP backpressure) instead of queueing.
        @Sendable func performOnNode(_ actions: [SyncSession.Action]) async {
            for action in actions {
                switch action {
                case .send, .close:
                    break // done by `perform` on this connection's task
                case let .deliver(scope, changes):
                    await node.receive(changes, scope: scope, from: id, peerName: peerName)
                case let .caughtUp(scope):
                    await node.noteCaughtUp(id, scope: scope)
                    logger.info("caught up with peer", metadata: ["peer": "\(peerName)", "scope": "\(scope)"])
                case let .membership(chapter, ops):
                    await node.receiveMembership(chapter: chapter, ops: ops, from: id)
                case let .revocations(list):
                    await node.receiveRevocations(list, from: id)
                case let .forward(requestID, chapter, message):
                    // The hub call may take seconds: answer from a task, through the event loop.
                    Task {
                        let answer = await node.forwardToHub(chapter: chapter, message: message, from: id)
                        eventsIn.yield(.forwardAnswer(id: requestID, message: answer))
                    }
                case let .forwardAnswer(requestID, message):
                    await node.completeForward(requestID, message)
                case let .peerClock(ms):
                    await node.notePeerClock(id, wallMilliseconds: ms)
                case let .addresses(chapter, records):
                    await node.receiveAddresses(chapter: chapter, records: records, from: id)
                }
            }
        }
        var nodeWork: Task<Void, Never>?

        /// The session's answer to `message`. Only a hello or a vector needs the replicas, and
        /// their copies end with this call: a copy held while the node applies changes would make
        /// the node copy its whole replica (copy-on-write) for every message.
        func sessionActions(_ message: SyncMessage) async -> [SyncSession.Action] {
            switch message {
            case .hello, .vector:
                var lacking = 0
                let actions: [SyncSession.Action]
                do {
                    let snapshot = await node.replicas(scopes)
                    let vectors = await node.advertisedVectors(scopes)
                    if case let .vector(scope, theirs) = message, session.sharedScopes.contains(scope), let ours = snapshot[scope] {
                        lacking = theirs.changesAhead(of: ours.versionVector())
                    }
                    actions = session.receive(message, replica: { snapshot[$0] }, vector: { vectors[$0] })
                }
                // What the peer holds beyond this node is what it is about to send: the receiving
                // replica sizes its tables once for it (the replica copies are let go first).
                if case let .vector(scope, _) = message, lacking > 0 { await node.expectChanges(lacking, scope: scope) }
                return actions
            default:
                return session.receive(message, replica: { _ in nil }, vector: { _ in nil })
            }
        }

        func perform(_ actions: [SyncSession.Action]) async throws {
            var forNode: [SyncSession.Action] = []
            for action in actions {
                switch action {
                case let .send(message):
                    try await sendMessage(message)
                case let .close(reason):
                    throw Closed(reason: reason)
                default:
                    forNode.append(action)
                }
            }
            guard !forNode.isEmpty else { return }
            let previous = nodeWork
            nodeWork = Task {
                await previous?.value
                await performOnNode(forNode)
            }
            await previous?.value
        }

        try await perform(session.start(wallMilliseconds: now()))
        for m in await node.membershipMessages(for: scopes) { try await sendMessage(m) }
        if peer.member == identity.member, let r = await node.revocationMessage() { try await sendMessage(r) }
        if !pendingPushes.isEmpty { try await perform(session.localChanges(pendingPushes)) }
        while true {
            if let m = reader.next() {
                guard let plain = try reassembler.feedOrThrow(try transport.open(m)) else { continue }
                let message: SyncMessage
                do { message = try SyncMessage(decoding: plain) } catch { throw Closed(reason: "malformed sync message: \(error)") }
                try await perform(sessionActions(message))
                continue
            }
            switch await iterator.next() {
            case let .bytes(b)?: reader.append(b)
            case let .push(cs)?: try await perform(session.localChanges(cs))
            case let .revocations(list)?:
                if peer.member == identity.member { try await sendMessage(.revocations(list)) }
            case let .forward(requestID, chapter, message)?:
                try await sendMessage(.forwardUpward(id: requestID, chapter: chapter, message: message))
            case let .forwardAnswer(requestID, message)?:
                try await sendMessage(.forwardAnswer(id: requestID, message: message))
            case let .membership(chapter, ops)?:
                if let cid = try? ChapterID(bytes: chapter), session.sharedScopes.contains(cid.contentScope) {
                    try await sendMessage(.membership(chapter: chapter, ops: ops))
                }
            case let .addresses(chapter, records)?:
                if let cid = try? ChapterID(bytes: chapter), session.sharedScopes.contains(cid.contentScope) {
                    try await sendMessage(.addresses(chapter: chapter, records: records))
                }
            case .antiEntropy?:
                let snapshot = await node.replicas(scopes)
                let vectors = await node.advertisedVectors(scopes)
                try await perform(session.antiEntropy(replica: { snapshot[$0] }, vector: { vectors[$0] }))
            case let .close(reason)?: throw Closed(reason: reason)
            case .closed?, nil: throw Closed(reason: "connection closed by peer")
            }
        }
    }
}

extension Reassembler {
    mutating func feedOrThrow(_ plaintext: [UInt8]) throws -> [UInt8]? {
        do { return try feed(plaintext) } catch { throw PeerConnection.Closed(reason: "bad framing: \(error.reason)") }
    }
}
