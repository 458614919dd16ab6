import Foundation
import KithCRDT
import KithInterchange
import KithNode
import KithSampleData
import KithStore
import Testing

/// A vCard file of `count` synthetic contacts whose UIDs are their Kith ids.
func syntheticVCard(count: Int, seed: UInt64) -> (String, [ContactID]) {
    let gen = SyntheticContacts(seed: seed)
    return (gen.vCard(count: count), (0..<count).map { gen.contact($0).id })
}

@Suite("Durability: kill -9 during import", .serialized)
struct DurabilityTests {
    @Test func everyAcknowledgedContactSurvivesKill9() throws {
        let tmp = try TempDir()
        let data = tmp.path("node")
        #expect(try Binaries.run("kith", ["init", "--data-dir", data]).status == 0)
        let (vcf, ids) = syntheticVCard(count: 3_000, seed: 11)
        let file = tmp.path("contacts.vcf")
        try vcf.write(toFile: file, atomically: true, encoding: .utf8)

        var rng = SplitMix64(seed: UInt64(Date().timeIntervalSince1970))
        print("durability seed \(rng.state)")
        var killedAtLeastOnceMidway = false
        for round in 0..<5 {
            let p = Process()
            p.executableURL = Binaries.productsDirectory.appendingPathComponent("kith")
            p.arguments = ["import", file, "--data-dir", data, "--json", "--batch-size", "100", "--default-country", "1"]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            let killAfter = 1 + Int(rng.next() % 20)
            var acknowledged = 0, lines = 0
            var buffer = Data()
            var finished = false
            reading: while true {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { finished = true; break }
                buffer.append(chunk)
                while let nl = buffer.firstIndex(of: 0x0A) {
                    let line = buffer[buffer.startIndex..<nl]
                    buffer = Data(buffer[(nl + 1)...])
                    guard let obj = try? JSONSerialization.jsonObject(with: line) as? [String: Any] else { continue }
                    if obj["event"] as? String == "committed" {
                        acknowledged = (obj["contacts"] as? Int) ?? acknowledged
                        lines += 1
                        if lines >= killAfter { break reading }
                    }
                }
            }
            if !finished {
                usleep(UInt32(rng.next() % 20_000)) // land the kill at a random point of the next batch
                kill(p.processIdentifier, SIGKILL)
                killedAtLeastOnceMidway = true
            }
            p.waitUntilExit()
            // The store opens cleanly and holds every acknowledged contact.
            let store = try NodeAccess.openStore(DataDirectory(path: data), passphrase: nil)
            let missing = ids.prefix(acknowledged).filter { store.replica.contact($0) == nil }
            #expect(missing.isEmpty, "round \(round): \(missing.count) of \(acknowledged) acknowledged contacts lost")
            #expect(store.replica.contact(ids[0])?[.givenName] != nil || acknowledged == 0)
        }
        #expect(killedAtLeastOnceMidway)
        // Finally a full import completes and everything is there.
        let done = try Binaries.run("kith", ["import", file, "--data-dir", data, "--default-country", "1"])
        #expect(done.status == 0, "\(done.stderr)")
        let store = try NodeAccess.openStore(DataDirectory(path: data), passphrase: nil)
        #expect(ids.allSatisfy { store.replica.contact($0) != nil })
        #expect(store.replica.contacts().count == 3_000)
    }
}

@Suite("kith contact commands, end to end")
struct ContactCLITests {
    @Test func addSearchEditExportImport() throws {
        let tmp = try TempDir()
        let d = ["--data-dir", tmp.path("node")]
        #expect(try Binaries.run("kith", ["init"] + d).status == 0)
        let add = try Binaries.run("kith", ["contact", "add", "--given", "Ada", "--family", "Lovelace", "--phone", "020 7946 0000",
                                            "--default-country", "44", "--email", "Ada@Example.org", "--tag", "volunteer", "--support", "4"] + d)
        #expect(add.status == 0, "\(add.stderr)")
        let id = add.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(ContactID(text: id) != nil)
        let bad = try Binaries.run("kith", ["contact", "add", "--given", "X", "--support", "9"] + d)
        #expect(bad.status == 1 && bad.stderr.hasPrefix("kith: support"), "\(bad.stderr)")
        let search = try Binaries.run("kith", ["contact", "search", "+44 20 7946 0000", "--json"] + d)
        let found = try JSONSerialization.jsonObject(with: Data(search.stdout.utf8)) as! [[String: Any]]
        #expect(found.map { $0["id"] as! String } == [id])
        #expect(try Binaries.run("kith", ["contact", "edit", "--city", "London", "--clear", "support"] + d + ["--", String(id.prefix(6))]).status == 0)
        #expect(try Binaries.run("kith", ["log-conversation", "--channel", "door", "--outcome", "supportive", "--date", "2026-11-01"] + d + ["--", id]).status == 0)
        let show = try Binaries.run("kith", ["contact", "show"] + d + ["--", id]) // an id may start with -
        #expect(show.stdout.contains("city          London") && !show.stdout.contains("\nsupport "))
        #expect(show.stdout.contains("2026-11-01 door: supportive"))
        let unknown = try Binaries.run("kith", ["contact", "show", "zzzz"] + d)
        #expect(unknown.status == 1 && unknown.stderr.contains("no contact"))

        // Export, import into a fresh node, export again: identical.
        let export1 = try Binaries.run("kith", ["export"] + d)
        let file = tmp.path("out.vcf")
        try export1.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        let d2 = ["--data-dir", tmp.path("node2")]
        #expect(try Binaries.run("kith", ["init"] + d2).status == 0)
        #expect(try Binaries.run("kith", ["import", file] + d2).status == 0)
        #expect(try Binaries.run("kith", ["export"] + d2).stdout == export1.stdout)

        // A file with bad cards: the good ones are imported, the bad ones named, exit 2; a bad
        // value (a phone without digits) is dropped with a warning, its person kept.
        let mixed = tmp.path("mixed.vcf")
        try "BEGIN:VCARD\nFN:Good One\nEND:VCARD\nBEGIN:VCARD\nFN:Bad\nTEL:no digits here\nEND:VCARD\nBEGIN:VCARD\nFN:Truncated\n"
            .write(toFile: mixed, atomically: true, encoding: .utf8)
        let r = try Binaries.run("kith", ["import", mixed] + d2)
        #expect(r.status == 2)
        #expect(r.stderr.contains("warning: card 2 (line 4): phone 'no digits here' dropped: it has no digits"))
        #expect(r.stderr.contains("card 3 (line 8): file ends before END:VCARD"))
        #expect(r.stdout.contains("created 2, updated 0, unchanged 0, skipped 1, 1 value dropped with a warning"), "\(r.stdout)")
    }

    @Test func forgetAndLocking() throws {
        let tmp = try TempDir()
        let d = ["--data-dir", tmp.path("node")]
        #expect(try Binaries.run("kith", ["init"] + d).status == 0)
        let id = try Binaries.run("kith", ["contact", "add", "--given", "Forgettable", "--email", "gone@example.org"] + d)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Binaries.run("kith", ["contact", "rm", "--forget", "--yes"] + d + ["--", id]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "list"] + d).stdout.contains("Forgettable") == false)
        // While one process holds the store, another is refused with a clear message.
        let holder = try NodeAccess.openStore(DataDirectory(path: tmp.path("node")), passphrase: nil)
        let second = try Binaries.run("kith", ["contact", "list"] + d)
        #expect(second.status == 1 && second.stderr.contains("in use by another process"))
        _ = holder
    }
}
