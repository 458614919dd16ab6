import KithCRDT

/// One peer connection's sync logic, sans I/O (Protocol/sync.md §5): exchange hellos, then per
/// shared scope exchange version vectors and send exactly the changes the other lacks, then keep
/// pushing new changes as they are made. The caller performs the returned actions.
public struct SyncSession: Sendable {
    public enum Action: Equatable, Sendable {
        case send(SyncMessage)
        /// Changes received for a scope: give them to the replica (which validates them).
        case deliver(scope: ScopeID, [Change])
        /// The peer finished sending what we lacked in this scope.
        case caughtUp(scope: ScopeID)
        /// Membership ops of a chapter: give them to the node (which checks the peer may send them).
        case membership(chapter: [UInt8], ops: [[UInt8]])
        /// Device revocations: give them to the node (which checks they are the member's own).
        case revocations([[UInt8]])
        /// A peer asks this node to deliver a message to a chapter's hub.
        case forward(id: UInt64, chapter: [UInt8], message: [UInt8])
        /// A hub's answer to a message this node asked the peer to forward.
        case forwardAnswer(id: UInt64, message: [UInt8])
        /// The peer's wall clock reading (ms) arrived: estimate the skew against ours now.
        case peerClock(wallMilliseconds: UInt64)
        /// Address records of a chapter's overlay: give them to the node (which checks each).
        case addresses(chapter: [UInt8], records: [[UInt8]])
        /// End the connection, logging the reason.
        case close(reason: String)
    }

    /// Most encoded bytes of changes per `changes` message.
    public static let batchBytes = 1 << 20

    public let localScopes: Set<ScopeID>
    public private(set) var sharedScopes: Set<ScopeID> = []
    public private(set) var helloReceived = false
    private var peerHolds: [ScopeID: VersionVector] = [:]
    private var closed = false

    public init(scopes: Set<ScopeID>) { localScopes = scopes }

