import Foundation
import KithCrypto
@testable import KithNetwork
import KithStore
import Logging
import NIOCore
import NIOPosix
import Testing

/// The peer listener's shutdown: connections NIO accepted that the accept loop never took are
/// finished and closed when the listener stops (before, a listener cancelled while dials
/// arrived left NIO channels whose writer was never finished: NIO's debug-build trap
/// "Deinited NIOAsyncWriter without calling finish()" crashed the test process).
@Suite("Peer listener shutdown", .serialized)
struct PeerServerShutdownTests {
    func node(_ dir: String) throws -> SyncNode {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let member = Ed25519.PrivateKey(), device = Ed25519.PrivateKey(), agreement = X25519.PrivateKey()
        let cert = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey,
                                           createdAt: UInt64(Date().timeIntervalSince1970) - 60)
        var logger = Logger(label: "listener-test")
        logger.logLevel = .critical
        return try SyncNode(directory: dir, identity: .init(certificate: cert, agreementKey: agreement, deviceKey: device, memberKey: member),
                            storageKey: SymmetricKey(), logger: logger, maxInboundPerAddress: 256)
    }

    /// Opens `count` raw TCP connections to `port` as fast as it can, keeping each it got.
    func flood(port: Int, count: Int) async -> [any Channel] {
        await withTaskGroup(of: (any Channel)?.self) { group in
            for _ in 0..<count {
                group.addTask {
                    try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                        .connectTimeout(.seconds(10))
                        .connect(host: "127.0.0.1", port: port).get()
                }
            }
            var out: [any Channel] = []
            for await c in group { if let c { out.append(c) } }
            return out
        }
    }

    @Test func aListenerClosedWhileDialsFloodItClosesEveryAcceptedConnection() async throws {
        let tmp = try TempDir()
        let node = try node(tmp.path("n"))
        // The node's per-address limit is raised (`node`): every dial is handed to the loop,
        // none refused at the gate, so many are still queued when the listener closes.
        var logger = Logger(label: "listener-test")
        logger.logLevel = .critical
        let network = PeerNetwork(node: node, logger: logger, now: ContactStore.systemClock)
        for round in 0..<8 {
            let (port, serve) = try await network.listen(host: "127.0.0.1", port: 0)
            let listener = Task { await serve() }
            let dials = Task { await flood(port: port, count: 64) }
            // Cancel the listener while the dials arrive (a few rounds late, a few early).
            try await Task.sleep(nanoseconds: UInt64(round % 4) * 5_000_000)
            listener.cancel()
            await listener.value
            let channels = await dials.value
            // Every connection the listener accepted is closed by it: none is left open (an
            // accepted connection nobody consumed stayed open for good, and trapped in debug).
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, channels.contains(where: \.isActive) { try await Task.sleep(nanoseconds: 50_000_000) }
            let open = channels.filter(\.isActive).count
            for c in channels { try? await c.close() }
            #expect(open == 0, "round \(round): \(open) of \(channels.count) accepted connections left open after the listener stopped")
        }
        // The node still listens afterwards (a new listener on a new port serves a dial).
        let (port, serve) = try await network.listen(host: "127.0.0.1", port: 0)
        let listener = Task { await serve() }
        let one = await flood(port: port, count: 1)
        #expect(one.count == 1)
        for c in one { try? await c.close() }
        listener.cancel()
        await listener.value
    }
}
