import KithCRDT
import KithCrypto

/// Who is in a chapter, who administers it, which devices act for each member, which epoch keys
/// exist and which invites are open: the deterministic result of evaluating the membership log
/// (Protocol/chapters.md §3). Every replica holding the same set of ops computes the same state.
public struct ChapterState: Sendable, Equatable {
    public struct Member: Sendable, Equatable {
        public let key: Ed25519.PublicKey
        public var isAdmin: Bool
        /// Device signing key → certificate.
        public var devices: [Ed25519.PublicKey: DeviceCertificate]
    }

    public struct Epoch: Sendable, Equatable {
        public let id: OpID
        public let check: [UInt8]
        /// Device signing key → the epoch key sealed to that device (current devices only).
        public var envelopes: [Ed25519.PublicKey: [UInt8]]
        /// Later envelopes for a device that already had one (`share key` ops): a device tries
        /// them all, so a member's garbage share cannot hide the honest one.
        public var alternates: [Ed25519.PublicKey: [[UInt8]]] = [:]
        public var ref: EpochRef { id.epochRef }

        public init(id: OpID, check: [UInt8], envelopes: [Ed25519.PublicKey: [UInt8]]) {
            self.id = id
            self.check = check
            self.envelopes = envelopes
        }

        /// Every envelope sealed to `device`, the first one first.
        public func envelopes(for device: Ed25519.PublicKey) -> [[UInt8]] {
            (envelopes[device].map { [$0] } ?? []) + (alternates[device] ?? [])
        }
    }

    public struct Invite: Sendable, Equatable {
        public let id: OpID
        public let key: Ed25519.PublicKey
        public let expiresAt: UInt64
        public let uses: Int
        public let author: Ed25519.PublicKey
        public let approval: Bool
        public var used: Int
        /// Position of the invite op in the evaluation order: a removal at a later position
        /// bars the removed member from this invite.
        public let position: Int
        /// Closed by an admin (`close invite`): refused from then on.
        public var closed: Bool
    }

    public internal(set) var name = ""
    public internal(set) var members: [Ed25519.PublicKey: Member] = [:]
    /// Epochs in the order they were applied; the last is current.
    public internal(set) var epochs: [Epoch] = []
    public internal(set) var invites: [OpID: Invite] = [:]
    /// The organization the chapter is affiliated with (the last applied `affiliate` op).
    public internal(set) var affiliation: Affiliation?
    /// Display names members gave themselves and their devices (`set name` ops; the last applied
    /// wins), keyed by member or device key.
    public internal(set) var names: [Ed25519.PublicKey: String] = [:]
    /// Devices revoked: refused at the handshake and never listed again, in this chapter, even
    /// though their member may still be in it.
    public internal(set) var revoked: Set<Ed25519.PublicKey> = []
    /// Ops that were evaluated and had no effect, with the reason (for `kith chapter log`).
    public internal(set) var ignored: [OpID: String] = [:]
    /// Members removed by an admin, with the position of the (last) removal in the evaluation
    /// order; invites opened before that position do not admit them again.
    public internal(set) var removedAt: [Ed25519.PublicKey: Int] = [:]
    /// Members removed or demoted, with the position of the (last) such op: the invites they
    /// opened before it admit nobody any more (chapters.md §3, `add member`).
    public internal(set) var demotedAt: [Ed25519.PublicKey: Int] = [:]
    /// Devices of removed members, with the position of the removal (same rule as members).
    public internal(set) var removedDevicesAt: [Ed25519.PublicKey: Int] = [:]
    /// Devices an op of the log sealed an epoch's key to that the epoch's `envelopes` do not
    /// list (not current when the op was applied, or the op was ignored or excluded), by epoch
    /// id: the bytes exist, so whoever holds that device's key has the epoch key. With the
    /// envelopes, the epoch's whole exposure (`exposure(of:)`).
    public internal(set) var exposedBeyondEnvelopes: [OpID: Set<Ed25519.PublicKey>] = [:]
    /// Devices that were listed and no longer are (removed, left, revoked), with the timestamp of
    /// the op that ended them: their changes stamped up to then stay valid.
    public internal(set) var retiredAt: [Ed25519.PublicKey: UInt64] = [:]
    /// Devices that were listed once and are not now → the member they acted for.
    var formerOwner: [Ed25519.PublicKey: Ed25519.PublicKey] = [:]
    /// Members who were members once (left or removed), with their devices then.
    var formerMembers: [Ed25519.PublicKey: Set<Ed25519.PublicKey>] = [:]
    /// Current device → its member.
    var deviceOwner: [Ed25519.PublicKey: Ed25519.PublicKey] = [:]
    /// Current device → the op that listed it (to tell whether a later op's author knew of it).
    var listedBy: [Ed25519.PublicKey: OpID] = [:]
    /// Device → the device that listed it with `add device` (revoking one revokes what it added).
    var addedBy: [Ed25519.PublicKey: Ed25519.PublicKey] = [:]
    /// How many ops were evaluated (applied or not): the next op's position.
    var position = 0
    /// Devices each member has ever had listed (a member cannot make every other node seal keys
    /// to an endless stream of new devices).
    var devicesEverListed: [Ed25519.PublicKey: Int] = [:]
    public static let maxDevicesPerMember = 32

