import KithCrypto

/// How strict a replica is when it receives changes.
public struct ReplicaConfiguration: Sendable {
    /// A change stamped more than this far ahead of the receiver's wall clock is refused
    /// (it may be offered again later). Default: one hour.
    public var maxFutureSkewMilliseconds: UInt64 = 3_600_000
    /// Verify the digest and signature of every change. Only a store re-reading changes it
    /// verified before it wrote them may turn this off.
    public var verifySignatures = true

    public init(maxFutureSkewMilliseconds: UInt64 = 3_600_000, verifySignatures: Bool = true) {
        self.maxFutureSkewMilliseconds = maxFutureSkewMilliseconds
        self.verifySignatures = verifySignatures
    }
}

/// What happened to a received change.
public enum ReceiveOutcome: Equatable, Sendable {
    /// Validated and applied (with any buffered successors it unblocked).
    case applied
    /// Already held: nothing changed.
    case duplicate
    /// Valid so far, but an earlier change of its device is missing; held until it arrives.
    case pending
}

/// Proof that a device signed two different changes with the same sequence number.
public struct Equivocation: Sendable, Hashable {
    public let device: DeviceKey
    public let seq: UInt64
    public let kept: Change
    public let refused: Change
}

/// A replica of one scope: the set of changes it holds and the contact map they imply.
///
/// The map is a pure function of the set of valid changes: any order of arrival, any
/// duplication gives the same state. `receive` validates a whole change before applying any
/// of it; a refused change leaves the replica untouched.
public struct Replica: Sendable {
    public let scope: ScopeID
    public var configuration: ReplicaConfiguration

    struct Chain: Sendable {
        var changes = HeldChanges()
        var lastTimestamp = HybridTimestamp.zero
        var pending: [UInt64: Change] = [:]
    }

    var devices = DeviceTable()
    var chains: [Chain] = []
    var contactIndex: [ContactID: Int] = [:]
    var contactIDs: [ContactID] = []
    var records = ContactRecords()
    public internal(set) var forgotten: Set<ContactID> = []
    public private(set) var equivocations: [Equivocation] = []
    /// Buffered changes refused when their turn came (their predecessor did not match).
    public private(set) var droppedPending: [ChangeRejection] = []
    /// The largest timestamp of any applied change: authors observe it before writing.
    public internal(set) var maxTimestamp = HybridTimestamp.zero
    public internal(set) var changeCount = 0
    /// Held changes whose bytes changed because a forget erased blocks in them, since the last
    /// `takeRewrittenChanges()`: a store must overwrite its copies.
    var rewritten: [Change] = []
    public internal(set) var opCount = 0
    /// Changes a peer said are coming (`expectChanges`), until the next batch sizes the tables.
    var expectedChanges = 0
    /// Contacts whose state may have changed since the last `takeChangedContacts()` (applied
    /// edits, forgets), for indexes kept beside the replica; nil once more changed than is worth
    /// listing (rebuild everything).
    var changed: Set<ContactID>? = []
    /// How this replica reads its blocks (plaintext, sealed under chapter epoch keys, or never).
    public let mode: ScopeMode
    /// Epoch keys held (encrypted mode).
    public private(set) var epochKeys: [EpochRef: SymmetricKey] = [:]
    /// Applied changes with blocks sealed under keys not held yet: device, seq, block indices.
    var awaiting: [(device: UInt32, seq: UInt64, blocks: [Int])] = []
    /// Blocks skipped for good because they did not authenticate or parse (encrypted mode);
    /// the change itself is kept and relayed, like a blind relay would.
    public internal(set) var unreadableBlocks: [String] = []

    public init(scope: ScopeID, configuration: ReplicaConfiguration = .init(), mode: ScopeMode = .plain,
                epochKeys: [EpochRef: SymmetricKey] = [:]) {
        self.scope = scope
        self.configuration = configuration
        self.mode = mode
        self.epochKeys = epochKeys
    }

    /// Blocks waiting for an epoch key.
    public var awaitingBlockCount: Int { awaiting.reduce(0) { $0 + $1.blocks.count } }

