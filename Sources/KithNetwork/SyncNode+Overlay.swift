import Foundation
import KithChapter
import KithCRDT
import KithCrypto
import KithSync
import NIOCore
import NIOPosix

/// How many chapter connections the overlay keeps (sync.md §9).
public struct OverlaySettings: Sendable {
    /// Connections per chapter the node dials until it has them (random members).
    public var target: Int
    /// Most connections per chapter with other members' devices: more are closed.
    public var maxConnections: Int
    /// A connection younger than this is never closed for being surplus (it may be a joiner
    /// taking the log and the address table).
    public var graceSeconds: Double

    public init(target: Int = 3, maxConnections: Int = 8, graceSeconds: Double = 3) {
        self.target = target
        self.maxConnections = maxConnections
        self.graceSeconds = graceSeconds
    }
}

/// One device's announced address, as this node holds it.
struct OverlayEntry {
    let record: PeerAddressRecord
    let encoded: [UInt8]
    let address: String
}

/// The overlay's state on one node: the address table per chapter and the dials in flight.
struct OverlayState {
    var settings = OverlaySettings()
    /// The address this node announces ("host:port"); nil = it announces none.
    var advertised: String?
    var tables: [ChapterID: [Ed25519.PublicKey: OverlayEntry]] = [:]
    /// Addresses with an overlay dial in flight (connecting or connected), by chapter.
    var dialing: [String: ChapterID] = [:]
    /// Addresses that failed lately: failures in a row and when to try again (monotonic s).
    var backoff: [String: (failures: Int, until: Double)] = [:]
    /// When a record from each device was last taken (monotonic s): at most one a second.
    var lastAccepted: [Ed25519.PublicKey: Double] = [:]
    var rounds = 0
    /// Records refused (forged, malformed, for a device that is not current…), for tests and stats.
    var refusedRecords = 0
    /// A round is wanted now (a chapter was joined).
    var wakeRequested = false

    static func monotonic() -> Double { ProcessInfo.processInfo.systemUptime }
}

extension SyncNode {
    /// Overlay numbers for one chapter (tests, the benchmark and `kith status`).
    public struct OverlayInfo: Sendable, Codable {
        public let knownAddresses: Int
        public let connections: Int
        public let dialing: Int
        public let refusedRecords: Int
    }

    /// Sets the address this node announces to its chapters' members (kithd's `advertise`).
    public func setAdvertisedAddress(_ address: String?) {
        overlay.advertised = address
        overlay.wakeRequested = true
    }

    public func setOverlaySettings(_ settings: OverlaySettings) { overlay.settings = settings }

    public func overlayInfo(chapter id: ChapterID) -> OverlayInfo {
        OverlayInfo(knownAddresses: overlay.tables[id]?.count ?? 0, connections: chapterPeers(id).count,
                    dialing: overlay.dialing.values.filter { $0 == id }.count, refusedRecords: overlay.refusedRecords)
    }

    /// The chapter's address table: device key text → address.
    public func addressTable(chapter id: ChapterID) -> [String: String] {
        var out: [String: String] = [:]
        for (d, e) in overlay.tables[id] ?? [:] { out[d.description] = e.address }
        return out
    }

    /// Connected peers of a chapter that are other members' devices (the overlay's connections).
    func chapterPeers(_ id: ChapterID) -> [Int: Peer] {
        let scope = id.contentScope
        return peers.filter { $0.value.scopes.contains(scope) && $0.value.identity.member != identity.member }
    }

    /// This node's current address records of the chapters in `scopes`, for a new connection.
    func addressMessages(for scopes: Set<ScopeID>) -> [SyncMessage] {
        var out: [SyncMessage] = []
        for ch in chapters.values.sorted(by: { $0.id < $1.id }) where scopes.contains(ch.id.contentScope) && !ch.relayOnly {
            let records = currentRecords(ch)
            for start in stride(from: 0, to: records.count, by: SyncMessage.maxAddressRecords) {
                out.append(.addresses(chapter: ch.id.bytes, records: Array(records[start..<min(start + SyncMessage.maxAddressRecords, records.count)])))
            }
        }
        return out
    }

