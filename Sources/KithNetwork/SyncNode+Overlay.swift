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
    /// Most connections open at once with one other member's devices (all of them, listed in a
    /// chapter or not; connections this node dialled to a static peer not counted): a further
    /// one is refused when it authenticates, so a member with many device certificates cannot
    /// take over a node's connections.
    public var maxPerMember: Int

    public init(target: Int = 3, maxConnections: Int = 8, graceSeconds: Double = 3, maxPerMember: Int = 4) {
        self.target = target
        self.maxConnections = maxConnections
        self.graceSeconds = graceSeconds
        self.maxPerMember = maxPerMember
    }
}

/// One device's announced address, as this node holds it.
struct OverlayEntry {
    let record: PeerAddressRecord
    let encoded: [UInt8]
    let address: String
}

/// What an overlay dial is bound to: the address, and the device the address record names
/// (nil only for a chapter's invite hint, which names no device). The handshake is aborted when
/// the responder is not that device (sync.md §9.3).
struct OverlayDial: Sendable, Hashable {
    let address: String
    let device: Ed25519.PublicKey?
}

/// Where a connection came from: the peer dialled in, this node dialled a static peer (or an
/// invite hint kept for good), or the overlay dialled it.
enum PeerOrigin: Sendable {
    case inbound
    case dialled
    case overlay(OverlayDial)

    var outbound: Bool { if case .inbound = self { false } else { true } }
    /// Counts toward the per-member connection cap: everything but a static peer this node dialled.
    var countsTowardMemberCap: Bool { if case .dialled = self { false } else { true } }
}

/// The overlay's state on one node: the address table per chapter and the dials in flight.
struct OverlayState {
    var settings = OverlaySettings()
    /// The address this node announces ("host:port"); nil = it announces none (kithd: only
    /// with `advertise` set).
    var advertised: String?
    var tables: [ChapterID: [Ed25519.PublicKey: OverlayEntry]] = [:]
    /// Overlay dials in flight (connecting, handshaking or connected): their chapter, and whether
    /// the handshake authenticated the device the dial was bound to.
    var dialing: [OverlayDial: (chapter: ChapterID, authenticated: Bool)] = [:]
    /// Dials that failed lately: failures in a row and when to try again (monotonic s). Keyed by
    /// chapter and device (so a new record of the same device, with another spelling or another
    /// address, does not reset it, and a hostile record naming an honest member's address backs
    /// off only the hostile device); an invite hint, which names no device, by its address.
    var backoff: [BackoffKey: (failures: Int, until: Double)] = [:]
    /// Overlay dials started per device (tests and stats).
    var dialsStarted: [Ed25519.PublicKey: Int] = [:]
    /// When a record from each (chapter, device) was last taken (monotonic s): at most one a second.
    var lastAccepted: [RateKey: Double] = [:]
    var rounds = 0
    /// Records refused (forged, malformed, for a device that is not current…), for tests and stats.
    var refusedRecords = 0
    /// Connections closed for sending too many refused records.
    var closedForRefusals = 0
    /// A round is wanted now (a chapter was joined).
    var wakeRequested = false
    /// Each epoch's address key (`PeerAddressRecord.key(epochKey:)`), derived once: deriving it
    /// allocates guarded key memory, which cost more than opening the record itself.
    var addressKeys: [EpochRef: SymmetricKey] = [:]

    struct RateKey: Hashable {
        let chapter: ChapterID
        let device: Ed25519.PublicKey
    }

    struct BackoffKey: Hashable {
        let chapter: ChapterID
        let device: Ed25519.PublicKey?
        let address: String?

        init(_ dial: OverlayDial, chapter: ChapterID) {
            self.chapter = chapter
            device = dial.device
            address = dial.device == nil ? dial.address : nil
        }
    }

    static func monotonic() -> Double { ProcessInfo.processInfo.systemUptime }
}

/// The overlay's decisions, free of I/O (sync.md §9.3): which connections a round closes and
/// how many members it dials.
enum OverlayPlan {
    /// Rounds between rewiring steps: one extra dial, and half-way, one closed own dial of a
    /// crowded node (kithd: a minute).
    static let rewiringRounds = 60

