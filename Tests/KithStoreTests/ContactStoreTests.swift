import Foundation
import KithCRDT
import KithCrypto
import KithInterchange
import KithSampleData
@testable import KithStore
import Testing

final class StoreDir {
    let path: String
    init() {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("kith-store-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

struct Keys {
    let device = Ed25519.PrivateKey()
    let storage = SymmetricKey()
    let scope = ScopeID.privateScope(of: Ed25519.PrivateKey().publicKey)

    func open(_ dir: StoreDir) throws -> ContactStore {
        try ContactStore(directory: dir.path, scope: scope, deviceKey: device, storageKey: storage)
    }
}

/// Contacts with strings that appear nowhere else, to grep for.
func knownContacts() -> [ContactEdit] {
    (0..<50).map { i in
        ContactEdit(contact: ContactID(high: 7, low: UInt64(i)), ops: [
            .setField(.givenName, "Quillon\(i)"), .setField(.familyName, "Zabriskie\(i)"),
            .add(.phones, "+1999555\(String(format: "%04d", i))"), .add(.emails, "quillon\(i)@zabriskie.example"),
            .setField(.address, "\(i) Marmalade Crescent"), .setField(.notes, "allergic to periwinkles \(i)"),
            .add(.tags, "tag-vermilion-\(i)"),
        ])
    }
}

func fileBytes(_ path: String) -> [UInt8] {
    (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))) ?? []
}

extension Array where Element == UInt8 {
    func contains(bytes needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return false }
        var i = 0
        let first = needle[0]
        while i <= count - needle.count {
            if self[i] == first && self[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}

@Suite("Contact store")
struct ContactStoreTests {
    @Test func nothingPersonalInTheClearAtRest() throws {
        let dir = StoreDir(), keys = Keys()
        do {
            let store = try keys.open(dir)
            try store.commit(batches: [Array(knownContacts().prefix(25)), Array(knownContacts().suffix(25))])
            // While open (WAL not yet checkpointed) and after closing, nothing plain on disk.
            try checkNoPlaintext(dir)
        }
        try checkNoPlaintext(dir)
        let reopened = try keys.open(dir)
        #expect(reopened.replica.contacts().count == 50)
    }

    func checkNoPlaintext(_ dir: StoreDir) throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).map { dir.path + "/" + $0 }
        #expect(files.contains { $0.hasSuffix("store.sqlite") })
        let all = files.map(fileBytes)
        for i in [0, 7, 49] {
            for s in ["Quillon\(i)", "Zabriskie\(i)", "+1999555\(String(format: "%04d", i))", "quillon\(i)@zabriskie.example",
                      "\(i) Marmalade Crescent", "allergic to periwinkles", "tag-vermilion-\(i)", "Marmalade", "periwinkle"] {
                for (f, bytes) in zip(files, all) {
                    let found = bytes.contains(bytes: Array(s.utf8))
                    #expect(!found, "\(s) in plain text in \(f)")
                }
            }
        }
    }

    @Test func reopenRestoresChainAndAuthor() throws {
        let dir = StoreDir(), keys = Keys()
        let id = ContactID(high: 1, low: 1)
        do {
            let s = try keys.open(dir)
            try s.commit([ContactEdit(contact: id, ops: [.setField(.city, "Lyon")])])
        }
        do {
            let s = try keys.open(dir)
            #expect(s.replica.contact(id)?[.city] == "Lyon")
            try s.commit([ContactEdit(contact: id, ops: [.setField(.city, "Paris")])]) // seq 2 chains onto seq 1
            #expect(s.replica.changeCount == 2)
        }
        let s = try keys.open(dir)
        #expect(s.replica.contact(id)?[.city] == "Paris")
        #expect(s.replica.head(of: keys.device.publicKey)?.seq == 2)
    }

    @Test func secondOpenIsLockedOut() throws {
        let dir = StoreDir(), keys = Keys()
        let first = try keys.open(dir)
        #expect(throws: StoreError(.locked, "")) { _ = try keys.open(dir) }
        _ = first
    }