    public func isMember(_ m: Ed25519.PublicKey) -> Bool { members[m] != nil }
    public func isAdmin(_ m: Ed25519.PublicKey) -> Bool { members[m]?.isAdmin == true }

    /// The member a current device acts for.
    public func member(ofDevice d: Ed25519.PublicKey) -> Ed25519.PublicKey? { deviceOwner[d] }

    /// True for a device listed for a current member (and not revoked).
    public func isCurrentDevice(_ d: Ed25519.PublicKey) -> Bool { deviceOwner[d] != nil }

    /// How many current devices the chapter has (what `allDevices.count` is, without listing
    /// and sorting them: asked for every address message a peer sends).
    public var deviceCount: Int { deviceOwner.count }

    /// Every current device certificate, ordered by device key.
    public var allDevices: [DeviceCertificate] {
        members.values.flatMap { $0.devices.values }.sorted { $0.deviceSigningKey < $1.deviceSigningKey }
    }

    public var admins: [Ed25519.PublicKey] { members.values.filter(\.isAdmin).map(\.key).sorted() }

    public var currentEpoch: Epoch? { epochs.last }

    /// Invites that can still admit someone at `nowMilliseconds`: not closed, not expired, uses left.
    public func openInvites(nowMilliseconds now: UInt64) -> [Invite] {
        invites.values.filter { !$0.closed && $0.expiresAt > now && $0.used < $0.uses && voidReason($0) == nil }.sorted { $0.position < $1.position }
    }

    /// Why `invite` admits nobody whatever its uses and expiry: its author is no admin now, or
    /// was removed or demoted after opening it (even if made admin again since).
    public func voidReason(_ invite: Invite) -> String? {
        if let d = demotedAt[invite.author], d > invite.position { return "the admin who opened the cited invite was removed or demoted after opening it" }
        if !isAdmin(invite.author) { return "the member who opened the cited invite is no admin of the chapter" }
        return nil
    }

    /// True when `epoch`'s key was sealed — by any op of the log — to a device that is not a
    /// current device (removed, revoked, or never a member).
    public func isExposed(_ epoch: Epoch) -> Bool {
        !epoch.envelopes.keys.allSatisfy { deviceOwner[$0] != nil }
            || !(exposedBeyondEnvelopes[epoch.id] ?? []).allSatisfy { deviceOwner[$0] != nil }
    }

    /// Every device any op of the log sealed `epoch`'s key to.
    public func exposure(of epoch: OpID) -> Set<Ed25519.PublicKey> {
        (exposedBeyondEnvelopes[epoch] ?? []).union(epochs.first { $0.id == epoch }?.envelopes.keys.map { $0 } ?? [])
    }

    /// True when there is no epoch yet, or the current epoch's key was sealed to a device that is
    /// not current (a removal the current epoch predates or raced, or an envelope for an outsider):
    /// a member must start a new epoch before writing.
    public var needsNewEpoch: Bool {
        guard let e = currentEpoch else { return true }
        return isExposed(e)
    }

    /// Whether a content change by `device` stamped at `milliseconds` is one a member wrote:
    /// by a current device, or by a device that was listed when it was stamped (up to the op
    /// that removed, revoked or retired it). `unknown` when the log does not know the device
    /// (yet): the change waits until the log explains it.
    public func authorizes(changeBy device: Ed25519.PublicKey, stampedAt milliseconds: UInt64) -> ChangeAuthorization {
        if deviceOwner[device] != nil { return .allowed }
        if let t = retiredAt[device] {
            return milliseconds <= t ? .allowed : .refused("device \(device) left the chapter at \(t) (removed, revoked or gone); this change is stamped \(milliseconds)")
        }
        if revoked.contains(device) { return .refused("device \(device) is revoked in this chapter") }
        return .unknown
    }

