import KithCRDT
import KithCrypto

/// A chapter's membership log: a grow-only set of signed ops linked to their causal parents.
/// Ops whose parents have not arrived are held until they do. The state is re-evaluated from the
/// whole set whenever it grows, so it never depends on arrival order.
public struct MembershipLog: Sendable {
    public static let maxOps = 100_000
    /// The last ops below `maxOps` are kept for an admin's repairs (chapters.md §3.1): once a log
    /// holds `maxOps - reservedForRepairs` ops, only a current admin's `remove member`, `set
    /// admin`, `revoke device`, `new epoch` and `close invite` are taken, so a log filled by
    /// whoever can still be cleaned of them.
    public static let reservedForRepairs = 1_000
    /// Most ops a log holds (`maxOps`; tests lower it to reach the reserve quickly).
    var capacity = Self.maxOps
    /// Most `share key` ops one member may author, on top of the per-member quota (which they do
    /// not count against): one per device the chapter ever listed (plus a member's 32) and epoch
    /// (plus one), as an honest admin's node makes them for each new device and each epoch key.
    public static func maxKeySharesPerMember(devicesEverListed: Int, epochs: Int) -> Int {
        (devicesEverListed + ChapterState.maxDevicesPerMember) * (epochs + 1)
    }
    /// Envelopes for one device under one epoch beyond which a `share key` adding another is
    /// dropped as redundant (a device tries them all: this bounds that work, and still lets an
    /// honest share follow a few garbage ones).
    public static let maxEnvelopesPerDevice = 4
    /// Most ops one member may author in a chapter's log (held ones included); more are refused
    /// on arrival, so one member cannot fill the log. Admins, who admit and remove everyone,
    /// get more.
    public static let maxOpsPerMember = 2_000
    public static let maxOpsPerAdmin = 20_000
    /// How far ahead of the receiver's clock an op may be stamped (an op from further ahead
    /// would drag every later op's timestamp with it: invites would look expired, removals late).
    public static let maxFutureSkewMilliseconds: UInt64 = 600_000

    public let chapter: ChapterID
    public private(set) var ops: [OpID: MembershipOp] = [:]
    private var pending: [OpID: MembershipOp] = [:]
    public private(set) var state: ChapterState
    public private(set) var heads: Set<OpID> = []
    /// Ops (evaluated or held) by author member, `share key` ops apart.
    private var authored: [Ed25519.PublicKey: Int] = [:]
    /// `share key` ops (evaluated or held) by author member.
    private var keySharesAuthored: [Ed25519.PublicKey: Int] = [:]
    /// Ops refused on arrival, counted, not kept: their author was over quota, the log has never
    /// listed their author device, or they were stamped too far in the future.
    public private(set) var refusedOverQuota = 0
    public private(set) var refusedUnknownAuthor = 0
    public private(set) var refusedFromTheFuture = 0
    /// `share key` ops dropped on arrival because they seal nothing new to a device that needs
    /// it (chapters.md §3.1), and ops refused because the log is full (or only its repair
    /// reserve is left).
    public private(set) var refusedRedundantKeyShares = 0
    public private(set) var refusedLogFull = 0
    /// How many times an arrival re-evaluated the whole log (an op out of order or concurrent
    /// with the heads); every other op was applied to the state as it stood.
    public private(set) var fullEvaluations = 0
    /// Arrivals that cost more than their ops' signature checks and O(1) each: a whole-log
    /// evaluation, or ops dropped (from the future, by an unknown author, over quota).
    public var costlyArrivals: Int { fullEvaluations + droppedOnArrival }
    /// Ops dropped on arrival, for any reason.
    public var droppedOnArrival: Int {
        refusedFromTheFuture + refusedUnknownAuthor + refusedOverQuota + refusedRedundantKeyShares + refusedLogFull
    }
    /// Encodings of the device certificates whose member signature this log checked (decoding
    /// the ops that carry them): a peer's next op by the same device skips that check.
    private var verifiedCertificates = Set<[UInt8]>()

    /// The creation op (the log's root).
    public let genesis: MembershipOp

