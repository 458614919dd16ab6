import Foundation
import KithCRDT
import KithCrypto
import KithSampleData
@testable import KithStore
import Testing

/// A store of synthetic contacts with every kind of state: fields, sets, a remove, a delete, a
/// conversation log, and changes of a second device received from it.
private func seed(_ s: ContactStore, from: Int, to: Int, other: inout ChangeAuthor, otherReplica: inout Replica) throws {
    let gen = SyntheticContacts(seed: 5)
    for start in stride(from: from, to: to, by: 100) {
        try s.commit((start..<min(start + 100, to)).map { gen.contact($0).edit })
    }
    let first = gen.contact(from)
    let tag = "snap-tag-\(from)"
    try s.commit([ContactEdit(contact: first.id, ops: [.add(.tags, tag), .add(.tags, "kept-\(from)")])])
    try s.commit([
        ContactEdit(contact: first.id, ops: [
            .remove(.tags, tag, observed: s.replica.liveAdds(of: tag, in: .tags, contact: first.id)),
            .logConversation(ConversationEntry(day: 20_000, channel: .door, outcome: "talked", note: "snapshot note \(from)")),
        ]),
        ContactEdit(contact: gen.contact(from + 1).id, ops: [.delete]),
    ])
    // Another device's edit, received.
    for c in s.replica.changes(missingFrom: otherReplica.versionVector()) { _ = try otherReplica.receive(c, nowMilliseconds: .max / 4) }
    let theirs = try other.commit([ContactEdit(contact: gen.contact(from + 2).id, ops: [.setField(.city, "Ouagadougou \(from)")])],
                                  to: &otherReplica, wallMilliseconds: ContactStore.systemClock())
    _ = try s.receive([theirs])
}

/// The state a full replay of the store's changes gives (the reference a snapshot must match).
private func replayed(_ s: ContactStore) throws -> Replica {
    var r = Replica(scope: s.replica.scope, configuration: ReplicaConfiguration(maxFutureSkewMilliseconds: .max / 2))
    let all = s.replica.allChanges()
    for c in all { _ = try r.receive(c, nowMilliseconds: 0) }
    return r
}

private func expectSameState(_ a: Replica, _ b: Replica, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.contacts() == b.contacts(), sourceLocation: sourceLocation)
    #expect(a.knownContactCount == b.knownContactCount, sourceLocation: sourceLocation)
    #expect(a.versionVector() == b.versionVector(), sourceLocation: sourceLocation)
    #expect(a.changeCount == b.changeCount, sourceLocation: sourceLocation)
    // Not opCount: it counts ops as applied, and a replica that applied a contact's ops before
    // its forget counts them while one replaying the erased changes never sees them.
    #expect(a.maxTimestamp == b.maxTimestamp, sourceLocation: sourceLocation)
    #expect(a.forgotten == b.forgotten, sourceLocation: sourceLocation)
    #expect(a.visibleContactIDs.sorted() == b.visibleContactIDs.sorted(), sourceLocation: sourceLocation)
    var ta: [String] = [], tb: [String] = []
    a.forEachSearchTerm { ta.append("\($0) \($1.map { "\($0)" } ?? "") \($2.map { "\($0)" } ?? "") \($3)") }
    b.forEachSearchTerm { tb.append("\($0) \($1.map { "\($0)" } ?? "") \($2.map { "\($0)" } ?? "") \($3)") }
    #expect(ta.sorted() == tb.sorted(), sourceLocation: sourceLocation)
}

/// The store's changes per device in seq order, as `Replica.restoring` takes them.
private func heldByDevice(_ s: ContactStore) -> [DeviceKey: [Change]] {
    var byDevice: [DeviceKey: [Change]] = [:]
    for c in s.replica.allChanges() { byDevice[c.author, default: []].append(c) }
    for k in byDevice.keys { byDevice[k]!.sort { $0.seq < $1.seq } }
    return byDevice
}

private func files(in dir: StoreDir) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted().map { dir.path + "/" + $0 }
}