    public enum ChangeAuthorization: Equatable, Sendable {
        case allowed, unknown
        case refused(String)
    }

    /// Current devices that have no envelope for `epoch` (of `member` only, when given), ordered
    /// by device key. Every node asks this after every change of the log, so it looks devices up
    /// instead of listing and sorting them all: usually nothing lacks a key.
    public func devicesLackingKey(_ epoch: Epoch, of member: Ed25519.PublicKey? = nil) -> [DeviceCertificate] {
        var lacking: [DeviceCertificate] = []
        if let member {
            for (d, cert) in members[member]?.devices ?? [:] where epoch.envelopes[d] == nil { lacking.append(cert) }
        } else {
            for (d, owner) in deviceOwner where epoch.envelopes[d] == nil {
                if let cert = members[owner]?.devices[d] { lacking.append(cert) }
            }
        }
        return lacking.sorted { $0.deviceSigningKey < $1.deviceSigningKey }
    }

    // MARK: Applying one op (sequential evaluation)

    /// What evaluating one op may know of its place in the DAG.
    struct Causality {
        /// The latest timestamp among the op's parents: an op stamped earlier is ignored, so a
        /// certificate's validity is checked no earlier than the op's causal past.
        let latestParentTimestamp: UInt64
        /// The log's graph and the op's position in it; nil for an op that descends from all.
        let dag: DAG?
        let position: Int

        /// Whether an op (by id) is an ancestor of the op being applied.
        func isAncestor(_ id: OpID) -> Bool {
            guard let dag else { return true }
            guard let a = dag.index[id] else { return false }
            return dag.isAncestor(a, of: position)
        }

        /// For an op whose parents are every other op of the log.
        static func descendantOfAll(latestParentTimestamp t: UInt64) -> Causality {
            Causality(latestParentTimestamp: t, dag: nil, position: 0)
        }
    }

    /// Records what an op that is not applied reveals (all its envelopes) and advances the
    /// position.
    mutating func skip(_ op: MembershipOp, reason: String) {
        switch op.action {
        case let .epoch(_, envelopes): exposedBeyondEnvelopes[op.id, default: []].formUnion(envelopes.map(\.device))
        case let .shareKey(epoch, envelopes): exposedBeyondEnvelopes[epoch, default: []].formUnion(envelopes.map(\.device))
        default: break
        }
        ignored[op.id] = reason
        position += 1
    }

    /// Records the envelopes of an applied op that the state leaves out (not current devices).
    private mutating func recordDropped(_ op: MembershipOp) {
        let (epoch, envelopes): (OpID, [KeyEnvelope])
        switch op.action {
        case let .epoch(_, list): (epoch, envelopes) = (op.id, list)
        case let .shareKey(id, list): (epoch, envelopes) = (id, list)
        default: return
        }
        for e in envelopes where deviceOwner[e.device] == nil { exposedBeyondEnvelopes[epoch, default: []].insert(e.device) }
    }

    /// Applies `op` if its author may do it; otherwise records and returns why not.
    @discardableResult
    mutating func apply(_ op: MembershipOp, _ causality: Causality) -> String? {
        if let reason = applyIfAllowed(op, causality) {
            skip(op, reason: reason)
            return reason
        }
        recordDropped(op)
        position += 1
        return nil
    }

    private mutating func list(_ cert: DeviceCertificate, by op: MembershipOp) {
        if members[cert.memberKey]!.devices[cert.deviceSigningKey] == nil && formerOwner[cert.deviceSigningKey] == nil {
            devicesEverListed[cert.memberKey, default: 0] += 1
        }
        members[cert.memberKey]!.devices[cert.deviceSigningKey] = cert
        deviceOwner[cert.deviceSigningKey] = cert.memberKey
        listedBy[cert.deviceSigningKey] = op.id
    }

