import Foundation
import KithChapter
import KithCrypto
import KithSync
import NIOCore
import NIOPosix

/// The new device's side of `kith device add --pair`: one connection to the member's daemon,
/// a Noise XX handshake with a temporary self-certified certificate, one `pair` message, one
/// answer (Protocol/identity.md §5).
public enum PairingClient {
    public struct Failure: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// Returns the certificate the member's daemon issued for `signing`/`agreement`.
    public static func pair(_ code: PairingCode, signing: Ed25519.PrivateKey, agreement: X25519.PrivateKey,
                            now: UInt64 = UInt64(Date().timeIntervalSince1970)) async throws -> DeviceCertificate {
        guard let i = code.hint.lastIndex(of: ":"), let port = Int(code.hint[code.hint.index(after: i)...]) else {
            throw Failure(message: "the pairing code names no address ('\(code.hint)'); make one with kith device pair --hint host:port")
        }
        let host = String(code.hint[..<i]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        // Self-certified: the new device's own key stands in for a member key it does not have.
        let temporary = DeviceCertificate.issue(member: signing, deviceSigningKey: signing.publicKey,
                                                deviceAgreementKey: agreement.publicKey, createdAt: now)
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(10))
                .connect(host: host, port: port) { ch in
                    ch.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch) }
                }
        } catch {
            throw Failure(message: "cannot reach the member's daemon at \(code.hint): \(error)")
        }
        return try await channel.executeThenClose { inbound, outbound in
            var reader = LengthPrefixedReader()
            var iterator = inbound.makeAsyncIterator()
            func next() async throws -> [UInt8] {
                while true {
                    if let m = reader.next() { return m }
                    guard let buffer = try await iterator.next() else { throw Failure(message: "the member's daemon closed the connection") }
                    reader.append(Array(buffer.readableBytesView))
                }
            }
            func send(_ bytes: [UInt8]) async throws { try await outbound.write(ByteBuffer(bytes: LengthPrefixedReader.frame(bytes))) }

            var hs = NoiseHandshake(role: .initiator, staticKey: agreement, prologue: Noise.kithPrologue)
            try await send(try hs.writeMessage(payload: []))
            let payload = try hs.readMessage(try await next())
            try await send(try hs.writeMessage(payload: temporary.encoded))
            let hash = hs.handshakeHash
            guard var transport = hs.transport() else { throw Failure(message: "handshake did not complete") }
            let responder = try PeerIdentity.authenticate(payload: payload, remoteStatic: transport.remoteStatic, now: now, allowed: { _ in true })
            guard responder.member == code.member else {
                throw Failure(message: "the daemon at \(code.hint) belongs to member \(responder.member), not the one in the code (\(code.member))")
            }
            let proof = PairingCode.proof(token: code.token, handshakeHash: hash, certificate: temporary)
            for fragment in Fragmenter.fragments(of: SyncMessage.pair(proof: proof).encoded) {
                try await send(try transport.seal(fragment))
            }
            var reassembler = Reassembler()
            while true {
                guard let plain = try reassembler.feed(try transport.open(try await next())) else { continue }
                switch try SyncMessage(decoding: plain) {
                case let .paired(bytes):
                    let cert = try DeviceCertificate(encoded: bytes)
                    try cert.verify(now: now, expectedMember: code.member)
                    guard cert.deviceSigningKey == signing.publicKey, cert.deviceAgreementKey == agreement.publicKey else {
                        throw Failure(message: "the member's daemon certified other keys than this device's")
                    }
                    return cert
                case let .joinRefused(reason):
                    throw Failure(message: "the member's daemon refused: \(reason)")
                default:
                    throw Failure(message: "the member's daemon answered with something other than a certificate")
                }
            }
        }
    }
}