private func copyStoreFiles(_ from: String, _ to: String, except: Set<String> = ["store.lock"]) throws {
    let fm = FileManager.default
    try? fm.createDirectory(atPath: to, withIntermediateDirectories: true)
    for name in try fm.contentsOfDirectory(atPath: to) where !except.contains(name) { try fm.removeItem(atPath: to + "/" + name) }
    for name in try fm.contentsOfDirectory(atPath: from) where !except.contains(name) {
        try fm.copyItem(atPath: from + "/" + name, toPath: to + "/" + name)
    }
}

@Suite("Store snapshots", .serialized)
struct SnapshotTests {
    let keys = Keys()

    func open(_ dir: StoreDir) throws -> ContactStore {
        let s = try keys.open(dir)
        s.snapshotPolicy = SnapshotPolicy(minimumOps: 1, fraction: 1_000_000)
        return s
    }

    @Test func snapshotPlusTailGivesTheReplayedState() throws {
        let dir = StoreDir()
        var theirs = Replica(scope: keys.scope, configuration: ReplicaConfiguration(maxFutureSkewMilliseconds: .max / 2))
        var other = ChangeAuthor(signer: Ed25519.PrivateKey())
        do {
            let s = try open(dir)
            #expect(s.snapshotStatus == .absent)
            try seed(s, from: 0, to: 600, other: &other, otherReplica: &theirs)
            s.writeSnapshot()
            #expect(FileManager.default.fileExists(atPath: s.snapshotPath))
            s.snapshotPolicy = SnapshotPolicy(minimumOps: .max / 2) // keep the tail after the snapshot
            try seed(s, from: 600, to: 800, other: &other, otherReplica: &theirs)
        }
        let s = try open(dir)
        guard case let .loaded(tail) = s.snapshotStatus else { Issue.record("snapshot not loaded: \(s.snapshotStatus)"); return }
        #expect(tail >= 3) // two of this device, one of the other
        expectSameState(s.replica, try replayed(s))
        #expect(s.replica.contacts().count == 798)
        // The author resumes after the tail: the next change chains.
        let next = try s.commit([ContactEdit(contact: ContactID(high: 1, low: 2), ops: [.setField(.city, "Kigali")])])
        #expect(next.seq == s.replica.versionVector()[keys.device.publicKey])
        try next.verify()
    }

    @Test func corruptSnapshotIsIgnoredAndReplaced() throws {
        let dir = StoreDir()
        var theirs = Replica(scope: keys.scope)
        var other = ChangeAuthor(signer: Ed25519.PrivateKey())
        do {
            let s = try open(dir)
            try seed(s, from: 0, to: 300, other: &other, otherReplica: &theirs)
            #expect(s.writeSnapshot())
        }
        let path = dir.path + "/store.snapshot"
        let good = fileBytes(path)
        #expect(good.count > 1000)
        var flipped = good
        flipped[good.count / 2] ^= 0x20
        let otherStore = StoreDir()
        do {
            // A valid snapshot of another store (another key and scope) dropped in its place.
            let k2 = Keys()
            let s2 = try k2.open(otherStore)
            try s2.commit(knownContacts())
            s2.writeSnapshot()
        }
        let damaged: [(String, [UInt8])] = [
            ("one bit flipped", flipped),
            ("truncated", Array(good.prefix(good.count - 7))),
            ("empty", []),
            ("garbage", [UInt8](repeating: 0x41, count: 4096)),
            ("another store's", fileBytes(otherStore.path + "/store.snapshot")),
            ("header only", Array(good.prefix(8))),
        ]
        for (what, bytes) in damaged {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let s = try open(dir)
            guard case let .ignored(reason) = s.snapshotStatus else { Issue.record("\(what) snapshot was not ignored: \(s.snapshotStatus)"); continue }
            #expect(!reason.isEmpty)
            expectSameState(s.replica, try replayed(s))
            #expect(s.replica.contacts().count == 299, "\(what)")
        }
        // The replaced snapshot loads again.
        do { _ = try open(dir) }
        let s = try open(dir)
        #expect(s.snapshotStatus == .loaded(tail: 0))
        expectSameState(s.replica, try replayed(s))
    }