    /// The first messages: our hello, then our wall clock reading when given (§5.4).
    public mutating func start(wallMilliseconds: UInt64? = nil) -> [Action] {
        [.send(.hello(version: SyncMessage.protocolVersion, scopes: localScopes.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }))]
            + (wallMilliseconds.map { [.send(.clock(wallMilliseconds: $0))] } ?? [])
    }

    private mutating func close(_ reason: String) -> [Action] {
        closed = true
        return [.close(reason: reason)]
    }

    /// Handles one message from the peer. `replica(scope)` gives the current replica of a scope;
    /// `vector(scope)`, when given, the vector to advertise for it (a node advertises its own
    /// device's entry only up to what a peer confirmed, §5.3), else the replica's.
    public mutating func receive(_ message: SyncMessage, replica: (ScopeID) -> Replica?,
                                 vector: ((ScopeID) -> VersionVector?)? = nil) -> [Action] {
        guard !closed else { return [] }
        switch message {
        case let .hello(version, scopes):
            guard !helloReceived else { return close("peer sent a second hello") }
            guard version == SyncMessage.protocolVersion else {
                return close("version skew: peer speaks sync protocol \(version), this build speaks \(SyncMessage.protocolVersion)")
            }
            helloReceived = true
            sharedScopes = localScopes.intersection(scopes)
            return antiEntropy(replica: replica, vector: vector)
        case let .vector(scope, vv):
            guard helloReceived else { return close("vector before hello") }
            guard sharedScopes.contains(scope) else { return close("vector for scope \(scope), which was not negotiated") }
            peerHolds[scope] = vv
            guard let r = replica(scope) else { return [] }
            return send(r.changes(missingFrom: vv), scope: scope) + [.send(.caughtUp(scope: scope))]
        case let .changes(scope, changes), let .run(scope, changes):
            guard helloReceived else { return close("changes before hello") }
            guard sharedScopes.contains(scope) else { return close("changes for scope \(scope), which was not negotiated") }
            guard changes.allSatisfy({ $0.scope == scope }) else { return close("a change in a \(scope) batch names another scope") }
            // The peer holds what it sends: never echo these back.
            var held = peerHolds[scope] ?? VersionVector()
            for c in changes where held[c.author] < c.seq { held[c.author] = c.seq }
            peerHolds[scope] = held
            return [.deliver(scope: scope, changes)]
        case let .caughtUp(scope):
            guard sharedScopes.contains(scope) else { return close("caught-up for scope \(scope), which was not negotiated") }
            return [.caughtUp(scope: scope)]
        case let .membership(chapter, ops):
            guard helloReceived else { return close("membership before hello") }
            return [.membership(chapter: chapter, ops: ops)]
        case let .revocations(list):
            guard helloReceived else { return close("revocations before hello") }
            return [.revocations(list)]
        case let .forwardUpward(id, chapter, message):
            guard helloReceived else { return close("forward before hello") }
            return [.forward(id: id, chapter: chapter, message: message)]
        case let .forwardAnswer(id, message):
            guard helloReceived else { return close("forward answer before hello") }
            return [.forwardAnswer(id: id, message: message)]
        case .join, .joinRefused, .joinHeld, .pair, .paired, .upward, .revokeGrant, .hubAnswer, .notDelivered:
            return close("join messages belong to a join connection, not a sync session")
        case let .clock(ms):
            guard helloReceived else { return close("clock before hello") }
            return [.peerClock(wallMilliseconds: ms)]
        case let .addresses(chapter, records):
            guard helloReceived else { return close("addresses before hello") }
            return [.addresses(chapter: chapter, records: records)]
        case .unknown:
            return [] // forward compatibility: ignore message types we do not know
        }
    }

    /// Anti-entropy: re-send our vectors so the peer sends anything we missed (a change lost
    /// in a crash, a push dropped while a replica was busy). Cheap when nothing is missing.
    public func antiEntropy(replica: (ScopeID) -> Replica?, vector: ((ScopeID) -> VersionVector?)? = nil) -> [Action] {
        guard !closed, helloReceived else { return [] }
        return sharedScopes.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }.compactMap { s in
            (vector?(s) ?? replica(s)?.versionVector()).map { .send(.vector(scope: s, $0)) }
        }
    }

    /// New changes held locally (made here, or received from another peer): push those the peer
    /// may lack. Before the peer's vector for a scope is known, nothing is pushed (the vector
    /// exchange will cover it).
    public mutating func localChanges(_ changes: [Change]) -> [Action] {
        guard !closed else { return [] }
        var out: [Action] = []
        var byScope: [ScopeID: [Change]] = [:]
        for c in changes where sharedScopes.contains(c.scope) && peerHolds[c.scope] != nil {
            if peerHolds[c.scope]![c.author] < c.seq { byScope[c.scope, default: []].append(c) }
        }
        for (scope, cs) in byScope {
            out += send(cs.sorted { $0.author != $1.author ? $0.author < $1.author : $0.seq < $1.seq }, scope: scope)
        }
        return out
    }

    private mutating func send(_ changes: [Change], scope: ScopeID) -> [Action] {
        var held = peerHolds[scope] ?? VersionVector()
        for c in changes where held[c.author] < c.seq { held[c.author] = c.seq }
        peerHolds[scope] = held
        return Self.messages(for: changes, scope: scope).map { .send($0) }
    }

    /// The messages that carry `changes` (per device in seq order): runs of consecutive changes
    /// of one device, each ending at a signed change and cut near `batchBytes`; a change that
    /// cannot end a run (an unsigned tail) goes in a plain `changes` message.
    public static func messages(for changes: [Change], scope: ScopeID) -> [SyncMessage] {
        var out: [SyncMessage] = []
        var run: [Change] = []
        var bytes = 0
        var plain: [Change] = []
        func flush(force: Bool) {
            guard !run.isEmpty else { return }
            if let end = run.lastIndex(where: \.isSigned) {
                out.append(.run(scope: scope, Array(run[...end])))
                run.removeSubrange(...end)
            }
            if force {
                plain += run
                run = []
            }
            bytes = run.reduce(0) { $0 + $1.encoded.count }
        }
        for c in changes {
            if let last = run.last, c.author != last.author || c.seq != last.seq + 1 { flush(force: true) }
            run.append(c)
            bytes += c.encoded.count
            if bytes > batchBytes && c.isSigned { flush(force: false) }
        }
        flush(force: true)
        for chunk in stride(from: 0, to: plain.count, by: 256) {
            out.append(.changes(scope: scope, Array(plain[chunk..<min(chunk + 256, plain.count)])))
        }
        return out
    }
}