    private mutating func unlist(member m: Ed25519.PublicKey, removal: Bool, at t: UInt64) {
        if let gone = members.removeValue(forKey: m) {
            formerMembers[m, default: []].formUnion(gone.devices.keys)
            for d in gone.devices.keys {
                deviceOwner[d] = nil
                listedBy[d] = nil
                retiredAt[d] = t
                formerOwner[d] = m
            }
        }
        guard removal else { return }
        // A removal also bars a member who already left (so leaving first cannot dodge it).
        removedAt[m] = position
        demotedAt[m] = position
        for d in formerMembers[m] ?? [] { removedDevicesAt[d] = position }
    }

    /// Revokes `device` and, transitively, every device it listed with `add device` — except the
    /// device revoking it (a member revoking a stolen phone from the laptop that phone once
    /// listed keeps the laptop). The named device is revoked for good; devices it listed are only
    /// unlisted (their member certified them and may list them again from a trusted device).
    private mutating func revoke(_ device: Ed25519.PublicKey, by author: Ed25519.PublicKey, at t: UInt64) {
        revoked.insert(device)
        var queue = [device]
        var seen: Set<Ed25519.PublicKey> = [device, author]
        while let d = queue.popLast() {
            if let owner = deviceOwner[d] {
                members[owner]?.devices[d] = nil
                deviceOwner[d] = nil
                listedBy[d] = nil
                retiredAt[d] = t
                formerOwner[d] = owner
            }
            for (child, parent) in addedBy where parent == d && seen.insert(child).inserted { queue.append(child) }
        }
    }