    /// Starts a log from its `create` op.
    public init(genesis: MembershipOp) throws(MembershipError) {
        guard case .create = genesis.action else { throw MembershipError(.malformed, "a log starts with a create op") }
        self.genesis = genesis
        chapter = try! ChapterID(bytes: genesis.id.bytes.prefix(16))
        ops[genesis.id] = genesis
        heads = [genesis.id]
        authored[genesis.authorMember] = 1
        state = ChapterState.evaluate(ops)
    }

    /// Rebuilds a log from stored or received ops in any order (one of them the create op);
    /// `nowMilliseconds` refuses ops stamped too far ahead (received ones; nil for stored ones).
    public init(chapter: ChapterID, ops encoded: [[UInt8]], nowMilliseconds now: UInt64? = nil) throws(MembershipError) {
        var decoded: [MembershipOp] = [], verified = Set<[UInt8]>()
        for b in encoded { decoded.append(try MembershipOp(decoding: b, verifiedCertificates: &verified)) }
        guard let root = decoded.first(where: { if case .create = $0.action { return $0.id.bytes.prefix(16).elementsEqual(chapter.bytes) } else { return false } }) else {
            throw MembershipError(.wrongChapter, "no create op for chapter \(chapter) among \(encoded.count) ops")
        }
        try self.init(genesis: root)
        verifiedCertificates = verified
        _ = try receive(decoded, nowMilliseconds: now)
    }

    /// Creates a new chapter: the create op and a first epoch whose key is sealed to the creator's
    /// device. Returns the log and the epoch key.
    public static func create(
        name: String, certificate: DeviceCertificate, device: Ed25519.PrivateKey, now: UInt64
    ) throws(MembershipError) -> MembershipLog {
        guard !name.isEmpty, name.utf8.count <= 200 else { throw MembershipError(.malformed, "a chapter name is 1 to 200 bytes of text") }
        let create = MembershipOp.make(chapter: .zero, parents: [], timestamp: now, certificate: certificate, device: device,
                                       action: .create(name: name, nonce: SecureRandom.bytes(16)))
        var log = try MembershipLog(genesis: create)
        try log.startEpoch(certificate: certificate, device: device, now: now)
        return log
    }

    // MARK: Receiving

    public var count: Int { ops.count }
    public var pendingCount: Int { pending.count }

    /// True when the log holds the op (evaluated or waiting for a parent).
    public func contains(_ id: OpID) -> Bool { ops[id] != nil || pending[id] != nil }

    /// Decodes and adds encoded ops (what a peer sends: often the whole log again). An op's id
    /// is the hash of its bytes, so ops this log already holds are recognised by that hash and
    /// skipped before their signatures are checked: a peer resending a log of n ops costs n
    /// hashes, not 3n signature checks. Returns the ops added and why undecodable ones were
    /// refused (the others are still taken).
    public mutating func receive(encoded: [[UInt8]], nowMilliseconds now: UInt64? = nil) throws(MembershipError) -> (added: [MembershipOp], refused: [MembershipError]) {
        var fresh: [MembershipOp] = [], refused: [MembershipError] = []
        var seen = Set<OpID>()
        for bytes in encoded {
            let id = OpID(unchecked: BLAKE2b.hash(bytes))
            guard !contains(id), seen.insert(id).inserted else { continue }
            do { fresh.append(try MembershipOp(decoding: bytes, verifiedCertificates: &verifiedCertificates)) } catch { refused.append(error) }
        }
        guard !fresh.isEmpty else { return ([], refused) }
        return (try receive(fresh, nowMilliseconds: now), refused)
    }

