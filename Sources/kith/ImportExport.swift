import ArgumentParser
import Foundation
import KithCRDT
import KithInterchange
import KithQuery
import KithStore

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import contacts from vCard, jCard or CSV (Google, Outlook, Action Network, NGP VAN, Mobilize).",
        discussion: """
            The format is recognised by content (BEGIN:VCARD, jCard JSON, or a CSV header: Google
            Contacts, Outlook, Action Network, NGP VAN / EveryAction, Mobilize, or any CSV with a
            header); --format forces one (kith import --list-formats). Bad cards or rows are
            reported with their line and reason, every other record imported; a bad value (a
            support of 9, a malformed birthday) drops that value with a warning, not the person.
            Everything in the file that is not kept is summed up at the end ("dropped: PHOTO ×120").

            A record matches an existing contact by its UID / id column, then external id (VANID,
            Action Network uuid…), then email, then phone, and updates it with only what is new:
            importing the same file again creates and writes nothing. Two contacts matching one
            record is a conflict: reported, nothing written (resolve with kith contact link).
            Name + postal code matches are only suggested. --dry-run shows all this and writes
            nothing. Records are written in durable batches.

            Fields for --map "Column=field": given_name, family_name, display_name, phones, emails,
            address, city, region, postal_code, country, organization, title, birthday, nickname,
            tags, urls, notes, relationship, support, voter_file_id, consent, email_subscription,
            sms_subscription, external_id:<system>, id.

            Examples:
              kith import contacts.vcf --region GB
              kith import members.csv --map "Cell #=phones" --map "Ward=tags" --region US
              kith import van-export.csv --dry-run
              kith import big.vcf --json          progress and the summary as JSON lines on stdout

            Exit status: 0 all imported, 2 some records skipped or in conflict (listed on stderr), 1 failure.
            """
    )
    @OptionGroup var node: NodeOptions
    @OptionGroup var phoneOptions: PhoneOptions
    @Argument(help: "The file to import (- for standard input).") var file: String?
    @Option(help: "Force a format (see --list-formats; default: recognised from the content).") var format: String?
    @Flag(name: .customLong("list-formats"), help: "List the formats import reads and export writes.") var listFormats = false
    @Option(help: "Map a CSV column to a field: \"Column=field\" (repeatable).") var map: [String] = []
    @Flag(name: .customLong("dry-run"), help: "Show what would be created, updated, left unchanged and in conflict; write nothing.") var dryRun = false
    @Option(name: .customLong("batch-size"), help: "Contacts per durable transaction.") var batchSize = 2_000

    func run() throws {
        if listFormats {
            if node.json {
                printJSONLine(["formats": Interchange.formats.map { ["name": $0.name, "summary": $0.summary, "export": $0.exports] as [String: Any] }])
            } else {
                for f in Interchange.formats {
                    print(f.name.padding(toLength: 19, withPad: " ", startingAt: 0) + f.summary + (f.exports ? "  (import, export)" : "  (import)"))
                }
            }
            return
        }
        guard let file else { fail("give the file to import (or --list-formats)") }
        let input: FileHandle
        if file == "-" {
            input = FileHandle.standardInput
        } else {
            guard let h = FileHandle(forReadingAtPath: file) else { fail("cannot read \(file): no such file, or not readable") }
            input = h
        }
        let region = phoneOptions.phoneRegion
        var mapping: [String: CSVInterchange.Target] = [:]
        for m in map {
            let parts = m.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let t = CSVInterchange.target(named: parts[1].trimmingCharacters(in: .whitespaces)) else {
                fail("--map '\(m)' must be \"Column=field\" with a known field (fields: \(CSVInterchange.targetNames.joined(separator: ", ")))")
            }
            mapping[parts[0]] = t
        }
        let (target, matcher) = try failing { try node.openImport() }
        var importer = Importer(session: ImportSession(matcher: matcher, region: region), target: target, dryRun: dryRun,
                                batchSize: max(1, batchSize), progress: Progress(total: 0, json: node.json))
        // 512 KiB (~1,700 cards): the committing thread starts soon after the reader does, and the
        // batches in flight between the three stages (two waiting at each handoff) stay small.
        let chunkSize = 1 << 19
        var first = [UInt8](input.readData(ofLength: chunkSize))
        let kind: String
        if let format {
            kind = format.lowercased()
        } else {
            do { kind = try Interchange.detect(first) } catch { fail("\(file) \(error.description)") }
        }
        var summary = ImportBatch()
        if kind == "vcard" || kind == "vcf" {
            // Streaming: cards are parsed, converted, matched and committed in durable batches
            // while the file is read, so memory stays flat however large it is. Three stages in
            // order, each on its thread: one reads and parses, one converts (phones through
            // libphonenumber), this one matches, signs and commits.
            if let k = Interchange.binaryKind(first.prefix(8_192)) { fail("\(file) is a binary file (\(k)), not a vCard") }
            let parsed = Handoff<(contacts: [ImportedContact], rest: ImportBatch)>(capacity: 2)
            let handoff = Handoff<(converted: [Result<ConvertedContact, ImportIssue>], rest: ImportBatch)>(capacity: 2)
            let reader = UncheckedHandle(handle: input)
            let firstChunk = first
            Thread.detachNewThread {
                var stream = VCard.Stream()
                var chunk = firstChunk
                while !chunk.isEmpty {
                    let b = stream.feed(chunk)
                    guard parsed.put((b.contacts, ImportBatch(withoutContacts: b))) else { return }
                    chunk = [UInt8](reader.handle.readData(ofLength: chunkSize))
                }
                let b = stream.finish()
                _ = parsed.put((b.contacts, ImportBatch(withoutContacts: b)))
                parsed.close()
            }
            Thread.detachNewThread {
                while let next = parsed.take() {
                    guard handoff.put((ImportSession.convert(next.contacts, region: region), next.rest)) else { break }
                }
                parsed.close() // the committer gave up: the reader stops too
                handoff.close()
            }
            first = []
            do {
                while let next = handoff.take() {
                    try importer.take(converted: next.converted)
                    summary.append(next.rest)
                }
            } catch {
                handoff.close()
                throw error
            }
            summary.format = "vcard"
            if summary.cards == 0 { fail("\(file) has no BEGIN:VCARD: not a vCard file") }
        } else {
            var data = first
            while true {
                let more = input.readData(ofLength: chunkSize)
                if more.isEmpty { break }
                data += more
            }
            do {
                summary = try Interchange.parse(data, format: kind == "csv" && format == nil ? nil : kind, mapping: mapping)
            } catch {
                fail("\(file) \(error.description)")
            }
            for n in summary.notices { FileHandle.standardError.write(Data("kith: \(n)\n".utf8)) }
            summary.notices = []
            try importer.take(summary.contacts)
            summary.contacts = []
        }
        try importer.flush()
        try failing { try target.finish(matcher: importer.session.matcher, dryRun: dryRun) }
        importer.progress.finish()
        for n in summary.notices { FileHandle.standardError.write(Data("kith: \(n)\n".utf8)) }
        let session = importer.session
        report(batch: summary, issues: summary.issues + session.issues, warnings: session.warnings, summary: session.summary,
               committed: importer.committed)
        if !summary.issues.isEmpty || !session.issues.isEmpty || !session.summary.conflicts.isEmpty { throw ExitCode(2) }
    }

    /// Commits an `ImportSession`'s edits in durable batches as records are read.
    struct Importer {
        var session: ImportSession
        let target: any ImportTarget
        let dryRun: Bool
        let batchSize: Int
        let progress: Progress
        var committed = 0

        mutating func take(_ contacts: [ImportedContact]) throws {
            var start = 0
            while start < contacts.count {
                let end = min(contacts.count, start + batchSize)
                session.take(Array(contacts[start..<end]))
                start = end
                if session.pendingCount >= batchSize { try flush() }
            }
        }

        mutating func take(converted records: [Result<ConvertedContact, ImportIssue>]) throws {
            var start = 0
            while start < records.count {
                let end = min(records.count, start + batchSize)
                session.take(converted: Array(records[start..<end]))
                start = end
                if session.pendingCount >= batchSize { try flush() }
            }
        }

        mutating func flush() throws {
            let edits = session.takeBatch()
            guard !dryRun, !edits.isEmpty else { return }
            try failing { try target.commit(ImportSession.changes(edits)) }
            committed += edits.count
            progress.committed(committed)
        }
    }

    func report(batch: ImportBatch, issues: [ImportIssue], warnings: [ImportIssue], summary: ImportSummary, committed: Int) {
        let err = FileHandle.standardError
        for i in issues { err.write(Data("kith: skipped \(i)\n".utf8)) }
        for s in batch.skipped { err.write(Data("kith: skipped \(s)\n".utf8)) }
        for w in warnings { err.write(Data("kith: warning: \(w)\n".utf8)) }
        for c in summary.conflicts { err.write(Data("kith: conflict: \(c)\n".utf8)) }
        for s in summary.suggestions.prefix(20) { err.write(Data("kith: suggestion: \(s)\n".utf8)) }
        if summary.suggestions.count > 20 { err.write(Data("kith: … and \(summary.suggestions.count - 20) more suggestions (all of them in --json)\n".utf8)) }
        let dropped = batch.dropped.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        if node.json {
            printJSONLine(["event": dryRun ? "dry-run" : "done", "format": batch.format, "imported": committed,
                           "created": summary.created, "updated": summary.updated, "unchanged": summary.unchanged,
                           "skipped": issues.count + batch.skipped.count, "conflicts": summary.conflicts, "suggestions": summary.suggestions,
                           "dropped": Dictionary(uniqueKeysWithValues: dropped.map { ($0.key, $0.value) }),
                           "warnings": warnings.map { ["where": $0.origin, "reason": $0.reason] },
                           "issues": (issues + batch.skipped).map { ["where": $0.origin, "reason": $0.reason] }])
            return
        }
        let verb = dryRun ? "would create" : "created"
        var line = "\(verb) \(summary.created), \(dryRun ? "would update" : "updated") \(summary.updated), unchanged \(summary.unchanged)"
        if !issues.isEmpty || !batch.skipped.isEmpty { line += ", skipped \(issues.count + batch.skipped.count)" }
        if !summary.conflicts.isEmpty { line += ", conflicts \(summary.conflicts.count)" }
        if !warnings.isEmpty { line += ", \(warnings.count) value\(warnings.count == 1 ? "" : "s") dropped with a warning" }
        print(line + (dryRun ? " (dry run: nothing written)" : ""))
        if !dropped.isEmpty { print("dropped: " + dropped.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")) }
    }
}

/// Hands batches from the thread that reads and converts a file to the one that commits them.
/// Bounded: the reader stays at most `capacity` batches ahead, so memory stays flat.
final class Handoff<T: Sendable>: @unchecked Sendable { // every var is read and written under `condition`
    private let condition = NSCondition()
    private var items: [T] = []
    private var closed = false
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// Waits for room; false once closed (the taker gave up: the putter stops).
    func put(_ item: T) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while items.count >= capacity && !closed { condition.wait() }
        guard !closed else { return false }
        items.append(item)
        condition.broadcast()
        return true
    }

    /// The next item, waiting for it; nil when closed and drained.
    func take() -> T? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !closed { condition.wait() }
        guard !items.isEmpty else { return nil }
        condition.broadcast()
        return items.removeFirst()
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }
}