    /// Records sealed under the chapter's current epoch (older ones are kept for dialling but
    /// never passed on: a removed member must learn nothing announced after its removal).
    private func currentRecords(_ ch: Chapter) -> [[UInt8]] {
        guard let epoch = ch.log?.state.currentEpoch?.ref else { return [] }
        return (overlay.tables[ch.id] ?? [:]).values.filter { $0.record.epoch == epoch }
            .sorted { $0.record.device < $1.record.device }.map(\.encoded)
    }

    /// Takes the address records a peer sent: each must be a current device's, signed by it and
    /// sealed under the current epoch; newer than the one held; at most one per device a
    /// second. New ones are passed on to the chapter's other peers (push gossip).
    func receiveAddresses(chapter bytes: [UInt8], records: [[UInt8]], from peer: Int) {
        guard let p = peers[peer] else { return }
        guard let cid = try? ChapterID(bytes: bytes), let ch = chapters[cid], !ch.relayOnly, let state = ch.log?.state,
              p.scopes.contains(cid.contentScope) else {
            overlay.refusedRecords += records.count
            logger.warning(limitedBy: logLimiter, "addresses-unshared", "ignored address records for a chapter the peer does not share", metadata: ["peer": "\(p.name)"])
            return
        }
        guard let epoch = state.currentEpoch, let key = ch.store.replica.epochKeys[epoch.ref] else { return }
        let now = clock(), mono = OverlayState.monotonic()
        var fresh: [[UInt8]] = []
        for encoded in records {
            do {
                let record = try PeerAddressRecord(decoding: encoded)
                if record.device == identity.device { continue }
                if let held = overlay.tables[cid]?[record.device], held.record.issuedMilliseconds >= record.issuedMilliseconds { continue }
                guard record.issuedMilliseconds <= now + 600_000 else {
                    throw MembershipError(.malformed, "address record for \(record.device) issued more than 10 minutes in the future")
                }
                let address = try record.open(chapter: cid, state: state, epochKey: key)
                guard HostPort.parse(address) != nil else {
                    throw MembershipError(.malformed, "address record for \(record.device): '\(address.prefix(80))' is not host:port")
                }
                if let last = overlay.lastAccepted[record.device], mono - last < 1 { continue }
                overlay.lastAccepted[record.device] = mono
                overlay.tables[cid, default: [:]][record.device] = OverlayEntry(record: record, encoded: encoded, address: address)
                fresh.append(encoded)
            } catch {
                overlay.refusedRecords += 1
                logger.warning(limitedBy: logLimiter, "address-record", "refused an address record", metadata: ["peer": "\(p.name)", "reason": "\(error)"])
            }
        }
        if !fresh.isEmpty {
            for (pid, other) in chapterPeers(cid) where pid != peer { other.events.yield(.addresses(chapter: bytes, records: fresh)) }
        }
    }

    /// After a chapter's log changed: forget the addresses of devices that are no longer
    /// current (removed, left, revoked).
    func overlayLogChanged(_ ch: Chapter) {
        guard let state = ch.log?.state, var table = overlay.tables[ch.id] else { return }
        for device in table.keys where !state.isCurrentDevice(device) { table[device] = nil }
        overlay.tables[ch.id] = table
        overlay.wakeRequested = true
    }