    /// One overlay connection of a chapter as the plan sees it.
    struct Link: Equatable {
        let id: Int
        let member: Ed25519.PublicKey
        /// This node's overlay dialled it.
        let ownDial: Bool
        /// Milliseconds since it registered.
        let ageMs: UInt64
    }

    /// The connections to close so at most `maxConnections` remain: always from the member with
    /// the most connections (ties: at random), inbound before own dials, newest first. Never
    /// closes an own dial while this node has no more than `target` of them, nor a connection
    /// younger than the grace period that is its member's only one (a joiner taking the log).
    static func surplus(_ links: [Link], settings: OverlaySettings) -> [Int] {
        var left = links
        var closed: [Int] = []
        let graceMs = UInt64(settings.graceSeconds * 1000)
        while left.count > settings.maxConnections {
            let perMember = Dictionary(grouping: left, by: \.member)
            let ownDials = left.filter(\.ownDial).count
            let closable = left.filter { l in
                if l.ownDial && ownDials <= settings.target { return false }
                if l.ageMs < graceMs && perMember[l.member]!.count == 1 { return false }
                return true
            }
            guard !closable.isEmpty else { break }
            let most = closable.map { perMember[$0.member]!.count }.max()!
            let heavy = Set(closable.filter { perMember[$0.member]!.count == most }.map(\.member))
            let member = heavy.randomElement()!
            let victim = closable.filter { $0.member == member }
                .min { ($0.ownDial ? 1 : 0, $0.ageMs) < ($1.ownDial ? 1 : 0, $1.ageMs) }!
            closed.append(victim.id)
            left.removeAll { $0.id == victim.id }
        }
        return closed
    }

    /// How many members to dial now: up to `target` distinct members (a member with many devices
    /// counts once, so a hostile member's connections never stop a node dialling honest ones),
    /// counting dials in flight, plus one extra every `rewiringRounds` rounds while under
    /// `maxConnections` (each new connection costs a full session start: rare on purpose).
    static func room(_ links: [Link], inFlight: Int, round: Int, settings: OverlaySettings) -> Int {
        let members = Set(links.map(\.member)).count
        let extra = round % rewiringRounds == 0 && links.count + inFlight < settings.maxConnections ? 1 : 0
        return max(0, min(settings.target, settings.maxConnections) - members - inFlight) + extra
    }

    /// The own dial a round closes to rewire (so a partition left by churn heals, and nodes
    /// many members dial settle near `target`): one at random past the grace period, while this
    /// node has more than `target` own dials, or, once every `rewiringRounds` rounds (half-way
    /// between extra dials), connections with more than `target + 2` distinct members (then at least
    /// `target + 2` remain: a member's many devices count once, so they can never make a node
    /// drop its own dials).
    static func rewire(_ links: [Link], round: Int, settings: OverlaySettings) -> Int? {
        let own = links.filter(\.ownDial)
        let crowded = round % rewiringRounds == rewiringRounds / 2 && Set(links.map(\.member)).count > settings.target + 2
        guard own.count > settings.target || crowded else { return nil }
        return own.filter { $0.ageMs >= UInt64(settings.graceSeconds * 1000) }.randomElement()?.id
    }

    /// The entries to dial, at most one per member and none of a member already connected or
    /// dialled, in random order.
    static func candidates(_ entries: [(device: Ed25519.PublicKey, member: Ed25519.PublicKey)], excludingMembers: Set<Ed25519.PublicKey>)
        -> [Ed25519.PublicKey] {
        var byMember: [Ed25519.PublicKey: [Ed25519.PublicKey]] = [:]
        for e in entries where !excludingMembers.contains(e.member) { byMember[e.member, default: []].append(e.device) }
        return byMember.values.compactMap { $0.randomElement() }.shuffled()
    }
}

