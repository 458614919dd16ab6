import KithCRDT
import KithInterchange

/// What an upload would do, before anything is written: the import page's preview. This is the
/// page's one entry into the import code (today's KithInterchange parsers and `edit`), kept
/// narrow so a new importer (matching, dry runs) can replace it in one place.
public struct ImportPlan: Sendable {
    public let filename: String
    /// "vCard" or "CSV".
    public let format: String
    /// One edit per contact to write, in file order.
    public let edits: [ContactEdit]
    public let created: Int
    public let merged: Int
    /// Records that will not be imported, each with where it is and why.
    public let problems: [ImportIssue]

    /// Parses `bytes` (the format from the file name, else the content) and sorts each record
    /// into created (a new contact), merged (updates a contact the node holds: same UID / id)
    /// or skipped (unreadable, or a repeat of an earlier record of the file).
    public static func make(filename: String, bytes: [UInt8], defaultCallingCode: String?, exists: (ContactID) -> Bool) -> ImportPlan {
        let lower = filename.lowercased()
        let head = String(decoding: bytes.prefix(256), as: UTF8.self).uppercased()
        let vcard = lower.hasSuffix(".vcf") || lower.hasSuffix(".vcard") || (!lower.hasSuffix(".csv") && head.contains("BEGIN:VCARD"))
        let batch = vcard ? VCard.parse(bytes) : CSVInterchange.parse(bytes)
        var problems = batch.issues
        var edits: [ContactEdit] = []
        var seen = Set<ContactID>()
        var created = 0, merged = 0
        for c in batch.contacts {
            do {
                let e = try c.edit(defaultCallingCode: defaultCallingCode)
                guard seen.insert(e.contact).inserted else {
                    problems.append(ImportIssue(origin: c.origin, reason: "repeats UID '\(c.uid ?? "")' of an earlier record; skipped"))
                    continue
                }
                if exists(e.contact) { merged += 1 } else { created += 1 }
                edits.append(e)
            } catch {
                problems.append(error)
            }
        }
        return ImportPlan(filename: filename, format: vcard ? "vCard" : "CSV", edits: edits, created: created, merged: merged, problems: problems)
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
