import Foundation
import KithCrypto
import KithSync
import NIOCore
import NIOPosix

/// One request/response style Noise connection (the hub's, and a member's to a hub): the XX
/// handshake with certificates as payloads, then whole `SyncMessage`s each way. Used inside one
/// task, within `NIOAsyncChannel.executeThenClose`.
final class NoiseLink {
    struct Failure: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    private var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    private var reader = LengthPrefixedReader()
    private var reassembler = Reassembler()
    private var transport: NoiseTransport!
    private(set) var peer: PeerIdentity!
    /// The Noise handshake hash: what join and pairing proofs bind to.
    private(set) var handshakeHash: [UInt8] = []

    init(inbound: NIOAsyncChannelInboundStream<ByteBuffer>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        iterator = inbound.makeAsyncIterator()
        self.outbound = outbound
    }

    private func next() async throws -> [UInt8] {
        while true {
            if let m = reader.next() { return m }
            guard let buffer = try await iterator.next() else { throw Failure(message: "connection closed by peer") }
            reader.append(Array(buffer.readableBytesView))
        }
    }

    private func write(_ bytes: [UInt8]) async throws { try await outbound.write(ByteBuffer(bytes: LengthPrefixedReader.frame(bytes))) }

    /// Runs the handshake; the peer's certificate must verify and certify the key it proved.
    func handshake(role: NoiseHandshake.Role, staticKey: X25519.PrivateKey, certificate: DeviceCertificate, now: UInt64) async throws {
        var hs = NoiseHandshake(role: role, staticKey: staticKey, prologue: Noise.kithPrologue)
        let payload: [UInt8]
        if role == .initiator {
            try await write(try hs.writeMessage(payload: []))
            payload = try hs.readMessage(try await next())
            try await write(try hs.writeMessage(payload: certificate.encoded))
        } else {
            _ = try hs.readMessage(try await next())
            try await write(try hs.writeMessage(payload: certificate.encoded))
            payload = try hs.readMessage(try await next())
        }
        handshakeHash = hs.handshakeHash
        guard let t = hs.transport() else { throw Failure(message: "handshake did not complete") }
        transport = t
        peer = try PeerIdentity.authenticate(payload: payload, remoteStatic: t.remoteStatic, now: now, allowed: { _ in true })
    }

    func send(_ message: SyncMessage) async throws {
        for fragment in Fragmenter.fragments(of: message.encoded) { try await write(try transport.seal(fragment)) }
    }

    func receive() async throws -> SyncMessage {
        while true {
            guard let plain = try reassembler.feed(try transport.open(try await next())) else { continue }
            return try SyncMessage(decoding: plain)
        }
    }

    /// Connects to "host:port" and runs `body` on an initiated link.
    static func connect<T: Sendable>(to address: String, staticKey: X25519.PrivateKey, certificate: DeviceCertificate, now: UInt64,
                                     _ body: @escaping @Sendable (NoiseLink) async throws -> T) async throws -> T {
        guard let (host, port) = HostPort.parse(address) else { throw Failure(message: "'\(address)' is not host:port") }
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .connect(host: host, port: port) { ch in
                ch.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch) }
            }
        return try await channel.executeThenClose { inbound, outbound in
            let link = NoiseLink(inbound: inbound, outbound: outbound)
            try await link.handshake(role: .initiator, staticKey: staticKey, certificate: certificate, now: now)
            return try await body(link)
        }
    }
}
