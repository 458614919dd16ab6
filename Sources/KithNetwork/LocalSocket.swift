import Foundation
import Logging
import NIOCore
import NIOPosix

/// A local control socket (mode 0600): binds `path` (replacing a stale socket) and returns the
/// accept loop, which serves each client with `serve` and removes the socket when it ends.
/// kithd's `kithd.sock` and the hub's `hub.sock` are both this.
enum LocalSocket {
    static func bind(path: String, logger: Logger, what: String,
                     serve: @escaping @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async -> Void) async throws -> @Sendable () async -> Void {
        try? FileManager.default.removeItem(atPath: path)
        let old = umask(0o177)
        defer { umask(old) }
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(unixDomainSocketPath: path) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        _ = chmod(path, 0o600)
        return {
            do {
                try await server.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await client in inbound { group.addTask { await serve(client) } }
                    }
                }
            } catch {
                if !Task.isCancelled { logger.error("\(what) stopped", metadata: ["reason": "\(error)"]) }
            }
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}
