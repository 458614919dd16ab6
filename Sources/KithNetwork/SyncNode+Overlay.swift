import Foundation
import KithChapter
import KithCRDT
import KithCrypto
import KithSync
import NIOCore
import NIOPosix

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
                           dialing: overlay.dialCount(of: id), refusedRecords: overlay.refusedRecords,
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
        return overlay.records(of: ch.id, epoch: epoch)
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
            // Newer than the one held, within one epoch: a record of the current epoch replaces a
            // held one of an older epoch whatever its time (a fast clock cannot pin an old address).
            if let held = overlay.tables[cid]?[record.device], held.record.epoch == record.epoch,
               held.record.issuedMilliseconds >= record.issuedMilliseconds { continue }
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
        overlay.forgetDevices(in: ch.id, isCurrent: state.isCurrentDevice)
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
        rememberDueHints(now: mono)
        for ch in chapters.values.sorted(by: { $0.id < $1.id }) where !ch.relayOnly {
            guard let before = ch.log?.state, before.isMember(identity.member) else { continue }
            if overlay.epochRenewalDue(ch.id, needed: before.needsNewEpoch && before.isCurrentDevice(identity.device), now: mono) {
                renewEpoch(ch)
            }
            guard let state = ch.log?.state, state.isMember(identity.member) else { continue }
            announce(ch, state: state)
            var links = overlayLinks(ch.id)
            // Surplus: the most represented member's connections first (sync.md §9.3).
            let close = OverlayPlan.surplus(links, settings: settings)
            // Rewiring: one random own dial past target closes per round.
            let rewired = close.isEmpty ? OverlayPlan.rewire(links, round: overlay.rounds, settings: settings) : nil
            for pid in close + (rewired.map { [$0] } ?? []) {
                if case let .overlay(dial)? = peers[pid]?.origin { overlay.closingHere(dial) }
                peers[pid]?.events.yield(.close(reason: rewired == pid ? "chapter overlay: rewiring"
                                                    : "chapter overlay: more than \(settings.maxConnections) connections"))
                unregister(pid)
            }
            links.removeAll { l in close.contains(l.id) || l.id == rewired }
            // Members already connected (any connection, static ones included) are not dialled again.
            dials += overlay.startDials(chapter: ch.id, links: links, connectedMembers: Set(chapterPeers(ch.id).values.map(\.identity.member)),
                                        hints: { Self.hintRecords(ch).map { OverlayDial(address: $0.address, device: $0.device) } },
                                        memberOf: state.member(ofDevice:), own: (identity.device, identity.member), now: mono)
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
        guard overlay.rounds % 10 == 0 else { return overlay.prune(named: nil, now: mono) }
        var named: Set<OverlayState.BackoffKey> = []
        for ch in chapters.values where !ch.relayOnly {
            for e in (overlay.tables[ch.id] ?? [:]).values { named.insert(.init(OverlayDial(address: e.address, device: e.record.device), chapter: ch.id)) }
            for h in Self.hintRecords(ch) { named.insert(.init(OverlayDial(address: h.address, device: h.device), chapter: ch.id)) }
        }
        overlay.prune(named: named, now: mono)
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
        overlay.dialAuthenticated(dial, member: peer.member, now: OverlayState.monotonic())
    }

    /// Remembers as bootstrap hints the own dials whose connection stayed up long enough
    /// (`OverlaySettings.hintAfterSeconds`), while their device is still current.
    private func rememberDueHints(now mono: Double) {
        for due in overlay.dueHints(now: mono) {
            guard let device = due.dial.device, let ch = chapters[due.chapter], let state = ch.log?.state, state.isCurrentDevice(device) else { continue }
            rememberAddress(due.dial.address, device: device, member: due.member, in: ch)
        }
    }

    /// Starts a new epoch in a chapter whose current key reached a device that is no longer
    /// current, so the overlay (and reading) resumes without waiting for a write (any member may
    /// start one: Protocol/chapters.md §2).
    private func renewEpoch(_ ch: Chapter) {
        guard var log = ch.log, log.state.needsNewEpoch else { return }
        do {
            let op = try log.startEpoch(certificate: identity.certificate, device: identity.deviceKey, now: clock())
            ch.log = log
            try logChanged(ch, new: [op])
            logger.notice("started a new chapter epoch: its key had reached a device that is no longer current", metadata: ["chapter": "\(ch.id)"])
        } catch {
            logger.warning("could not start a new chapter epoch", metadata: ["chapter": "\(ch.id)", "reason": "\(error)"])
        }
    }

    /// An overlay dial ended (OverlayState.dialEnded: a dial that never authenticated backs off).
    func overlayDialEnded(_ dial: OverlayDial) { overlay.dialEnded(dial, now: OverlayState.monotonic()) }

    /// Keeps an address whose dial authenticated the device it was bound to, and stayed up, as a
    /// bootstrap hint, so a restarted node finds the chapter without its admin: one per member,
    /// at most `maxRememberedHints` (OverlayPlan.hintsToDrop).
    private func rememberAddress(_ address: String, device: Ed25519.PublicKey, member: Ed25519.PublicKey, in ch: Chapter) {
        let hints = Self.hintRecords(ch)
        guard !hints.contains(where: { $0.address == address && $0.device == device }) else { return }
        let state = ch.log?.state
        let held = hints.compactMap { h in h.device.map { (id: h.id, member: state?.member(ofDevice: $0)) } }
        do {
            let drop = OverlayPlan.hintsToDrop(held, adding: member, max: Self.maxRememberedHints)
            if !drop.isEmpty { try ch.store.deleteRecords(.peerHint, ids: drop) }
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

extension SyncNode {
    /// Tests: sends `records` as they are to every peer of the chapter (a hostile member's forgeries).
    func testHookSendAddresses(_ records: [[UInt8]], chapter id: ChapterID) {
        for (_, p) in chapterPeers(id) { p.events.yield(.addresses(chapter: id.bytes, records: records)) }
    }

    /// Tests: this node's own current address record in a chapter, encoded.
    func testHookOwnRecord(chapter id: ChapterID) -> [UInt8]? { overlay.tables[id]?[identity.device]?.encoded }

    /// Tests: whether the chapter waits for a new epoch (its current key reached a device that is not current).
    func testHookNeedsNewEpoch(chapter id: ChapterID) -> Bool? { chapters[id]?.log?.state.needsNewEpoch }

    /// Tests: whether this node's log of the chapter lists `device` as a current device (nil: no such chapter).
    func testHookIsCurrentDevice(_ device: Ed25519.PublicKey, chapter id: ChapterID) -> Bool? {
        chapters[id]?.log?.state.isCurrentDevice(device)
    }

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
