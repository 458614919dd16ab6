import Foundation
import KithChapter
import KithSync
import Logging
import NIOCore
import NIOPosix

/// Listens for peers and dials static peers (reconnecting with backoff) until cancelled.
public struct PeerNetwork: Sendable {
    public let node: SyncNode
    public let logger: Logger
    public let now: @Sendable () -> UInt64

    public init(node: SyncNode, logger: Logger, now: @escaping @Sendable () -> UInt64) {
        self.node = node
        self.logger = logger
        self.now = now
    }

    /// Binds `host:port` (port 0 = chosen by the OS) and returns the bound port and a task-ready
    /// accept loop.
    public func listen(host: String, port: Int) async throws -> (port: Int, serve: @Sendable () async -> Void) {
        let accepted = AcceptedChannels()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let child = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    accepted.adopt(child)
                    return child
                }
            }
        let bound = server.channel.localAddress?.port ?? port
        let node = self.node, logger = self.logger, now = self.now
        return (bound, {
            // However the loop ends (cancelled, the listener closed, an error), connections NIO
            // accepted that the loop never took are finished and closed: NIO drops them once
            // nobody consumes the accept stream, and an unfinished one traps when deinited.
            defer { accepted.closeAll() }
            do {
                try await server.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await child in inbound {
                            accepted.take(child)
                            let label = child.channel.remoteAddress?.hostAndPort ?? "peer"
                            guard let ticket = ConnectionGate.admitLogging(child.channel, to: node.inboundGate, limiter: node.logLimiter, logger: logger, what: "peer port") else {
                                try? await child.executeThenClose { _, _ in }
                                continue
                            }
                            group.addTask {
                                await PeerConnection.run(child, role: .responder, node: node, label: label, logger: logger, now: now,
                                                         onHandshake: { node.inboundGate.authenticated(ticket) })
                                node.inboundGate.release(ticket)
                            }
                        }
                    }
                }
            } catch {
                if !Task.isCancelled { logger.error("listener stopped", metadata: ["reason": "\(error)"]) }
            }
        })
    }

    /// Keeps a connection to `host:port` open, redialling with backoff (1 s … 30 s) until cancelled.
    public func dial(host: String, port: Int) async {
        var delay: UInt64 = 1
        while !Task.isCancelled {
            do {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connect(host: host, port: port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                        }
                    }
                let start = ContinuousClock.now
                await PeerConnection.run(channel, role: .initiator, node: node, label: "\(host):\(port)", logger: logger, now: now)
                // A connection closed at once (refused, or a second connection of a device already
                // connected: SyncNode.register) keeps backing off instead of redialling every second.
                if ContinuousClock.now - start >= .seconds(10) { delay = 1 }
            } catch {
                logger.debug("cannot reach peer", metadata: ["peer": "\(host):\(port)", "reason": "\(error)"])
            }
            try? await Task.sleep(nanoseconds: delay * 1_000_000_000)
            delay = min(delay * 2, 30)
        }
    }

    /// Dials every address the node asks for at run time (each once), until cancelled.
    public func dialRequested(except already: Set<String>) async {
        var seen = already
        await withDiscardingTaskGroup { group in
            for await address in node.dialRequests where seen.insert(address).inserted {
                guard let (host, port) = HostPort.parse(address) else {
                    logger.warning("ignored an unusable peer address", metadata: ["address": "\(address)"])
                    continue
                }
                group.addTask { await dial(host: host, port: port) }
            }
        }
    }


    /// How long a joiner waits for a daemon's answer to its proof after the handshake.
    static let joinAnswerSeconds: UInt64 = 30

    /// Joins a chapter with an invite: tries the admins' daemons the invite names (the issuing
    /// admin's first, chapters.md §4) until one admits, presents the proof to it, installs the
    /// log it returns and starts syncing. A daemon that cannot be reached, does not answer
    /// within 30 s or refuses passes the join to the next. A join held for approval by the
    /// issuing device stops there; one held by another daemon (which may be hostile) is tried
    /// elsewhere first, and remembered as pending only if no daemon admits.
    public func join(_ invite: ChapterInvite) async throws(ChapterCommandError) -> SyncNode.ChapterSummary {
        let contacts = invite.contacts.filter { HostPort.parse($0.address) != nil }
        guard !contacts.isEmpty else {
            throw ChapterCommandError("the invite names no reachable address ('\(invite.hint)'); ask the admin for an invite made with --hint host:port")
        }
        var failures: [String] = []
        var held: ChapterCommandError?
        for contact in contacts {
            do {
                return try await join(invite, at: contact)
            } catch let e where e.held {
                held = held ?? e
                if contact.device == invite.admin { break }
            } catch {
                failures.append(error.message)
            }
        }
        if let held {
            try await node.recordPendingJoin(invite)
            throw held
        }
        throw ChapterCommandError(failures.count == 1 ? failures[0] : "no admin's daemon named by the invite admitted this device: " + failures.joined(separator: "; "))
    }

    private func join(_ invite: ChapterInvite, at contact: ChapterInvite.Contact) async throws(ChapterCommandError) -> SyncNode.ChapterSummary {
        let (host, port) = HostPort.parse(contact.address)!
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw ChapterCommandError("cannot reach the admin's daemon at \(contact.address): \(error)")
        }
        let box = ResultBox()
        await PeerConnection.run(channel, role: .initiator, node: node, label: contact.address, logger: logger, now: now,
                                 purpose: .join(invite, admin: contact.device, reply: { box.set($0) }))
        guard let result = box.get() else {
            throw ChapterCommandError("the admin's daemon at \(contact.address) closed the connection without answering (is the invite still open, and is its daemon an admin's?)")
        }
        switch result {
        case let .success(ops):
            return try await node.installJoined(invite: invite, ops: ops, admittedBy: contact.device)
        case let .failure(e):
            throw e
        }
    }
}