    /// The database went back to an older copy, or forked from it (a restored backup written
    /// again), while the snapshot is of the newer state: the snapshot's chain heads are not the
    /// store's, so it must be ignored, never loaded on top.
    @Test func staleSnapshotIsIgnored() throws {
        let dir = StoreDir(), backup = StoreDir(), forked = StoreDir()
        var theirs = Replica(scope: keys.scope)
        var other = ChangeAuthor(signer: Ed25519.PrivateKey())
        do {
            let s = try open(dir)
            try seed(s, from: 0, to: 200, other: &other, otherReplica: &theirs)
            s.snapshotPolicy = SnapshotPolicy(minimumOps: .max / 2)
        }
        try copyStoreFiles(dir.path, backup.path)
        let mark = ContactID(high: 77, low: 77)
        do {
            let s = try open(dir)
            try s.commit([ContactEdit(contact: mark, ops: [.setField(.city, "Newer")])])
            #expect(s.writeSnapshot())
        }
        let newerSnapshot = fileBytes(dir.path + "/store.snapshot")
        // 1. Older database, newer snapshot.
        try copyStoreFiles(backup.path, dir.path)
        try Data(newerSnapshot).write(to: URL(fileURLWithPath: dir.path + "/store.snapshot"))
        do {
            let s = try open(dir)
            guard case .ignored = s.snapshotStatus else { Issue.record("stale snapshot used: \(s.snapshotStatus)"); return }
            #expect(s.replica.contact(mark) == nil)
            expectSameState(s.replica, try replayed(s))
            s.snapshotPolicy = SnapshotPolicy(minimumOps: .max / 2)
        }
        // 2. The same number of changes, but a different last one (the older copy written again).
        try copyStoreFiles(backup.path, forked.path)
        do {
            let s = try open(forked)
            try s.commit([ContactEdit(contact: mark, ops: [.setField(.city, "Forked")])])
            s.snapshotPolicy = SnapshotPolicy(minimumOps: .max / 2)
        }
        try Data(newerSnapshot).write(to: URL(fileURLWithPath: forked.path + "/store.snapshot"))
        let s = try open(forked)
        guard case .ignored = s.snapshotStatus else { Issue.record("forked snapshot used: \(s.snapshotStatus)"); return }
        #expect(s.replica.contact(mark)?[.city] == "Forked")
        expectSameState(s.replica, try replayed(s))
    }