    private mutating func applyIfAllowed(_ op: MembershipOp, _ causality: Causality) -> String? {
        let author = op.authorMember
        if case let .create(name, _) = op.action {
            guard members.isEmpty else { return "a second create op" }
            self.name = name
            members[author] = Member(key: author, isAdmin: true, devices: [:])
            list(op.certificate, by: op)
            return nil
        }
        guard op.timestamp >= causality.latestParentTimestamp else {
            return "stamped \(op.timestamp), before its parents (\(causality.latestParentTimestamp))"
        }
        guard let m = members[author] else { return "author \(author) is not a member" }
        guard m.devices[op.authorDevice] != nil else { return "author device \(op.authorDevice) is not a current device of member \(author)" }
        if op.action.needsAdmin && !m.isAdmin { return "only an admin may \(op.action.verb); \(author) is not one" }
        switch op.action {
        case .create:
            return "unreachable"
        case let .addMember(cert, admin, inviteID):
            if revoked.contains(cert.deviceSigningKey) { return "device \(cert.deviceSigningKey) was revoked; a revoked device is never listed again" }
            if let owner = deviceOwner[cert.deviceSigningKey], owner != cert.memberKey { return "device \(cert.deviceSigningKey) already acts for another member" }
            if let inviteID {
                guard var inv = invites[inviteID] else { return "the cited invite \(inviteID) does not exist" }
                guard !inv.closed else { return "the cited invite was closed" }
                if let void = voidReason(inv) { return void }
                guard op.timestamp < inv.expiresAt else { return "the cited invite expired before this op" }
                guard inv.used < inv.uses else { return "the cited invite has no uses left" }
                if let r = removedAt[cert.memberKey], r > inv.position { return "the cited invite predates the removal of \(cert.memberKey)" }
                if let r = removedDevicesAt[cert.deviceSigningKey], r > inv.position { return "the cited invite predates the removal of device \(cert.deviceSigningKey)" }
                inv.used += 1
                invites[inviteID] = inv
            }
            var member = members[cert.memberKey] ?? Member(key: cert.memberKey, isAdmin: false, devices: [:])
            member.isAdmin = member.isAdmin || admin
            members[cert.memberKey] = member
            list(cert, by: op)
        case let .removeMember(target):
            guard members[target] != nil || formerMembers[target] != nil else { return "\(target) is not a member" }
            unlist(member: target, removal: true, at: op.timestamp)
        case .leave:
            unlist(member: author, removal: false, at: op.timestamp)
        case let .addDevice(cert):
            guard cert.memberKey == author || m.isAdmin else { return "a non-admin may only add their own devices" }
            guard members[cert.memberKey] != nil else { return "\(cert.memberKey) is not a member" }
            if revoked.contains(cert.deviceSigningKey) { return "device \(cert.deviceSigningKey) was revoked; a revoked device is never listed again" }
            if let owner = deviceOwner[cert.deviceSigningKey], owner != cert.memberKey { return "device \(cert.deviceSigningKey) already acts for another member" }
            if deviceOwner[cert.deviceSigningKey] == nil, formerOwner[cert.deviceSigningKey] == nil,
               devicesEverListed[cert.memberKey, default: 0] >= Self.maxDevicesPerMember {
                return "\(cert.memberKey) has had \(Self.maxDevicesPerMember) devices listed, the most a member may"
            }
            list(cert, by: op)
            addedBy[cert.deviceSigningKey] = op.authorDevice
        case let .revokeDevice(device):
            // An admin's revocation (listed or not: an unlisted one bars the device for good).
            guard !revoked.contains(device) else { return "\(device) is already revoked" }
            revoke(device, by: op.authorDevice, at: op.timestamp)
        case let .revokeDeviceByMember(statement):
            // The member's own statement, signed with the member key: only for that member's
            // devices (listed, once listed, or never seen here).
            let device = statement.device
            guard statement.member == author else { return "the revocation is signed by member \(statement.member), not by the op's author" }
            guard !revoked.contains(device) else { return "\(device) is already revoked" }
            if let owner = deviceOwner[device] ?? formerOwner[device], owner != author { return "\(device) acts for another member" }
            revoke(device, by: op.authorDevice, at: op.timestamp)
        case let .setAdmin(target, flag):
            guard members[target] != nil else { return "\(target) is not a member" }
            if !flag && members[target]!.isAdmin { demotedAt[target] = position }
            members[target]!.isAdmin = flag
        case let .epoch(check, envelopes):
            var kept: [Ed25519.PublicKey: [UInt8]] = [:]
            for e in envelopes where deviceOwner[e.device] != nil && kept[e.device] == nil { kept[e.device] = e.sealed }
            guard !kept.isEmpty else { return "an epoch sealed to no current device" }
            // Sealed to every current device its author knew of (listed by an ancestor), or ignored:
            // one member cannot make a key only they hold current.
            for (d, by) in listedBy.filter({ kept[$0.key] == nil }).sorted(by: { $0.key < $1.key }) where causality.isAncestor(by) {
                return "an epoch without an envelope for current device \(d), which its author knew of"
            }
            epochs.append(Epoch(id: op.id, check: check, envelopes: kept))
        case let .shareKey(epochID, envelopes):
            guard let i = epochs.firstIndex(where: { $0.id == epochID }) else { return "share of unknown epoch \(epochID)" }
            for e in envelopes where deviceOwner[e.device] != nil {
                if let first = epochs[i].envelopes[e.device] {
                    if first != e.sealed, !(epochs[i].alternates[e.device] ?? []).contains(e.sealed) { epochs[i].alternates[e.device, default: []].append(e.sealed) }
                } else {
                    epochs[i].envelopes[e.device] = e.sealed
                }
            }
        case let .affiliate(a):
            affiliation = a
        case let .invite(key, expiresAt, uses, approval):
            invites[op.id] = Invite(id: op.id, key: key, expiresAt: expiresAt, uses: uses, author: author, approval: approval,
                                    used: 0, position: position, closed: false)
        case let .closeInvite(id):
            guard invites[id] != nil else { return "close of unknown invite \(id)" }
            guard invites[id]!.closed == false else { return "invite \(id) is already closed" }
            invites[id]!.closed = true
        case let .setName(subject, name):
            // Only the member names themselves and their own devices, never someone else.
            guard subject == author || deviceOwner[subject] == author else {
                return "member \(author) may name only themselves and their own devices, not \(subject)"
            }
            names[subject] = name.isEmpty ? nil : name
        }
        return nil
    }

    // MARK: Evaluating a whole log

    /// Evaluates a complete (causally closed) set of ops, rooted at one create op.
    ///
    /// 1. Order: a topological order of the parent graph, choosing the smallest op id among the
    ///    ops whose parents are all placed.
    /// 2. Apply in that order, skipping ops whose author lacks the right at that point.
    /// 3. Removal wins: take the first applied op R (in the order) that removes member M, revokes
    ///    device D, or demotes M, and has applied ops by M (by D; by M needing admin) — or ops
    ///    (re-)adding M (D), or `add member` ops citing an invite M opened — concurrent with it
    ///    (neither ancestor nor descendant). Exclude
    ///    all of those, and evaluate again. Exclusions only grow, so this terminates.
    public static func evaluate(_ ops: [OpID: MembershipOp]) -> ChapterState {
        let order = topologicalOrder(ops)
        let dag = DAG(order)
        let latestParent: [UInt64] = order.map { op in op.parents.compactMap { ops[$0]?.timestamp }.max() ?? 0 }
        var excluded = Set<Int>()
        while true {
            var state = ChapterState()
            var applied = [Bool](repeating: false, count: order.count)
            for (i, op) in order.enumerated() {
                if excluded.contains(i) {
                    state.skip(op, reason: "excluded: concurrent with the removal of its author's rights")
                    continue
                }
                applied[i] = state.apply(op, Causality(latestParentTimestamp: latestParent[i], dag: dag, position: i)) == nil
            }
            let violations = violations(order, applied: applied, dag: dag)
            guard !violations.isEmpty else { return state }
            excluded.formUnion(violations)
        }
    }

