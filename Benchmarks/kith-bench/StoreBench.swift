import ArgumentParser
import Foundation
import KithCRDT
import KithCrypto
import KithInterchange
import KithSampleData
import KithQuery
import KithStore

/// Writes N synthetic contacts to standard output: vCard (the demo, manual tests) or JSON lines
/// (the same workload for the peer CRDT library in Benchmarks/peers).
struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sample", abstract: "Print N seeded synthetic contacts as vCard or JSON lines.")
    @Option(help: "Number of contacts.") var contacts = 200
    @Option(help: "Seed.") var seed: UInt64 = 42
    @Option(help: "vcard or jsonl.") var format = "vcard"

    func run() throws {
        let gen = SyntheticContacts(seed: seed)
        switch format {
        case "vcard":
            FileHandle.standardOutput.write(Data(gen.vCard(count: contacts).utf8))
        case "jsonl":
            var out = Data()
            for i in 0..<contacts {
                let c = gen.contact(i)
                let o: [String: Any] = [
                    "id": c.id.description, "given": c.givenName, "family": c.familyName, "phone": c.phone, "phoneRaw": c.phoneRaw,
                    "email": c.email, "address": c.address, "city": c.city, "postal": c.postalCode, "tags": c.tags,
                    "notes": c.notes, "relationship": c.relationship, "support": c.support, "consent": c.consent,
                ]
                out += try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) + Data("\n".utf8)
                if out.count > 1 << 20 {
                    FileHandle.standardOutput.write(out)
                    out.removeAll(keepingCapacity: true)
                }
            }
            FileHandle.standardOutput.write(out)
        default:
            throw ValidationError("--format is vcard or jsonl")
        }
    }
}

struct StoreBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Import N synthetic contacts from a vCard file into a fresh encrypted store (parse, CRDT, sign, encrypt, durable commit), then time reopening it to the first query."
    )

    @Option(help: "Number of contacts.") var contacts = 100_000
    @Option(help: "Seed of the synthetic generator.") var seed: UInt64 = 42
    @Option(help: "Contacts per durable transaction (as `kith import`).") var batchSize = 2_000

    func run() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kith-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        note("writing a vCard file of \(contacts) synthetic contacts…")
        let gen = SyntheticContacts(seed: seed)
        var vcf = gen.vCard(count: contacts)
        let file = dir + "/contacts.vcf"
        try vcf.write(toFile: file, atomically: true, encoding: .utf8)
        let fileBytes = vcf.utf8.count
        vcf = ""

        let device = Ed25519.PrivateKey(), storage = SymmetricKey()
        let scope = ScopeID.privateScope(of: Ed25519.PrivateKey().publicKey)
        note("importing…")
        let t0 = seconds()
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        let batch = VCard.parse(data)
        let tParsed = seconds()
        var edits: [ContactEdit] = []
        edits.reserveCapacity(batch.contacts.count)
        for c in batch.contacts { edits.append(try c.edit(region: PhoneRegion(code: "US"))) }
        var opsTotal = 0
        do {
            let store = try ContactStore(directory: dir, scope: scope, deviceKey: device, storageKey: storage)
            var start = 0
            while start < edits.count {
                let chunk = edits[start..<min(start + batchSize, edits.count)]
                var changes: [[ContactEdit]] = [[]]
                var ops = 0
                for e in chunk {
                    if ops + e.ops.count > 1_000, !changes[changes.count - 1].isEmpty { changes.append([]); ops = 0 }
                    changes[changes.count - 1].append(e)
                    ops += e.ops.count
                    opsTotal += e.ops.count
                }
                try store.commit(batches: changes)
                start += chunk.count
            }
        }
        let importSeconds = seconds() - t0
        let peakImport = memory().peak
        var size = 0
        for f in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where f.hasPrefix("store.sqlite") {
            size += ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + f)[.size]) as? Int) ?? 0
        }

        // Start-up: open (decrypt + rebuild the map) and answer the first search.
        let t1 = seconds()
        let store = try ContactStore(directory: dir, scope: scope, deviceKey: device, storageKey: storage)
        let tOpen = seconds()
        let index = ContactIndex(replica: store.replica) // every kind at once (the daemon keeps it patched)
        let hits = index.search("lovelace")
        let startupSeconds = seconds() - t1
        let queryMix = ["ada", "867", "gotv", "#volunteer", "zoë müller", "ada.lovelace1@example.org", "(212) 555", "Okafor"]
        var queries = 0
        let t3 = seconds()
        for q in queryMix { queries += index.search(q).count }
        let firstOfEachKindMs = (seconds() - t3) * 1000
        let t2 = seconds()
        for q in queryMix { queries += index.search(q).count }
        let warmSearchMs = (seconds() - t2) * 1000 / Double(queryMix.count)

        let result: [String: Any] = [
            "benchmark": "store-import-startup",
            "commit": gitCommit(),
            "machine": machine(),
            "workload": ["contacts": contacts, "ops": opsTotal, "vcardBytes": fileBytes, "batchSize": batchSize, "seed": seed],
            "importSeconds": importSeconds,
            "importContactsPerSecond": Double(contacts) / importSeconds,
            "parseSeconds": tParsed - t0,
            "importPeakRSSBytes": peakImport,
            "storeBytesOnDisk": size,
            "storeBytesPerContact": Double(size) / Double(contacts),
            "startupToFirstQuerySeconds": startupSeconds,
            "openSeconds": tOpen - t1,
            "firstQueryHits": hits.count,
            "warmSearchMillisecondsMean": warmSearchMs,
            "indexOtherKindsMilliseconds": firstOfEachKindMs,
            "skipped": batch.issues.count,
        ]
        emit(result)
        note(String(format: "import: %.2f s = %.0f contacts/s (parse %.2f s); store %.1f MB = %.0f B/contact; peak RSS %.0f MB",
                    importSeconds, Double(contacts) / importSeconds, tParsed - t0, Double(size) / 1e6, Double(size) / Double(contacts), Double(peakImport) / 1e6))
        note(String(format: "start-up to first query: %.3f s (open %.3f s); first phone/email/tag queries %.0f ms; warm search %.2f ms", startupSeconds, tOpen - t1, firstOfEachKindMs, warmSearchMs))
        _ = queries
    }
}
