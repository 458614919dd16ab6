import Foundation
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
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        let bound = server.channel.localAddress?.port ?? port
        let node = self.node, logger = self.logger, now = self.now
        return (bound, {
            do {
                try await server.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await child in inbound {
                            let label = child.channel.remoteAddress?.description ?? "peer"
                            group.addTask {
                                await PeerConnection.run(child, role: .responder, node: node, label: label, logger: logger, now: now)
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
                delay = 1
                await PeerConnection.run(channel, role: .initiator, node: node, label: "\(host):\(port)", logger: logger, now: now)
            } catch {
                logger.debug("cannot reach peer", metadata: ["peer": "\(host):\(port)", "reason": "\(error)"])
            }
            try? await Task.sleep(nanoseconds: delay * 1_000_000_000)
            delay = min(delay * 2, 30)
        }
    }
}
