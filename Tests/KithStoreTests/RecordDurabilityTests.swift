import Foundation
import KithCRDT
@testable import KithStore
import Testing

/// Records written without waiting for the disk (`putRecords(durable: false)`, what a node does
/// with membership ops a peer sent that only grant): the connection goes back to synchronous
/// writes at once, and the records are there after the store is closed and opened again.
@Suite("Record durability")
struct RecordDurabilityTests {
    @Test func aWriteNotWaitedForLeavesLaterWritesSynchronous() throws {
        let dir = StoreDir(), keys = Keys()
        do {
            let store = try keys.open(dir)
            // 2 = FULL: every commit waits for the disk.
            #expect(try store.db.scalarInt("PRAGMA synchronous") == 2)
            try store.putRecords(.membershipOp, [(id: [1], bytes: [10, 11])], durable: false)
            #expect(try store.db.scalarInt("PRAGMA synchronous") == 2)
            try store.putRecords(.membershipOp, [(id: [2], bytes: [12])])
            #expect(try store.db.scalarInt("PRAGMA synchronous") == 2)
            // A failing write that was not to be waited for does not leave it lowered either.
            try store.db.execute("DROP TABLE records")
            #expect(throws: StoreError.self) { try store.putRecords(.membershipOp, [(id: [3], bytes: [13])], durable: false) }
            #expect(try store.db.scalarInt("PRAGMA synchronous") == 2)
        }
    }

    @Test func recordsWrittenWithoutWaitingAreThereAfterReopening() throws {
        let dir = StoreDir(), keys = Keys()
        do {
            let store = try keys.open(dir)
            try store.putRecords(.membershipOp, [(id: [1], bytes: [10, 11])], durable: false)
            try store.putRecords(.peerHint, [(id: [2], bytes: [12])], durable: false)
        }
        let reopened = try keys.open(dir)
        #expect(try reopened.records(.membershipOp).map(\.bytes) == [[10, 11]])
        #expect(try reopened.records(.peerHint).map(\.bytes) == [[12]])
    }
}