    /// Forget erases the contact from the snapshot: the snapshot is zeroed and deleted before the
    /// erasing transaction commits, and the one written after does not hold it. Checked by
    /// grepping every file of the store, the snapshot decrypted.
    @Test func forgetErasesTheSnapshot() throws {
        let dir = StoreDir()
        let target = ContactID(high: 7, low: 49) // strings no other contact's contain
        let secrets = ["Quillon49", "Zabriskie49", "quillon49@zabriskie", "+19995550049", "49 Marmalade Crescent", "tag-vermilion-49"]
        func grepAll(_ s: ContactStore, _ needle: String) -> [String] {
            var hits: [String] = []
            for f in files(in: dir) {
                var bytes = fileBytes(f)
                if f == s.snapshotPath, case let .state(plain, index) = s.snapshotFile.read() {
                    bytes += plain
                    if case let .success(section)? = index { bytes += section }
                }
                if bytes.contains(bytes: Array(needle.utf8)) { hits.append(f) }
            }
            return hits
        }
        do {
            let s = try open(dir)
            try s.commit(knownContacts())
            #expect(s.writeSnapshot())
            // The check can fail: the decrypted snapshot holds the contact before the forget.
            #expect(grepAll(s, "quillon49@zabriskie") == [s.snapshotPath])
            try s.commit([ContactEdit(contact: target, ops: [.forget])])
            s.snapshotFile.waitIdle()
            for secret in secrets { #expect(grepAll(s, secret).isEmpty, "\(secret) survives the forget") }
            #expect(grepAll(s, "quillon4@zabriskie") == [s.snapshotPath]) // rewritten with the rest
        }
        let s = try open(dir)
        #expect(s.snapshotStatus == .loaded(tail: 0))
        #expect(s.replica.contact(target) == nil)
        #expect(s.replica.forgotten == [target])
        expectSameState(s.replica, try replayed(s))
        for secret in secrets { #expect(grepAll(s, secret).isEmpty, "\(secret) found after reopening") }
    }

    /// A forget that arrives while a background snapshot of the older state is being written:
    /// that write is discarded, never renamed into place.
    @Test func writeStartedBeforeAForgetIsDiscarded() throws {
        let dir = StoreDir()
        let s = try open(dir)
        try s.commit(knownContacts())
        s.snapshotFile.waitIdle()
        let file = s.snapshotFile
        let started = file.currentGeneration
        file.invalidate() // the forget, while the write below was under way
        #expect(!file.write(s.replica, generation: started))
        #expect(!FileManager.default.fileExists(atPath: s.snapshotPath))
        #expect(!FileManager.default.fileExists(atPath: s.snapshotPath + ".tmp"))
        #expect(file.write(s.replica, generation: file.currentGeneration))
        #expect(FileManager.default.fileExists(atPath: s.snapshotPath))
    }

    /// Bytes that authenticate but do not parse (a bug, or another version) are refused with an
    /// error at every truncation point, never a trap.
    @Test func truncatedStateIsRefusedNotTrapped() throws {
        let dir = StoreDir()
        var theirs = Replica(scope: keys.scope)
        var other = ChangeAuthor(signer: Ed25519.PrivateKey())
        let s = try open(dir)
        try seed(s, from: 0, to: 20, other: &other, otherReplica: &theirs)
        let state = s.replica.snapshotState()
        let byDevice = heldByDevice(s)
        let whole = try Replica.restoring(snapshot: state, scope: keys.scope, mode: .plain, held: byDevice)
        #expect(whole.tail.isEmpty)
        expectSameState(whole.replica, s.replica)
        for cut in stride(from: 0, to: state.count, by: max(1, state.count / 400)) {
            #expect(throws: Replica.SnapshotMismatch.self) {
                _ = try Replica.restoring(snapshot: Array(state.prefix(cut)), scope: self.keys.scope, mode: .plain, held: byDevice)
            }
        }
        // Another scope or mode.
        #expect(throws: Replica.SnapshotMismatch.self) {
            _ = try Replica.restoring(snapshot: state, scope: ScopeID(name: "other"), mode: .plain, held: byDevice)
        }
        #expect(throws: Replica.SnapshotMismatch.self) {
            _ = try Replica.restoring(snapshot: state, scope: self.keys.scope, mode: .encrypted, held: byDevice)
        }
        // Held changes missing the snapshot's head.
        var fewer = byDevice
        fewer[keys.device.publicKey]!.removeLast()
        #expect(throws: Replica.SnapshotMismatch.self) {
            _ = try Replica.restoring(snapshot: state, scope: self.keys.scope, mode: .plain, held: fewer)
        }
    }

    /// An index source that saves every visible contact's text (what an index holds), so the
    /// tests below can see what the index section of each snapshot holds.
    static func attachTextIndex(_ s: ContactStore, calls: Calls? = nil) {
        s.snapshotIndexSource = { store in
            calls?.count += 1
            let text = store.replica.contacts().map { "\($0.id) \($0.fields.values.sorted())" }.joined(separator: "\n")
            return { Array(text.utf8) }
        }
    }

    final class Calls { var count = 0 }

    /// The index section is saved with the state, handed to the owner once at open, and
    /// replaced with each snapshot; a snapshot without one is rewritten with one at close.
    @Test func indexSectionIsSavedAndLoadedOnce() throws {
        let dir = StoreDir()
        do {
            let s = try open(dir)
            try s.commit(knownContacts())
            #expect(s.writeSnapshot()) // no index source: no index section
            #expect(!s.snapshotFile.hasIndex)
            Self.attachTextIndex(s)
            #expect(s.writeSnapshot()) // nothing new, but the index section was missing
            #expect(s.snapshotFile.hasIndex)
        }
        let s = try open(dir)
        #expect(s.snapshotStatus == .loaded(tail: 0))
        let section = try #require(s.takeSnapshotIndex())
        #expect(String(decoding: section, as: UTF8.self).contains("Quillon7"))
        #expect(s.takeSnapshotIndex() == nil) // handed over once
        // Contacts changed after the snapshot are reported as changed (not "all"), so a loaded
        // index is patched with the tail only.
        #expect(s.takeChangedContacts() == .some([]))
    }

    /// A damaged index section is ignored on its own: the state still loads, the index is
    /// rebuilt by its owner (never a wrong index), and the next snapshot replaces it.
    @Test func damagedIndexSectionIsIgnored() throws {
        let dir = StoreDir()
        do {
            let s = try open(dir)
            try s.commit(knownContacts())
            Self.attachTextIndex(s)
            #expect(s.writeSnapshot())
        }
        let path = dir.path + "/store.snapshot"
        let good = fileBytes(path)
        let section: [UInt8]
        do {
            let s = try open(dir)
            guard case let .state(_, index) = s.snapshotFile.read(), case let .success(b)? = index else {
                Issue.record("no index section written"); return
            }
            section = b
        }
        var flipped = good
        flipped[good.count - section.count / 2] ^= 0x01 // inside the index section's ciphertext
        for (what, bytes) in [("flipped", flipped), ("truncated", Array(good.prefix(good.count - 5)))] {
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let s = try open(dir)
            #expect(s.snapshotStatus == .loaded(tail: 0), "\(what)")
            #expect(s.takeSnapshotIndex() == nil, "\(what)")
            #expect(s.indexIgnoredReason != nil, "\(what)")
            #expect(s.takeChangedContacts() == .all, "\(what): the owner must rebuild")
            #expect(s.replica.contacts().count == 50)
        }
        // The index section of another snapshot of the same store (each section is bound to its
        // snapshot's id) behind this one's state is refused too.
        do {
            try Data(good).write(to: URL(fileURLWithPath: path))
            let s = try open(dir)
            Self.attachTextIndex(s)
            try s.commit([ContactEdit(contact: ContactID(high: 9, low: 9), ops: [.setField(.givenName, "Newcomer")])])
            #expect(s.writeSnapshot())
        }
        let newer = fileBytes(path)
        // magic[8] ‖ id[16] ‖ u64 state length ‖ sealed state ‖ sealed index
        func stateEnd(_ f: [UInt8]) -> Int { 32 + Int(f[24..<32].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }) }
        #expect(stateEnd(good) == good.count - section.count - 40)
        try Data(Array(good.prefix(stateEnd(good))) + Array(newer[stateEnd(newer)...])).write(to: URL(fileURLWithPath: path))
        let s = try open(dir)
        #expect(s.snapshotStatus == .loaded(tail: 1))
        #expect(s.takeSnapshotIndex() == nil)
        #expect(s.indexIgnoredReason != nil)
    }

    /// A forget rewrites the snapshot without the contact in the index section either, and the
    /// store asks its owner for the index again for that snapshot.
    @Test func forgetErasesTheIndexSection() throws {
        let dir = StoreDir()
        let calls = Calls()
        let s = try open(dir)
        Self.attachTextIndex(s, calls: calls)
        try s.commit(knownContacts())
        s.snapshotFile.waitIdle()
        #expect(s.writeSnapshot())
        let before = calls.count
        func section() -> [UInt8] {
            guard case let .state(_, index) = s.snapshotFile.read(), case let .success(b)? = index else { return [] }
            return b
        }
        #expect(section().contains(bytes: Array("Quillon49".utf8)))
        try s.commit([ContactEdit(contact: ContactID(high: 7, low: 49), ops: [.forget])])
        s.snapshotFile.waitIdle()
        #expect(calls.count > before)
        #expect(!section().isEmpty)
        #expect(!section().contains(bytes: Array("Quillon49".utf8)))
        #expect(section().contains(bytes: Array("Quillon48".utf8)))
    }

    /// Opened from a snapshot, contacts stay encoded until read: reading one decodes it without
    /// keeping it, editing one keeps it decoded, and a snapshot written from such a replica
    /// (records copied as loaded, edited ones encoded again) gives the replayed state.
    @Test func recordsAreDecodedOnDemand() throws {
        let dir = StoreDir()
        var theirs = Replica(scope: keys.scope, configuration: ReplicaConfiguration(maxFutureSkewMilliseconds: .max / 2))
        var other = ChangeAuthor(signer: Ed25519.PrivateKey())
        do {
            let s = try open(dir)
            try seed(s, from: 0, to: 400, other: &other, otherReplica: &theirs)
            #expect(s.writeSnapshot())
            #expect(s.replica.encodedContactCount == 0)
        }
        let gen = SyntheticContacts(seed: 5)
        do {
            let s = try open(dir)
            #expect(s.snapshotStatus == .loaded(tail: 0))
            let known = s.replica.knownContactCount
            #expect(known == 400)
            #expect(s.replica.encodedContactCount == known)
            // Visibility comes from the check at open: the deleted contact is not listed.
            #expect(s.replica.visibleContactIDs.count == known - 1)
            #expect(s.replica.isDeleted(gen.contact(1).id))
            #expect(s.replica.encodedContactCount == known)
            // Reading decodes without keeping.
            #expect(s.replica.contact(gen.contact(0).id)?.values(.tags).map(\.key).contains("kept-0") == true)
            #expect(s.replica.contact(gen.contact(2).id)?[.city] == "Ouagadougou 0")
            #expect(s.replica.encodedContactCount == known)
            expectSameState(s.replica, try replayed(s))
            // Editing decodes for good; a remove needs the live adds of the encoded contact.
            try s.commit([ContactEdit(contact: gen.contact(0).id, ops: [
                .remove(.tags, "kept-0", observed: s.replica.liveAdds(of: "kept-0", in: .tags, contact: gen.contact(0).id)),
                .setField(.city, "Nouakchott"),
            ])])
            try s.commit([ContactEdit(contact: gen.contact(3).id, ops: [.delete])])
            try s.commit([ContactEdit(contact: gen.contact(4).id, ops: [.forget])])
            #expect(s.replica.encodedContactCount == known - 3)
            #expect(s.replica.contact(gen.contact(0).id)?.values(.tags).map(\.key).contains("kept-0") == false)
            #expect(s.replica.contact(gen.contact(0).id)?[.city] == "Nouakchott")
            #expect(s.replica.contact(gen.contact(3).id) == nil)
            expectSameState(s.replica, try replayed(s))
            #expect(s.writeSnapshot())
        }
        let s = try open(dir)
        #expect(s.snapshotStatus == .loaded(tail: 0))
        #expect(s.replica.encodedContactCount == 399)
        #expect(s.replica.contact(gen.contact(0).id)?[.city] == "Nouakchott")
        #expect(s.replica.contact(gen.contact(4).id) == nil)
        expectSameState(s.replica, try replayed(s))
        // Forgets between decoded and encoded records (swap-removes of both kinds, the last one
        // included), then an edit of every contact left: all decoded, put back in order.
        try s.commit([ContactEdit(contact: gen.contact(7).id, ops: [.setField(.city, "Bamako")])])
        try s.commit([ContactEdit(contact: gen.contact(399).id, ops: [.forget]), ContactEdit(contact: gen.contact(7).id, ops: [.forget]),
                      ContactEdit(contact: gen.contact(8).id, ops: [.forget])])
        expectSameState(s.replica, try replayed(s))
        let left = s.replica.visibleContactIDs + [gen.contact(1).id, gen.contact(3).id] // and the deleted ones
        #expect(left.count == s.replica.knownContactCount)
        try s.commit(left.map { ContactEdit(contact: $0, ops: [.setField(.city, "Lomé")]) })
        #expect(s.replica.encodedContactCount == 0)
        #expect(s.replica.contacts().allSatisfy { $0[.city] == "Lomé" })
        expectSameState(s.replica, try replayed(s))
    }

    /// The check at open accepts exactly what decoding accepts: every one-byte corruption of the
    /// state's plaintext (as a writer bug would make; the AEAD stops any other) is refused at
    /// open, or opens to records that all decode — never a trap when a contact is read later.
    @Test func damagedRecordBytesAreRefusedAtOpenNotWhenRead() throws {
        let dir = StoreDir()
        var theirs = Replica(scope: keys.scope)
        var other = ChangeAuthor(signer: Ed25519.PrivateKey())
        let s = try open(dir)
        try seed(s, from: 0, to: 3, other: &other, otherReplica: &theirs)
        let state = s.replica.snapshotState()
        let byDevice = heldByDevice(s)
        var refused = 0
        for i in state.indices {
            for value: UInt8 in [0x00, 0x7f, 0x80, 0xff] where state[i] != value {
                var bad = state
                bad[i] = value
                guard let r = try? Replica.restoring(snapshot: bad, scope: keys.scope, mode: .plain, held: byDevice) else {
                    refused += 1
                    continue
                }
                _ = r.replica.contacts()
                var terms = 0
                r.replica.forEachSearchTerm { _, _, _, _ in terms += 1 }
                _ = r.replica.snapshotState()
            }
        }
        #expect(refused > 0)
    }

    /// A contact forgotten after a lazy open (still encoded) is in no file afterwards: the
    /// rewritten snapshot copies the other records' bytes, not the forgotten one's.
    @Test func forgetAfterALazyOpenErasesTheSnapshot() throws {
        let dir = StoreDir()
        let target = ContactID(high: 7, low: 49)
        do {
            let s = try open(dir)
            let known = knownContacts() // contact 49 in the first change, which stays in the rows at open
            for part in [known[40...], known[..<20], known[20..<40]] { try s.commit(Array(part)) }
            #expect(s.writeSnapshot())
        }
        let s = try open(dir)
        #expect(s.snapshotStatus == .loaded(tail: 0))
        #expect(s.replica.encodedContactCount == s.replica.knownContactCount)
        // The rows the snapshot covers were not read at open; the forget erases them all the same.
        func rowsHolding(_ needle: String) throws -> Int {
            try s.readChanges().flatMap(\.changes).filter { $0.encoded.contains(bytes: Array(needle.utf8)) }.count
        }
        #expect(s.replica.unloadedChangeCount == 2)
        #expect(try rowsHolding("quillon49@zabriskie") == 1)
        try s.commit([ContactEdit(contact: target, ops: [.forget])])
        #expect(try rowsHolding("quillon49@zabriskie") == 0)
        #expect(try rowsHolding("quillon48@zabriskie") == 1)
        s.snapshotFile.waitIdle()
        #expect(s.writeSnapshot())
        guard case let .state(plain, _) = s.snapshotFile.read() else { Issue.record("no snapshot after the forget"); return }
        for f in files(in: dir) + ["decrypted"] {
            let bytes = f == "decrypted" ? plain : fileBytes(f)
            #expect(!bytes.contains(bytes: Array("quillon49@zabriskie".utf8)), "found in \(f)")
            #expect(!bytes.contains(bytes: Array("Zabriskie49".utf8)), "found in \(f)")
        }
        #expect(plain.contains(bytes: Array("quillon48@zabriskie".utf8)))
    }

    /// A store opened from its snapshot reads only each chain's head and the rows after the
    /// snapshot; the changes the snapshot covers stay in the database until asked for, and then
    /// come back exactly as held (every one, verified by a replica that checks signatures).
    @Test func changesTheSnapshotCoversAreReadOnDemand() throws {
        let dir = StoreDir()
        var theirs = Replica(scope: keys.scope, configuration: ReplicaConfiguration(maxFutureSkewMilliseconds: .max / 2))
        var other = ChangeAuthor(signer: Ed25519.PrivateKey())
        var expected: [Change] = []
        do {
            let s = try open(dir)
            try seed(s, from: 0, to: 900, other: &other, otherReplica: &theirs)
            #expect(s.writeSnapshot())
            s.snapshotPolicy = SnapshotPolicy(minimumOps: .max / 2) // keep a tail after the snapshot
            try seed(s, from: 900, to: 1000, other: &other, otherReplica: &theirs)
            expected = s.replica.allChanges()
            #expect(s.replica.unloadedChangeCount == 0) // written here: every change in memory
        }
        let s = try open(dir)
        guard case let .loaded(tail) = s.snapshotStatus else { Issue.record("snapshot not loaded: \(s.snapshotStatus)"); return }
        #expect(tail == 4)
        // Only each chain's head stays in memory of what the snapshot covers.
        #expect(s.replica.unloadedChangeCount == s.replica.changeCount - tail - 2)
        #expect(s.changesReadOnDemand == 0)
        // A peer with nothing asks for everything: every change, in order, as held.
        var peer = Replica(scope: keys.scope, configuration: ReplicaConfiguration(maxFutureSkewMilliseconds: .max / 2))
        let served = s.replica.changes(missingFrom: VersionVector())
        #expect(Set(served.map(\.id)) == Set(expected.map(\.id)) && served.count == expected.count)
        #expect(served.map(\.encoded) == served.map { s.replica.change(device: $0.author, seq: $0.seq)!.encoded })
        for r in peer.receive(served, nowMilliseconds: .max / 4) { #expect((try? r.get()) == .applied) }
        expectSameState(peer, s.replica)
        #expect(s.changesReadOnDemand >= s.replica.unloadedChangeCount)
        #expect(s.heldChangeFailure == nil)
        // A duplicate of a change kept in the rows is recognised as one.
        let again = try s.receive([expected[3]])
        #expect((try? again.first?.get()) == .duplicate)
        // Writing on top chains after the head; a reopen after that still loads.
        try s.commit([ContactEdit(contact: ContactID(high: 3, low: 3), ops: [.setField(.city, "Lomé")])])
        #expect(s.writeSnapshot())
    }

    /// A change row the snapshot covers damaged after the open: a peer is served the changes
    /// before it, never a gap or a wrong change, and the store reports the damaged row.
    @Test func damagedRowReadOnDemandIsReportedNotServed() throws {
        let dir = StoreDir()
        do {
            let s = try open(dir)
            let gen = SyntheticContacts(seed: 8)
            for start in stride(from: 0, to: 1000, by: 100) { try s.commit((start..<(start + 100)).map { gen.contact($0).edit }) }
            #expect(s.writeSnapshot())
        }
        let s = try open(dir)
        #expect(s.snapshotStatus == .loaded(tail: 0))
        do {
            let db = try SQLiteDatabase(path: dir.path + "/store.sqlite")
            let q = try db.prepare("SELECT sealed FROM changes WHERE seq = 5")
            #expect(try q.step())
            var sealed = q.blob(0)
            sealed[sealed.count / 2] ^= 0x01
            let u = try db.prepare("UPDATE changes SET sealed = ? WHERE seq = 5")
            u.bind(1, sealed)
            try u.run()
        }
        var from2 = VersionVector()
        from2[keys.device.publicKey] = 2
        let served = s.replica.changes(missingFrom: from2)
        #expect(served.map(\.seq) == [3, 4], "served up to the damaged row, nothing after it")
        #expect(s.replica.change(device: keys.device.publicKey, seq: 5) == nil)
        #expect(s.replica.change(device: keys.device.publicKey, seq: 4)?.seq == 4)
        #expect(s.heldChangeFailure?.contains("change seq 5 of device") == true)
        // The head is in memory: the store goes on writing.
        try s.commit([ContactEdit(contact: ContactID(high: 3, low: 3), ops: [.setField(.city, "Lomé")])])
    }

    /// The rows' chain has a gap below the snapshot's head (a row deleted): the snapshot cannot
    /// vouch for what is missing, so it is ignored and every row replayed.
    @Test func snapshotOverAGapInTheRowsIsIgnored() throws {
        let dir = StoreDir()
        do {
            let s = try open(dir)
            let gen = SyntheticContacts(seed: 8)
            for start in stride(from: 0, to: 500, by: 100) { try s.commit((start..<(start + 100)).map { gen.contact($0).edit }) }
            #expect(s.writeSnapshot())
        }
        do {
            let db = try SQLiteDatabase(path: dir.path + "/store.sqlite")
            try db.execute("DELETE FROM changes WHERE seq = 2")
        }
        let s = try ContactStore(directory: dir.path, scope: keys.scope, deviceKey: keys.device, storageKey: keys.storage, acceptLoss: true)
        guard case let .ignored(reason) = s.snapshotStatus else { Issue.record("snapshot used over a gap: \(s.snapshotStatus)"); return }
        #expect(reason.contains("does not hold changes 1…5"))
        #expect(s.replica.unloadedChangeCount == 0)
        #expect(s.replica.versionVector()[keys.device.publicKey] == 1) // 3…5 wait for 2
    }
}
