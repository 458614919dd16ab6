import KithCRDT
import KithCrypto
import KithInterchange

enum InterchangeTargets {
    static func vcard(_ data: [UInt8]) {
        guard let replica = importBatch(VCard.parse(data)) else { return }
        // Export and import again: every contact comes back.
        let exported = VCard.write(replica.contacts())
        let back = VCard.parse(Array(exported.utf8))
        check(back.issues.isEmpty, "a vCard export re-imports without issues: \(back.issues)")
        check(back.contacts.count == replica.contacts().count, "a vCard export re-imports every contact")
    }

    static func csv(_ data: [UInt8]) {
        guard let replica = importBatch(CSVInterchange.parse(data)) else { return }
        let exported = CSVInterchange.write(replica.contacts())
        let back = CSVInterchange.parse(Array(exported.utf8))
        check(back.issues.isEmpty, "a CSV export re-imports without issues: \(back.issues)")
        check(back.contacts.count == replica.contacts().count, "a CSV export re-imports every contact")
    }

    static let signer = Keys.ed(0x60)
    static let scope = ScopeID(name: "private")

    /// What `kith import` does with a parsed file: each record's edit (checked), committed in
    /// one change. Every edit the importer accepts must be one a change accepts. Returns the
    /// replica holding them (nil when nothing was imported).
    static func importBatch(_ batch: ImportBatch) -> Replica? {
        var edits: [ContactEdit] = []
        var seen = Set<ContactID>()
        for c in batch.contacts.prefix(64) {
            guard let e = try? c.edit(region: PhoneRegion(code: "GB")) else { continue }
            do {
                _ = try Change.make(scope: scope, signer: signer, seq: 1, previous: .zero, timestamp: HybridTimestamp(milliseconds: 1),
                                    edits: [e])
            } catch {
                check(false, "the importer made an edit that a change refuses: \(error)")
            }
            if seen.insert(e.contact).inserted { edits.append(e) }
        }
        guard !edits.isEmpty else { return nil }
        guard let change = try? Change.make(scope: scope, signer: signer, seq: 1, previous: .zero,
                                            timestamp: HybridTimestamp(milliseconds: 1), edits: edits) else {
            check(false, "the importer's edits together make no change")
            return nil
        }
        var replica = Replica(scope: scope)
        do { _ = try replica.receive(change, nowMilliseconds: 10) } catch { check(false, "a replica refuses an imported change: \(error)") }
        return replica
    }
}