extension SyncNode {
    /// Overlay numbers for one chapter (tests, the benchmark and `kith status`).
    public struct OverlayInfo: Sendable, Codable {
        public let knownAddresses: Int
        /// Overlay connections: other members' current devices, static peers not counted.
        public let connections: Int
        /// Distinct members among them.
        public let members: Int
        public let dialing: Int
        public let refusedRecords: Int
        /// Connections closed for sending too many refused address records.
        public let closedForRefusals: Int
    }

    /// Most address records a connection may send that fail a check costing a signature
    /// verification or a decryption (or that exceed the chapter's device count) before it is
    /// closed: an honest peer forwards only records it verified.
    static let maxRefusedAddressRecords = 16

    /// Sets the address this node announces to its chapters' members (kithd's `advertise`).
    public func setAdvertisedAddress(_ address: String?) {
        overlay.advertised = address
        overlay.wakeRequested = true
    }

    public func setOverlaySettings(_ settings: OverlaySettings) { overlay.settings = settings }

    public func overlayInfo(chapter id: ChapterID) -> OverlayInfo {
        let links = overlayLinks(id)
        return OverlayInfo(knownAddresses: overlay.tables[id]?.count ?? 0, connections: links.count, members: Set(links.map(\.member)).count,
                           dialing: overlay.dialing.values.filter { $0.chapter == id }.count, refusedRecords: overlay.refusedRecords,
                           closedForRefusals: overlay.closedForRefusals)
    }

    /// The chapter's address table: device key text → address.
    public func addressTable(chapter id: ChapterID) -> [String: String] {
        var out: [String: String] = [:]
        for (d, e) in overlay.tables[id] ?? [:] { out[d.description] = e.address }
        return out
    }

    /// Connected peers of a chapter that are other members' devices (address gossip goes to them).
    func chapterPeers(_ id: ChapterID) -> [Int: Peer] {
        let scope = id.contentScope
        return peers.filter { $0.value.scopes.contains(scope) && $0.value.identity.member != identity.member }
    }

