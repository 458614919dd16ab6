import Foundation
import KithChapter
import NIOCore
import NIOPosix

extension PeerNetwork {
    /// Keeps the chapter overlay (sync.md §9): every `interval` seconds (sooner after a join),
    /// runs a round and dials what it asks for, one connection attempt each, until cancelled.
    public func maintainOverlay(interval: Double = 1) async {
        await withDiscardingTaskGroup { group in
            var waited = 0.0
            while !Task.isCancelled {
                let dials = await node.overlayRound()
                for dial in dials {
                    guard let (host, port) = HostPort.parse(dial.address) else {
                        await node.overlayDialEnded(dial)
                        continue
                    }
                    group.addTask {
                        await dialOnce(host: host, port: port, dial: dial)
                        await node.overlayDialEnded(dial)
                    }
                }
                waited = 0
                while waited < interval, !Task.isCancelled {
                    try? await Task.sleep(nanoseconds: 50_000_000)
                    waited += 0.05
                    if await node.overlayWanted { break }
                }
            }
            group.cancelAll()
        }
    }

    /// One connection to `host:port` (5 s to connect), run until it ends; an overlay dial
    /// (`dial`) is bound to the device its record names.
    func dialOnce(host: String, port: Int, dial: OverlayDial? = nil) async {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(5))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
            await PeerConnection.run(channel, role: .initiator, node: node, label: "\(host):\(port)", logger: logger, now: now,
                                     purpose: dial.map { .overlay($0) } ?? .sync)
        } catch {
            logger.debug("cannot reach chapter peer", metadata: ["peer": "\(host):\(port)", "reason": "\(error)"])
        }
    }
}