    /// Adds epoch keys (encrypted mode) and applies every block that was waiting for them.
    public mutating func addEpochKeys(_ keys: [EpochRef: SymmetricKey]) {
        guard mode == .encrypted else { return }
        var grew = false
        for (ref, key) in keys where epochKeys[ref] == nil {
            epochKeys[ref] = key
            grew = true
        }
        guard grew, !awaiting.isEmpty else { return }
        let waiting = awaiting
        awaiting = []
        for w in waiting {
            guard let change = chains[Int(w.device)].changes.at(Int(w.seq) - 1) else {
                awaiting.append(w) // not readable from the store now: tried again with the next keys
                continue
            }
            let opened = change.openBlocks(w.blocks, keys: epochKeys)
            noteUnreadable(opened.unreadable)
            apply(opened.edits, of: change, device: w.device)
            if !opened.missing.isEmpty { awaiting.append((w.device, w.seq, opened.missing)) }
        }
    }

    private mutating func noteUnreadable(_ reasons: [String]) {
        for r in reasons where unreadableBlocks.count < 1000 { unreadableBlocks.append(r) }
    }

    /// The edits of a change this replica can read now, and the blocks it cannot read yet.
    private mutating func contents(of change: Change) throws(ChangeRejection) -> (edits: [(block: Int, edit: ContactEdit)], missing: [Int]) {
        switch mode {
        case .plain:
            return (try change.decodeEdits(), [])
        case .opaque:
            return ([], [])
        case .encrypted:
            let opened = change.openBlocks(keys: epochKeys)
            noteUnreadable(opened.unreadable)
            return (opened.edits, opened.missing)
        }
    }

    // MARK: Receiving

    /// Decodes and receives an encoded change.
    @discardableResult
    public mutating func receive(encoded: [UInt8], nowMilliseconds: UInt64) throws(ChangeRejection) -> ReceiveOutcome {
        try receive(Change(decoding: encoded), nowMilliseconds: nowMilliseconds)
    }

    /// Receives a batch in order (as `receive(_:nowMilliseconds:)` one by one), after checking
    /// signatures and decoding blocks of the whole batch in parallel across cores.
    public mutating func receive(_ changes: [Change], nowMilliseconds: UInt64) -> [Result<ReceiveOutcome, ChangeRejection>] {
        var batch = changes
        Change.prepare(&batch, verify: configuration.verifySignatures, decode: mode == .plain)
        var results: [Result<ReceiveOutcome, ChangeRejection>] = []
        results.reserveCapacity(batch.count)
        let contactsBefore = records.count, changesBefore = changeCount
        for c in batch {
            do { results.append(.success(try receive(c, nowMilliseconds: nowMilliseconds))) } catch { results.append(.failure(error)) }
        }
        if expectedChanges > 0 { reserveForExpected(newContacts: records.count - contactsBefore, newChanges: changeCount - changesBefore) }
        return results
    }

    /// Most contacts `expectChanges` reserves room for (the count comes from a peer).
    static let maxReservedContacts = 1 << 22

    /// A peer is about to send `count` changes this replica lacks (its version vector says it
    /// holds them): the next batch received sizes the contact tables for all of them, at the
    /// contacts per change that batch brought, instead of growing them by doubling (each growth
    /// rehashes every id and copies every record). A hint only: at most `maxReservedContacts`.
    public mutating func expectChanges(_ count: Int) {
        expectedChanges = max(0, count)
    }

    private mutating func reserveForExpected(newContacts: Int, newChanges: Int) {
        guard newChanges > 0 else { return }
        let remaining = expectedChanges - newChanges
        expectedChanges = 0
        guard remaining > 0, newContacts > 0 else { return }
        let more = min(Double(newContacts) / Double(newChanges) * Double(remaining), Double(Self.maxReservedContacts))
        let wanted = records.count + Int(more)
        guard wanted > contactIndex.capacity else { return }
        contactIndex.reserveCapacity(wanted)
        contactIDs.reserveCapacity(wanted)
        records.reserveCapacity(wanted)
    }