    /// The ops step 3 excludes in one round: applied removals in order; one excluded earlier in
    /// the round is skipped, every other one excludes the ops concurrent with it that it targets.
    private static func violations(_ order: [MembershipOp], applied: [Bool], dag: DAG) -> Set<Int> {
        // Only the members and devices some applied op removes, revokes or demotes matter.
        var removedMembers: Set<Ed25519.PublicKey> = [], revokedDevices: Set<Ed25519.PublicKey> = []
        var removals: [Int] = []
        for (i, op) in order.enumerated() where applied[i] {
            switch op.action {
            case let .removeMember(m), let .setAdmin(m, false): removedMembers.insert(m)
            case .revokeDevice, .revokeDeviceByMember: revokedDevices.insert(op.action.revokedDevice!)
            default: continue
            }
            removals.append(i)
        }
        guard !removals.isEmpty else { return [] }
        var byMember: [Ed25519.PublicKey: [Int]] = [:]
        var byDevice: [Ed25519.PublicKey: [Int]] = [:]
        var addingMember: [Ed25519.PublicKey: [Int]] = [:]
        var addingDevice: [Ed25519.PublicKey: [Int]] = [:]
        var citingInviteOf: [Ed25519.PublicKey: [Int]] = [:]
        var inviteAuthor: [OpID: Ed25519.PublicKey] = [:]
        for op in order { if case .invite = op.action, removedMembers.contains(op.authorMember) { inviteAuthor[op.id] = op.authorMember } }
        for (i, op) in order.enumerated() where applied[i] {
            if case let .addMember(_, _, invite?) = op.action, let m = inviteAuthor[invite] { citingInviteOf[m, default: []].append(i) }
            if removedMembers.contains(op.authorMember) { byMember[op.authorMember, default: []].append(i) }
            if revokedDevices.contains(op.authorDevice) { byDevice[op.authorDevice, default: []].append(i) }
            switch op.action {
            case let .addMember(cert, _, _), let .addDevice(cert):
                if removedMembers.contains(cert.memberKey) { addingMember[cert.memberKey, default: []].append(i) }
                if revokedDevices.contains(cert.deviceSigningKey) { addingDevice[cert.deviceSigningKey, default: []].append(i) }
            default: break
            }
        }
        var out = Set<Int>()
        for r in removals where !out.contains(r) {
            var candidates: [Int]
            switch order[r].action {
            case let .removeMember(m): candidates = (byMember[m] ?? []) + (addingMember[m] ?? []) + (citingInviteOf[m] ?? [])
            case .revokeDevice, .revokeDeviceByMember:
                let d = order[r].action.revokedDevice!
                candidates = (byDevice[d] ?? []) + (addingDevice[d] ?? [])
            case let .setAdmin(m, false): candidates = (byMember[m] ?? []).filter { order[$0].action.needsAdmin } + (citingInviteOf[m] ?? [])
            default: continue
            }
            candidates.removeAll { $0 == r || out.contains($0) }
            guard !candidates.isEmpty else { continue }
            out.formUnion(dag.concurrent(with: r, among: candidates))
        }
        return out
    }

    /// Kahn's order over the parent graph, smallest op id first among the ready ops. Ops are
    /// numbered by their id's rank once, so the ordering itself works on integers.
    static func topologicalOrder(_ ops: [OpID: MembershipOp]) -> [MembershipOp] {
        let sorted = ops.values.sorted { $0.id < $1.id }
        var rank: [OpID: Int] = [:]
        rank.reserveCapacity(sorted.count)
        for (i, op) in sorted.enumerated() { rank[op.id] = i }
        var waiting = [Int](repeating: 0, count: sorted.count)
        var children = [[Int]](repeating: [], count: sorted.count)
        var ready = MinHeap()
        for (i, op) in sorted.enumerated() {
            for p in op.parents {
                guard let pi = rank[p] else { continue }
                waiting[i] += 1
                children[pi].append(i)
            }
            if waiting[i] == 0 { ready.push(i) }
        }
        var out: [MembershipOp] = []
        out.reserveCapacity(sorted.count)
        while let i = ready.pop() {
            out.append(sorted[i])
            for c in children[i] {
                waiting[c] -= 1
                if waiting[c] == 0 { ready.push(c) }
            }
        }
        return out
    }
}

