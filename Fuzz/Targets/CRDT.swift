import KithCRDT
import KithCrypto

enum CRDTTargets {
    static let scope = ScopeID(name: "fuzz")

    /// A change as received from a peer: framing, then what a replica does before applying it.
    static func change(_ data: [UInt8]) {
        guard let c = try? Change(decoding: data) else { return }
        check(c.encoded == data, "a decoded change keeps its bytes verbatim")
        let hashes = c.blockHashes()
        check(hashes.count == c.blockCount, "one hash per block")
        _ = try? c.verify()
        _ = c.isSigned
        let contacts = c.blockContacts
        if let edits = try? c.decodeEdits() {
            for (_, e) in edits { roundTrip(e) }
        }
        _ = c.plaintextBlocks(keys: [:])
        // Erasing blocks keeps the id and the digest (the signature still verifies).
        let erased = c.erasing(Set(contacts.compactMap { $0 }))
        check(erased.id == c.id, "erasure keeps the change id")
        check(erased.blockHashes() == hashes, "erasure keeps every block hash")
    }

    /// A compact run of one device's changes (sync message `run`).
    static func run(_ data: [UInt8]) {
        var r = ByteReader(data)
        guard let changes = try? ChangeRun.decode(&r, scope: scope) else { return }
        check(!changes.isEmpty && changes.last!.isSigned, "a run ends with a signed change")
        check(ChangeRun.canEncode(changes[...]), "a decoded run can be re-encoded")
        check(ChangeRun.encode(changes[...]) == Array(data[0..<r.offset]), "a run re-encodes to the bytes it was read from")
        for (i, c) in changes.enumerated() {
            check(c.authenticatedByChain, "every change of a run is authenticated by the chain")
            if i > 0 { check(c.previous == changes[i - 1].id && c.seq == changes[i - 1].seq + 1, "a run is a hash chain") }
            _ = try? c.decodeEdits()
        }
    }

    /// An edit as the control socket carries it.
    static func edit(_ data: [UInt8]) {
        guard let e = try? ContactEdit(decoding: data) else { return }
        roundTrip(e)
    }

    static func roundTrip(_ e: ContactEdit) {
        let again = try? ContactEdit(decoding: e.encoded)
        check(again == e, "an edit decodes to itself after re-encoding")
    }

    /// What `DaemonBackend.reload` does with the daemon's answer to `changes`: decode each frame
    /// and apply it to a replica with signature checks off. Input: `uvarint length ‖ change`, repeated.
    static func replica(_ data: [UInt8]) {
        var r = ByteReader(data)
        var changes: [Change] = []
        while !r.isAtEnd, changes.count < 64 {
            guard let b = try? r.lengthPrefixed(max: 1 << 16), let c = try? Change(decoding: Array(b)) else { break }
            changes.append(c)
        }
        guard let first = changes.first else { return }
        let configuration = ReplicaConfiguration(maxFutureSkewMilliseconds: .max / 2, verifySignatures: false)
        var forward = Replica(scope: first.scope, configuration: configuration)
        var clean = true
        for c in changes {
            do { _ = try forward.receive(c, nowMilliseconds: 0) } catch { clean = false }
        }
        exercise(forward)
        // Arrival order never matters: the same changes backwards give the same state (when
        // every change was accepted both ways and no device equivocated).
        var backward = Replica(scope: first.scope, configuration: configuration)
        for c in changes.reversed() {
            do { _ = try backward.receive(c, nowMilliseconds: 0) } catch { clean = false }
        }
        if clean, forward.equivocations.isEmpty, backward.equivocations.isEmpty, forward.droppedPending.isEmpty,
           backward.droppedPending.isEmpty, forward.pendingCount == 0, backward.pendingCount == 0 {
            check(forward.stateDigest() == backward.stateDigest(), "the same changes in reverse order give the same state")
        }
    }

    static func exercise(_ r: Replica) {
        for id in r.visibleContactIDs.prefix(16) {
            _ = r.contact(id)
            _ = r.mergedContact(id)
            _ = r.representative(of: id)
        }
        _ = r.contacts()
        _ = r.sameAsGroups()
        _ = r.canonicalState()
        _ = r.changes(missingFrom: VersionVector())
        _ = r.versionVector()
        r.forEachSearchTerm { _, _, _, _ in }
    }
}
