import KithCRDT
import KithCrypto
import KithStore
import KithSync
import Logging

/// A node's sync hub: owns the store (the only writer), applies what peers send, and fans new
/// changes out to every other connected peer. Connections talk to it only through these methods.
public actor SyncNode {
    public struct Identity: Sendable {
        public let certificate: DeviceCertificate
        public let agreementKey: X25519.PrivateKey
        public var member: Ed25519.PublicKey { certificate.memberKey }

        public init(certificate: DeviceCertificate, agreementKey: X25519.PrivateKey) {
            self.certificate = certificate
            self.agreementKey = agreementKey
        }
    }

    public nonisolated let identity: Identity
    private let store: ContactStore
    private let logger: Logger
    private var peers: [Int: AsyncStream<ConnectionEvent>.Continuation] = [:]
    private var names: [Int: String] = [:]
    private var nextPeerID = 0

    /// Opens the store; throws if it cannot be opened (locked, corrupt…).
    public init(directory: String, scope: ScopeID, deviceKey: Ed25519.PrivateKey, storageKey: SymmetricKey,
                identity: Identity, logger: Logger) throws {
        self.store = try ContactStore(directory: directory, scope: scope, deviceKey: deviceKey, storageKey: storageKey)
        self.identity = identity
        self.logger = logger
    }

    public var scopes: Set<ScopeID> { [store.replica.scope] }

    public func replica() -> Replica { store.replica }

    /// Until chapters define membership, a node syncs with the devices of its own member.
    public nonisolated func isAllowed(_ member: Ed25519.PublicKey) -> Bool { member == identity.member }

    func register(_ events: AsyncStream<ConnectionEvent>.Continuation, name: String) -> Int {
        nextPeerID += 1
        peers[nextPeerID] = events
        names[nextPeerID] = name
        return nextPeerID
    }

    func unregister(_ id: Int) {
        peers[id] = nil
        names[id] = nil
    }

    /// Bytes received from and sent to peers (TCP payload: framing and Noise included).
    public private(set) var wireBytesIn = 0
    public private(set) var wireBytesOut = 0

    func countWire(in received: Int, out sent: Int) {
        wireBytesIn += received
        wireBytesOut += sent
    }

    /// The connected peers, for `kith status`.
    public func peerNames() -> [String] { names.values.sorted() }

    public var connectedPeers: Int { peers.count }

    /// Applies a peer's changes durably; pushes what was new to the other peers.
    func receive(_ changes: [Change], from peer: Int, peerName: String) {
        let before = store.replica.versionVector()
        do {
            let results = try store.receive(changes)
            for case let .failure(rejection) in results {
                logger.warning("refused a change from a peer", metadata: ["peer": "\(peerName)", "reason": "\(rejection.detail)"])
            }
        } catch {
            logger.error("could not store changes from a peer", metadata: ["peer": "\(peerName)", "reason": "\(error)"])
            return
        }
        let fresh = store.replica.changes(missingFrom: before)
        guard !fresh.isEmpty else { return }
        for (id, c) in peers where id != peer { c.yield(.push(fresh)) }
    }

    /// Asks every connection to re-exchange version vectors (periodic anti-entropy, `sync now`).
    public func antiEntropy() {
        for c in peers.values { c.yield(.antiEntropy) }
    }

    /// Authors local changes durably and gossips them (the control API's writes).
    public func commit(batches: [[ContactEdit]]) throws -> [Change] {
        let made = try store.commit(batches: batches)
        for c in peers.values { c.yield(.push(made)) }
        return made
    }
}

/// What a connection's single processing loop consumes, in order.
enum ConnectionEvent: Sendable {
    case bytes([UInt8])
    case push([Change])
    case antiEntropy
    case closed
}
