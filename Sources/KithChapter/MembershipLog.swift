import KithCRDT
import KithCrypto

/// A chapter's membership log: a grow-only set of signed ops linked to their causal parents.
/// Ops whose parents have not arrived are held until they do. The state is re-evaluated from the
/// whole set whenever it grows, so it never depends on arrival order.
public struct MembershipLog: Sendable {
    public static let maxOps = 100_000

    public let chapter: ChapterID
    public private(set) var ops: [OpID: MembershipOp] = [:]
    private var pending: [OpID: MembershipOp] = [:]
    public private(set) var state: ChapterState
    public private(set) var heads: Set<OpID> = []

    /// The creation op (the log's root).
    public let genesis: MembershipOp

    /// Starts a log from its `create` op.
    public init(genesis: MembershipOp) throws(MembershipError) {
        guard case .create = genesis.action else { throw MembershipError(.malformed, "a log starts with a create op") }
        self.genesis = genesis
        chapter = try! ChapterID(bytes: genesis.id.bytes.prefix(16))
        ops[genesis.id] = genesis
        heads = [genesis.id]
        state = ChapterState.evaluate(ops)
    }

    /// Rebuilds a log from stored or received ops in any order (one of them the create op).
    public init(chapter: ChapterID, ops encoded: [[UInt8]]) throws(MembershipError) {
        var decoded: [MembershipOp] = []
        for b in encoded { decoded.append(try MembershipOp(decoding: b)) }
        guard let root = decoded.first(where: { if case .create = $0.action { return $0.id.bytes.prefix(16).elementsEqual(chapter.bytes) } else { return false } }) else {
            throw MembershipError(.wrongChapter, "no create op for chapter \(chapter) among \(encoded.count) ops")
        }
        try self.init(genesis: root)
        _ = try receive(decoded)
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

    /// Adds ops (any order, duplicates ignored). Returns the ops that were new and are now part
    /// of the evaluated set. An op for another chapter, or one beyond the size limit, is refused.
    @discardableResult
    public mutating func receive(_ incoming: [MembershipOp]) throws(MembershipError) -> [MembershipOp] {
        var added: [MembershipOp] = []
        for op in incoming {
            if ops[op.id] != nil || pending[op.id] != nil { continue }
            if case .create = op.action {
                if op.id != genesis.id { throw MembershipError(.wrongChapter, "a create op for another chapter") }
                continue
            }
            guard op.chapter == chapter else {
                throw MembershipError(.wrongChapter, "op \(op.id) is for chapter \(op.chapter), this log is \(chapter)")
            }
            guard ops.count + pending.count < Self.maxOps else {
                throw MembershipError(.tooMany, "chapter \(chapter) already holds \(Self.maxOps) membership ops")
            }
            pending[op.id] = op
        }
        // Move every op whose parents are all present, until nothing moves.
        var moved = true
        while moved {
            moved = false
            for (id, op) in pending where op.parents.allSatisfy({ ops[$0] != nil }) {
                ops[id] = op
                pending[id] = nil
                for p in op.parents { heads.remove(p) }
                heads.insert(id)
                added.append(op)
                moved = true
            }
        }
        if !added.isEmpty { state = ChapterState.evaluate(ops) }
        return added
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
        let op = MembershipOp.make(chapter: chapter, parents: Array(heads), timestamp: max(now, latest == .max ? latest : latest + 1),
                                   certificate: certificate, device: device, action: action)
        var trial = self
        try trial.receive([op])
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
    /// added after the epoch started). Returns nil when nothing is missing.
    public mutating func shareMissingKeys(certificate: DeviceCertificate, device: Ed25519.PrivateKey,
                                          agreement: X25519.PrivateKey, now: UInt64) throws(MembershipError) -> [MembershipOp] {
        var made: [MembershipOp] = []
        for epoch in state.epochs {
            let lacking = state.devicesLackingKey(epoch)
            guard !lacking.isEmpty, let key = EpochKeys.open(epoch, device: certificate.deviceSigningKey, agreement: agreement) else { continue }
            made.append(try append(.shareKey(epoch: epoch.id, envelopes: EpochKeys.seal(key, to: lacking)),
                                   certificate: certificate, device: device, now: now))
        }
        return made
    }

    /// The epoch keys `device` can open, by reference.
    public func keys(device: Ed25519.PublicKey, agreement: X25519.PrivateKey) -> [EpochRef: SymmetricKey] {
        var out: [EpochRef: SymmetricKey] = [:]
        for e in state.epochs {
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

    /// Opens the device's envelope of `epoch` and checks it against the epoch's commitment;
    /// nil when there is none, it does not open, or it holds a different key.
    public static func open(_ epoch: ChapterState.Epoch, device: Ed25519.PublicKey, agreement: X25519.PrivateKey) -> SymmetricKey? {
        guard let sealed = epoch.envelopes[device], var bytes = try? SealedBox.open(sealed, with: agreement) else { return nil }
        defer { ConstantTime.wipe(&bytes) }
        guard let key = try? SymmetricKey(bytes: bytes), ConstantTime.equals(check(key), epoch.check) else { return nil }
        return key
    }
}

/// Blind match tokens: a chapter-keyed hash of a normalized phone number or email, so members'
/// daemons can tell that two shared contacts are probably the same person without either
/// revealing the phone or email (Protocol/chapters.md §7).
public enum MatchTokens {
    static let keyDomain = Array("kith/match-key/v1".utf8)

    /// The chapter's match key, derived from its first epoch's key (every member device ever
    /// admitted holds it, so tokens made in any epoch compare).
    public static func key(firstEpochKey: SymmetricKey) -> SymmetricKey {
        let k = firstEpochKey.secret.withBytes { BLAKE2b.hash(keyDomain, outputLength: 32, key: Array($0)) }
        return try! SymmetricKey(bytes: k)
    }

    /// BLAKE2b-128 keyed by the match key over `kind ‖ 0x00 ‖ normalized value`.
    public static func token(kind: String, normalized value: String, key: SymmetricKey) -> [UInt8] {
        key.secret.withBytes { BLAKE2b.hash(Array(kind.utf8) + [0] + Array(value.utf8), outputLength: 16, key: Array($0)) }
    }
}

extension MembershipLog {
    /// The match key, when this device holds the first epoch's key.
    public func matchKey(device: Ed25519.PublicKey, agreement: X25519.PrivateKey) -> SymmetricKey? {
        guard let first = state.epochs.first, let k = EpochKeys.open(first, device: device, agreement: agreement) else { return nil }
        return MatchTokens.key(firstEpochKey: k)
    }
}
