// KithStore: durable, encrypted-at-rest storage of a replica's change log and materialized view.
//
// This module is the seam the store issue fills: SQLite (WAL) through the C API, payloads sealed
// with the device's storage key (`KeyRing.storageKey`), keyed blind indexes for lookups.
// It may depend on KithCRDT and KithCrypto, never on networking.

/// The on-disk schema generations this build knows. The store issue adds migrations here.
public enum StoreSchema {
    /// The schema version a fresh store is created with.
    public static let currentVersion = 0
}
