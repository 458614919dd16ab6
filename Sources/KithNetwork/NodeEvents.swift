import Foundation
import Synchronization

/// What happened in the node, for clients that follow it live (`GET /v1/events`, Protocol/api.md
/// §5): fanned out to every subscriber; a subscriber that falls behind loses the oldest events
/// (`bufferingNewest`), never blocks the node.
public struct NodeEvent: Sendable, Codable, Equatable {
    /// contacts-changed, peer-connected, peer-disconnected, sync-progress, consent
    public let type: String
    /// Milliseconds since 1970.
    public let at: UInt64
    public var scope: String?
    /// Contacts changed (ids; at most 100 listed, `count` says how many).
    public var contacts: [String]?
    public var count: Int?
    public var peer: String?
    public var detail: String?

    public init(type: String, at: UInt64, scope: String? = nil, contacts: [String]? = nil, count: Int? = nil, peer: String? = nil, detail: String? = nil) {
        self.type = type
        self.at = at
        self.scope = scope
        self.contacts = contacts
        self.count = count
        self.peer = peer
        self.detail = detail
    }
}

public final class NodeEvents: Sendable {
    private let subscribers = Mutex<[UInt64: AsyncStream<NodeEvent>.Continuation]>([:])
    private let nextID = Atomic<UInt64>(0)

    public init() {}

    /// A stream of events from now on; ends when the caller stops iterating.
    public func subscribe(buffer: Int = 256) -> AsyncStream<NodeEvent> {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream<NodeEvent>.makeStream(bufferingPolicy: .bufferingNewest(buffer))
        continuation.onTermination = { [weak self] _ in _ = self?.subscribers.withLock { $0.removeValue(forKey: id) } }
        subscribers.withLock { $0[id] = continuation }
        return stream
    }

    public var subscriberCount: Int { subscribers.withLock { $0.count } }

    public func emit(_ event: NodeEvent) {
        let all = subscribers.withLock { Array($0.values) }
        for c in all { c.yield(event) }
    }
}
