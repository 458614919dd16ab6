// KithCRDT: the contact map as a pure function of a set of signed changes. No I/O.

/// Version of the data model and change encoding described in `Protocol/data-model.md`.
public enum DataModel {
    public static let version: UInt8 = 1
}
