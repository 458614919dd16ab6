import KithCRDT
import KithInterchange
import KithQuery

/// What an upload would do, before anything is written: the import page's preview. It runs the
/// same importer as `kith import` (KithInterchange's format detection and parsers, KithQuery's
/// `ImportSession` matching by id, external id, email and phone), without committing.
public struct ImportPlan: Sendable {
    public let filename: String
    /// The format's name for people ("vCard 2.1, 3.0 and 4.0 (…)", "NGP VAN / EveryAction export").
    public var formatSummary: String { Interchange.formats.first { $0.name == format }?.summary ?? format }
    /// The detected (or chosen) format's name, e.g. "vcard", "google-csv".
    public let format: String
    /// One edit per contact to write, in file order.
    public let edits: [ContactEdit]
    public let created: Int
    /// Existing contacts the file updates (matched by id, external id, email or phone).
    public let merged: Int
    /// Records that match a contact that already holds everything in them.
    public let unchanged: Int
    /// Records that will not be imported, each with where it is and why (unreadable records,
    /// conflicts), then values dropped from records that were kept.
    public let problems: [ImportIssue]
    /// Records not imported: unreadable, skipped on purpose (a group card) or in conflict.
    public let skipped: Int
    /// Fields present in the file and not kept, with how often (`PHOTO` ×120).
    public let dropped: [(field: String, count: Int)]

    /// Parses `bytes` (format detected from the content unless `format` names one) and plans it
    /// against `existing`, the contacts the node holds.
    public static func make(filename: String, bytes: [UInt8], format: String? = nil, region: PhoneRegion?,
                            existing: some Sequence<ContactDTO>) throws(Interchange.Unreadable) -> ImportPlan {
        let batch = try Interchange.parse(bytes, format: format)
        var session = ImportSession(matcher: ImportMatcher(existing: existing), region: region)
        session.take(batch.contacts)
        let edits = session.takeBatch()
        var problems = batch.issues + session.issues + batch.skipped
        let skipped = problems.count + session.summary.conflicts.count
        problems += session.summary.conflicts.map { ImportIssue(origin: "conflict", reason: $0) }
        problems += session.warnings
        let dropped = batch.dropped.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { (field: $0.key, count: $0.value) }
        return ImportPlan(filename: filename, format: batch.format, edits: edits, created: session.summary.created,
                          merged: session.summary.updated, unchanged: session.summary.unchanged, problems: problems, skipped: skipped, dropped: dropped)
    }

    /// The edits in durable batches of about `ops` operations each (one signed change apiece),
    /// as `kith import` writes them.
    public func batches(maxOps: Int = 1_000, contactsPerBatch: Int = 500) -> [[[ContactEdit]]] {
        var out: [[[ContactEdit]]] = []
        var start = 0
        while start < edits.count {
            let chunk = edits[start..<min(start + contactsPerBatch, edits.count)]
            var changes: [[ContactEdit]] = [[]]
            var ops = 0
            for e in chunk {
                if ops + e.ops.count > maxOps, !changes[changes.count - 1].isEmpty {
                    changes.append([])
                    ops = 0
                }
                changes[changes.count - 1].append(e)
                ops += e.ops.count
            }
            out.append(changes)
            start += chunk.count
        }
        return out
    }
}
