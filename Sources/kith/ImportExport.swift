import ArgumentParser
import Foundation
import KithCRDT
import KithInterchange
import KithStore

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import contacts from a vCard (4.0, 3.0, 2.1) or CSV file.",
        discussion: """
            Bad cards or rows are reported with their number and reason; every other record is
            imported. Records are written in durable batches: after a crash, everything reported
            committed is there and nothing is half-written. Importing the same file again
            updates the same contacts (matched by UID / id column) instead of duplicating them.

            CSV needs a header row; common column names (First Name, Surname, Mobile, E-mail,
            Zip, Tags, …) are recognised; map others with --map "Column=field" (fields:
            given_name, family_name, display_name, phones, emails, address, city, postal_code,
            tags, notes, relationship, support, voter_file_id, consent, id).

            Examples:
              kith import contacts.vcf
              kith import members.csv --map "Cell #=phones" --map "Ward=tags" --default-country 1
              kith import big.vcf --json          progress as JSON lines on stdout

            Exit status: 0 all imported, 2 some records skipped (listed on stderr), 1 failure.
            """
    )
    @OptionGroup var node: NodeOptions
    @OptionGroup var phoneOptions: PhoneOptions
    @Argument(help: "The file to import (- for standard input).") var file: String
    @Option(help: "vcard or csv (default: from the extension or content).") var format: String?
    @Option(help: "Map a CSV column to a field: \"Column=field\" (repeatable).") var map: [String] = []
    @Option(name: .customLong("batch-size"), help: "Contacts per durable transaction.") var batchSize = 2_000

    func run() throws {
        let data: [UInt8]
        do {
            data = file == "-" ? [UInt8](FileHandle.standardInput.readDataToEndOfFile()) : [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        } catch {
            fail("cannot read \(file): \(error.localizedDescription)")
        }
        let kind = format?.lowercased() ?? guessFormat(file: file, data: data)
        var mapping: [String: CSVInterchange.Target] = [:]
        for m in map {
            let parts = m.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let t = CSVInterchange.target(named: parts[1].trimmingCharacters(in: .whitespaces)) else {
                fail("--map '\(m)' must be \"Column=field\" with a known field")
            }
            mapping[parts[0]] = t
        }
        let batch: ImportBatch
        switch kind {
        case "vcard", "vcf": batch = VCard.parse(data)
        case "csv": batch = CSVInterchange.parse(data, mapping: mapping)
        default: fail("unknown --format '\(kind)': use vcard or csv")
        }
        for n in batch.notices { FileHandle.standardError.write(Data("kith: \(n)\n".utf8)) }
        var issues = batch.issues
        var edits: [ContactEdit] = []
        edits.reserveCapacity(batch.contacts.count)
        var seen = Set<ContactID>()
        for c in batch.contacts {
            do {
                let e = try c.edit(defaultCallingCode: phoneOptions.callingCode)
                if !seen.insert(e.contact).inserted {
                    issues.append(ImportIssue(origin: c.origin, reason: "repeats UID '\(c.uid ?? "")' of an earlier record; skipped"))
                    continue
                }
                edits.append(e)
            } catch {
                issues.append(error)
            }
        }

        let store = try node.open()
        let progress = Progress(total: edits.count, json: node.json)
        var committed = 0
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
            try failing { try store.commitEdits(changes) }
            committed += chunk.count
            start += chunk.count
            progress.committed(committed)
        }
        progress.finish()
        for i in issues { FileHandle.standardError.write(Data("kith: skipped \(i)\n".utf8)) }
        if node.json {
            printJSONLine(["event": "done", "imported": committed, "skipped": issues.count,
                           "issues": issues.map { ["where": $0.origin, "reason": $0.reason] }])
        } else {
            print("imported \(committed) contact\(committed == 1 ? "" : "s")" + (issues.isEmpty ? "" : ", skipped \(issues.count) (see above)"))
        }
        if !issues.isEmpty { throw ExitCode(2) }
    }

    func guessFormat(file: String, data: [UInt8]) -> String {
        let lower = file.lowercased()
        if lower.hasSuffix(".vcf") || lower.hasSuffix(".vcard") { return "vcard" }
        if lower.hasSuffix(".csv") { return "csv" }
        let head = String(decoding: data.prefix(64), as: UTF8.self).uppercased()
        return head.contains("BEGIN:VCARD") ? "vcard" : "csv"
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
        abstract: "Export every contact as vCard 4.0 or CSV.",
        discussion: """
            The export round-trips: importing it again gives the same contacts (same ids). vCard
            keeps everything (conversation logs as X-KITH-CONVERSATION); CSV keeps the fields,
            phones, emails and tags.

            Examples:
              kith export > contacts.vcf
              kith export --format csv --output contacts.csv
            """
    )
    @OptionGroup var data: DataDirOption
    @Option(name: .customLong("passphrase-file")) var passphraseFile: String?
    @Option(help: "vcard or csv.") var format = "vcard"
    @Option(name: [.short, .long], help: "Write to this file (mode 0600) instead of standard output.") var output: String?

    func run() throws {
        var node = NodeOptions()
        node.data = data
        node.passphraseFile = passphraseFile
        guard ["vcard", "vcf", "csv"].contains(format.lowercased()) else { fail("unknown --format '\(format)': use vcard or csv") }
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