    /// Adds ops (any order, duplicates ignored). Returns the ops that were new and are now part
    /// of the evaluated set. An op for another chapter is refused. Dropped and counted
    /// (chapters.md §3.1): an op beyond the size limit (or into the repair reserve, unless it is
    /// an admin's repair), an op stamped more than 10 minutes after `nowMilliseconds` (when
    /// given), an op by a device neither the log nor another op of the same arrival by a known
    /// device lists, a `share key` that seals nothing new to a device needing it unless an op
    /// other than a key share builds on it, and an op whose author member is over quota (key
    /// shares: over their own budget) unless another author's op builds on it.
    ///
    /// An op whose parents are exactly the current heads comes last in every evaluation order
    /// and is concurrent with nothing, so it is applied to the state as it stands; any other
    /// arrival re-evaluates the whole log once per call.
    @discardableResult
    public mutating func receive(_ incoming: [MembershipOp], nowMilliseconds now: UInt64? = nil) throws(MembershipError) -> [MembershipOp] {
        var added: [MembershipOp] = []
        let vouched = vouchedDevices(incoming)
        let arrivalState = state
        let known = { (d: Ed25519.PublicKey) in arrivalState.deviceOwner[d] != nil || arrivalState.formerOwner[d] != nil || vouched.contains(d) }
        let batch = incoming + pending.values
        let builtOnByOthers = Self.builtOnByOthers(batch)
        let builtOnByNonShares = Self.builtOn(batch) { _, child in
            if case .shareKey = child.action { return false } else { return true }
        }
        // Devices this batch lists count too: a joiner takes the whole log in one batch, in
        // which an honest admin shared the key with every device it admitted.
        let keyShareQuota = Self.maxKeySharesPerMember(devicesEverListed: state.devicesEverListed.values.reduce(0, +) + vouched.count,
                                                       epochs: state.epochs.count)
        for op in incoming {
            if ops[op.id] != nil || pending[op.id] != nil { continue }
            if case .create = op.action {
                if op.id != genesis.id { throw MembershipError(.wrongChapter, "a create op for another chapter") }
                continue
            }
            guard op.chapter == chapter else {
                throw MembershipError(.wrongChapter, "op \(op.id) is for chapter \(op.chapter), this log is \(chapter)")
            }
            let held = ops.count + pending.count
            guard held < capacity - Self.reservedForRepairs || (held < capacity && isRepair(op)) else {
                refusedLogFull += 1
                continue
            }
            if let now, op.timestamp > now &+ Self.maxFutureSkewMilliseconds {
                refusedFromTheFuture += 1
                continue
            }
            guard known(op.authorDevice) else {
                refusedUnknownAuthor += 1
                continue
            }
            // Key shares have their own budget: every admin's node makes them for others' new
            // devices. One that seals nothing new to a device needing it is dropped first.
            if case let .shareKey(epoch, envelopes) = op.action {
                guard addsNeededEnvelope(epoch: epoch, envelopes, vouched: vouched) || builtOnByNonShares.contains(op.id) else {
                    refusedRedundantKeyShares += 1
                    continue
                }
                guard keySharesAuthored[op.authorMember, default: 0] < keyShareQuota || builtOnByOthers.contains(op.id) else {
                    refusedOverQuota += 1
                    continue
                }
                keySharesAuthored[op.authorMember, default: 0] += 1
            } else {
                let quota = state.isAdmin(op.authorMember) ? Self.maxOpsPerAdmin : Self.maxOpsPerMember
                guard authored[op.authorMember, default: 0] < quota || builtOnByOthers.contains(op.id) else {
                    refusedOverQuota += 1
                    continue
                }
                authored[op.authorMember, default: 0] += 1
            }
            pending[op.id] = op
        }
        // Move held ops whose parents are all present, parents before children (Kahn's order).
        var missing: [OpID: Int] = [:]
        var waitingOn: [OpID: [OpID]] = [:]
        var ready: [OpID] = []
        for (id, op) in pending {
            let absent = op.parents.filter { ops[$0] == nil }
            if absent.isEmpty { ready.append(id) } else {
                missing[id] = absent.count
                for p in absent { waitingOn[p, default: []].append(id) }
            }
        }
        ready.sort(by: >)
        var incremental = true
        while let id = ready.popLast() {
            let op = pending.removeValue(forKey: id)!
            if incremental && Set(op.parents) == heads {
                let latest = op.parents.compactMap { ops[$0]?.timestamp }.max() ?? 0
                state.apply(op, .descendantOfAll(latestParentTimestamp: latest))
            } else {
                incremental = false
            }
            ops[id] = op
            for p in op.parents { heads.remove(p) }
            heads.insert(id)
            added.append(op)
            for child in waitingOn.removeValue(forKey: id) ?? [] {
                missing[child]! -= 1
                if missing[child] == 0 { ready.append(child) }
            }
        }
        if !incremental {
            state = ChapterState.evaluate(ops)
            fullEvaluations += 1
        }
        return added
    }

