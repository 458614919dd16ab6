import Foundation
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

    static func run(_ channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, role: NoiseHandshake.Role, node: SyncNode,
                    label: String, logger: Logger, now: @escaping @Sendable () -> UInt64) async {
        do {
            try await channel.executeThenClose { inbound, outbound in
                let (events, eventsIn) = AsyncStream<ConnectionEvent>.makeStream()
                let (writes, writesIn) = AsyncStream<ByteBuffer>.makeStream()
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
                    group.addTask {
                        for await buffer in writes {
                            await node.countWire(in: 0, out: buffer.readableBytes)
                            try await outbound.write(buffer)
                        }
                    }
                    defer {
                        writesIn.finish()
                        eventsIn.finish()
                        group.cancelAll()
                    }
                    try await process(events: events, eventsIn: eventsIn, send: { writesIn.yield(ByteBuffer(bytes: $0)) },
                                      role: role, node: node, label: label, logger: logger, now: now)
                }
            }
        } catch let e as Closed {
            logger.info("peer connection closed", metadata: ["peer": "\(label)", "reason": "\(e.reason)"])
        } catch let e as PeerIdentity.Refusal {
            logger.warning("peer refused", metadata: ["peer": "\(label)", "reason": "\(e.reason)"])
        } catch let e as Noise.Error {
            logger.warning("peer handshake or transport failed", metadata: ["peer": "\(label)", "reason": "\(e.detail)"])
        } catch {
            logger.info("peer connection ended", metadata: ["peer": "\(label)", "reason": "\(error)"])
        }
    }

    static func process(events: AsyncStream<ConnectionEvent>, eventsIn: AsyncStream<ConnectionEvent>.Continuation,
                        send: @escaping ([UInt8]) -> Void, role: NoiseHandshake.Role, node: SyncNode,
                        label: String, logger: Logger, now: @escaping @Sendable () -> UInt64) async throws {
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
                case .antiEntropy?: break // the session starts with a vector exchange anyway
                case .closed?, nil: throw Closed(reason: "connection closed by peer")
                }
            }
        }

        // Handshake: certificates travel in messages 2 and 3.
        let identity = node.identity
        var hs = NoiseHandshake(role: role, staticKey: identity.agreementKey, prologue: Noise.kithPrologue)
        let certificate = identity.certificate.encoded
        var peerPayload: [UInt8]
        if role == .initiator {
            send(LengthPrefixedReader.frame(try hs.writeMessage(payload: [])))
            peerPayload = try hs.readMessage(try await nextMessage())
            send(LengthPrefixedReader.frame(try hs.writeMessage(payload: certificate)))
        } else {
            _ = try hs.readMessage(try await nextMessage())
            send(LengthPrefixedReader.frame(try hs.writeMessage(payload: certificate)))
            peerPayload = try hs.readMessage(try await nextMessage())
        }
        guard var transport = hs.transport() else { throw Closed(reason: "handshake did not complete") }
        let peer = try PeerIdentity.authenticate(payload: peerPayload, remoteStatic: transport.remoteStatic, now: now() / 1000,
                                                 allowed: { node.isAllowed($0) })
        let peerName = "\(label) device \(peer.device)"
        logger.info("peer authenticated", metadata: ["peer": "\(label)", "member": "\(peer.member)", "device": "\(peer.device)"])

        let id = await node.register(eventsIn, name: peerName)
        defer { Task { await node.unregister(id) } }
        var session = SyncSession(scopes: await node.scopes)
        var reassembler = Reassembler()

        func perform(_ actions: [SyncSession.Action]) async throws {
            for action in actions {
                switch action {
                case let .send(message):
                    for fragment in Fragmenter.fragments(of: message.encoded) {
                        send(LengthPrefixedReader.frame(try transport.seal(fragment)))
                    }
                case let .deliver(_, changes):
                    await node.receive(changes, from: id, peerName: peerName)
                case let .caughtUp(scope):
                    logger.info("caught up with peer", metadata: ["peer": "\(peerName)", "scope": "\(scope)"])
                case let .close(reason):
                    throw Closed(reason: reason)
                }
            }
        }

        try await perform(session.start())
        if !pendingPushes.isEmpty { try await perform(session.localChanges(pendingPushes)) }
        while true {
            if let m = reader.next() {
                guard let plain = try reassembler.feedOrThrow(try transport.open(m)) else { continue }
                let message: SyncMessage
                do { message = try SyncMessage(decoding: plain) } catch { throw Closed(reason: "malformed sync message: \(error)") }
                let snapshot = await node.replica()
                try await perform(session.receive(message, replica: { $0 == snapshot.scope ? snapshot : nil }))
                continue
            }
            switch await iterator.next() {
            case let .bytes(b)?: reader.append(b)
            case let .push(cs)?: try await perform(session.localChanges(cs))
            case .antiEntropy?:
                let snapshot = await node.replica()
                try await perform(session.antiEntropy(replica: { $0 == snapshot.scope ? snapshot : nil }))
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