    /// Validates `change` and applies it, or buffers it until its predecessor arrives.
    @discardableResult
    public mutating func receive(_ incoming: Change, nowMilliseconds: UInt64) throws(ChangeRejection) -> ReceiveOutcome {
        // `prepare`'s check of the ops covers these bytes only: never held with the change.
        var change = incoming
        let checked = change.plainChecked
        change.plainChecked = false
        guard change.scope == scope else {
            throw ChangeRejection(.wrongScope, "change \(change.id) is for scope \(change.scope), this replica holds \(scope)")
        }
        if change.timestamp.milliseconds > nowMilliseconds &+ configuration.maxFutureSkewMilliseconds {
            throw ChangeRejection(.fromTheFuture, "change \(change.id) (device \(change.author), seq \(change.seq)) is stamped \(HybridTimestamp.spoken(milliseconds: change.timestamp.milliseconds - nowMilliseconds)) ahead of this device's clock (\(change.timestamp.milliseconds - nowMilliseconds) ms; the limit is \(HybridTimestamp.spoken(milliseconds: configuration.maxFutureSkewMilliseconds))): the author's clock or this one is wrong")
        }
        if let d = devices.lookup(change.author) {
            let chain = chains[Int(d)]
            if change.seq <= UInt64(chain.changes.count) {
                // Held but not readable from the store (reported by the source): nothing changes.
                guard let held = chain.changes.at(Int(change.seq) - 1) else { return .duplicate }
                if held.id == change.id { return try restoreErasedBlocks(held: held, incoming: change, device: d, pending: false) }
                try recordEquivocation(held: held, incoming: change)
            }
            if let held = chain.pending[change.seq] {
                if held.id == change.id { return try restoreErasedBlocks(held: held, incoming: change, device: d, pending: true) }
                try recordEquivocation(held: held, incoming: change)
            }
        }
        if mode != .plain && change.hasErasedBlocks {
            throw ChangeRejection(.malformed, "change \(change.id) has erased blocks, which encrypted scopes do not use")
        }
        if configuration.verifySignatures && !change.authenticatedByChain && !change.preverified { try change.verify() }
        // Malformed ops are refused before buffering; a plaintext change's blocks are then
        // applied straight from its bytes (no ops built and dropped).
        if mode == .plain && !checked { try change.checkPlainBlocks() }

        let d = devices.intern(change.author)
        if Int(d) == chains.count { chains.append(Chain()) }
        let expected = UInt64(chains[Int(d)].changes.count) + 1
        if change.seq > expected {
            chains[Int(d)].pending[change.seq] = change
            return .pending
        }
        try checkChain(change, device: d)
        if mode == .plain {
            integratePlain(change, device: d)
        } else {
            let (edits, missing) = try contents(of: change)
            integrate(change, device: d, edits: edits, missing: missing)
        }
        drainPending(device: d)
        return .applied
    }

    /// The same change may arrive in two variants: with a block erased (by a replica that has
    /// applied a forget this one has not seen yet) and with it present. Present wins unless the
    /// block's contact is forgotten here, so the outcome does not depend on which variant came
    /// first, and a relay that erases blocks on its own cannot censor them.
    private mutating func restoreErasedBlocks(held: Change, incoming: Change, device d: UInt32, pending: Bool) throws(ChangeRejection) -> ReceiveOutcome {
        guard held.hasErasedBlocks, held.encoded != incoming.encoded else { return .duplicate }
        let heldContacts = held.blockContacts, incomingContacts = incoming.blockContacts
        let restorable = (0..<held.blockCount).filter { i in
            heldContacts[i] == nil && incomingContacts[i].map { !forgotten.contains($0) } == true
        }
        guard !restorable.isEmpty else { return .duplicate }
        if configuration.verifySignatures && !incoming.authenticatedByChain && !incoming.preverified { try incoming.verify() }
        let restored = incoming.erasing(forgotten)
        if pending {
            chains[Int(d)].pending[incoming.seq] = restored
            return .duplicate
        }
        var edits: [(block: Int, edit: ContactEdit)] = []
        for i in restorable {
            if let e = try restored.decodeBlock(i) { edits.append((i, e)) }
        }
        guard chains[Int(d)].changes.replace(at: Int(incoming.seq) - 1, with: restored) else { return .duplicate }
        rewritten.append(restored)
        apply(edits, of: restored, device: d)
        return .applied
    }

