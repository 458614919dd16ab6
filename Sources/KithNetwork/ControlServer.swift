import Foundation
import KithCRDT
import KithCrypto
import KithStore
import Logging
import NIOCore
import NIOPosix

/// The local control API: a Unix domain socket `<data-dir>/kithd.sock` (mode 0600, inside the
/// 0700 data directory) that the `kith` CLI uses while kithd holds the store. One JSON request
/// per line, one JSON response per line; `changes` is followed by `count` binary frames
/// (`u32 big-endian length ‖ encoded change`). See Protocol/control.md.
public struct ControlServer: Sendable {
    public let node: SyncNode
    public let logger: Logger
    /// Joins chapters (dials the invite's admin daemon); nil in tests that need no network.
    public let network: PeerNetwork?
    /// "host:port" put in invites this node opens.
    public let inviteHint: String

    public init(node: SyncNode, logger: Logger, network: PeerNetwork? = nil, inviteHint: String = "") {
        self.node = node
        self.logger = logger
        self.network = network
        self.inviteHint = inviteHint
    }

    /// Binds the socket (replacing a stale one) and returns the accept loop.
    public func bind(path: String) async throws -> @Sendable () async -> Void {
        let context = self
        return try await LocalSocket.bind(path: path, logger: logger, what: "control socket") { await context.serve($0) }
    }

    func serve(_ client: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        do {
            try await client.executeThenClose { inbound, outbound in
                var buffer: [UInt8] = []
                for try await chunk in inbound {
                    buffer += chunk.readableBytesView
                    while let nl = buffer.firstIndex(of: 0x0A) {
                        let line = Array(buffer[..<nl])
                        buffer.removeFirst(nl + 1)
                        for reply in await handle(line) { try await outbound.write(ByteBuffer(bytes: reply)) }
                    }
                    if buffer.count > 64 << 20 {
                        try await outbound.write(ByteBuffer(bytes: Self.jsonLine(["ok": false, "error": "request too large"])))
                        return
                    }
                }
            }
        } catch {
            logger.debug("control client ended", metadata: ["reason": "\(error)"])
        }
    }

    static func jsonLine(_ object: [String: Any]) -> [UInt8] {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])).map { Array($0) + [0x0A] } ?? Array("{\"ok\":false}\n".utf8)
    }

    func handle(_ line: [UInt8]) async -> [[UInt8]] {
        guard let parsed = ControlRequest.parse(line) else {
            return [Self.jsonLine(["ok": false, "error": "a request is one JSON object with an \"op\""])]
        }
        let (op, request) = parsed
        switch op {
        case "status":
            let r = await node.replica()
            return [Self.jsonLine([
                "ok": true, "member": node.identity.member.description, "device": node.identity.certificate.deviceSigningKey.description,
                "peers": await node.peerNames(), "scope": r.scope.description, "contacts": r.visibleContactIDs.count,
                "changes": r.changeCount, "pending": r.pendingCount,
                "scopes": Self.object(await node.scopeInfo()),
            ])]
        case "peers":
            return [Self.jsonLine(["ok": true, "peers": Self.object(await node.peerInfo())])]
        case "changes":
            let all = await node.replica().allChanges()
            var out = [Self.jsonLine(["ok": true, "count": all.count])]
            for c in all {
                var frame: [UInt8] = []
                frame.appendBigEndian(UInt32(c.encoded.count))
                out.append(frame + c.encoded)
            }
            return out
        case "commit":
            let decoded: [[ContactEdit]]
            do { decoded = try ControlRequest.batches(request) } catch {
                return [Self.jsonLine(["ok": false, "error": error.message])]
            }
            do {
                let made = try await node.commit(batches: decoded)
                return [Self.jsonLine(["ok": true, "changes": made.count])]
            } catch let e as StoreError {
                return [Self.jsonLine(["ok": false, "error": e.detail])]
            } catch {
                return [Self.jsonLine(["ok": false, "error": "\(error)"])]
            }
        case "sync-now":
            await node.antiEntropy()
            return [Self.jsonLine(["ok": true])]
        case _ where op.hasPrefix("chapter-") || op == "share" || op == "unshare" || op.hasPrefix("device-") || op.hasPrefix("consent-") || op == "audit":
            do {
                return [Self.jsonLine(try await handleChapter(op, request))]
            } catch let e as ChapterCommandError {
                return [Self.jsonLine(["ok": false, "error": e.message])]
            } catch {
                return [Self.jsonLine(["ok": false, "error": "\(error)"])]
            }
        default:
            return [Self.jsonLine(["ok": false, "error": "unknown op '\(op)'"])]
        }
    }
}