    @Test func tamperedRecordIsReportedAsCorruption() throws {
        let dir = StoreDir(), keys = Keys()
        do {
            let s = try keys.open(dir)
            try s.commit(knownContacts())
            try s.commit([ContactEdit(contact: ContactID(high: 9, low: 9), ops: [.setField(.city, "X")])])
        }
        // Flip one byte of the second change's sealed row.
        do {
            let db = try SQLiteDatabase(path: dir.path + "/store.sqlite")
            let q = try db.prepare("SELECT sealed FROM changes WHERE seq = 2")
            #expect(try q.step())
            var sealed = q.blob(0)
            sealed[sealed.count / 2] ^= 0x01
            let u = try db.prepare("UPDATE changes SET sealed = ? WHERE seq = 2")
            u.bind(1, sealed)
            try u.run()
        }
        do {
            _ = try keys.open(dir)
            Issue.record("a tampered store opened")
        } catch let e as StoreError {
            #expect(e.code == .corrupt)
            #expect(e.detail.contains("change seq 2 of device \(keys.device.publicKey)"))
        }
        // The wrong storage key: neither the acknowledgement record nor any change opens; reported
        // as a key-ring problem (the database is fine), no crash.
        let other = Keys()
        #expect(throws: StoreError(.keyRing, "")) {
            _ = try ContactStore(directory: dir.path, scope: keys.scope, deviceKey: keys.device, storageKey: other.storage)
        }
    }

    @Test func truncatedDatabaseIsReportedNotCrashed() throws {
        let dir = StoreDir(), keys = Keys()
        do {
            let s = try keys.open(dir)
            for batch in stride(from: 0, to: 2_000, by: 200) {
                let gen = SyntheticContacts(seed: 3)
                try s.commit((batch..<(batch + 200)).map { gen.contact($0).edit })
            }
            try s.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        }
        let path = dir.path + "/store.sqlite"
        let bytes = fileBytes(path)
        try Data(bytes.prefix(bytes.count / 2)).write(to: URL(fileURLWithPath: path))
        #expect(throws: StoreError.self) { _ = try keys.open(dir) }
        // Garbage in place of the file is refused too.
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: path))
        #expect(throws: StoreError(.corrupt, "")) { _ = try keys.open(dir) }
    }

    @Test func forgetRewritesStoredRows() throws {
        let dir = StoreDir(), keys = Keys()
        let target = ContactID(high: 7, low: 3)
        do {
            let s = try keys.open(dir)
            try s.commit(knownContacts())
            try s.commit([ContactEdit(contact: target, ops: [.forget])])
        }
        let s = try keys.open(dir)
        #expect(s.replica.contact(target) == nil)
        #expect(s.replica.forgotten == [target])
        let held = s.replica.encodedChanges()
        let hasForgotten = held.contains(bytes: Array("quillon3@zabriskie".utf8))
        let hasOther = held.contains(bytes: Array("quillon4@zabriskie".utf8))
        #expect(!hasForgotten)
        #expect(hasOther)
        for c in s.replica.allChanges() { try c.verify() }
    }

    @Test func receivesChangesFromAnotherDeviceDurably() throws {
        let dir = StoreDir(), keys = Keys()
        var other = ChangeAuthor(signer: Ed25519.PrivateKey())
        let c1 = try other.makeChange(scope: keys.scope, edits: [ContactEdit(contact: ContactID(high: 2, low: 2), ops: [.setField(.city, "Oslo")])], wallMilliseconds: ContactStore.systemClock())
        let c2 = try other.makeChange(scope: keys.scope, edits: [ContactEdit(contact: ContactID(high: 2, low: 2), ops: [.setField(.city, "Bergen")])], wallMilliseconds: ContactStore.systemClock())
        do {
            let s = try keys.open(dir)
            let results = try s.receive([c2, c1, c1])
            #expect(try results.map { try $0.get() } == [.pending, .applied, .duplicate])
        }
        let s = try keys.open(dir)
        #expect(s.replica.contact(ContactID(high: 2, low: 2))?[.city] == "Bergen")
    }
}