    private mutating func recordEquivocation(held: Change, incoming: Change) throws(ChangeRejection) {
        // Only a validly signed conflicting change is evidence; anything else is just garbage.
        if configuration.verifySignatures && !incoming.authenticatedByChain && !incoming.preverified { try incoming.verify() }
        let e = Equivocation(device: incoming.author, seq: incoming.seq, kept: held, refused: incoming)
        if !equivocations.contains(e) { equivocations.append(e) }
        throw ChangeRejection(.equivocation, "device \(incoming.author) signed two different changes with seq \(incoming.seq) (\(held.id) and \(incoming.id)); the first is kept and the evidence recorded")
    }

    private func checkChain(_ change: Change, device d: UInt32) throws(ChangeRejection) {
        let chain = chains[Int(d)]
        let prev = chain.changes.last?.id ?? .zero
        guard change.previous == prev else {
            throw ChangeRejection(.brokenChain, "change \(change.id) (device \(change.author), seq \(change.seq)) names previous \(change.previous), but that device's change \(change.seq - 1) is \(prev)")
        }
        if !chain.changes.isEmpty, change.timestamp <= chain.lastTimestamp {
            throw ChangeRejection(.clockRegression, "change \(change.id) (device \(change.author), seq \(change.seq)) is stamped \(change.timestamp), not after its predecessor's \(chain.lastTimestamp)")
        }
    }

    private mutating func drainPending(device d: UInt32) {
        while true {
            let next = UInt64(chains[Int(d)].changes.count) + 1
            guard let change = chains[Int(d)].pending.removeValue(forKey: next) else { return }
            do {
                try checkChain(change, device: d)
                if mode == .plain {
                    // Checked again: a buffered variant with restored blocks was not checked.
                    try change.checkPlainBlocks()
                    integratePlain(change, device: d)
                } else {
                    let (edits, missing) = try contents(of: change)
                    integrate(change, device: d, edits: edits, missing: missing)
                }
            } catch {
                droppedPending.append(error)
                // Later buffered changes of this device cannot chain either: drop them too.
                chains[Int(d)].pending.removeAll()
                return
            }
        }
    }

    private mutating func integrate(_ incoming: Change, device d: UInt32, edits: [(block: Int, edit: ContactEdit)], missing: [Int] = []) {
        var change = incoming
        var newlyForgotten = Set<ContactID>()
        if !missing.isEmpty { awaiting.append((d, change.seq, missing)) }
        // Erasure works on plaintext blocks only; encrypted scopes retract with delete.
        for (_, e) in edits where mode == .plain && Self.isForget(e) && !forgotten.contains(e.contact) {
            newlyForgotten.insert(e.contact)
        }
        if !newlyForgotten.isEmpty { forget(newlyForgotten) }
        if !forgotten.isEmpty, edits.contains(where: { forgotten.contains($0.edit.contact) && !Self.isForget($0.edit) }) {
            change = change.erasing(forgotten)
        }
        apply(edits, of: change, device: d)
        hold(change, device: d)
    }

    /// Appends an applied change to its device's chain.
    mutating func hold(_ change: Change, device d: UInt32) {
        chains[Int(d)].changes.append(change)
        chains[Int(d)].lastTimestamp = change.timestamp
        if change.timestamp > maxTimestamp { maxTimestamp = change.timestamp }
        changeCount += 1
    }

    /// A forget edit (its first op), matched without comparing (copying) whole operations.
    @inline(__always)
    private static func isForget(_ e: ContactEdit) -> Bool {
        guard case .forget? = e.ops.first else { return false }
        return true
    }