/// Accepted connections between NIO's accept and the listener's loop taking them: what the loop
/// never takes is finished and closed when the loop ends (`closeAll`), and one accepted after
/// that at once. Without it, a listener closed while dials arrive leaves NIO channels whose
/// writer was never finished (a debug-build trap, and an open socket in release).
final class AcceptedChannels: @unchecked Sendable {
    // @unchecked: every access holds the lock.
    typealias Child = NIOAsyncChannel<ByteBuffer, ByteBuffer>
    private let lock = NSLock()
    private var pending: [ObjectIdentifier: Child] = [:]
    private var closed = false

    /// NIO made `child` for an accepted connection (on its event loop).
    func adopt(_ child: Child) {
        let late = lock.withLock {
            if !closed { pending[ObjectIdentifier(child.channel)] = child }
            return closed
        }
        if late { Self.discard(child) }
    }

    /// The loop took `child`: from now on it runs (and finishes) it.
    func take(_ child: Child) { lock.withLock { _ = pending.removeValue(forKey: ObjectIdentifier(child.channel)) } }

    /// The loop ended: finishes and closes what it never took, and anything accepted later.
    func closeAll() {
        let left = lock.withLock {
            closed = true
            defer { pending = [:] }
            return Array(pending.values)
        }
        for child in left { Self.discard(child) }
    }

    /// Finishes the writer and closes (NIO's scoped way: the plain accessors are deprecated).
    private static func discard(_ child: Child) {
        Task { try? await child.executeThenClose { _, _ in } }
    }
}

/// Carries the join answer out of the connection's processing loop.
final class ResultBox: @unchecked Sendable {
    // @unchecked: every access holds the lock.
    private let lock = NSLock()
    private var value: Result<[[UInt8]], ChapterCommandError>?

    func set(_ v: Result<[[UInt8]], ChapterCommandError>) { lock.withLock { value = v } }
    func get() -> Result<[[UInt8]], ChapterCommandError>? { lock.withLock { value } }
}
