import Foundation
import KithCRDT
import KithCrypto
@testable import KithStore
import Testing

/// `ContactStoreAppender` (store.md §Import index): changes appended without the replica are
/// the store a `ContactStore` would have written, and a stored index is never used once the
/// store changed under it or its records were tampered with.
@Suite("Store appender")
struct ContactStoreAppenderTests {
    func appender(_ dir: StoreDir, _ keys: Keys, clock: @escaping @Sendable () -> UInt64 = ContactStore.systemClock) throws -> ContactStoreAppender {
        try ContactStoreAppender(directory: dir.path, scope: keys.scope, deviceKey: keys.device, storageKey: keys.storage, clock: clock)
    }

    /// The store's state, read by opening it (closed before an appender takes the lock).
    func state(_ dir: StoreDir, _ keys: Keys) throws -> ImportIndexState {
        try keys.open(dir).importIndexState()
    }

    /// An appender that knows the store's state, as `kith import` gets one.
    func adopted(_ dir: StoreDir, _ keys: Keys, clock: @escaping @Sendable () -> UInt64 = ContactStore.systemClock) throws -> ContactStoreAppender {
        let s = try state(dir, keys)
        let a = try appender(dir, keys, clock: clock)
        #expect(a.adopt(s))
        return a
    }

    @Test func appendedChangesContinueTheChainAndReopen() throws {
        let dir = StoreDir(), keys = Keys()
        let all = knownContacts()
        let first = try keys.open(dir).commit(Array(all.prefix(10)))
        do {
            let a = try adopted(dir, keys)
            let made = try a.append([Array(all[10..<30]), Array(all[30..<50])])
            #expect(made.map(\.seq) == [2, 3])
            #expect(made[0].previous == first.id && made[1].previous == made[0].id)
            // Locked like a ContactStore: no other writer while it is open.
            #expect(throws: StoreError(.locked, "")) { try keys.open(dir) }
        }
        // A ContactStore opens what was appended (its acknowledgement agrees) and continues after it.
        let store = try keys.open(dir)
        #expect(store.replica.contacts().count == 50)
        #expect(store.replica.contact(ContactID(high: 7, low: 42))?[.givenName] == "Quillon42")
        #expect(store.replica.head(of: keys.device.publicKey)?.seq == 3)
        #expect(try store.commit([ContactEdit(contact: ContactID(high: 7, low: 1), ops: [.setField(.notes, "later")])]).seq == 4)
    }

