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
        public var ref: EpochRef { id.epochRef }
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
    /// Devices revoked: refused at the handshake and never listed again, in this chapter, even
    /// though their member may still be in it.
    public internal(set) var revoked: Set<Ed25519.PublicKey> = []
    /// Ops that were evaluated and had no effect, with the reason (for `kith chapter log`).
    public internal(set) var ignored: [OpID: String] = [:]
    /// Members removed by an admin, with the position of the (last) removal in the evaluation
    /// order; invites opened before that position do not admit them again.
    public internal(set) var removedAt: [Ed25519.PublicKey: Int] = [:]
    /// Devices of removed members, with the position of the removal (same rule as members).
    public internal(set) var removedDevicesAt: [Ed25519.PublicKey: Int] = [:]
    /// Every device any op of the log sealed an epoch's key to, by epoch id — applied, ignored
    /// or excluded ops alike: the bytes exist, so whoever holds that device's key has the epoch key.
    public internal(set) var exposure: [OpID: Set<Ed25519.PublicKey>] = [:]
    /// Devices that were listed and no longer are (removed, left, revoked), with the timestamp of
    /// the op that ended them: their changes stamped up to then stay valid.
    public internal(set) var retiredAt: [Ed25519.PublicKey: UInt64] = [:]
    /// Current device → its member.
    var deviceOwner: [Ed25519.PublicKey: Ed25519.PublicKey] = [:]
    /// Current device → the op that listed it (to tell whether a later op's author knew of it).
    var listedBy: [Ed25519.PublicKey: OpID] = [:]
    /// Device → the device that listed it with `add device` (revoking one revokes what it added).
    var addedBy: [Ed25519.PublicKey: Ed25519.PublicKey] = [:]
    /// How many ops were evaluated (applied or not): the next op's position.
    var position = 0

    public func isMember(_ m: Ed25519.PublicKey) -> Bool { members[m] != nil }
    public func isAdmin(_ m: Ed25519.PublicKey) -> Bool { members[m]?.isAdmin == true }

    /// The member a current device acts for.
    public func member(ofDevice d: Ed25519.PublicKey) -> Ed25519.PublicKey? { deviceOwner[d] }

    /// True for a device listed for a current member (and not revoked).
    public func isCurrentDevice(_ d: Ed25519.PublicKey) -> Bool { deviceOwner[d] != nil }

    /// Every current device certificate, ordered by device key.
    public var allDevices: [DeviceCertificate] {
        members.values.flatMap { $0.devices.values }.sorted { $0.deviceSigningKey < $1.deviceSigningKey }
    }

    public var admins: [Ed25519.PublicKey] { members.values.filter(\.isAdmin).map(\.key).sorted() }

    public var currentEpoch: Epoch? { epochs.last }

    /// Invites that can still admit someone at `nowMilliseconds`: not closed, not expired, uses left.
    public func openInvites(nowMilliseconds now: UInt64) -> [Invite] {
        invites.values.filter { !$0.closed && $0.expiresAt > now && $0.used < $0.uses }.sorted { $0.position < $1.position }
    }

    /// True when `epoch`'s key was sealed — by any op of the log — to a device that is not a
    /// current device (removed, revoked, or never a member).
    public func isExposed(_ epoch: Epoch) -> Bool {
        !(exposure[epoch.id] ?? []).allSatisfy { deviceOwner[$0] != nil }
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

    /// Current devices that have no envelope for `epoch`.
    public func devicesLackingKey(_ epoch: Epoch) -> [DeviceCertificate] {
        allDevices.filter { epoch.envelopes[$0.deviceSigningKey] == nil }
    }

    // MARK: Applying one op (sequential evaluation)

    /// What evaluating one op may know of its place in the DAG.
    struct Causality {
        /// The latest timestamp among the op's parents: an op stamped earlier is ignored, so a
        /// certificate's validity is checked no earlier than the op's causal past.
        let latestParentTimestamp: UInt64
        /// Whether an op (by id) is an ancestor of the op being applied.
        let isAncestor: (OpID) -> Bool

        /// For an op whose parents are every other op of the log.
        static func descendantOfAll(latestParentTimestamp t: UInt64) -> Causality {
            Causality(latestParentTimestamp: t, isAncestor: { _ in true })
        }
    }

    /// Records what every op reveals (its envelopes) and advances the position; for ops that
    /// are not applied.
    mutating func skip(_ op: MembershipOp, reason: String) {
        recordExposure(op)
        ignored[op.id] = reason
        position += 1
    }

    private mutating func recordExposure(_ op: MembershipOp) {
        switch op.action {
        case let .epoch(_, envelopes): exposure[op.id, default: []].formUnion(envelopes.map(\.device))
        case let .shareKey(epoch, envelopes): exposure[epoch, default: []].formUnion(envelopes.map(\.device))
        default: break
        }
    }

    /// Applies `op` if its author may do it; otherwise records and returns why not.
    @discardableResult
    mutating func apply(_ op: MembershipOp, _ causality: Causality) -> String? {
        if let reason = applyIfAllowed(op, causality) {
            skip(op, reason: reason)
            return reason
        }
        recordExposure(op)
        position += 1
        return nil
    }

    private mutating func list(_ cert: DeviceCertificate, by op: MembershipOp) {
        members[cert.memberKey]!.devices[cert.deviceSigningKey] = cert
        deviceOwner[cert.deviceSigningKey] = cert.memberKey
        listedBy[cert.deviceSigningKey] = op.id
    }

    private mutating func unlist(member m: Ed25519.PublicKey, removal: Bool, at t: UInt64) {
        guard let gone = members.removeValue(forKey: m) else { return }
        for d in gone.devices.keys {
            deviceOwner[d] = nil
            listedBy[d] = nil
            retiredAt[d] = t
            if removal { removedDevicesAt[d] = position }
        }
        if removal { removedAt[m] = position }
    }

    /// Revokes `device` and, transitively, every device it listed with `add device`. The named
    /// device is revoked for good; devices it listed are only unlisted (they were certified by
    /// their member, who may list them again from a device that is still trusted).
    private mutating func revoke(_ device: Ed25519.PublicKey, at t: UInt64) {
        revoked.insert(device)
        var queue = [device]
        var seen: Set<Ed25519.PublicKey> = [device]
        while let d = queue.popLast() {
            if let owner = deviceOwner[d] {
                members[owner]?.devices[d] = nil
                deviceOwner[d] = nil
                listedBy[d] = nil
                retiredAt[d] = t
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
            guard members[target] != nil else { return "\(target) is not a member" }
            unlist(member: target, removal: true, at: op.timestamp)
        case .leave:
            unlist(member: author, removal: false, at: op.timestamp)
        case let .addDevice(cert):
            guard cert.memberKey == author || m.isAdmin else { return "a non-admin may only add their own devices" }
            guard members[cert.memberKey] != nil else { return "\(cert.memberKey) is not a member" }
            if revoked.contains(cert.deviceSigningKey) { return "device \(cert.deviceSigningKey) was revoked; a revoked device is never listed again" }
            if let owner = deviceOwner[cert.deviceSigningKey], owner != cert.memberKey { return "device \(cert.deviceSigningKey) already acts for another member" }
            list(cert, by: op)
            addedBy[cert.deviceSigningKey] = op.authorDevice
        case let .revokeDevice(device):
            if let owner = deviceOwner[device] {
                guard owner == author || m.isAdmin else { return "a non-admin may only revoke their own devices" }
            } else {
                // Not listed here: recorded, so the device can never be listed in this chapter.
                guard !revoked.contains(device) else { return "\(device) is already revoked" }
            }
            revoke(device, at: op.timestamp)
        case let .setAdmin(target, flag):
            guard members[target] != nil else { return "\(target) is not a member" }
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
            for e in envelopes where deviceOwner[e.device] != nil && epochs[i].envelopes[e.device] == nil {
                epochs[i].envelopes[e.device] = e.sealed
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
    ///    (re-)adding M (D) — concurrent with it (neither ancestor nor descendant). Exclude
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
                let causality = Causality(latestParentTimestamp: latestParent[i], isAncestor: { id in
                    guard let a = dag.index[id] else { return false }
                    return dag.isAncestor(a, of: i)
                })
                applied[i] = state.apply(op, causality) == nil
            }
            let violations = firstViolations(order, applied: applied, dag: dag)
            guard !violations.isEmpty else { return state }
            excluded.formUnion(violations)
        }
    }

    /// The ops step 3 excludes next: those concurrent with the first removal that has any.
    private static func firstViolations(_ order: [MembershipOp], applied: [Bool], dag: DAG) -> [Int] {
        var byMember: [Ed25519.PublicKey: [Int]] = [:]
        var byDevice: [Ed25519.PublicKey: [Int]] = [:]
        var addingMember: [Ed25519.PublicKey: [Int]] = [:]
        var addingDevice: [Ed25519.PublicKey: [Int]] = [:]
        for (i, op) in order.enumerated() where applied[i] {
            byMember[op.authorMember, default: []].append(i)
            byDevice[op.authorDevice, default: []].append(i)
            switch op.action {
            case let .addMember(cert, _, _), let .addDevice(cert):
                addingMember[cert.memberKey, default: []].append(i)
                addingDevice[cert.deviceSigningKey, default: []].append(i)
            default: break
            }
        }
        for (r, op) in order.enumerated() where applied[r] {
            var candidates: [Int]
            switch op.action {
            case let .removeMember(m): candidates = (byMember[m] ?? []) + (addingMember[m] ?? [])
            case let .revokeDevice(d): candidates = (byDevice[d] ?? []) + (addingDevice[d] ?? [])
            case let .setAdmin(m, false): candidates = (byMember[m] ?? []).filter { order[$0].action.needsAdmin }
            default: continue
            }
            candidates.removeAll { $0 == r }
            guard !candidates.isEmpty else { continue }
            let concurrent = dag.concurrent(with: r, among: candidates)
            if !concurrent.isEmpty { return concurrent }
        }
        return []
    }

    static func topologicalOrder(_ ops: [OpID: MembershipOp]) -> [MembershipOp] {
        var waiting: [OpID: Int] = [:]
        var children: [OpID: [OpID]] = [:]
        var ready: [OpID] = []
        waiting.reserveCapacity(ops.count)
        for (id, op) in ops {
            waiting[id] = op.parents.count
            if op.parents.isEmpty { ready.append(id) }
            for p in op.parents { children[p, default: []].append(id) }
        }
        var out: [MembershipOp] = []
        out.reserveCapacity(ops.count)
        // Ready set kept sorted descending so the smallest id pops from the end.
        ready.sort(by: >)
        while let id = ready.popLast() {
            out.append(ops[id]!)
            for c in children[id] ?? [] {
                waiting[c]! -= 1
                if waiting[c] == 0 {
                    let at = ready.firstIndex(where: { $0 < c }) ?? ready.endIndex
                    ready.insert(c, at: at)
                }
            }
        }
        return out
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
    /// back from `r` down to the earliest candidate, one walk forward up to the latest.
    func concurrent(with r: Int, among candidates: [Int]) -> [Int] {
        let before = candidates.filter { $0 < r }, after = candidates.filter { $0 > r }
        var related = Set<Int>()
        for (edges, bound, inRange) in [(parents, before.min(), { (x: Int, b: Int) in x >= b }),
                                        (children, after.max(), { (x: Int, b: Int) in x <= b })] {
            guard let bound else { continue }
            generation += 1
            var stack = [r]
            while let x = stack.popLast() {
                for y in edges[x] where inRange(y, bound) && mark[y] != generation {
                    mark[y] = generation
                    related.insert(y)
                    stack.append(y)
                }
            }
        }
        return candidates.filter { !related.contains($0) }.sorted()
    }
}

extension MembershipAction {
    /// True for an op that (re-)adds member `m`.
    func adds(member m: Ed25519.PublicKey) -> Bool {
        switch self {
        case let .addMember(cert, _, _), let .addDevice(cert): cert.memberKey == m
        default: false
        }
    }

    /// True for an op that (re-)adds device `d`.
    func adds(device d: Ed25519.PublicKey) -> Bool {
        switch self {
        case let .addMember(cert, _, _), let .addDevice(cert): cert.deviceSigningKey == d
        default: false
        }
    }

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
        }
    }
}