    /// Applies the ops of `edits` (blocks of `change`), skipping forgotten contacts.
    private mutating func apply(_ edits: [(block: Int, edit: ContactEdit)], of change: Change, device d: UInt32) {
        let seq = UInt32(change.seq)
        let hlc = change.timestamp.rawValue
        for (block, edit) in edits where forgotten.isEmpty || !forgotten.contains(edit.contact) {
            noteChanged(edit.contact)
            // One hash of the id: found, or inserted as the next record.
            let next = records.count
            let idx = Self.value(&contactIndex[edit.contact, default: next])
            if idx == next {
                contactIDs.append(edit.contact)
                // Size the arrays for what this first edit writes (usually the whole contact):
                // growth by doubling would leave up to half of each array unused.
                var record = ContactState()
                var fieldCount = 0, memberCount = 0
                for op in edit.ops {
                    switch op {
                    case .setField: fieldCount += 1
                    case .add: memberCount += 1
                    default: break
                    }
                }
                record.fields.reserveCapacity(fieldCount)
                record.members.reserveCapacity(memberCount)
                records.append(record)
            }
            var opIndex: UInt16 = 0
            for op in edit.ops {
                if case let .remove(_, _, observed) = op {
                    // The state compares stamps through the device table: intern first.
                    for ref in observed { _ = devices.intern(ref.device) }
                    while chains.count < devices.keys.count { chains.append(Chain()) }
                }
                records[idx].apply(op, at: Stamp(hlc: hlc, device: d, seq: seq, block: UInt32(block), op: opIndex), devices: devices)
                opIndex += 1
            }
            opCount += edit.ops.count
        }
    }

    @inline(__always)
    static func value(_ slot: inout Int) -> Int { slot }

    /// Drops the contacts' state and erases their blocks from every held change.
    mutating func forget(_ ids: Set<ContactID>) {
        forgotten.formUnion(ids)
        for id in ids { noteChanged(id) }
        for id in ids {
            guard let idx = contactIndex.removeValue(forKey: id) else { continue }
            // Swap-remove keeps the arrays dense.
            let last = records.count - 1
            if idx != last {
                records.swapAt(idx, last)
                contactIDs.swapAt(idx, last)
                contactIndex[contactIDs[idx]] = idx
            }
            records.removeLast()
            contactIDs.removeLast()
        }
        for c in chains.indices {
            // Changes kept in the store are read in to be erased; a chain that cannot be read
            // (a damaged row, which the source reports) keeps its rows as they are.
            guard chains[c].changes.load() else { continue }
            for i in chains[c].changes.indices {
                let ch = chains[c].changes.loaded[i]
                if ch.blockContacts.contains(where: { $0.map(ids.contains) ?? false }) {
                    let erased = ch.erasing(forgotten)
                    chains[c].changes.replace(at: i, with: erased)
                    rewritten.append(erased)
                }
            }
            for (seq, ch) in chains[c].pending where ch.blockContacts.contains(where: { $0.map(ids.contains) ?? false }) {
                chains[c].pending[seq] = ch.erasing(forgotten)
            }
        }
    }

    @inline(__always)
    mutating func noteChanged(_ id: ContactID) {
        guard changed != nil else { return }
        if changed!.count >= max(4096, records.count / 4) { changed = nil } else { changed!.insert(id) }
    }

    /// What changed since the last call: `.some(ids)` (possibly empty), or `.all` when so much
    /// changed that an index should be rebuilt instead of patched.
    public enum ChangedContacts: Sendable, Equatable {
        case some(Set<ContactID>)
        case all
    }

    /// Contacts whose view may differ since the last call (see `ChangedContacts`).
    public mutating func takeChangedContacts() -> ChangedContacts {
        defer { changed = [] }
        return changed.map { .some($0) } ?? .all
    }

    /// The changes rewritten by forgets since the last call (see `rewritten`).
    public mutating func takeRewrittenChanges() -> [Change] {
        defer { rewritten = [] }
        return rewritten
    }

    // MARK: Reading

    /// Number of known (non-forgotten) contacts, including deleted ones.
    public var knownContactCount: Int { records.count }

    /// Contacts still held as the snapshot encoded them, not decoded yet (`ContactRecords`).
    public var encodedContactCount: Int { records.encodedRecordCount }

    /// The contact as the member sees it, or nil if unknown, forgotten or deleted.
    public func contact(_ id: ContactID) -> ContactView? {
        guard let i = contactIndex[id], records.isVisible(i, devices) else { return nil }
        return view(i)
    }