/// The file being imported, read only by the reading thread once the import starts.
struct UncheckedHandle: @unchecked Sendable { // used by one thread at a time: main hands it over
    let handle: FileHandle
}

func printJSONLine(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    // Unbuffered: a script reading the progress sees each line as soon as the batch is durable.
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// Import progress: a bar on stderr once the import has run for a second (only on a terminal),
/// or JSON lines on stdout with --json (one per durable batch).
final class Progress {
    let total: Int
    let json: Bool
    let started = Date()
    let tty = isatty(2) == 1
    var drawn = false

    init(total: Int, json: Bool) {
        self.total = total
        self.json = json
    }

    func committed(_ n: Int) {
        if json {
            printJSONLine(["event": "committed", "contacts": n])
            return
        }
        guard tty, Date().timeIntervalSince(started) > 1 || drawn else { return }
        drawn = true
        let width = 30
        guard total > 0 else { return FileHandle.standardError.write(Data("\rimporting: \(n) contacts written".utf8)) }
        let filled = width * min(n, total) / total
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        FileHandle.standardError.write(Data("\rimporting \(bar) \(n)/\(total)".utf8))
    }

    func finish() {
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export every contact as vCard 4.0 or CSV (Kith's, Google Contacts' or Action Network's).",
        discussion: """
            The export round-trips: importing it again gives the same contacts (same ids). vCard
            keeps everything (conversation logs as X-KITH-CONVERSATION); CSV keeps the fields,
            phones, emails and tags.

            Examples:
              kith export > contacts.vcf
              kith export --format csv --output contacts.csv
              kith export --format google-csv      for Google Contacts' import
              kith export --format actionnetwork-csv   for Action Network's upload
            """
    )
    @OptionGroup var data: DataDirOption
    @Option(name: .customLong("passphrase-file")) var passphraseFile: String?
    @Option(help: "vcard, csv, google-csv or actionnetwork-csv.") var format = "vcard"
    @Option(name: [.short, .long], help: "Write to this file (mode 0600) instead of standard output.") var output: String?

    func run() throws {
        var node = NodeOptions()
        node.data = data
        node.passphraseFile = passphraseFile
        guard Interchange.export([], format: format) != nil else { fail("unknown --format '\(format)' (formats: \(Interchange.exportFormats.joined(separator: ", ")))") }
        let client = try node.open()
        let (text, count) = try failing { try client.export(format: format) }
        if let output {
            guard FileManager.default.createFile(atPath: output, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
                fail("cannot write \(output)")
            }
            FileHandle.standardError.write(Data("kith: exported \(count) contacts to \(output)\n".utf8))
        } else {
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}

extension ContactClient {
    /// A matcher over every contact the node holds, read page by page through the API (pages
    /// are not kept).
    func importMatcher() throws -> ImportMatcher {
        var matcher = ImportMatcher()
        var cursor: String?
        repeat {
            let page = try page(q: nil, tag: nil, limit: 1_000, cursor: cursor, merged: false, scope: nil)
            for c in page.contacts { matcher.learn(existing: c) }
            cursor = page.next
        } while cursor != nil
        return matcher
    }

    func importFinished() {}
}

extension LocalClient {
    /// Straight from the replica (no search index, no pages). The store writes no snapshot
    /// while the import runs — each would encode the whole growing replica again — but one at
    /// the end (`importFinished`), which the next open starts from.
    func importMatcher() throws -> ImportMatcher {
        store.snapshotPolicy = SnapshotPolicy(minimumOps: .max)
        return ImportMatcher(replica: store.replica)
    }

    func importFinished() {
        store.snapshotPolicy = SnapshotPolicy()
        store.writeSnapshot()
    }
}