    /// Whether a `share key` arriving now is worth keeping (chapters.md §3.1): its epoch is not
    /// an applied one (nothing to judge it by), or it seals the key to one of: a current device
    /// without an envelope; a current device with fewer than `maxEnvelopesPerDevice` envelopes,
    /// adding a new one (a garbage share cannot hide an honest one); a device an op of this
    /// arrival lists; a device once listed whose exposure to the key the log has not recorded
    /// yet (so a key share racing a removal is always seen).
    private func addsNeededEnvelope(epoch id: OpID, _ envelopes: [KeyEnvelope], vouched: Set<Ed25519.PublicKey>) -> Bool {
        guard let epoch = state.epochs.first(where: { $0.id == id }) else { return true }
        for e in envelopes {
            if state.deviceOwner[e.device] != nil {
                let have = epoch.envelopes(for: e.device)
                if have.isEmpty || (have.count < Self.maxEnvelopesPerDevice && !have.contains(e.sealed)) { return true }
            } else if vouched.contains(e.device) {
                return true
            } else if state.formerOwner[e.device] != nil, state.exposedBeyondEnvelopes[id]?.contains(e.device) != true {
                return true
            }
        }
        return false
    }

    /// A current admin's op that undoes someone's rights or rotates or closes something: what
    /// the repair reserve takes.
    private func isRepair(_ op: MembershipOp) -> Bool {
        guard state.isAdmin(op.authorMember) else { return false }
        switch op.action {
        case .removeMember, .setAdmin, .revokeDevice, .epoch, .closeInvite: return true
        default: return false
        }
    }

    /// The ops of `batch` that an op of another author descends from, within the batch: they
    /// are never dropped for quota, since dropping them would leave the other author's ops
    /// waiting for a parent for ever (and nodes that kept different ops apart for good).
    static func builtOnByOthers(_ batch: [MembershipOp]) -> Set<OpID> {
        builtOn(batch) { parent, child in child.authorMember != parent.authorMember }
    }

    /// The ops of `batch` that an op `qualifies` (given the op and one of its children) descends
    /// from, within the batch.
    static func builtOn(_ batch: [MembershipOp], qualifies: (MembershipOp, MembershipOp) -> Bool) -> Set<OpID> {
        var byID: [OpID: MembershipOp] = [:]
        for op in batch { byID[op.id] = op }
        var children: [OpID: [OpID]] = [:]
        for op in byID.values { for p in op.parents where byID[p] != nil { children[p, default: []].append(op.id) } }
        var memo: [OpID: Bool] = [:]
        // Iterative post-order: an op is exempt if a child has another author or is exempt.
        for root in byID.keys.sorted() where memo[root] == nil {
            var stack: [(OpID, Bool)] = [(root, false)]
            while let (id, expanded) = stack.popLast() {
                if memo[id] != nil { continue }
                let kids = children[id] ?? []
                if expanded {
                    let op = byID[id]!
                    memo[id] = kids.contains { qualifies(op, byID[$0]!) || memo[$0] == true }
                } else {
                    stack.append((id, true))
                    for k in kids where memo[k] == nil { stack.append((k, false)) }
                }
            }
        }
        return Set(memo.filter(\.value).keys)
    }

    /// Devices this log does not list whose ops it takes (besides those it lists or listed): to a fixpoint, those an
    /// op of `incoming` (or a held one) could list — an `add member` by a current admin's
    /// device, an `add device` by a current device of the certificate's member or of an admin,
    /// or by a device listed that way. A removed member cannot vouch for anyone. The devices the
    /// state knows are looked up, not copied: the cost is that of the ops, not of the log.
    private func vouchedDevices(_ incoming: [MembershipOp]) -> Set<Ed25519.PublicKey> {
        let state = self.state
        var vouched = Set<Ed25519.PublicKey>()
        let candidates = incoming + pending.values
        var grew = true
        while grew {
            grew = false
            for op in candidates where state.deviceOwner[op.authorDevice] != nil || vouched.contains(op.authorDevice) {
                let admin = state.isAdmin(op.authorMember)
                let listed: DeviceCertificate
                switch op.action {
                case let .addMember(cert, _, _) where admin: listed = cert
                case let .addDevice(cert) where admin || cert.memberKey == op.authorMember: listed = cert
                default: continue
                }
                if state.deviceOwner[listed.deviceSigningKey] == nil, vouched.insert(listed.deviceSigningKey).inserted { grew = true }
            }
        }
        return vouched
    }