    /// One overlay round: (re)announces this node's address in each chapter, closes surplus
    /// connections and returns the addresses to dial now (each marked as in flight until
    /// `overlayDialEnded`). Never more dials than keep a chapter at `maxConnections`.
    func overlayRound() -> [String] {
        overlay.rounds += 1
        overlay.wakeRequested = false
        let settings = overlay.settings
        let mono = OverlayState.monotonic()
        var dials: [String] = []
        for ch in chapters.values.sorted(by: { $0.id < $1.id }) where !ch.relayOnly {
            guard let state = ch.log?.state, state.isMember(identity.member) else { continue }
            announce(ch, state: state)
            let connected = chapterPeers(ch.id)
            let connectedDevices = Set(connected.map(\.value.identity.device))
            let inFlight = overlay.dialing.values.filter { $0 == ch.id }.count
            // Surplus: close random connections past the grace period.
            if connected.count > settings.maxConnections {
                let graceMs = UInt64(settings.graceSeconds * 1000), now = clock()
                let old = connected.filter { now >= $0.value.connectedAt + graceMs }.shuffled()
                for (pid, p) in old.prefix(connected.count - settings.maxConnections) {
                    p.events.yield(.close(reason: "chapter overlay: more than \(settings.maxConnections) connections"))
                    peers[pid] = nil
                }
            }
            // Rewiring, so a partition left by churn heals: above target + 2 one random
            // connection this overlay dialled closes per round (never a static peer's or an
            // inbound one), and every 10th round one extra random member is dialled.
            let ownDials = Set(overlay.dialing.filter { $0.value == ch.id }.keys)
            if connected.count <= settings.maxConnections, connected.count > settings.target + 2,
               let (pid, p) = connected.filter({ c in
                   clock() >= c.value.connectedAt + UInt64(settings.graceSeconds * 1000)
                       && ownDials.contains(String(c.value.name.prefix { $0 != " " }))
               }).randomElement() {
                p.events.yield(.close(reason: "chapter overlay: rewiring"))
                peers[pid] = nil
            }
            let extra = overlay.rounds % 10 == 0 && connected.count + inFlight < settings.maxConnections ? 1 : 0
            let room = min(settings.target, settings.maxConnections) - connected.count - inFlight + extra
            guard room > 0 else { continue }
            let usable: (String) -> Bool = { address in
                self.overlay.dialing[address] == nil && (self.overlay.backoff[address].map { mono >= $0.until } ?? true)
            }
            var candidates = (overlay.tables[ch.id] ?? [:]).values
                .filter { $0.record.device != identity.device && !connectedDevices.contains($0.record.device) && usable($0.address) }
                .map(\.address)
            candidates = Array(Set(candidates)).shuffled()
            if candidates.isEmpty && connected.isEmpty && inFlight == 0 {
                candidates = Self.hints(ch).filter(usable).shuffled()
            }
            for address in candidates.prefix(room) {
                overlay.dialing[address] = ch.id
                dials.append(address)
            }
        }
        // Address anti-entropy: every 10th round, the whole table to one random peer per chapter,
        // so a record that arrived before the log listed its device is not lost for good.
        if overlay.rounds % 10 == 0 {
            for ch in chapters.values where !ch.relayOnly {
                let records = currentRecords(ch)
                guard !records.isEmpty, let (_, p) = chapterPeers(ch.id).randomElement() else { continue }
                p.events.yield(.addresses(chapter: ch.id.bytes, records: Array(records.prefix(SyncMessage.maxAddressRecords))))
            }
        }
        return dials
    }

    /// Issues this node's record in a chapter when it has none, or its address or the epoch
    /// changed, and pushes it to the chapter's peers.
    private func announce(_ ch: Chapter, state: ChapterState) {
        guard let address = overlay.advertised, state.isCurrentDevice(identity.device), let epoch = state.currentEpoch,
              let key = ch.store.replica.epochKeys[epoch.ref] else { return }
        let held = overlay.tables[ch.id]?[identity.device]
        if let held, held.address == address, held.record.epoch == epoch.ref { return }
        let issued = max(clock(), (held?.record.issuedMilliseconds ?? 0) + 1)
        guard let record = try? PeerAddressRecord.make(address: address, chapter: ch.id, device: identity.deviceKey, issuedMilliseconds: issued,
                                                       epoch: epoch.ref, epochKey: key) else {
            logger.warning(limitedBy: logLimiter, "address-announce", "cannot announce this node's address to the chapter", metadata: ["address": "\(address)"])
            return
        }
        let encoded = record.encoded
        overlay.tables[ch.id, default: [:]][identity.device] = OverlayEntry(record: record, encoded: encoded, address: address)
        for (_, p) in chapterPeers(ch.id) { p.events.yield(.addresses(chapter: ch.id.bytes, records: [encoded])) }
    }

