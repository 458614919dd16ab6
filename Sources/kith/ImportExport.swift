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
        let data: [UInt8]
        do {
            data = file == "-" ? [UInt8](FileHandle.standardInput.readDataToEndOfFile()) : [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        } catch {
            fail("cannot read \(file): \(error.localizedDescription)")
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
        let batch: ImportBatch
        do {
            batch = try Interchange.parse(data, format: format, mapping: mapping)
        } catch {
            fail("\(file) \(error.description)")
        }
        for n in batch.notices { FileHandle.standardError.write(Data("kith: \(n)\n".utf8)) }
        var issues = batch.issues
        var warnings: [ImportIssue] = []
        var converted: [ConvertedContact] = []
        converted.reserveCapacity(batch.contacts.count)
        for c in batch.contacts {
            do {
                let x = try c.convert(region: region)
                warnings += x.warnings
                converted.append(x)
            } catch {
                issues.append(error)
            }
        }

        let client = try node.open()
        var matcher = try existingContacts(client)
        var summary = ImportSummary()
        var edits: [ContactEdit] = []
        var updates: [ContactEdit] = []
        for c in converted {
            let (decision, suggestion) = matcher.plan(c)
            switch decision {
            case let .create(e):
                summary.created += 1
                edits.append(e)
            case let .update(e, _):
                summary.updated += 1
                updates.append(e)
            case .unchanged: summary.unchanged += 1
            case let .conflict(ids, how):
                summary.conflicts.append("\(c.origin): matches \(ids.count) contacts by \(how) (\(ids.map(\.description).joined(separator: ", "))): skipped; link or merge them first")
            }
            if let s = suggestion {
                summary.suggestions.append("\(c.origin): same name and postal code as \(s); if it is the same person: kith contact link \(s) <new id>")
            }
        }
        // Updates of the same contact (two rows of one person) go into one block.
        var ordered: [ContactEdit] = []
        var at: [ContactID: Int] = [:]
        for e in edits + updates {
            if let i = at[e.contact] { ordered[i].ops += e.ops } else {
                at[e.contact] = ordered.count
                ordered.append(e)
            }
        }
        edits = ordered

        var committed = 0
        if !dryRun {
            let progress = Progress(total: edits.count, json: node.json)
            let size = max(1, batchSize)
            var start = 0
            while start < edits.count {
                let chunk = Array(edits[start..<min(start + size, edits.count)])
                // About 1,000 ops per change: one signature per ~100 contacts.
                var changes: [[ContactEdit]] = [[]]
                var ops = 0
                for e in chunk {
                    if ops + e.ops.count > 1_000, !changes[changes.count - 1].isEmpty {
                        changes.append([])
                        ops = 0
                    }
                    changes[changes.count - 1].append(e)
                    ops += e.ops.count
                }
                try failing { try client.commitEdits(changes) }
                committed += chunk.count
                start += chunk.count
                progress.committed(committed)
            }
            progress.finish()
        }
        report(batch: batch, issues: issues, warnings: warnings, summary: summary, committed: committed)
        if !issues.isEmpty || !summary.conflicts.isEmpty { throw ExitCode(2) }
    }

    /// A matcher over every contact the node holds (read page by page).
    func existingContacts(_ client: any ContactClient) throws -> ImportMatcher {
        var all: [ContactDTO] = []
        var cursor: String?
        repeat {
            let page = try failing { try client.page(q: nil, tag: nil, limit: 1_000, cursor: cursor, merged: false, scope: nil) }
            all += page.contacts
            cursor = page.next
        } while cursor != nil
        return ImportMatcher(existing: all)
    }

    func report(batch: ImportBatch, issues: [ImportIssue], warnings: [ImportIssue], summary: ImportSummary, committed: Int) {
        let err = FileHandle.standardError
        for i in issues { err.write(Data("kith: skipped \(i)\n".utf8)) }
        for s in batch.skipped { err.write(Data("kith: skipped \(s)\n".utf8)) }
        for w in warnings { err.write(Data("kith: warning: \(w)\n".utf8)) }
        for c in summary.conflicts { err.write(Data("kith: conflict: \(c)\n".utf8)) }
        for s in summary.suggestions { err.write(Data("kith: suggestion: \(s)\n".utf8)) }
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
            printJSONLine(["event": "committed", "contacts": n, "total": total])
            return
        }
        guard tty, Date().timeIntervalSince(started) > 1 || drawn else { return }
        drawn = true
        let width = 30
        let filled = total == 0 ? width : width * n / total
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