    /// The chapter's overlay connections: other members' current devices, not static peers nor
    /// relays (devices the log does not list).
    func overlayLinks(_ id: ChapterID) -> [OverlayPlan.Link] {
        guard let state = chapters[id]?.log?.state else { return [] }
        let now = clock()
        return chapterPeers(id).compactMap { pid, p in
            guard state.isCurrentDevice(p.identity.device) else { return nil }
            let own: Bool
            switch p.origin {
            case .dialled: return nil
            case .inbound: own = false
            case .overlay: own = true
            }
            return OverlayPlan.Link(id: pid, member: p.identity.member, ownDial: own, ageMs: now >= p.connectedAt ? now - p.connectedAt : 0)
        }
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

    /// The address key of epoch `ref`, whose key is `epochKey` (kept per epoch; an epoch's key never changes).
    private func addressKey(_ ref: EpochRef, epochKey: SymmetricKey) -> SymmetricKey {
        if let k = overlay.addressKeys[ref] { return k }
        let k = PeerAddressRecord.key(epochKey: epochKey)
        overlay.addressKeys[ref] = k
        return k
    }

    /// True when records may be sent in the chapter now: its current epoch's key reached no
    /// device that is not current. After a removal or a revocation, until a member starts a new
    /// epoch, the removed device could open anything sealed now, so nothing is announced or passed on.
    private func mayPassOnRecords(_ ch: Chapter) -> Bool { !ch.needsNewEpoch }

    /// Records sealed under the chapter's current epoch (older ones are kept for dialling but
    /// never passed on: a removed member must learn nothing announced after its removal).
    private func currentRecords(_ ch: Chapter) -> [[UInt8]] {
        guard let state = ch.log?.state, mayPassOnRecords(ch), let epoch = state.currentEpoch?.ref else { return [] }
        return (overlay.tables[ch.id] ?? [:]).values.filter { $0.record.epoch == epoch }
            .sorted { $0.record.device < $1.record.device }.map(\.encoded)
    }

    /// Takes the address records a peer sent (sync.md §9.1): the cheap checks first (parse, a
    /// current device, the current epoch, newer than the one held, at most one per chapter and
    /// device a second), then the signature and the decryption. New ones are passed on to the
    /// chapter's other peers (push gossip). A connection that sends more than
    /// `maxRefusedAddressRecords` records failing the costly checks (or messages with more records
    /// than the chapter has devices, one each) is closed at once, the rest of its message unread.
    func receiveAddresses(chapter bytes: [UInt8], records: [[UInt8]], from peer: Int) {
        guard let p = peers[peer] else { return }
        guard let cid = try? ChapterID(bytes: bytes), let ch = chapters[cid], !ch.relayOnly, let state = ch.log?.state,
              p.scopes.contains(cid.contentScope) else {
            overlay.refusedRecords += records.count
            logger.warning(limitedBy: logLimiter, "addresses-unshared", "ignored address records for a chapter the peer does not share", metadata: ["peer": "\(p.name)"])
            return
        }
        guard let epoch = state.currentEpoch, let key = ch.store.replica.epochKeys[epoch.ref] else { return }
        guard records.count <= state.deviceCount else {
            // One refusal, however many records: one message is one wrong step of the peer.
            overlay.refusedRecords += 1
            refuseAddresses(from: peer, reason: "\(records.count) address records, more than the chapter's \(state.deviceCount) devices")
            return
        }
        let now = clock(), mono = OverlayState.monotonic()
        var fresh: [[UInt8]] = []
        records: for encoded in records {
            let record: PeerAddressRecord
            do { record = try PeerAddressRecord(decoding: encoded) } catch {
                overlay.refusedRecords += 1
                logger.warning(limitedBy: logLimiter, "address-record", "refused an address record", metadata: ["peer": "\(p.name)", "reason": "\(error)"])
                // Past the limit the connection is closed and the rest of the message is not looked at.
                if refuseAddresses(from: peer, reason: "a malformed address record") { break records }
                continue
            }
            if record.device == identity.device { continue }
            if let held = overlay.tables[cid]?[record.device], held.record.issuedMilliseconds >= record.issuedMilliseconds { continue }
            // Cheap refusals: an honest peer may send them while the two logs differ (a device
            // removed, an epoch started on one side only); they cost no cryptography.
            guard state.isCurrentDevice(record.device), record.epoch == epoch.ref, record.issuedMilliseconds <= now + 600_000 else {
                overlay.refusedRecords += 1
                logger.info("refused an address record", metadata: ["peer": "\(p.name)", "device": "\(record.device)",
                                                                    "reason": "not a current device, not the current epoch, or issued more than 10 minutes ahead"])
                continue
            }
            let rateKey = OverlayState.RateKey(chapter: cid, device: record.device)
            if let last = overlay.lastAccepted[rateKey], mono - last < 1 { continue }
            do {
                let address = try record.open(chapter: cid, state: state, addressKey: addressKey(epoch.ref, epochKey: key))
                guard HostPort.parse(address) != nil else {
                    throw MembershipError(.malformed, "address record for \(record.device): '\(address.prefix(80))' is not host:port")
                }
                overlay.lastAccepted[rateKey] = mono
                overlay.tables[cid, default: [:]][record.device] = OverlayEntry(record: record, encoded: encoded, address: address)
                fresh.append(encoded)
            } catch {
                overlay.refusedRecords += 1
                logger.warning(limitedBy: logLimiter, "address-record", "refused an address record", metadata: ["peer": "\(p.name)", "reason": "\(error)"])
                if refuseAddresses(from: peer, reason: "forged or malformed address records") { break records }
            }
        }
        if !fresh.isEmpty, mayPassOnRecords(ch) {
            for (pid, other) in chapterPeers(cid) where pid != peer { other.events.yield(.addresses(chapter: bytes, records: fresh)) }
        }
    }

    /// Counts one refusal against a connection; past the limit it is closed (returns true then, or
    /// when it is gone already).
    @discardableResult
    private func refuseAddresses(from peer: Int, reason: String) -> Bool {
        guard var p = peers[peer] else { return true }
        p.refusedAddressRecords += 1
        peers[peer] = p
        if p.refusedAddressRecords > Self.maxRefusedAddressRecords {
            logger.warning(limitedBy: logLimiter, "address-flood", "peer sent too many refused address records; closing", metadata: ["peer": "\(p.name)", "reason": "\(reason)"])
            p.events.yield(.close(reason: "too many refused address records (\(reason))"))
            unregister(peer)
            overlay.closedForRefusals += 1
            return true
        }
        return false
    }

    /// After a chapter's log changed: forget the addresses, remembered hints and rate-limit
    /// entries of devices that are no longer current (removed, left, revoked).
    func overlayLogChanged(_ ch: Chapter) {
        overlay.wakeRequested = true
        guard let state = ch.log?.state else { return }
        if var table = overlay.tables[ch.id] {
            for device in table.keys where !state.isCurrentDevice(device) { table[device] = nil }
            overlay.tables[ch.id] = table
        }
        for key in overlay.lastAccepted.keys where key.chapter == ch.id && !state.isCurrentDevice(key.device) { overlay.lastAccepted[key] = nil }
        let stale = Self.hintRecords(ch).filter { $0.device.map { !state.isCurrentDevice($0) } ?? false }
        if !stale.isEmpty {
            do { try ch.store.deleteRecords(.peerHint, ids: stale.map(\.id)) } catch {
                logger.warning(limitedBy: logLimiter, "overlay-hint", "could not forget a removed device's address", metadata: ["reason": "\(error)"])
            }
        }
    }

    /// One overlay round: (re)announces this node's address in each chapter, closes surplus
    /// connections and returns the dials to make now (each marked as in flight until
    /// `overlayDialEnded`).
    func overlayRound() -> [OverlayDial] {
        overlay.rounds += 1
        overlay.wakeRequested = false
        let settings = overlay.settings
        let mono = OverlayState.monotonic()
        pruneOverlayTables(now: mono)
        var dials: [OverlayDial] = []
        for ch in chapters.values.sorted(by: { $0.id < $1.id }) where !ch.relayOnly {
            guard let state = ch.log?.state, state.isMember(identity.member) else { continue }
            announce(ch, state: state)
            var links = overlayLinks(ch.id)
            // Surplus: the most represented member's connections first (sync.md §9.3).
            let close = OverlayPlan.surplus(links, settings: settings)
            // Rewiring: one random own dial past target closes per round.
            let rewired = close.isEmpty ? OverlayPlan.rewire(links, round: overlay.rounds, settings: settings) : nil
            for pid in close + (rewired.map { [$0] } ?? []) {
                peers[pid]?.events.yield(.close(reason: rewired == pid ? "chapter overlay: rewiring"
                                                    : "chapter overlay: more than \(settings.maxConnections) connections"))
                unregister(pid)
            }
            links.removeAll { l in close.contains(l.id) || l.id == rewired }
            let inFlight = overlay.dialing.filter { $0.value.chapter == ch.id && !$0.value.authenticated }
            let room = OverlayPlan.room(links, inFlight: inFlight.count, round: overlay.rounds, settings: settings)
            guard room > 0 else { continue }
            let usable: (OverlayDial) -> Bool = { dial in
                self.overlay.dialing[dial] == nil && (self.overlay.backoff[.init(dial, chapter: ch.id)].map { mono >= $0.until } ?? true)
            }
            // Members already connected (any connection, static ones included) or being dialled are not dialled again.
            var busy = Set(chapterPeers(ch.id).values.map(\.identity.member))
            for d in inFlight.keys { if let device = d.device, let m = state.member(ofDevice: device) { busy.insert(m) } }
            let table = overlay.tables[ch.id] ?? [:]
            let entries = table.values.compactMap { e -> (device: Ed25519.PublicKey, member: Ed25519.PublicKey)? in
                guard e.record.device != identity.device, let m = state.member(ofDevice: e.record.device), m != identity.member,
                      usable(OverlayDial(address: e.address, device: e.record.device)) else { return nil }
                return (e.record.device, m)
            }
            var chosen = OverlayPlan.candidates(entries, excludingMembers: busy).map { OverlayDial(address: table[$0]!.address, device: $0) }
            // Bootstrap hints when the table offers no one and the chapter has no overlay link (a
            // static peer or a relay does not count: it may be all a restarted node reaches).
            if chosen.isEmpty && links.isEmpty && inFlight.isEmpty {
                // (not a hint of a member already connected, which a static peer may be)
                chosen = Self.hintRecords(ch).map { OverlayDial(address: $0.address, device: $0.device) }.filter(usable)
                    .filter { h in h.device.flatMap { state.member(ofDevice: $0) }.map { !busy.contains($0) } ?? true }.shuffled()
            }
            for dial in chosen.prefix(room) {
                overlay.dialing[dial] = (ch.id, false)
                if let device = dial.device { overlay.dialsStarted[device, default: 0] += 1 }
                dials.append(dial)
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

    /// Drops rate-limit entries older than their second and backoff entries of dials no table
    /// or hint names any more, so the tables stay as small as the chapters.
    private func pruneOverlayTables(now mono: Double) {
        overlay.lastAccepted = overlay.lastAccepted.filter { mono - $0.value < 1 }
        guard overlay.rounds % 10 == 0 else { return }
        var named: Set<OverlayState.BackoffKey> = []
        for ch in chapters.values where !ch.relayOnly {
            for e in (overlay.tables[ch.id] ?? [:]).values { named.insert(.init(OverlayDial(address: e.address, device: e.record.device), chapter: ch.id)) }
            for h in Self.hintRecords(ch) { named.insert(.init(OverlayDial(address: h.address, device: h.device), chapter: ch.id)) }
        }
        overlay.backoff = overlay.backoff.filter { named.contains($0.key) }
        let devices = Set(named.compactMap(\.device))
        overlay.dialsStarted = overlay.dialsStarted.filter { devices.contains($0.key) }
    }

    /// Issues this node's record in a chapter when it has none, or its address or the epoch
    /// changed, and pushes it to the chapter's peers. Nothing while the current epoch's key
    /// reached a device that is not current (until a member starts a new epoch).
    private func announce(_ ch: Chapter, state: ChapterState) {
        guard let address = overlay.advertised, state.isCurrentDevice(identity.device), mayPassOnRecords(ch), let epoch = state.currentEpoch,
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
        if held?.address != address {
            logger.info("announcing this node's address to a chapter", metadata: ["chapter": "\(ch.id)", "address": "\(address)"])
        }
        overlay.tables[ch.id, default: [:]][identity.device] = OverlayEntry(record: record, encoded: encoded, address: address)
        for (_, p) in chapterPeers(ch.id) { p.events.yield(.addresses(chapter: ch.id.bytes, records: [encoded])) }
    }

    /// An overlay dial's connection registered (`register`): it counts as good only when the
    /// handshake authenticated the device the dial was bound to (any current device of the
    /// chapter for an invite hint), and that device is current in the chapter. A good dial clears
    /// the backoff and is remembered as a bootstrap hint, with its device.
    func overlayDialAuthenticated(_ dial: OverlayDial, peer: PeerIdentity) {
        guard let entry = overlay.dialing[dial], let ch = chapters[entry.chapter], let state = ch.log?.state,
              state.isCurrentDevice(peer.device), dial.device == nil || dial.device == peer.device else { return }
        overlay.dialing[dial] = (entry.chapter, true)
        overlay.backoff[.init(dial, chapter: entry.chapter)] = nil
        if let device = dial.device { rememberAddress(dial.address, device: device, in: ch) }
    }

    /// An overlay dial ended. One whose handshake never authenticated the bound device (refused,
    /// timed out, a tarpit, another member's node) backs off: 2 s, doubling to 60 s.
    func overlayDialEnded(_ dial: OverlayDial) {
        guard let entry = overlay.dialing.removeValue(forKey: dial), !entry.authenticated else { return }
        let key = OverlayState.BackoffKey(dial, chapter: entry.chapter)
        let failures = (overlay.backoff[key]?.failures ?? 0) + 1
        overlay.backoff[key] = (failures, OverlayState.monotonic() + min(60, 2 * pow(2, Double(failures - 1))))
    }

    /// Keeps an address whose dial authenticated the device it was bound to as a bootstrap hint,
    /// so a restarted node finds the chapter without its admin (at most `maxRememberedHints`).
    private func rememberAddress(_ address: String, device: Ed25519.PublicKey, in ch: Chapter) {
        let hints = Self.hintRecords(ch)
        guard !hints.contains(where: { $0.address == address && $0.device == device }) else { return }
        do {
            let own = hints.filter { $0.device != nil }
            if own.count >= Self.maxRememberedHints, let drop = own.randomElement() {
                try ch.store.deleteRecords(.peerHint, ids: [drop.id])
            }
            // Not waited for on disk: a hint lost to a power cut is learned again from the table.
            let text = Array(address.utf8)
            try ch.store.putRecords(.peerHint, [(device.bytes + text, text)], durable: false)
        } catch {
            logger.warning(limitedBy: logLimiter, "overlay-hint", "could not remember a chapter peer's address", metadata: ["reason": "\(error)"])
        }
    }

    static let maxRememberedHints = 16

    /// A chapter's bootstrap hints: the invite's (the record id is the address text; no device)
    /// and the overlay's (id = device key ‖ address text, bound to that device).
    static func hintRecords(_ ch: Chapter) -> [(id: [UInt8], address: String, device: Ed25519.PublicKey?)] {
        ((try? ch.store.records(.peerHint)) ?? []).map { r in
            let address = String(decoding: r.bytes, as: UTF8.self)
            if r.id.count == 32 + r.bytes.count, Array(r.id.suffix(r.bytes.count)) == r.bytes,
               let device = try? Ed25519.PublicKey(bytes: Array(r.id.prefix(32))) {
                return (r.id, address, device)
            }
            return (r.id, address, nil)
        }
    }

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
                for dial in dials {
                    guard let (host, port) = HostPort.parse(dial.address) else {
                        await node.overlayDialEnded(dial)
                        continue
                    }
                    group.addTask {
                        await dialOnce(host: host, port: port, dial: dial)
                        await node.overlayDialEnded(dial)
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

    /// One connection to `host:port` (5 s to connect), run until it ends; an overlay dial
    /// (`dial`) is bound to the device its record names.
    func dialOnce(host: String, port: Int, dial: OverlayDial? = nil) async {
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(5))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
            await PeerConnection.run(channel, role: .initiator, node: node, label: "\(host):\(port)", logger: logger, now: now,
                                     purpose: dial.map { .overlay($0) } ?? .sync)
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

    /// Tests: whether the chapter waits for a new epoch (its current key reached a device that is not current).
    func testHookNeedsNewEpoch(chapter id: ChapterID) -> Bool? { chapters[id]?.log?.state.needsNewEpoch }

    /// Tests: the chapter's current epoch and its key (a hostile member's forgeries).
    func testHookCurrentEpochKey(chapter id: ChapterID) -> (EpochRef, SymmetricKey)? {
        guard let ch = chapters[id], let ref = ch.log?.state.currentEpoch?.ref, let key = ch.store.replica.epochKeys[ref] else { return nil }
        return (ref, key)
    }

    /// Tests: the record held for `device` in a chapter, encoded.
    func testHookOwnRecordOf(_ device: Ed25519.PublicKey, chapter id: ChapterID) -> [UInt8]? { overlay.tables[id]?[device]?.encoded }

    /// Tests: the chapter's remembered bootstrap hints (address, device).
    func testHookHints(chapter id: ChapterID) -> [(address: String, device: Ed25519.PublicKey?)] {
        chapters[id].map { Self.hintRecords($0).map { ($0.address, $0.device) } } ?? []
    }

    /// Tests: failures in a row of dials to `device` (any chapter), 0 when it is not backed off.
    func testHookDialFailures(device: Ed25519.PublicKey) -> Int {
        overlay.backoff.filter { $0.key.device == device }.map(\.value.failures).max() ?? 0
    }

    /// Tests: overlay dials started to `device` so far.
    func testHookDialsStarted(device: Ed25519.PublicKey) -> Int { overlay.dialsStarted[device] ?? 0 }
}