    /// An overlay dial ended after `seconds` (0 = never connected): a short one counts as a
    /// failure and backs the address off (2 s, doubling to 60 s).
    func overlayDialEnded(_ address: String, seconds: Double) {
        let chapter = overlay.dialing.removeValue(forKey: address)
        if seconds >= 10 {
            overlay.backoff[address] = nil
            if let chapter, let ch = chapters[chapter] { rememberAddress(address, in: ch) }
        } else {
            let failures = (overlay.backoff[address]?.failures ?? 0) + 1
            overlay.backoff[address] = (failures, OverlayState.monotonic() + min(60, 2 * pow(2, Double(failures - 1))))
        }
    }

    /// Keeps an address that held a chapter connection for 10 s or more as a bootstrap hint, so
    /// a restarted node finds the chapter without its admin (at most `maxRememberedHints`).
    private func rememberAddress(_ address: String, in ch: Chapter) {
        let hints = Self.hints(ch)
        guard !hints.contains(address) else { return }
        do {
            if hints.count >= Self.maxRememberedHints, let drop = hints.randomElement() {
                try ch.store.deleteRecords(.peerHint, ids: [Array(drop.utf8)])
            }
            try ch.store.putRecords(.peerHint, [(Array(address.utf8), Array(address.utf8))])
        } catch {
            logger.warning(limitedBy: logLimiter, "overlay-hint", "could not remember a chapter peer's address", metadata: ["reason": "\(error)"])
        }
    }

    static let maxRememberedHints = 16

    /// True when a round should run now rather than at the next tick.
    var overlayWanted: Bool { overlay.wakeRequested }
}

extension PeerNetwork {
    /// Keeps the chapter overlay (sync.md §9): every `interval` seconds (sooner after a join),
    /// runs a round and dials what it asks for, one connection attempt each, until cancelled.
    public func maintainOverlay(interval: Double = 1) async {
        await withDiscardingTaskGroup { group in
            var waited = 0.0
            while !Task.isCancelled {
                let dials = await node.overlayRound()
                for address in dials {
                    guard let (host, port) = HostPort.parse(address) else {
                        await node.overlayDialEnded(address, seconds: 0)
                        continue
                    }
                    group.addTask {
                        let start = OverlayState.monotonic()
                        await dialOnce(host: host, port: port)
                        await node.overlayDialEnded(address, seconds: OverlayState.monotonic() - start)
                    }
                }
                waited = 0
                while waited < interval, !Task.isCancelled {
                    try? await Task.sleep(nanoseconds: 50_000_000)
                    waited += 0.05
                    if await node.overlayWanted { break }
                }
            }
            group.cancelAll()
        }
    }

    /// One connection to `host:port` (5 s to connect), run until it ends.
    func dialOnce(host: String, port: Int) async {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(5))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
            await PeerConnection.run(channel, role: .initiator, node: node, label: "\(host):\(port)", logger: logger, now: now)
        } catch {
            logger.debug("cannot reach chapter peer", metadata: ["peer": "\(host):\(port)", "reason": "\(error)"])
        }
    }
}

extension SyncNode {
    /// Tests: sends `records` as they are to every peer of the chapter (a hostile member's forgeries).
    func testHookSendAddresses(_ records: [[UInt8]], chapter id: ChapterID) {
        for (_, p) in chapterPeers(id) { p.events.yield(.addresses(chapter: id.bytes, records: records)) }
    }

    /// Tests: this node's own current address record in a chapter, encoded.
    func testHookOwnRecord(chapter id: ChapterID) -> [UInt8]? { overlay.tables[id]?[identity.device]?.encoded }
}