    /// Every op (evaluated ones, then held ones), in a deterministic order that lists parents
    /// before children: what a peer needs to rebuild the log.
    public var allOps: [MembershipOp] {
        ChapterState.topologicalOrder(ops) + pending.values.sorted { $0.id < $1.id }
    }

    // MARK: Authoring

    /// Signs an op on top of the current heads and receives it. Throws `.notAuthorized` (and
    /// keeps nothing) if the evaluated log would ignore it.
    @discardableResult
    public mutating func append(
        _ action: MembershipAction, certificate: DeviceCertificate, device: Ed25519.PrivateKey, now: UInt64
    ) throws(MembershipError) -> MembershipOp {
        let latest = heads.compactMap { ops[$0]?.timestamp }.max() ?? 0
        let op = MembershipOp.make(chapter: chapter, parents: Array(heads), timestamp: max(now, latest == .max ? .max : latest + 1),
                                   certificate: certificate, device: device, action: action)
        var trial = self
        try trial.receive([op])
        guard trial.ops[op.id] != nil else {
            let reason = count + pendingCount >= capacity - Self.reservedForRepairs
                ? "the chapter's log holds \(count + pendingCount) ops, the most it takes (the last \(Self.reservedForRepairs) are kept for an admin's removals, epochs and invite closes)"
                : "this member has authored \(authored[certificate.memberKey, default: 0]) ops (\(keySharesAuthored[certificate.memberKey, default: 0]) key shares) in the chapter's log, the most it takes, or the op shares no key a device needs"
            throw MembershipError(.tooMany, "not allowed to \(action.verb): \(reason)")
        }
        if let reason = trial.state.ignored[op.id] {
            throw MembershipError(.notAuthorized, "not allowed to \(action.verb): \(reason)")
        }
        self = trial
        return op
    }

    /// Starts a new epoch: a fresh key sealed to every current device.
    @discardableResult
    public mutating func startEpoch(certificate: DeviceCertificate, device: Ed25519.PrivateKey, now: UInt64) throws(MembershipError) -> MembershipOp {
        let key = SymmetricKey()
        let envelopes = EpochKeys.seal(key, to: state.allDevices)
        return try append(.epoch(check: EpochKeys.check(key), envelopes: envelopes), certificate: certificate, device: device, now: now)
    }

    /// Seals every epoch key this device holds to the current devices that lack it (a device
    /// added after the epoch started) — when `onlyOwnMember`, only to the devices of this
    /// device's member (what a non-admin's node does: admins share with new members).
    public mutating func shareMissingKeys(certificate: DeviceCertificate, device: Ed25519.PrivateKey,
                                          agreement: X25519.PrivateKey, now: UInt64, onlyOwnMember: Bool = false) throws(MembershipError) -> [MembershipOp] {
        var made: [MembershipOp] = []
        for epoch in state.epochs {
            let lacking = state.devicesLackingKey(epoch, of: onlyOwnMember ? certificate.memberKey : nil)
            guard !lacking.isEmpty, let key = EpochKeys.open(epoch, device: certificate.deviceSigningKey, agreement: agreement) else { continue }
            made.append(try append(.shareKey(epoch: epoch.id, envelopes: EpochKeys.seal(key, to: lacking)),
                                   certificate: certificate, device: device, now: now))
        }
        return made
    }

