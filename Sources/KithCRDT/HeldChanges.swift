/// Where a replica reads the changes it holds but keeps out of memory: a store that opened from
/// its snapshot leaves the rows the snapshot covers in the database (Protocol/store.md
/// §Snapshots, "Changes on demand") and reads them when a peer asks for them or an erasure needs
/// them. Called from any thread that holds a copy of the replica, so it synchronizes itself.
public protocol HeldChangeSource: AnyObject, Sendable {
    /// The changes `seqs` of `device`, exactly as the replica holds them, in seq order; nil when
    /// one of them cannot be read (missing, damaged: the source keeps the reason to report it).
    func heldChanges(of device: DeviceKey, seqs: ClosedRange<UInt64>) -> [Change]?
}

/// One device's applied changes, seq 1 first. The first `unloaded` of them may live in a
/// `HeldChangeSource` instead of memory (a store opened from its snapshot); the latest is always
/// in memory, so the chain's head, timestamp and next seq never need a read.
struct HeldChanges: Sendable {
    /// Changes 1…`unloaded` are read from `source` when asked for.
    private(set) var unloaded = 0
    private(set) var loaded: [Change] = []
    private var source: (any HeldChangeSource)?
    private var device: DeviceKey?

    init() {}

    /// A chain of `count` changes of which only the last, `head`, is in memory.
    init(count: Int, head: Change, source: any HeldChangeSource) {
        precondition(count >= 1 && head.seq == UInt64(count))
        unloaded = count - 1
        loaded = [head]
        self.source = unloaded > 0 ? source : nil
        device = head.author
    }

    var count: Int { unloaded + loaded.count }
    var isEmpty: Bool { count == 0 }
    var indices: Range<Int> { 0..<count }
    /// The latest change (always in memory).
    var last: Change? { loaded.last }

    /// The change at position `i` (seq `i + 1`); nil when the source cannot read it.
    func at(_ i: Int) -> Change? {
        if i >= unloaded { return loaded[i - unloaded] }
        return source?.heldChanges(of: device!, seqs: UInt64(i + 1)...UInt64(i + 1))?.first
    }

    /// The changes from position `start` on, in order. When some cannot be read, the ones
    /// before the first unreadable one (a peer is then served a prefix, never a gap).
    func suffix(from start: Int) -> [Change] {
        guard start < count else { return [] }
        if start >= unloaded { return Array(loaded[(start - unloaded)...]) }
        if let read = source?.heldChanges(of: device!, seqs: UInt64(start + 1)...UInt64(unloaded)), read.count == unloaded - start {
            return read + loaded
        }
        // One is unreadable: the ones before it, read one by one.
        var prefix: [Change] = []
        while start + prefix.count < unloaded, let c = at(start + prefix.count) { prefix.append(c) }
        return prefix
    }

    /// Every change, in order (see `suffix`).
    var all: [Change] { suffix(from: 0) }

    mutating func append(_ change: Change) { loaded.append(change) }

    /// Replaces the change at position `i` (an erasure or a restored block): the chain is read
    /// into memory first. False when it could not be read.
    @discardableResult
    mutating func replace(at i: Int, with change: Change) -> Bool {
        guard load() else { return false }
        loaded[i] = change
        return true
    }

    /// Reads every change into memory (before rewriting held changes). False when some could
    /// not be read; the chain is then unchanged.
    @discardableResult
    mutating func load() -> Bool {
        guard unloaded > 0 else { return true }
        guard let read = source?.heldChanges(of: device!, seqs: 1...UInt64(unloaded)), read.count == unloaded else { return false }
        loaded = read + loaded
        unloaded = 0
        source = nil
        return true
    }
}
