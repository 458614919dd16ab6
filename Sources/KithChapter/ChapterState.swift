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
        /// Device signing key → the epoch key sealed to that device.
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
    }

    public internal(set) var name = ""
    public internal(set) var members: [Ed25519.PublicKey: Member] = [:]
    /// Epochs in the order they were applied; the last is current.
    public internal(set) var epochs: [Epoch] = []
    public internal(set) var invites: [OpID: Invite] = [:]
    /// The organization the chapter is affiliated with (the last applied `affiliate` op).
    public internal(set) var affiliation: Affiliation?
    /// Devices revoked (and not re-added): refused at the handshake even though their member
    /// may still be in the chapter.
    public internal(set) var revoked: Set<Ed25519.PublicKey> = []
    /// Ops that were evaluated and had no effect, with the reason (for `kith chapter log`).
    public internal(set) var ignored: [OpID: String] = [:]

    public func isMember(_ m: Ed25519.PublicKey) -> Bool { members[m] != nil }
    public func isAdmin(_ m: Ed25519.PublicKey) -> Bool { members[m]?.isAdmin == true }

    /// The member a current device acts for.
    public func member(ofDevice d: Ed25519.PublicKey) -> Ed25519.PublicKey? {
        for (k, m) in members where m.devices[d] != nil { return k }
        return nil
    }

    /// Every current device certificate, ordered by device key.
    public var allDevices: [DeviceCertificate] {
        members.values.flatMap { $0.devices.values }.sorted { $0.deviceSigningKey < $1.deviceSigningKey }
    }

    public var admins: [Ed25519.PublicKey] { members.values.filter(\.isAdmin).map(\.key).sorted() }

    public var currentEpoch: Epoch? { epochs.last }

    /// True when there is no epoch yet, or the current epoch's key was sealed to a device that is
    /// no longer in the chapter (a removal the current epoch predates or raced): a member must
    /// start a new epoch before writing.
    public var needsNewEpoch: Bool {
        guard let e = currentEpoch else { return true }
        let current = Set(allDevices.map(\.deviceSigningKey))
        return !e.envelopes.keys.allSatisfy(current.contains)
    }

    /// Current devices that have no envelope for `epoch`.
    public func devicesLackingKey(_ epoch: Epoch) -> [DeviceCertificate] {
        allDevices.filter { epoch.envelopes[$0.deviceSigningKey] == nil }
    }

    // MARK: Applying one op (sequential evaluation)

    /// Applies `op` if its author may do it; otherwise returns why not.
    mutating func apply(_ op: MembershipOp) -> String? {
        let author = op.authorMember
        if case let .create(name, _) = op.action {
            guard members.isEmpty else { return "a second create op" }
            self.name = name
            members[author] = Member(key: author, isAdmin: true, devices: [op.authorDevice: op.certificate])
            return nil
        }
        guard let m = members[author] else { return "author \(author) is not a member" }
        guard m.devices[op.authorDevice] != nil else { return "author device \(op.authorDevice) is not a current device of member \(author)" }
        if op.action.needsAdmin && !m.isAdmin { return "only an admin may \(op.action.verb); \(author) is not one" }
        switch op.action {
        case .create:
            return "unreachable"
        case let .addMember(cert, admin, inviteID):
            if let inviteID {
                guard var inv = invites[inviteID] else { return "the cited invite \(inviteID) does not exist" }
                guard op.timestamp < inv.expiresAt else { return "the cited invite expired before this op" }
                guard inv.used < inv.uses else { return "the cited invite has no uses left" }
                inv.used += 1
                invites[inviteID] = inv
            }
            var member = members[cert.memberKey] ?? Member(key: cert.memberKey, isAdmin: false, devices: [:])
            member.isAdmin = member.isAdmin || admin
            member.devices[cert.deviceSigningKey] = cert
            members[cert.memberKey] = member
            revoked.remove(cert.deviceSigningKey)
        case let .removeMember(target):
            guard members.removeValue(forKey: target) != nil else { return "\(target) is not a member" }
        case .leave:
            members[author] = nil
        case let .addDevice(cert):
            guard cert.memberKey == author || m.isAdmin else { return "a non-admin may only add their own devices" }
            guard members[cert.memberKey] != nil else { return "\(cert.memberKey) is not a member" }
            members[cert.memberKey]!.devices[cert.deviceSigningKey] = cert
            revoked.remove(cert.deviceSigningKey)
        case let .revokeDevice(device):
            guard let owner = member(ofDevice: device) else { return "\(device) is not a current device" }
            guard owner == author || m.isAdmin else { return "a non-admin may only revoke their own devices" }
            members[owner]!.devices[device] = nil
            revoked.insert(device)
        case let .setAdmin(target, flag):
            guard members[target] != nil else { return "\(target) is not a member" }
            members[target]!.isAdmin = flag
        case let .epoch(check, envelopes):
            let current = Set(allDevices.map(\.deviceSigningKey))
            var kept: [Ed25519.PublicKey: [UInt8]] = [:]
            for e in envelopes where current.contains(e.device) && kept[e.device] == nil { kept[e.device] = e.sealed }
            guard !kept.isEmpty else { return "an epoch sealed to no current device" }
            epochs.append(Epoch(id: op.id, check: check, envelopes: kept))
        case let .shareKey(epochID, envelopes):
            guard let i = epochs.firstIndex(where: { $0.id == epochID }) else { return "share of unknown epoch \(epochID)" }
            let current = Set(allDevices.map(\.deviceSigningKey))
            for e in envelopes where current.contains(e.device) && epochs[i].envelopes[e.device] == nil {
                epochs[i].envelopes[e.device] = e.sealed
            }
        case let .affiliate(a):
            affiliation = a
        case let .invite(key, expiresAt, uses, approval):
            invites[op.id] = Invite(id: op.id, key: key, expiresAt: expiresAt, uses: uses, author: author, approval: approval, used: 0)
        }
        return nil
    }

    /// Evaluates a complete (causally closed) set of ops, rooted at one create op.
    ///
    /// 1. Order: a topological order of the parent graph, choosing the smallest op id among the
    ///    ops whose parents are all placed.
    /// 2. Apply in that order, skipping ops whose author lacks the right at that point.
    /// 3. Removal wins: if an applied op R removes member M, revokes device D, or demotes M,
    ///    then every applied op by M (by D; by M needing admin) — and every op (re-)adding M
    ///    (D) — that is concurrent with R, neither an ancestor nor a descendant, is excluded,
    ///    and evaluation restarts. Exclusions only grow, so this terminates.
    static func evaluate(_ ops: [OpID: MembershipOp]) -> ChapterState {
        let order = topologicalOrder(ops)
        let index = Dictionary(uniqueKeysWithValues: order.enumerated().map { ($1.id, $0) })
        var children = [[Int]](repeating: [], count: order.count)
        for (i, op) in order.enumerated() {
            for p in op.parents { if let pi = index[p] { children[pi].append(i) } }
        }
        func reach(_ start: Int, _ next: (Int) -> [Int]) -> Set<Int> {
            var seen: Set<Int> = [], stack = [start]
            while let x = stack.popLast() {
                for y in next(x) where seen.insert(y).inserted { stack.append(y) }
            }
            return seen
        }
        var excluded = Set<Int>()
        var cache: [Int: (Set<Int>, Set<Int>)] = [:]
        while true {
            var state = ChapterState()
            var applied: [Int] = []
            for (i, op) in order.enumerated() {
                if excluded.contains(i) {
                    state.ignored[op.id] = "excluded: concurrent with the removal of its author's rights"
                    continue
                }
                if let reason = state.apply(op) { state.ignored[op.id] = reason } else { applied.append(i) }
            }
            var violation: Int?
            search: for r in applied {
                let target: (MembershipOp) -> Bool
                switch order[r].action {
                case let .removeMember(m): target = { $0.authorMember == m || $0.action.adds(member: m) }
                case let .revokeDevice(d): target = { $0.authorDevice == d || $0.action.adds(device: d) }
                case let .setAdmin(m, false): target = { $0.authorMember == m && $0.action.needsAdmin }
                default: continue
                }
                if cache[r] == nil {
                    cache[r] = (reach(r) { order[$0].parents.compactMap { index[$0] } }, reach(r) { children[$0] })
                }
                let (ancestors, descendants) = cache[r]!
                for x in applied where x != r && target(order[x]) && !ancestors.contains(x) && !descendants.contains(x) {
                    violation = x
                    break search
                }
            }
            guard let v = violation else { return state }
            excluded.insert(v)
        }
    }

    static func topologicalOrder(_ ops: [OpID: MembershipOp]) -> [MembershipOp] {
        var waiting: [OpID: Int] = [:]
        var children: [OpID: [OpID]] = [:]
        var ready: [OpID] = []
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
        }
    }
}
