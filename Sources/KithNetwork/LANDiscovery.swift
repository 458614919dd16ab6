import Foundation
import KithCrypto
import KithSync
import Logging
import NIOCore
import NIOPosix

/// LAN discovery (Protocol/sync.md §7): announces this node's sync port to a multicast group
/// under a rotating keyed tag, listens for announcements of nodes with the same discovery key,
/// and keeps a connection to each one found. Off unless enabled.
public struct LANDiscovery: Sendable {
    public static let defaultGroup = "239.255.74.1"
    public static let defaultPort = 7435

    public let network: PeerNetwork
    public let ownPort: Int
    public let multicastPort: Int
    /// The IPv4 address of the interface to announce on ("0.0.0.0" = the default route's).
    public let interface: String
    public let interval: UInt64
    public let logger: Logger

    public init(network: PeerNetwork, ownPort: Int, multicastPort: Int = LANDiscovery.defaultPort,
                interface: String = "0.0.0.0", intervalSeconds: UInt64 = 10, logger: Logger) {
        self.network = network
        self.ownPort = ownPort
        self.multicastPort = multicastPort
        self.interface = interface
        self.interval = intervalSeconds
        self.logger = logger
    }

    public func run() async {
        do {
            try await runOrThrow()
        } catch {
            if !Task.isCancelled { logger.error("LAN discovery stopped", metadata: ["reason": "\(error)"]) }
        }
    }

    func runOrThrow() async throws {
        let key = LANAnnouncement.memberKey(network.node.identity.member)
        let instance = SecureRandom.bytes(8)
        let groupAddress = try SocketAddress(ipAddress: Self.defaultGroup, port: multicastPort)
        let interfaceAddress = inet_addr(interface)
        guard interfaceAddress != INADDR_NONE || interface == "255.255.255.255" else {
            throw DiscoveryError(reason: "lan_interface '\(interface)' is not an IPv4 address")
        }
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "0.0.0.0", port: multicastPort) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(wrappingChannelSynchronously: channel)
                }
            }
        let network = self.network, logger = self.logger, interval = self.interval, ownPort = self.ownPort
        let multicastPort = self.multicastPort, interfaceName = self.interface
        try await channel.executeThenClose { inbound, outbound in
            // Inside executeThenClose so the channel is closed whatever fails here.
            // IP_ADD_MEMBERSHIP and IP_MULTICAST_IF on the chosen interface (set directly: NIO's
            // joinGroup refuses interfaces without the MULTICAST flag, such as loopback).
            let provider = channel.channel as! (any SocketOptionProvider)
            var membership = ip_mreq()
            membership.imr_multiaddr.s_addr = inet_addr(Self.defaultGroup)
            membership.imr_interface.s_addr = interfaceAddress
            try await provider.unsafeSetSocketOption(level: .ip, name: .ip_add_membership, value: membership).get()
            var outgoing = in_addr()
            outgoing.s_addr = interfaceAddress
            try await provider.setIPMulticastIF(outgoing).get()
            logger.info("LAN discovery on", metadata: ["group": "\(Self.defaultGroup):\(multicastPort)", "interface": "\(interfaceName)"])
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        let now = ContactStoreClock.seconds()
                        let a = LANAnnouncement(key: key, port: UInt16(ownPort), instance: instance, nowSeconds: now)
                        try await outbound.write(AddressedEnvelope(remoteAddress: groupAddress, data: ByteBuffer(bytes: a.encoded)))
                        try await Task.sleep(nanoseconds: interval * 1_000_000_000)
                    }
                }
                group.addTask {
                    var dialing = Set<String>()
                    try await withThrowingDiscardingTaskGroup { dials in
                        for try await envelope in inbound {
                            let bytes = Array(envelope.data.readableBytesView)
                            guard let a = LANAnnouncement.verify(bytes, key: key, nowSeconds: ContactStoreClock.seconds()),
                                  a.instance != instance, let host = envelope.remoteAddress.ipAddress else { continue }
                            let target = "\(host):\(a.port)"
                            guard dialing.insert(target).inserted else { continue }
                            logger.info("found a peer on the LAN", metadata: ["peer": "\(target)"])
                            dials.addTask { await network.dial(host: host, port: Int(a.port)) }
                        }
                    }
                }
                try await group.next()
                group.cancelAll()
            }
        }
    }
}

struct DiscoveryError: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}

/// Wall-clock seconds (the announcement epoch needs real time, not a monotonic clock).
enum ContactStoreClock {
    static func seconds() -> UInt64 { UInt64(Date().timeIntervalSince1970) }
}