    /// True when the contact has a delete marker newer than every other op on it.
    public func isDeleted(_ id: ContactID) -> Bool {
        guard let i = contactIndex[id] else { return false }
        return !records.isVisible(i, devices)
    }

    /// Every visible contact, ordered by id.
    public func contacts() -> [ContactView] {
        contactIndex.keys.sorted().compactMap { contact($0) }
    }

    /// Ids of every visible contact (unordered; cheap).
    public var visibleContactIDs: [ContactID] {
        contactIDs.indices.filter { records.isVisible($0, devices) }.map { contactIDs[$0] }
    }

    func view(_ i: Int) -> ContactView {
        view(of: records[i], id: contactIDs[i])
    }

    func view(of r: ContactState, id: ContactID) -> ContactView {
        var v = ContactView(id: id)
        for f in r.fields where !f.value.isEmpty { v.fields[f.field] = f.value }
        var best: [SetKind: [String: ContactState.Member]] = [:]
        for m in r.members {
            if let cur = best[m.kind]?[m.key], !devices.less(cur.stamp, m.stamp) { continue }
            best[m.kind, default: [:]][m.key] = m
        }
        for (kind, byKey) in best {
            v.sets[kind] = byKey.values.sorted { $0.key < $1.key }.map { SetValue(key: $0.key, payload: $0.payload) }
        }
        v.log = r.log.sorted { a, b in
            a.entry.day != b.entry.day ? a.entry.day < b.entry.day : devices.less(a.stamp, b.stamp)
        }.map(\.entry)
        return v
    }

    /// Calls `body` with the text a search index needs from every visible contact — each
    /// non-empty name field and each live phone, email, tag, match-token and link key (a key added
    /// concurrently twice comes twice) — without building views.
    public func forEachSearchTerm(_ body: (ContactID, _ field: Field?, _ set: SetKind?, _ text: String) -> Void) {
        for i in records.indices { searchTerms(at: i, body) }
    }

    /// `forEachSearchTerm` for the given contacts only (hidden, deleted or unknown ones give nothing).
    public func forEachSearchTerm(of ids: some Sequence<ContactID>, _ body: (ContactID, _ field: Field?, _ set: SetKind?, _ text: String) -> Void) {
        for id in ids { if let i = contactIndex[id] { searchTerms(at: i, body) } }
    }

    private func searchTerms(at i: Int, _ body: (ContactID, _ field: Field?, _ set: SetKind?, _ text: String) -> Void) {
        guard records.isVisible(i, devices) else { return }
        let r = records[i]
        let id = contactIDs[i]
        for f in r.fields where !f.value.isEmpty && (f.field == .givenName || f.field == .familyName || f.field == .displayName) {
            body(id, f.field, nil, f.value)
        }
        for m in r.members where m.kind == .phones || m.kind == .emails || m.kind == .tags || m.kind == .matchTokens || m.kind == .links {
            body(id, nil, m.kind, m.key)
        }
    }

    /// The ops that added `key` to `kind` on `contact` and are still live: what a remove must
    /// name to remove it (observed-remove).
    public func liveAdds(of key: String, in kind: SetKind, contact: ContactID) -> [OpRef] {
        guard let i = contactIndex[contact] else { return [] }
        return records[i].members.filter { $0.kind == kind && $0.key == key }.map {
            OpRef(device: devices[$0.stamp.device], seq: UInt64($0.stamp.seq), block: $0.stamp.block, op: UInt32($0.stamp.op))
        }
    }

    /// The live ops that linked `contact` to `other` (what an unlink must name). Set members hold
    /// a linked id in its base64url form, not the base32 text people see.
    public func liveLinkAdds(to other: ContactID, contact: ContactID) -> [OpRef] {
        liveAdds(of: other.base64url, in: .links, contact: contact)
    }

    // MARK: Changes, heads and version vectors

    /// Per device: the highest contiguous seq held.
    public func versionVector() -> VersionVector {
        var v = VersionVector()
        for (i, c) in chains.enumerated() where !c.changes.isEmpty {
            v[devices[UInt32(i)]] = UInt64(c.changes.count)
        }
        return v
    }

