import Foundation
import KithCRDT
import KithCrypto
import KithStore
import Logging

/// The node's administrative operations (chapters, sharing, consent, devices, status), each
/// named by an op (`APIRoute.op`) and given its fields as JSON values: what the local HTTP API
/// (KithAPI) performs for a route. Transport-free: no sockets, no HTTP. The contact queries
/// and edits are typed (SyncNode+Queries); these keep the JSON shapes Protocol/api.md §4 lists.
public struct NodeCommands: Sendable {
    public let node: SyncNode
    public let logger: Logger
    /// Joins chapters (dials the invite's admin daemon); nil in tests that need no network.
    public let network: PeerNetwork?
    /// "host:port" put in invites this node opens.
    public let inviteHint: String
    /// The peer listener's bound "host:port" and the daemon's version, for `status`.
    public let listen: String
    public let version: String
    /// When these commands were made (the daemon's start), ms.
    public let startedAt: UInt64

    public init(node: SyncNode, logger: Logger, network: PeerNetwork? = nil, inviteHint: String = "", listen: String = "", version: String = "") {
        self.node = node
        self.logger = logger
        self.network = network
        self.inviteHint = inviteHint
        self.listen = listen
        self.version = version
        startedAt = node.clock()
    }

    /// A refusal: the message for the person, and whether it is their request's fault.
    public struct Failure: Error, Sendable {
        public let message: String
        public let notFound: Bool
    }

    /// Performs `op` with `request`'s fields; the answer's fields (without "ok"), or a Failure.
    public func perform(_ op: String, _ request: [String: Any]) async throws(Failure) -> [String: Any] {
        do {
            var answer = try await handle(op, request)
            answer["ok"] = nil
            return answer
        } catch let e as ChapterCommandError {
            throw Failure(message: e.message, notFound: e.message.hasPrefix("no ") || e.message.contains("not found"))
        } catch let e as Failure {
            throw e
        } catch let e as ControlRequest.Invalid {
            throw Failure(message: e.message, notFound: false)
        } catch {
            throw Failure(message: "\(error)", notFound: false)
        }
    }

    func handle(_ op: String, _ request: [String: Any]) async throws -> [String: Any] {
        switch op {
        case "status":
            let scopes = await node.scopeInfo()
            let own = scopes[0]
            let problems = await node.problems()
            return [
                "member": node.identity.member.description, "device": node.identity.certificate.deviceSigningKey.description,
                "peers": await node.peerNames(), "scope": own.scope, "contacts": own.contacts,
                "changes": own.changes, "pending": own.pending,
                "scopes": Self.object(scopes),
                "listen": listen, "advertise": inviteHint, "version": version,
                "startedAt": startedAt, "uptime": (node.clock() - min(startedAt, node.clock())) / 1000,
                "notices": await node.notices(),
                "problems": problems, "healthy": problems.isEmpty,
            ]
        case "peers":
            return ["peers": Self.object(await node.peerInfo())]
        case "sync-now":
            await node.antiEntropy()
            return ["requested": true]
        default:
            return try await handleChapter(op, request)
        }
    }
}