    @Test func aStoredIndexIsUsedOnlyWhileTheStoreIsUnchanged() throws {
        let dir = StoreDir(), keys = Keys()
        try keys.open(dir).commit(Array(knownContacts().prefix(5)))
        let index = (0..<5_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let saved: ImportIndexState?
        do {
            let a = try adopted(dir, keys)
            try a.append([Array(knownContacts()[5..<10])])
            try a.saveIndex(index, partSize: 1_000)
            saved = a.state
        }
        do {
            let a = try appender(dir, keys)
            #expect(a.state == saved && saved?.changeCount == 2)
            #expect(a.takeStoredIndex() == index && a.storedIndex == nil) // handed over once
        }
        // Opening the store (reading, a snapshot) changes no head: the index stays usable.
        _ = try keys.open(dir)
        #expect(try appender(dir, keys).storedIndex == index)
        // A change written by anything else (kithd, a sync, another command) makes it stale.
        try keys.open(dir).commit([ContactEdit(contact: ContactID(high: 7, low: 1), ops: [.setField(.notes, "elsewhere")])])
        let stale = try appender(dir, keys)
        #expect(stale.storedIndex == nil && stale.state == nil)
        #expect(throws: StoreError(.rejected, "")) { try stale.append([Array(knownContacts().suffix(1))]) }
    }

    @Test func aTamperedOrReplayedIndexIsNotUsed() throws {
        let dir = StoreDir(), keys = Keys()
        let index = Array(repeating: UInt8(9), count: 3_000)
        var oldHeader: [UInt8] = []
        do {
            let a = try adopted(dir, keys)
            try a.saveIndex([1, 2, 3])
        }
        func header() throws -> [UInt8] {
            let db = try SQLiteDatabase(path: dir.path + "/store.sqlite", readOnly: true)
            let s = try db.prepare("SELECT sealed FROM records WHERE kind = 16 AND id = X'00'")
            #expect(try s.step())
            return s.blob(0)
        }
        oldHeader = try header()
        do {
            let a = try appender(dir, keys)
            #expect(a.storedIndex == [1, 2, 3])
            try a.append([Array(knownContacts().prefix(3))])
            try a.saveIndex(index, partSize: 1_000)
        }
        func edit(_ sql: String, _ blob: [UInt8]? = nil) throws {
            let db = try SQLiteDatabase(path: dir.path + "/store.sqlite", readOnly: false)
            let s = try db.prepare(sql)
            if let blob { s.bind(1, blob) }
            try s.run()
        }
        #expect(try appender(dir, keys).storedIndex == index)
        // The header of the index as it was before the last import, put back: its heads are
        // not the store's, so the old index (which knows none of the new contacts) is not used.
        let newHeader = try header()
        try edit("UPDATE records SET sealed = ? WHERE kind = 16 AND id = X'00'", oldHeader)
        #expect(try appender(dir, keys).storedIndex == nil)
        try edit("UPDATE records SET sealed = ? WHERE kind = 16 AND id = X'00'", newHeader)
        #expect(try appender(dir, keys).storedIndex == index)
        // A part whose bytes were changed, or a missing part.
        try edit("UPDATE records SET sealed = ? WHERE kind = 16 AND id = X'0100000001'", Array(repeating: 0, count: 60))
        #expect(try appender(dir, keys).storedIndex == nil)
        try edit("DELETE FROM records WHERE kind = 16 AND id = X'0100000001'")
        #expect(try appender(dir, keys).storedIndex == nil)
    }

    func indexRows(_ dir: StoreDir) throws -> [(id: [UInt8], sealed: [UInt8])] {
        let db = try SQLiteDatabase(path: dir.path + "/store.sqlite", readOnly: true)
        let s = try db.prepare("SELECT id, sealed FROM records WHERE kind = 16 ORDER BY id")
        var out: [(id: [UInt8], sealed: [UInt8])] = []
        while try s.step() { out.append((s.blob(0), s.blob(1))) }
        return out
    }

    func edit(_ dir: StoreDir, _ sql: String, _ blob: [UInt8]? = nil) throws {
        let db = try SQLiteDatabase(path: dir.path + "/store.sqlite", readOnly: false)
        let s = try db.prepare(sql)
        if let blob { s.bind(1, blob) }
        try s.run()
    }

    /// Each part opens on its own (sealed with its kind and number), so someone who can write the
    /// store file without the key could drop the trailing part, or put back a part of an older
    /// index under the current header: the header's part count, length and digest refuse both.
    @Test func aDroppedTrailingPartOrAnOlderPartUnderTheCurrentHeaderIsNotUsed() throws {
        let dir = StoreDir(), keys = Keys()
        try keys.open(dir).commit(Array(knownContacts().prefix(3)))
        do { try adopted(dir, keys).saveIndex(Array(repeating: UInt8(0xAA), count: 2_000), partSize: 1_000) }
        let oldParts = try indexRows(dir).filter { $0.id != [0] }
        // kithd writes; the next import rebuilds and saves a new index over the new state.
        try keys.open(dir).commit([ContactEdit(contact: ContactID(high: 7, low: 1), ops: [.setField(.notes, "moved")])])
        let newIndex = Array(repeating: UInt8(0xBB), count: 3_000)
        do { try adopted(dir, keys).saveIndex(newIndex, partSize: 1_000) }
        #expect(try appender(dir, keys).storedIndex == newIndex)

        let last = try #require(try indexRows(dir).last)
        try edit(dir, "DELETE FROM records WHERE kind = 16 AND id = X'0100000002'")
        #expect(try appender(dir, keys).storedIndex == nil, "a truncated index")
        try edit(dir, "INSERT INTO records(kind, id, sealed) VALUES (16, X'0100000002', ?)", last.sealed)
        #expect(try appender(dir, keys).storedIndex == newIndex)

        try edit(dir, "UPDATE records SET sealed = ? WHERE kind = 16 AND id = X'0100000000'", oldParts[0].sealed)
        #expect(try appender(dir, keys).storedIndex == nil, "an older part under the current header")
        // An extra part past the header's count is refused too.
        try edit(dir, "INSERT INTO records(kind, id, sealed) VALUES (16, X'0100000003', ?)", last.sealed)
        #expect(try appender(dir, keys).storedIndex == nil)
    }

    /// The index holds names, postal codes and hashes of every value: a forget deletes it in
    /// the same transaction as the erased changes, so nothing of the contact stays openable.
    @Test func forgetDeletesTheImportIndex() throws {
        let dir = StoreDir(), keys = Keys()
        let target = ContactID(high: 7, low: 2)
        try keys.open(dir).commit(Array(knownContacts().prefix(3)) + [ContactEdit(contact: target, ops: [.setField(.givenName, "Forgotten")])])
        let index = target.bytes + Array("Forgotten Person 12345".utf8)
        do { try adopted(dir, keys).saveIndex(index) }
        #expect(try indexRows(dir).count == 2)
        // An edit that erases nothing keeps it (stale, it is rebuilt by the next import anyway).
        try keys.open(dir).commit([ContactEdit(contact: ContactID(high: 7, low: 3), ops: [.setField(.givenName, "Other")])])
        #expect(try indexRows(dir).count == 2)
        try keys.open(dir).commit([ContactEdit(contact: target, ops: [.forget])])
        #expect(try indexRows(dir).isEmpty, "the import index is gone with the forget")
    }

    @Test func appendedChangesAreStampedAfterEverythingTheStoreHeld() throws {
        let dir = StoreDir(), keys = Keys()
        let id = ContactID(high: 7, low: 3)
        let tomorrow = ContactStore.systemClock() + 86_400_000
        do {
            // A change stamped a day ahead (a peer's fast clock, or this one's before it was set).
            let ahead = try ContactStore(directory: dir.path, scope: keys.scope, deviceKey: keys.device, storageKey: keys.storage, clock: { tomorrow })
            try ahead.commit([ContactEdit(contact: id, ops: [.setField(.givenName, "A"), .setField(.notes, "old")])])
        }
        do {
            let a = try adopted(dir, keys, clock: { 1_000 })
            try a.append([[ContactEdit(contact: id, ops: [.setField(.notes, "new")])]])
        }
        // The later write wins, whatever the wall clock said.
        #expect(try keys.open(dir).replica.contact(id)?[.notes] == "new")
    }

    @Test func aRefusedBatchWritesNothing() throws {
        let dir = StoreDir(), keys = Keys()
        do {
            let a = try adopted(dir, keys)
            let good = [ContactEdit(contact: ContactID(high: 7, low: 1), ops: [.setField(.givenName, "Kept")])]
            let bad = [ContactEdit(contact: ContactID(high: 7, low: 2), ops: [.setField(.support, "9")])]
            #expect(throws: StoreError(.rejected, "")) { try a.append([good, bad]) }
            #expect(try a.append([good]).map(\.seq) == [1])
            #expect(a.state?.changeCount == 1)
        }
        #expect(try keys.open(dir).replica.contacts().map(\.id) == [ContactID(high: 7, low: 1)])
    }
}