    /// The changes `other` lacks, per device in seq order.
    public func changes(missingFrom other: VersionVector) -> [Change] {
        var out: [Change] = []
        for (i, c) in chains.enumerated() {
            // Clamped: the vector comes from the peer, and a seq above Int.max trapped here.
            let have = Int(clamping: other[devices[UInt32(i)]])
            if c.changes.count > have { out += c.changes.suffix(from: have) }
        }
        return out
    }

    /// Every applied change, in canonical order (timestamp, author key, seq).
    public func allChanges() -> [Change] {
        chains.flatMap(\.changes.all).sorted { a, b in
            if a.timestamp != b.timestamp { return a.timestamp < b.timestamp }
            if a.author != b.author { return a.author < b.author }
            return a.seq < b.seq
        }
    }

    /// The change of `device` with `seq`, as held (possibly with erased blocks).
    public func change(device: DeviceKey, seq: UInt64) -> Change? {
        guard let d = devices.lookup(device), seq >= 1 else { return nil }
        let chain = chains[Int(d)].changes
        return seq <= UInt64(chain.count) ? chain.at(Int(seq) - 1) : nil
    }

    /// The latest change of `device`, if any.
    public func head(of device: DeviceKey) -> Change? {
        guard let d = devices.lookup(device) else { return nil }
        return chains[Int(d)].changes.last
    }

    /// The changes buffered until their predecessors arrive (not yet applied).
    public func pendingChanges() -> [Change] {
        chains.flatMap { $0.pending.values }
    }

    /// Changes held back waiting for a predecessor.
    public var pendingCount: Int { chains.reduce(0) { $0 + $1.pending.count } }

    /// Total encoded bytes of the applied changes (after erasures).
    public var encodedSize: Int { chains.reduce(0) { $0 + $1.changes.all.reduce(0) { $0 + $1.encoded.count } } }

    /// Changes held in the store rather than in memory (a store opened from its snapshot).
    public var unloadedChangeCount: Int { chains.reduce(0) { $0 + $1.changes.unloaded } }
}

/// Device → highest contiguous seq held, for one scope.
public struct VersionVector: Equatable, Sendable {
    public private(set) var entries: [DeviceKey: UInt64] = [:]

    public init() {}

    public subscript(_ device: DeviceKey) -> UInt64 {
        get { entries[device] ?? 0 }
        set { entries[device] = newValue == 0 ? nil : newValue }
    }

    /// How many changes this vector holds beyond `other` (saturating: a peer's vector may claim
    /// any seq).
    public func changesAhead(of other: VersionVector) -> Int {
        var total = 0
        for (device, seq) in entries where seq > other[device] {
            let (sum, overflow) = total.addingReportingOverflow(Int(clamping: seq - other[device]))
            if overflow { return Int.max }
            total = sum
        }
        return total
    }
}

/// One member of a contact's set as the member sees it.
public struct SetValue: Hashable, Sendable {
    public var key: String
    public var payload: String

    public init(key: String, payload: String) {
        self.key = key
        self.payload = payload
    }
}

/// A contact as the member sees it: what a UI or the CLI shows.
public struct ContactView: Hashable, Sendable {
    public let id: ContactID
    /// Non-empty fields only.
    public var fields: [Field: String] = [:]
    /// Live members of each set, ordered by key.
    public var sets: [SetKind: [SetValue]] = [:]
    /// The conversation log by day, then op order.
    public var log: [ConversationEntry] = []

    public init(id: ContactID) { self.id = id }

    public subscript(_ f: Field) -> String? { fields[f] }
    public func values(_ kind: SetKind) -> [SetValue] { sets[kind] ?? [] }
    public var phones: [String] { values(.phones).map(\.key) }
    public var emails: [String] { values(.emails).map(\.key) }
    public var tags: [String] { values(.tags).map(\.key) }

    /// The name to show: display name, else "given family", else the first email or phone.
    public var displayName: String {
        if let d = self[.displayName] { return d }
        let n = [self[.givenName], self[.familyName]].compactMap { $0 }.joined(separator: " ")
        return n.isEmpty ? (emails.first ?? phones.first ?? "(no name)") : n
    }
}
