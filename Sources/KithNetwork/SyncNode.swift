import Foundation
import KithChapter
import KithCRDT
import KithCrypto
import KithQuery
import KithStore
import KithSync
import Logging

/// A node's sync hub: owns every store of the node (the only writer) — the member's private
/// scope, each chapter it belongs to, each chapter it relays blind — applies what peers send,
/// fans new changes and membership ops out to the peers entitled to them, and decides who may
/// connect. Connections talk to it only through these methods.
public actor SyncNode {
    public struct Identity: Sendable {
        public let certificate: DeviceCertificate
        public let agreementKey: X25519.PrivateKey
        public let deviceKey: Ed25519.PrivateKey
        /// The member key, on the member's primary device only (needed to revoke devices).
        public let memberKey: Ed25519.PrivateKey?
        public var member: Ed25519.PublicKey { certificate.memberKey }
        public var device: Ed25519.PublicKey { certificate.deviceSigningKey }

        public init(certificate: DeviceCertificate, agreementKey: X25519.PrivateKey, deviceKey: Ed25519.PrivateKey,
                    memberKey: Ed25519.PrivateKey? = nil) {
            self.certificate = certificate
            self.agreementKey = agreementKey
            self.deviceKey = deviceKey
            self.memberKey = memberKey
        }
    }

    /// One chapter held by this node: as a member (encrypted store, keys from the log) or as a
    /// blind relay (opaque store; the log tells who may connect).
    final class Chapter {
        let id: ChapterID
        /// Any change of the log (it is a value: every mutation goes through this setter) drops
        /// what was derived from the previous one.
        var log: MembershipLog? {
            didSet {
                cachedNeedsNewEpoch = nil
                cachedEncodedOps = nil
            }
        }
        let store: ContactStore
        let relayOnly: Bool
        /// The current epoch when the node last looked (a change means match tokens are re-made).
        var knownEpoch: OpID?

        init(id: ChapterID, log: MembershipLog?, store: ContactStore, relayOnly: Bool) {
            self.id = id
            self.log = log
            self.store = store
            self.relayOnly = relayOnly
            knownEpoch = log?.state.currentEpoch?.id
        }

        private var cachedEncodedOps: [[UInt8]]?
        /// The log's ops encoded, parents first (`allOps`): what every new connection and every
        /// joiner is sent, ordered once per version of the log.
        var encodedOps: [[UInt8]] {
            if let v = cachedEncodedOps { return v }
            let v = log?.allOps.map(\.encoded) ?? []
            cachedEncodedOps = v
            return v
        }

        private var cachedNeedsNewEpoch: Bool?
        /// `log.state.needsNewEpoch` (true without a log), computed once per version of the log:
        /// the overlay asks it for every address message and every round.
        var needsNewEpoch: Bool {
            if let v = cachedNeedsNewEpoch { return v }
            let v = log?.state.needsNewEpoch ?? true
            cachedNeedsNewEpoch = v
            return v
        }
    }

    struct Peer {
        let events: AsyncStream<ConnectionEvent>.Continuation
        let name: String
        let identity: PeerIdentity
        let scopes: Set<ScopeID>
        let connectedAt: UInt64
        /// Who dialled whom (the overlay counts only its own dials and inbound connections).
        let origin: PeerOrigin
        /// The Noise handshake hash: orders two connections of one device the same way on both ends.
        let handshakeHash: [UInt8]
        /// Address records this connection sent that were refused (SyncNode+Overlay).
        var refusedAddressRecords = 0
        /// When the peer last finished sending what we lacked, per scope (ms).
        var caughtUp: [ScopeID: UInt64] = [:]
        /// The peer's wall clock minus ours (ms), from its `clock` message (sync.md §5.4).
        var clockSkew: Int64?
    }

    /// A connected peer as `kith peers` shows it.
    public struct PeerInfo: Sendable, Codable {
        public let name: String
        public let member: String
        public let device: String
        public let ownDevice: Bool
        public let scopes: [String]
        public let connectedAt: UInt64
        public let lastCaughtUp: UInt64?
        /// Display names from the chapters' membership logs, when set.
        public let memberName: String?
        public let deviceName: String?
    }

    /// Per scope, what `kith status` shows.
    public struct ScopeInfo: Sendable, Codable {
        public let scope: String
        public let kind: String
        public let name: String
        public let contacts: Int
        public let changes: Int
        public let pending: Int
        public let awaitingKeys: Int
        public let peers: Int
        public let lastCaughtUp: UInt64?
        /// Of the `peers` connected for this scope, how many have sent everything this node lacked
        /// since they connected (the sync session's catch-up finished): "up to date with 2 of 3".
        public let peersCaughtUp: Int
        /// Devices caught signing two different changes with one seq (evidence held in memory).
        public let equivocations: Int
    }

    public func peerInfo() -> [PeerInfo] {
        peers.values.sorted { $0.name < $1.name }.map { p in
            PeerInfo(name: p.name, member: p.identity.member.description, device: p.identity.device.description,
                     ownDevice: p.identity.member == identity.member, scopes: p.scopes.map(\.description).sorted(),
                     connectedAt: p.connectedAt, lastCaughtUp: p.caughtUp.values.max(),
                     memberName: displayName(of: p.identity.member), deviceName: displayName(of: p.identity.device))
        }
    }

    public func scopeInfo() -> [ScopeInfo] {
        var out: [ScopeInfo] = []
        func info(_ kind: String, _ name: String, _ s: ContactStore) -> ScopeInfo {
            let r = s.replica, scope = r.scope
            let connected = peers.values.filter { $0.scopes.contains(scope) }
            return ScopeInfo(scope: scope.description, kind: kind, name: name, contacts: s.replica.mode == .opaque ? 0 : index(of: s).count,
                             changes: r.changeCount, pending: r.pendingCount, awaitingKeys: r.awaitingBlockCount, peers: connected.count,
                             lastCaughtUp: connected.compactMap { $0.caughtUp[scope] }.max(),
                             peersCaughtUp: connected.filter { $0.caughtUp[scope] != nil }.count, equivocations: r.equivocations.count)
        }
        out.append(info("private", "your contacts", store))
        for ch in chapters.values.sorted(by: { $0.id < $1.id }) {
            out.append(info(ch.relayOnly ? "relay" : "chapter", ch.log?.state.name ?? "?", ch.store))
        }
        return out
    }

    /// The peer sent everything this node lacked in `scope`: the snapshot the catch-up put off
    /// is written now (in the background), once, instead of several times during the transfer.
    func noteCaughtUp(_ peer: Int, scope: ScopeID) {
        peers[peer]?.caughtUp[scope] = clock()
        endCatchUp(scope)
    }

    private func endCatchUp(_ scope: ScopeID) {
        guard let target = contactStore(for: scope), target.catchingUp else { return }
        target.catchingUp = false
        target.snapshotIfDue()
    }

    public nonisolated let identity: Identity
    let directory: String
    let storageKey: SymmetricKey
    let store: ContactStore
    var chapters: [ChapterID: Chapter] = [:]
    /// Devices of this member revoked by a signed statement (refused everywhere).
    var revokedDevices: Set<Ed25519.PublicKey> = []
    var revocations: [DeviceRevocation] = []
    /// Shared contacts, by contact: the chapters and fields each is projected into (mirrors the
    /// private store's share records, so a commit does not read them back).
    var shares: [ContactID: [ChapterID: [ShareableField]]] = [:]
    /// Contacts with an active (or revoking) consent grant: only their edits wake the consent
    /// machinery. A superset: a grant that ends stays here until the next start.
    var grantedContacts: Set<ContactID> = []

    /// Send upward records and revocations through chapter peers instead of connecting to the
    /// organization's hub directly (the organization then never learns this device's address).
    public var upwardViaPeers = false
    /// Forwarded hub requests awaiting a peer's answer.
    var pendingForwards: [UInt64: CheckedContinuation<[UInt8]?, Never>] = [:]

    public func setUpwardViaPeers(_ on: Bool) { upwardViaPeers = on }

    /// The membership work each peer device may still make this node do (SyncNode+ChapterRules):
    /// kept by device key, so reconnecting does not refill it.
    var membershipAllowances: [Ed25519.PublicKey: MembershipAllowance] = [:]
    /// Connections closed for sending costly membership messages too fast.
    var membershipFloodsCut = 0
    /// Tests only: how this node answers a join proof (a hostile admin's daemon), nil = honestly.
    var testHookJoinAnswer: HostileJoinAnswer?

    /// The query index of each scope (SyncNode+Queries), patched when a query comes.
    var queryIndexes: [ScopeID: ContactIndexCache] = [:]
    /// Live events for API clients (`GET /v1/events`).
    public nonisolated let events = NodeEvents()

    /// Per scope, the highest seq of this device's own chain a peer sent back identical
    /// (SyncNode+OwnChain): advertised vectors do not claim more.
    var ownConfirmed: [ScopeID: UInt64] = [:]
    /// Scopes whose whole own chain a peer confirmed since start: later own changes chain onto
    /// it, so vectors advertise them in full.
    var ownSettled: Set<ScopeID> = []
    /// What the node did about a store found behind its peers (shown by `kith status`).
    var restoreNotices: [String] = []
    /// Stores whose latest write failed (path → reason), so the failure is logged once.
    var storeWriteFailures: [String: String] = [:]

    /// Chapters whose peers sent changes by devices the log did not list yet.
    var chaptersAwaitingAuthors: Set<ChapterID> = []

    /// The chapter overlay: addresses learned by peer exchange and the dials it keeps (SyncNode+Overlay).
    var overlay = OverlayState()

    /// Chapters this device asked to join and is waiting to be approved in.
    var pendingJoins: [ChapterID: ChapterInvite] = [:]
    /// Pairing codes until they expire: token, expiry (ms), used (kept so a reuse gets a clear refusal).
    var pairings: [(token: [UInt8], expiresAt: UInt64, used: Bool)] = []
    let logger: Logger
    var peers: [Int: Peer] = [:]
    private var nextPeerID = 0
    let clock: @Sendable () -> UInt64
    /// Addresses ("host:port") the node learned it should keep a connection to (invite hints).
    public nonisolated let dialRequests: AsyncStream<String>
    private let dialContinuation: AsyncStream<String>.Continuation

    /// Opens the private store and every chapter store under `directory`; relays the chapters in
    /// `relayChapters` blind. Throws if a store cannot be opened (locked, corrupt…).
    /// `maxInboundPerAddress`: raised only where many nodes share one IP address (the in-process
    /// chapter benchmark, whose members all dial from 127.0.0.1).
    public init(directory: String, identity: Identity, storageKey: SymmetricKey, relayChapters: [ChapterID] = [],
                logger: Logger, clock: @escaping @Sendable () -> UInt64 = ContactStore.systemClock,
                maxInboundPerAddress: Int = SyncNode.maxInboundPerAddress) throws {
        inboundGate = ConnectionGate(maxTotal: SyncNode.maxInboundConnections, maxPerAddress: maxInboundPerAddress)
        self.directory = directory
        self.identity = identity
        self.storageKey = storageKey
        self.logger = logger
        self.clock = clock
        (dialRequests, dialContinuation) = AsyncStream<String>.makeStream()
        store = try ContactStore(directory: directory, scope: ScopeID.privateScope(of: identity.member),
                                 deviceKey: identity.deviceKey, storageKey: storageKey, clock: clock)
        let fm = FileManager.default
        var opened: [ChapterID: Chapter] = [:]
        for (sub, relay) in [("chapters", false), ("relays", true)] {
            let base = directory + "/" + sub
            let names = (try? fm.contentsOfDirectory(atPath: base)) ?? []
            for name in names.sorted() {
                guard let id = ChapterID(text: name) else { continue }
                if relay && opened[id] != nil { continue }
                opened[id] = try Self.openChapter(id, path: base + "/" + name, relay: relay, identity: identity,
                                                    storageKey: storageKey, clock: clock)
            }
        }
        for id in relayChapters where opened[id] == nil {
            let path = directory + "/relays/" + id.description
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            opened[id] = try Self.openChapter(id, path: path, relay: true, identity: identity, storageKey: storageKey, clock: clock)
        }
        // Chapter hints are the overlay's bootstrap addresses (SyncNode+Overlay), dialled while a
        // chapter has no connection, not kept open for good.
        chapters = opened
        for r in try store.records(.share) where r.id.count == 32 {
            if let cid = try? ChapterID(bytes: r.id[0..<16]), let contact = try? ContactID(bytes: r.id[16...]),
               let fields = try? ShareableField.parse(String(decoding: r.bytes, as: UTF8.self)) {
                shares[contact, default: [:]][cid] = fields
            }
        }
        grantedContacts = Self.grantedContacts(in: store, now: clock() / 1000)
        for r in try store.records(.pendingJoin) {
            if let id = try? ChapterID(bytes: r.id), opened[id] == nil,
               let invite = try? ChapterInvite(text: String(decoding: r.bytes, as: UTF8.self), now: 0) {
                pendingJoins[id] = invite
                for c in invite.contacts where HostPort.parse(c.address) != nil { dialContinuation.yield(c.address) }
            }
        }
        for r in try store.records(.deviceRevocation) {
            if let rev = try? DeviceRevocation(encoded: r.bytes), rev.member == identity.member {
                revocations.append(rev)
                revokedDevices.insert(rev.device)
            }
        }
        ownConfirmed = Self.ownConfirmedSeqs(store, private: ScopeID.privateScope(of: identity.member), chapters: opened)
    }

    static func openChapter(_ id: ChapterID, path: String, relay: Bool, identity: Identity, storageKey: SymmetricKey,
                            clock: @escaping @Sendable () -> UInt64) throws -> Chapter {
        let store = try ContactStore(directory: path, scope: id.contentScope, deviceKey: identity.deviceKey, storageKey: storageKey,
                                     mode: relay ? .opaque : .encrypted, clock: clock)
        let ops = try store.records(.membershipOp).map(\.bytes)
        let log = ops.isEmpty ? nil : try MembershipLog(chapter: id, ops: ops)
        if let log, !relay { store.addEpochKeys(log.keys(device: identity.device, agreement: identity.agreementKey)) }
        return Chapter(id: id, log: log, store: store, relayOnly: relay)
    }

    /// Asks the daemon to keep a connection to `address` ("host:port").
    func requestDial(_ address: String) { dialContinuation.yield(address) }

    // MARK: Who may sync what

    public nonisolated var privateScope: ScopeID { ScopeID.privateScope(of: identity.member) }

    /// The scopes a peer may sync with this node: the private scope with the member's own
    /// devices; a chapter's scope with the current, unrevoked devices of its members (and with
    /// this member's own devices, e.g. a home server relaying it).
    func scopes(for peer: PeerIdentity) -> Set<ScopeID> {
        var out: Set<ScopeID> = []
        if revokedDevices.contains(peer.device) { return out }
        let own = peer.member == identity.member
        if own { out.insert(privateScope) }
        for ch in chapters.values {
            guard let state = ch.log?.state else {
                if own { out.insert(ch.id.contentScope) }
                continue
            }
            // Any unrevoked device a current member certified (a member's home server relays the
            // chapter before any log lists it); what it may write is checked per change (§3.2).
            if own || (state.isMember(peer.member) && !state.revoked.contains(peer.device)) { out.insert(ch.id.contentScope) }
        }
        return out
    }

    /// True when `device` is an admin device that the invite of a join waiting for approval names
    /// (the issuer's or another admin's: its key is in the invite, and the handshake proved it):
    /// this node talks to it with no scopes, to receive the chapter's log once approved.
    func isPendingJoinAdmin(_ device: Ed25519.PublicKey) -> Bool {
        pendingJoins.values.contains { invite in invite.admin == device || invite.contacts.contains { $0.device == device } }
    }

    /// True when the peer may sync at least one scope.
    func isAllowed(_ peer: PeerIdentity) -> Bool { !scopes(for: peer).isEmpty }

    /// True when this device is an admin of a chapter with an open invite: an unknown device
    /// may then complete the handshake to present a join proof (and nothing else).
    var acceptsJoins: Bool {
        let nowMs = clock()
        if pairings.contains(where: { $0.expiresAt > nowMs }) { return true }
        return chapters.values.contains { ch in
            guard let s = ch.log?.state, !ch.relayOnly, s.isAdmin(identity.member) else { return false }
            // Used-up invites count until they expire, so a second use gets a clear refusal.
            return s.invites.values.contains { $0.expiresAt > nowMs }
        }
    }

    // MARK: Peers

    /// Registers an authenticated connection, or returns nil when it must close: a node keeps
    /// one connection per peer device (sync.md §9.3), so a device cannot fill the node's
    /// connections by dialling it many times. Of two connections to one device, both ends keep
    /// the same one: when they were dialled in opposite directions, the one the smaller device
    /// key dialled; otherwise the one with the smaller handshake hash.
    func register(_ events: AsyncStream<ConnectionEvent>.Continuation, name: String, peer: PeerIdentity, scopes: Set<ScopeID>,
                  origin: PeerOrigin, handshakeHash: [UInt8]) -> Int? {
        // At most `maxPerMember` connections with another member's devices (static dials excluded;
        // a connection of the same device is the one-per-device rule's business below).
        if peer.member != identity.member, origin.countsTowardMemberCap {
            let held = peers.values.filter { $0.identity.member == peer.member && $0.identity.device != peer.device && $0.origin.countsTowardMemberCap }.count
            guard held < overlay.settings.maxPerMember else {
                logger.warning(limitedBy: logLimiter, "member-cap", "refused a connection: the member already holds the most connections allowed",
                               metadata: ["peer": "\(name)", "connections": "\(held)"])
                return nil
            }
        }
        if let (oldID, old) = peers.first(where: { $0.value.identity.device == peer.device }) {
            let keepNew = Self.prefers((origin.outbound, handshakeHash), over: (old.origin.outbound, old.handshakeHash),
                                       own: identity.device, peer: peer.device)
            guard keepNew else {
                logger.info("closing a second connection of a device already connected", metadata: ["peer": "\(name)"])
                return nil
            }
            old.events.yield(.close(reason: "a preferred connection of the same device replaces it"))
            unregister(oldID)
        }
        nextPeerID += 1
        peers[nextPeerID] = Peer(events: events, name: name, identity: peer, scopes: scopes, connectedAt: clock(), origin: origin,
                                 handshakeHash: handshakeHash)
        self.events.emit(NodeEvent(type: "peer-connected", at: clock(), peer: name))
        if peer.member == identity.member { adoptOwnDevice(peer) }
        if case let .overlay(dial) = origin { overlayDialAuthenticated(dial, peer: peer) }
        return nextPeerID
    }

    /// Whether connection `a` is kept over `b`, both with device `peer` (a total order both ends agree on).
    static func prefers(_ a: (outbound: Bool, hash: [UInt8]), over b: (outbound: Bool, hash: [UInt8]),
                        own: Ed25519.PublicKey, peer: Ed25519.PublicKey) -> Bool {
        if a.outbound != b.outbound { return a.outbound == (own < peer) }
        return a.hash.lexicographicallyPrecedes(b.hash)
    }

    /// Another device of this member connected: list it in every chapter this member is in
    /// (unless it was revoked there), which also seals the chapter keys to it.
    private func adoptOwnDevice(_ peer: PeerIdentity) {
        for ch in chapters.values where !ch.relayOnly {
            guard var log = ch.log, let me = log.state.members[identity.member], me.devices[peer.device] == nil,
                  !log.state.revoked.contains(peer.device), !revokedDevices.contains(peer.device) else { continue }
            do {
                let op = try log.append(.addDevice(peer.certificate), certificate: identity.certificate, device: identity.deviceKey, now: clock())
                ch.log = log
                try logChanged(ch, new: [op])
                logger.notice("listed another device of this member in a chapter", metadata: ["chapter": "\(ch.id)", "device": "\(peer.device)"])
            } catch {
                logger.warning("could not list this member's other device in a chapter", metadata: ["chapter": "\(ch.id)", "reason": "\(error)"])
            }
        }
    }

    func unregister(_ id: Int) {
        guard let p = peers.removeValue(forKey: id) else { return }
        events.emit(NodeEvent(type: "peer-disconnected", at: clock(), peer: p.name))
        // A catch-up cut short: what arrived is snapshotted by the usual policy from now on.
        for scope in p.scopes where p.caughtUp[scope] == nil { endCatchUp(scope) }
    }

    /// Most inbound connections open at once (authenticated or not); more are closed at accept,
    /// after evicting unauthenticated ones (ConnectionGate).
    public static let maxInboundConnections = 256
    /// Most inbound connections from one IP address.
    public static let maxInboundPerAddress = 32
    /// Admits inbound connections to the peer port.
    public nonisolated let inboundGate: ConnectionGate
    /// Keeps warnings about hostile or broken peers from flooding the log.
    public nonisolated let logLimiter = LogRateLimiter()

    /// Bytes received from and sent to peers (TCP payload: framing and Noise included).
    public private(set) var wireBytesIn = 0
    public private(set) var wireBytesOut = 0

    func countWire(in received: Int, out sent: Int) {
        wireBytesIn += received
        wireBytesOut += sent
    }

    /// The connected peers, for `kith status`.
    public func peerNames() -> [String] { peers.values.map(\.name).sorted() }

    public var connectedPeers: Int { peers.count }

    /// Snapshots (values) of the replicas of `scopes`.
    func replicas(_ scopes: Set<ScopeID>) -> [ScopeID: Replica] {
        var out: [ScopeID: Replica] = [:]
        for s in scopes { if let r = replica(for: s) { out[s] = r } }
        return out
    }

    public func replica() -> Replica { store.replica }

    /// Changes held in the private scope, without copying the replica out of the actor (a copy
    /// alive while the node writes makes the write copy the whole replica).
    public var replicaChangeCount: Int { store.replica.changeCount }

    public func replica(for scope: ScopeID) -> Replica? {
        if scope == store.replica.scope { return store.replica }
        return ChapterID(contentScope: scope).flatMap { chapters[$0]?.store.replica }
    }

    private func contactStore(for scope: ScopeID) -> ContactStore? {
        if scope == store.replica.scope { return store }
        return ChapterID(contentScope: scope).flatMap { chapters[$0]?.store }
    }

    /// Applies a peer's changes durably; pushes what was new to the other peers of that scope.
    /// In a chapter's scope only changes by devices the membership log lists (or listed when
    /// the change was stamped) are taken; changes by devices the log does not know yet are
    /// left for a later exchange, once the log explains them.
    func receive(_ changes: [Change], scope: ScopeID, from peer: Int, peerName: String) {
        guard let target = contactStore(for: scope) else { return }
        let accepted = authorizedChanges(changes, scope: scope, peerName: peerName)
        guard !accepted.isEmpty else { return }
        let own = accepted.contains { $0.author == identity.device }
        if own, handleOwnFork(accepted, in: target, scope: scope, peerName: peerName) { return }
        let before = target.replica.versionVector()
        let ownHeadBefore = before[identity.device]
        // Until the peer says it sent everything we lacked, this is a catch-up (an initial
        // sync): the store puts its background snapshot off until `noteCaughtUp`.
        target.catchingUp = peers[peer].map { $0.caughtUp[scope] == nil } ?? false
        do {
            let results = try target.receive(accepted)
            for case let .failure(rejection) in results {
                logger.warning(limitedBy: logLimiter, "refused-change", "refused a change from a peer", metadata: ["peer": "\(peerName)", "reason": "\(rejection.detail)"])
            }
        } catch {
            noteStoreWrite(target)
            logger.warning(limitedBy: logLimiter, "store-changes-from-peer", "could not store changes from a peer", metadata: ["peer": "\(peerName)", "reason": "\(error)"])
            return
        }
        noteStoreWrite(target)
        if own { noteOwnChangesBack(accepted, in: target, scope: scope, headBefore: ownHeadBefore, peerName: peerName) }
        let fresh = target.replica.changes(missingFrom: before)
        guard !fresh.isEmpty else { return }
        push(fresh, scope: scope, except: peer)
        if events.subscriberCount > 0 {
            emitChanged(scope == privateScope ? "private" : scope.description, Set(fresh.flatMap { $0.blockContacts.compactMap { $0 } }))
            events.emit(NodeEvent(type: "sync-progress", at: clock(), scope: scope.description, count: target.replica.changeCount, peer: peerName))
        }
    }

    /// A peer's vector says it holds `count` changes of `scope` this node lacks (about to come).
    func expectChanges(_ count: Int, scope: ScopeID) {
        contactStore(for: scope)?.expectChanges(count)
    }

    func push(_ changes: [Change], scope: ScopeID, except: Int? = nil) {
        for (id, p) in peers where id != except && p.scopes.contains(scope) { p.events.yield(.push(changes)) }
    }

    /// Asks connections to re-exchange version vectors: all of them (`sync now`), or `fanout`
    /// chosen at random (the periodic anti-entropy round).
    public func antiEntropy(fanout: Int? = nil) {
        let chosen = fanout.map { Array(peers.values.shuffled().prefix($0)) } ?? Array(peers.values)
        for p in chosen { p.events.yield(.antiEntropy) }
    }

    /// Authors local changes of the private scope durably and gossips them (the control API's
    /// writes); shared contacts touched by them are re-projected into their chapters.
    public func commit(batches: [[ContactEdit]]) throws -> [Change] {
        defer { noteStoreWrite(store) }
        let made = try store.commit(batches: batches)
        push(made, scope: privateScope)
        let touched = Set(batches.flatMap { $0.map(\.contact) })
        emitChanged("private", touched)
        try refreshShares(touching: touched)
        // Granted fields that changed go up as a new record version.
        if !touched.isDisjoint(with: grantedContacts) { Task { await self.consentMaintenance() } }
        return made
    }

    // MARK: Membership

    /// The membership ops to send a peer right after the hello: every chapter it may sync.
    func membershipMessages(for scopes: Set<ScopeID>) -> [SyncMessage] {
        chapters.values.sorted { $0.id < $1.id }.compactMap { ch in
            guard scopes.contains(ch.id.contentScope), ch.log != nil else { return nil }
            return .membership(chapter: ch.id.bytes, ops: ch.encodedOps)
        } + addressMessages(for: scopes)
    }

    /// Merges membership ops a peer sent. Only a peer entitled to the chapter may send them
    /// (a relay learns a log from its own member's devices).
    func receiveMembership(chapter bytes: [UInt8], ops encoded: [[UInt8]], from peer: Int) {
        guard hasMembershipAllowance(peer) else {
            logger.warning("peer sends membership ops faster than allowed; closing", metadata: ["peer": "\(peers[peer]?.name ?? "?")"])
            membershipFloodsCut += 1
            peers[peer]?.events.yield(.close(reason: "too many membership messages"))
            unregister(peer)
            return
        }
        let messageBytes = encoded.reduce(0) { $0 + $1.count }
        if let id = try? ChapterID(bytes: bytes), chapters[id] == nil, let p = peers[peer],
           p.identity.member == identity.member || pendingJoins[id] != nil {
            chargeMembershipMessage(peer, costly: true, bytes: messageBytes, newOps: encoded.count)
            // Another device of this member is in a chapter this one has not seen, or an admin
            // approved this device's held join: take it up.
            do {
                let log = try MembershipLog(chapter: id, ops: encoded, nowMilliseconds: clock())
                guard log.state.isMember(identity.member) else { return }
                // A held join is taken up only from a log in which an admin's device admitted
                // this one, sent by a device the invite names that is an admin's in that log
                // (what `installJoined` checks on the direct path, chapters.md §4).
                if p.identity.member != identity.member, let invite = pendingJoins[id] {
                    if let refusal = Self.joinAnswerRefusal(log, invite: invite, answeredBy: p.identity.device, me: identity.member) {
                        logger.warning("refused a log for a held join", metadata: ["peer": "\(p.name)", "reason": "\(refusal)"])
                        return
                    }
                }
                let ch = try install(log, relay: false)
                try logChanged(ch, new: log.allOps, from: peer)
                if let invite = pendingJoins.removeValue(forKey: id) {
                    try store.deleteRecords(.pendingJoin, ids: [id.bytes])
                    try rememberAddresses(of: invite, in: ch)
                }
                logger.notice("took up a chapter from another device of this member", metadata: ["chapter": "\(id)", "name": "\(log.state.name)"])
            } catch {
                logger.warning("could not take up a chapter from another device", metadata: ["reason": "\(error)"])
            }
            return
        }
        guard let id = try? ChapterID(bytes: bytes), let ch = chapters[id], let p = peers[peer],
              p.scopes.contains(id.contentScope) else {
            logger.warning("ignored membership ops for a chapter the peer does not share", metadata: ["peer": "\(peers[peer]?.name ?? "?")"])
            return
        }
        do {
            if ch.log == nil {
                chargeMembershipMessage(peer, costly: true, bytes: messageBytes, newOps: encoded.count)
                var decoded: [[UInt8]] = []
                for b in encoded {
                    do { decoded.append(try MembershipOp(decoding: b).encoded) } catch {
                        logger.warning("refused a membership op", metadata: ["peer": "\(p.name)", "reason": "\(error.detail)"])
                    }
                }
                ch.log = try MembershipLog(chapter: id, ops: decoded, nowMilliseconds: clock())
                try logChanged(ch, new: ch.log!.allOps, from: peer)
            } else {
                // Ops already held are skipped by hash, before any signature check (peers resend
                // the whole log on every connection).
                // Every byte and every op not held counts against the sender's allowances; the
                // message is costly when it made the log evaluate everything or drop ops.
                let before = ch.log!.costlyArrivals, dropped = ch.log!.droppedOnArrival
                let (added, refused) = try ch.log!.receive(encoded: encoded, nowMilliseconds: clock())
                let newOps = added.count + refused.count + (ch.log!.droppedOnArrival - dropped)
                chargeMembershipMessage(peer, costly: !refused.isEmpty || ch.log!.costlyArrivals != before, bytes: messageBytes, newOps: newOps)
                for e in refused { logger.warning("refused a membership op", metadata: ["peer": "\(p.name)", "reason": "\(e.detail)"]) }
                if !added.isEmpty { try logChanged(ch, new: added, from: peer) }
            }
        } catch {
            logger.warning("refused membership ops", metadata: ["peer": "\(p.name)", "reason": "\(error)"])
        }
    }

    /// After the log grew: persist, refresh keys, share keys with devices that lack them,
    /// gossip the new ops, and drop connections whose rights changed.
    func logChanged(_ ch: Chapter, new ops: [MembershipOp], from peer: Int? = nil) throws {
        var gossip = ops
        if !ch.relayOnly, let log = ch.log, log.state.isMember(identity.member) {
            // Admins seal keys to every new device, members only to their own (fewer racing shares).
            do throws(MembershipError) {
                gossip += try ch.log!.shareMissingKeys(certificate: identity.certificate, device: identity.deviceKey, agreement: identity.agreementKey,
                                                       now: clock(), onlyOwnMember: !log.state.isAdmin(identity.member))
            } catch {
                logger.warning("could not share chapter keys with new devices", metadata: ["chapter": "\(ch.id)", "reason": "\(error.detail)"])
            }
        }
        // One write. It waits for the disk unless every op came from a peer and only grants
        // (the wave of joins: each new member's `add member` and `share key` reach every node):
        // those a peer resends on every connection, and the next durable write syncs them too.
        // What this node authored, and every op that takes rights away, is durable before it is
        // sent on (chapters.md §3.1).
        let durable = peer == nil || gossip.count > ops.count || !ops.allSatisfy(\.action.onlyGrants)
        try ch.store.putRecords(.membershipOp, gossip.map { ($0.id.bytes, $0.encoded) }, durable: durable)
        if !ch.relayOnly, ch.log?.state.isMember(identity.member) == true {
            let held = Set(ch.store.replica.epochKeys.keys)
            let opened = ch.log!.keys(device: identity.device, agreement: identity.agreementKey, except: held)
            if !opened.isEmpty { ch.store.addEpochKeys(opened) }
        }
        let message = gossip.map(\.encoded)
        for (pid, p) in peers where pid != peer && p.scopes.contains(ch.id.contentScope) {
            p.events.yield(.membership(chapter: ch.id.bytes, ops: message))
        }
        afterLogChange(ch, previousEpoch: ch.knownEpoch)
        overlayLogChanged(ch)
        ch.knownEpoch = ch.log?.state.currentEpoch?.id
        // Rights changed (a removal, a revocation, a new member on an open connection): the
        // connection closes; allowed peers redial and negotiate the new set of scopes.
        for (pid, p) in peers where scopes(for: p.identity) != p.scopes {
            p.events.yield(.close(reason: "membership of chapter \(ch.id) changed"))
            unregister(pid)
        }
    }
}

/// What a connection's single processing loop consumes, in order.
enum ConnectionEvent: Sendable {
    case bytes([UInt8])
    case push([Change])
    case membership(chapter: [UInt8], ops: [[UInt8]])
    case revocations([[UInt8]])
    /// Send this peer address records of a chapter's overlay (sync.md §9).
    case addresses(chapter: [UInt8], records: [[UInt8]])
    /// Ask this peer to forward a message to a chapter's hub.
    case forward(id: UInt64, chapter: [UInt8], message: [UInt8])
    /// Send this peer the hub's answer to a message it asked us to forward.
    case forwardAnswer(id: UInt64, message: [UInt8])
    case antiEntropy
    case close(reason: String)
    case closed
}