/// A binary min-heap of integers (the ready set of the topological order).
struct MinHeap {
    private var items: [Int] = []

    mutating func push(_ x: Int) {
        items.append(x)
        var i = items.count - 1
        while i > 0, items[(i - 1) / 2] > items[i] {
            items.swapAt(i, (i - 1) / 2)
            i = (i - 1) / 2
        }
    }

    mutating func pop() -> Int? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        guard !items.isEmpty else { return top }
        items[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count, items[l] < items[m] { m = l }
            if r < items.count, items[r] < items[m] { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return top
    }
}

/// The parent graph of a topologically ordered log, by position, with ancestor queries that
/// only walk the part of the graph between the two ops.
final class DAG {
    let index: [OpID: Int]
    let parents: [[Int]]
    let children: [[Int]]
    private var mark: [Int]
    private var generation = 0

    init(_ order: [MembershipOp]) {
        var index: [OpID: Int] = [:]
        index.reserveCapacity(order.count)
        for (i, op) in order.enumerated() { index[op.id] = i }
        let parents = order.map { $0.parents.compactMap { index[$0] } }
        var children = [[Int]](repeating: [], count: order.count)
        for (i, ps) in parents.enumerated() { for p in ps { children[p].append(i) } }
        self.index = index
        self.parents = parents
        self.children = children
        mark = [Int](repeating: 0, count: order.count)
    }

    /// True when the op at `a` is a proper ancestor of the op at `b`. In a topological order an
    /// ancestor has a smaller position, so the walk back from `b` stops below `a`.
    func isAncestor(_ a: Int, of b: Int) -> Bool {
        guard a < b else { return false }
        generation += 1
        var stack = [b]
        while let x = stack.popLast() {
            for p in parents[x] {
                if p == a { return true }
                if p > a && mark[p] != generation {
                    mark[p] = generation
                    stack.append(p)
                }
            }
        }
        return false
    }

    /// The ops among `candidates` that are neither ancestors nor descendants of `r`: one walk
    /// back from `r` down to the earliest candidate, one walk forward up to the latest, each
    /// stopping once it has reached every candidate on its side.
    func concurrent(with r: Int, among candidates: [Int]) -> [Int] {
        let before = candidates.filter { $0 < r }, after = candidates.filter { $0 > r }
        let back = walk(from: r, along: parents, toReach: before, bound: before.min()) { $0 >= $1 }
        let forward = walk(from: r, along: children, toReach: after, bound: after.max()) { $0 <= $1 }
        return candidates.filter { mark[$0] != ($0 < r ? back : forward) }.sorted()
    }

    /// Marks what the walk from `start` reaches (within `bound` of the targets) with a new
    /// generation, which it returns.
    private func walk(from start: Int, along edges: [[Int]], toReach targets: [Int], bound: Int?, within: (Int, Int) -> Bool) -> Int {
        generation += 1
        let g = generation
        guard let bound else { return g }
        let wanted = Set(targets)
        var left = wanted.count
        var stack = [start]
        while let x = stack.popLast(), left > 0 {
            for y in edges[x] where within(y, bound) && mark[y] != g {
                mark[y] = g
                if wanted.contains(y) { left -= 1 }
                stack.append(y)
            }
        }
        return g
    }
}

extension MembershipAction {
    var verb: String {
        switch self {
        case .create: "create a chapter"
        case .addMember: "add a member"
        case .removeMember: "remove a member"
        case .addDevice: "add a device"
        case .revokeDevice: "revoke a device"
        case .setAdmin: "change admin rights"
        case .epoch: "start an epoch"
        case .shareKey: "share a key"
        case .invite: "invite"
        case .leave: "leave"
        case .affiliate: "affiliate the chapter with an organization"
        case .closeInvite: "close an invite"
        case .revokeDeviceByMember: "revoke a device"
        case .setName: "set a display name"
        }
    }
}