    /// True when `device` must start a new epoch before writing: the state says so (§3.4), or
    /// the current epoch holds an envelope for this device that does not open to a key matching
    /// the epoch's commitment — a member sealed garbage to others to keep a key only they hold
    /// in use. A device with no envelope yet waits for a `share key` instead.
    public func needsNewEpoch(device: Ed25519.PublicKey, agreement: X25519.PrivateKey) -> Bool {
        guard let current = state.currentEpoch, !state.needsNewEpoch else { return true }
        return current.envelopes[device] != nil && EpochKeys.open(current, device: device, agreement: agreement) == nil
    }

    /// The epoch keys `device` can open, by reference, leaving out the epochs in `held` (keys
    /// the caller has: opening an envelope costs an X25519 agreement, and a node asks after
    /// every change of the log).
    public func keys(device: Ed25519.PublicKey, agreement: X25519.PrivateKey, except held: Set<EpochRef> = []) -> [EpochRef: SymmetricKey] {
        var out: [EpochRef: SymmetricKey] = [:]
        for e in state.epochs where !held.contains(e.ref) {
            if let k = EpochKeys.open(e, device: device, agreement: agreement) { out[e.ref] = k }
        }
        return out
    }
}

/// Sealing and opening chapter epoch keys.
public enum EpochKeys {
    static let checkDomain = Array("kith/epoch-check/v1".utf8)

    /// A 16-byte commitment to `key`: BLAKE2b-128 keyed by the key over a fixed string.
    public static func check(_ key: SymmetricKey) -> [UInt8] {
        key.secret.withBytes { k in BLAKE2b.hash(checkDomain, outputLength: 16, key: Array(k)) }
    }

    /// `crypto_box_seal` of the key to each device's X25519 key.
    public static func seal(_ key: SymmetricKey, to devices: [DeviceCertificate]) -> [KeyEnvelope] {
        devices.map { KeyEnvelope(device: $0.deviceSigningKey, sealed: SealedBox.seal(key.secret, to: $0.deviceAgreementKey)) }
    }

    /// Opens the device's envelopes of `epoch` (the first, then later shares) and checks each
    /// against the epoch's commitment; nil when none opens to the committed key.
    public static func open(_ epoch: ChapterState.Epoch, device: Ed25519.PublicKey, agreement: X25519.PrivateKey) -> SymmetricKey? {
        for sealed in epoch.envelopes(for: device) {
            guard var bytes = try? SealedBox.open(sealed, with: agreement) else { continue }
            defer { ConstantTime.wipe(&bytes) }
            if let key = try? SymmetricKey(bytes: bytes), ConstantTime.equals(check(key), epoch.check) { return key }
        }
        return nil
    }
}

/// Blind match tokens: an epoch-keyed hash of a normalized phone number or email that a member
/// shared, so members' daemons can tell that two shared contacts are probably the same person
/// even when the numbers were typed differently (Protocol/chapters.md §7). The key rotates with
/// the epoch: a removed member cannot compute tokens for what is written after the removal.
public enum MatchTokens {
    static let keyDomain = Array("kith/match-key/v1".utf8)

    /// An epoch's match key, derived from the epoch key.
    public static func key(epochKey: SymmetricKey) -> SymmetricKey {
        let k = epochKey.secret.withBytes { BLAKE2b.hash(keyDomain, outputLength: 32, key: Array($0)) }
        return try! SymmetricKey(bytes: k)
    }

    /// BLAKE2b-128 keyed by the epoch's match key over `kind ‖ 0x00 ‖ normalized value` (tokens
    /// made under different epochs do not compare; each member re-makes theirs when the epoch
    /// changes).
    public static func token(kind: String, normalized value: String, key: SymmetricKey) -> [UInt8] {
        key.secret.withBytes { BLAKE2b.hash(Array(kind.utf8) + [0] + Array(value.utf8), outputLength: 16, key: Array($0)) }
    }
}

extension MembershipLog {
    /// The current epoch's reference and match key, when this device holds the current key.
    public func matchKey(device: Ed25519.PublicKey, agreement: X25519.PrivateKey) -> (epoch: EpochRef, key: SymmetricKey)? {
        guard let current = state.currentEpoch, let k = EpochKeys.open(current, device: device, agreement: agreement) else { return nil }
        return (current.ref, MatchTokens.key(epochKey: k))
    }
}
