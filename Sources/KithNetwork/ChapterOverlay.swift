import Foundation
import KithChapter
import KithCRDT
import KithCrypto

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
    /// An own dial is remembered as a bootstrap hint only once its connection stayed up this
    /// long (authenticated), one hint per member: a member cannot fill a node's hints with
    /// devices it connects briefly (review 3 of the overlay).
    public var hintAfterSeconds: Double
    /// An own dial whose connection the other end closed sooner than this (a crowded node
    /// closing surplus, a member at its cap) backs that member off: 2 s, doubling to 60 s.
    public var quickCloseSeconds: Double
    /// When a chapter's current epoch needs renewing (its key reached a device that is no longer
    /// current: a member left, a device was revoked) and nobody writes, this node starts the new
    /// epoch after a random delay in this range (s), unless another member did first; nil = only
    /// a write starts it.
    public var epochRenewalDelay: ClosedRange<Double>?

    public init(target: Int = 3, maxConnections: Int = 8, graceSeconds: Double = 3, maxPerMember: Int = 4,
                hintAfterSeconds: Double = 60, quickCloseSeconds: Double = 10, epochRenewalDelay: ClosedRange<Double>? = 5...30) {
        self.target = target
        self.maxConnections = maxConnections
        self.graceSeconds = graceSeconds
        self.maxPerMember = maxPerMember
        self.hintAfterSeconds = hintAfterSeconds
        self.quickCloseSeconds = quickCloseSeconds
        self.epochRenewalDelay = epochRenewalDelay
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
    /// Overlay dials in flight (connecting, handshaking or connected).
    var dialing: [OverlayDial: DialState] = [:]
    /// Dials that failed lately: failures in a row and when to try again (monotonic s). Keyed by
    /// chapter and device (so a new record of the same device, with another spelling or another
    /// address, does not reset it, and a hostile record naming an honest member's address backs
    /// off only the hostile device); an invite hint, which names no device, by its address.
    var backoff: [BackoffKey: (failures: Int, until: Double)] = [:]
    /// Members whose end closed this node's dial soon after it authenticated (sync.md §9.3):
    /// closes in a row and when to dial them again (monotonic s).
    var memberBackoff: [MemberKey: (failures: Int, until: Double)] = [:]
    /// When each chapter whose epoch needs renewing gets a new one from this node (monotonic s).
    var epochRenewals: [ChapterID: Double] = [:]
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

    struct MemberKey: Hashable {
        let chapter: ChapterID
        let member: Ed25519.PublicKey
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

    /// One overlay dial in flight: its chapter, when the handshake authenticated the device the
    /// dial was bound to (nil: not yet) and that device's member, whether this node closed it,
    /// and whether it is remembered as a hint.
    struct DialState {
        let chapter: ChapterID
        var authenticatedAt: Double?
        var member: Ed25519.PublicKey?
        var closedHere = false
        var remembered = false
        var authenticated: Bool { authenticatedAt != nil }

        init(chapter: ChapterID) { self.chapter = chapter }
    }

    static func monotonic() -> Double { ProcessInfo.processInfo.systemUptime }
}

/// The overlay's bookkeeping of dials, backoff and address records: pure (time is passed in),
/// called by SyncNode with what happened, tested directly (OverlayPlanTests).
extension OverlayState {
    /// True when `dial` may start now: not in flight and not backed off.
    func mayDial(_ dial: OverlayDial, chapter: ChapterID, now: Double) -> Bool {
        dialing[dial] == nil && (backoff[.init(dial, chapter: chapter)].map { now >= $0.until } ?? true)
    }

    /// True when `dial` may start now and its member (when known) is not backed off for closing
    /// this node's dials quickly.
    func mayDial(_ dial: OverlayDial, member: Ed25519.PublicKey?, chapter: ChapterID, now: Double) -> Bool {
        mayDial(dial, chapter: chapter, now: now)
            && (member.flatMap { memberBackoff[MemberKey(chapter: chapter, member: $0)] }.map { now >= $0.until } ?? true)
    }

    /// The chapter's dials in flight whose handshake has not authenticated yet.
    func unauthenticatedDials(of chapter: ChapterID) -> [OverlayDial] {
        dialing.filter { $0.value.chapter == chapter && !$0.value.authenticated }.map(\.key)
    }

    /// The chapter's dials in flight, authenticated or not.
    func dialCount(of chapter: ChapterID) -> Int { dialing.values.filter { $0.chapter == chapter }.count }

    mutating func dialStarted(_ dial: OverlayDial, chapter: ChapterID) {
        dialing[dial] = DialState(chapter: chapter)
        if let device = dial.device { dialsStarted[device, default: 0] += 1 }
    }

    /// The dial's handshake authenticated the device it was bound to (the caller checked that
    /// device is current): the dial is good, its backoff cleared.
    mutating func dialAuthenticated(_ dial: OverlayDial, member: Ed25519.PublicKey, now: Double) {
        guard let entry = dialing[dial] else { return }
        dialing[dial]?.authenticatedAt = now
        dialing[dial]?.member = member
        backoff[.init(dial, chapter: entry.chapter)] = nil
    }

    /// This node closes the dial's connection itself (surplus, rewiring): its end does not count
    /// as the other end's quick close.
    mutating func closingHere(_ dial: OverlayDial) { dialing[dial]?.closedHere = true }

    /// A dial ended. One whose handshake never authenticated the bound device (refused, timed
    /// out, a tarpit, another member's node) backs off: 2 s, doubling to 60 s. One the other end
    /// closed within `quickCloseSeconds` of authenticating backs its member off the same way (a
    /// crowded node closing this one as surplus is not redialled the next second); one that
    /// stayed up longer clears the member's backoff.
    mutating func dialEnded(_ dial: OverlayDial, now: Double) {
        guard let entry = dialing.removeValue(forKey: dial) else { return }
        guard let at = entry.authenticatedAt else {
            let key = BackoffKey(dial, chapter: entry.chapter)
            let failures = (backoff[key]?.failures ?? 0) + 1
            backoff[key] = (failures, now + Self.backoffDelay(failures))
            return
        }
        guard let member = entry.member, !entry.closedHere else { return }
        let key = MemberKey(chapter: entry.chapter, member: member)
        if now - at < settings.quickCloseSeconds {
            let failures = (memberBackoff[key]?.failures ?? 0) + 1
            memberBackoff[key] = (failures, now + Self.backoffDelay(failures))
        } else {
            memberBackoff[key] = nil
        }
    }

    /// 2 s after the first failure, doubling to 60 s.
    static func backoffDelay(_ failures: Int) -> Double { min(60, 2 * pow(2, Double(failures - 1))) }

    /// The dials a round starts in a chapter (sync.md §9.3 step 3), marked in flight: up to the
    /// plan's room, one device per member, none of a member connected (`connectedMembers`), being
    /// dialled or backed off, chosen at random from the table; when the table offers none and the
    /// chapter has no overlay link nor dial in flight, its bootstrap `hints` (read only then).
    /// `memberOf` maps a device to its member in the chapter (nil: not current).
    mutating func startDials(chapter: ChapterID, links: [OverlayPlan.Link], connectedMembers: Set<Ed25519.PublicKey>,
                             hints: () -> [OverlayDial], memberOf: (Ed25519.PublicKey) -> Ed25519.PublicKey?,
                             own: (device: Ed25519.PublicKey, member: Ed25519.PublicKey), now: Double) -> [OverlayDial] {
        let inFlight = unauthenticatedDials(of: chapter)
        let room = OverlayPlan.room(links, inFlight: inFlight.count, round: rounds, settings: settings)
        guard room > 0 else { return [] }
        let before = self
        func usable(_ dial: OverlayDial) -> Bool { before.mayDial(dial, member: dial.device.flatMap(memberOf), chapter: chapter, now: now) }
        var busy = connectedMembers
        for d in inFlight { if let device = d.device, let m = memberOf(device) { busy.insert(m) } }
        let table = tables[chapter] ?? [:]
        let entries = table.values.compactMap { e -> (device: Ed25519.PublicKey, member: Ed25519.PublicKey)? in
            guard e.record.device != own.device, let m = memberOf(e.record.device), m != own.member,
                  usable(OverlayDial(address: e.address, device: e.record.device)) else { return nil }
            return (e.record.device, m)
        }
        var chosen = Array(OverlayPlan.candidates(entries, excludingMembers: busy).map { OverlayDial(address: table[$0]!.address, device: $0) }
            .prefix(room))
        // Bootstrap hints when the table offers no one and the chapter has no overlay link (a
        // static peer or a relay does not count: it may be all a restarted node reaches).
        if chosen.isEmpty && links.isEmpty && inFlight.isEmpty {
            // (not a hint of a member already connected, which a static peer may be)
            let usableHints = hints().filter { usable($0) }.filter { h in h.device.flatMap(memberOf).map { !busy.contains($0) } ?? true }
            chosen = OverlayPlan.bootstrap(usableHints, room: room)
        }
        for dial in chosen { dialStarted(dial, chapter: chapter) }
        return chosen
    }

    /// Own dials whose connection has been up `hintAfterSeconds` since it authenticated, each
    /// returned once (marked remembered): the addresses to keep as bootstrap hints.
    mutating func dueHints(now: Double) -> [(dial: OverlayDial, chapter: ChapterID, member: Ed25519.PublicKey)] {
        var out: [(dial: OverlayDial, chapter: ChapterID, member: Ed25519.PublicKey)] = []
        for (dial, e) in dialing where !e.remembered && dial.device != nil {
            guard let at = e.authenticatedAt, let member = e.member, now - at >= settings.hintAfterSeconds else { continue }
            dialing[dial]?.remembered = true
            out.append((dial, e.chapter, member))
        }
        return out
    }

    /// Whether this node starts the chapter's new epoch now: `needed` (the epoch needs renewing
    /// and this node may start one) for a random delay in `epochRenewalDelay` first, so members
    /// do not all start one at once and one started by another member cancels this node's.
    mutating func epochRenewalDue(_ chapter: ChapterID, needed: Bool, now: Double) -> Bool {
        guard needed, let range = settings.epochRenewalDelay else {
            epochRenewals[chapter] = nil
            return false
        }
        guard let at = epochRenewals[chapter] else {
            epochRenewals[chapter] = now + Double.random(in: range)
            return false
        }
        guard now >= at else { return false }
        epochRenewals[chapter] = nil
        return true
    }

    /// Drops rate-limit entries older than their second and, when `named` is given, backoff
    /// entries of dials it does not hold (no table or hint names them any more).
    mutating func prune(named: Set<BackoffKey>?, now: Double) {
        lastAccepted = lastAccepted.filter { now - $0.value < 1 }
        guard let named else { return }
        backoff = backoff.filter { named.contains($0.key) }
        // A member's quick-close backoff is forgotten 5 minutes after it ran out.
        memberBackoff = memberBackoff.filter { now - $0.value.until < 300 }
        let devices = Set(named.compactMap(\.device))
        dialsStarted = dialsStarted.filter { devices.contains($0.key) }
    }

    /// After a chapter's log changed: forgets the addresses and rate-limit entries of devices
    /// for which `isCurrent` is false.
    mutating func forgetDevices(in chapter: ChapterID, isCurrent: (Ed25519.PublicKey) -> Bool) {
        if var table = tables[chapter] {
            for device in table.keys where !isCurrent(device) { table[device] = nil }
            tables[chapter] = table
        }
        for key in lastAccepted.keys where key.chapter == chapter && !isCurrent(key.device) { lastAccepted[key] = nil }
    }

    /// The chapter's held records sealed under `epoch`, encoded, in device order.
    func records(of chapter: ChapterID, epoch: EpochRef) -> [[UInt8]] {
        (tables[chapter] ?? [:]).values.filter { $0.record.epoch == epoch }.sorted { $0.record.device < $1.record.device }.map(\.encoded)
    }
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

    /// The remembered hints to delete before remembering one of `member`: the member's others
    /// (one hint per member, so one member cannot fill them) and, when the rest still hold
    /// `max`, one at random. `hints` are the device-bound hints with their member (nil: a device
    /// no longer listed).
    static func hintsToDrop(_ hints: [(id: [UInt8], member: Ed25519.PublicKey?)], adding member: Ed25519.PublicKey, max: Int) -> [[UInt8]] {
        var drop = hints.filter { $0.member == member }.map(\.id)
        let rest = hints.filter { $0.member != member }
        if rest.count >= max, let victim = rest.randomElement() { drop.append(victim.id) }
        return drop
    }

    /// The dials of a chapter with no overlay link and nothing to dial in its table: every invite
    /// hint (always: remembered hints alone could all be one member's), then up to `room`
    /// remembered hints in random order.
    static func bootstrap(_ hints: [OverlayDial], room: Int) -> [OverlayDial] {
        hints.filter { $0.device == nil } + hints.filter { $0.device != nil }.shuffled().prefix(room)
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

