import KithCRDT

/// A place a record the hub accepted went to (Protocol/consent.md §4.5): the hub's own store,
/// a connector that delivered it downstream (Action Network over OSDI), or a file exported for
/// staff (Action Network's or VAN's CSV upload format).
public struct RecordPlace: Hashable, Sendable, Comparable, CustomStringConvertible {
    public enum Kind: UInt8, Sendable { case hub = 1, connector = 2, file = 3 }
    public let kind: Kind
    /// The connector's name ("Action Network") or the exported file's name; empty for the hub.
    public let name: String

    public init(kind: Kind, name: String) {
        self.kind = kind
        self.name = kind == .hub ? "" : name
    }

    public static let hub = RecordPlace(kind: .hub, name: "")
    public static func connector(_ name: String) -> RecordPlace { RecordPlace(kind: .connector, name: name) }
    public static func file(_ name: String) -> RecordPlace { RecordPlace(kind: .file, name: name) }

    public var description: String {
        switch kind {
        case .hub: "the hub"
        case .connector: name
        case .file: "file export \(name)"
        }
    }

    public static func < (a: RecordPlace, b: RecordPlace) -> Bool { (a.kind.rawValue, a.name) < (b.kind.rawValue, b.name) }
}

/// What is true of a record at one place. Only `erased`, `suppressed` and `confirmedByStaff` end
/// a deletion; a receipt says which one, so that "deleted" is never claimed for a place that
/// only stopped using the record.
public enum PlaceState: UInt8, Sendable {
    /// The record is there (no deletion asked). Never in a receipt.
    case delivered = 0
    /// A deletion work item is open: the connector has not (yet) managed it; it retries.
    case outstanding = 1
    /// Gone from that place.
    case erased = 2
    /// Still there, but no longer used: unsubscribed and untagged (the downstream keeps people).
    case suppressed = 3
    /// In a file handed to staff: a deletion list was produced; staff have not confirmed.
    case awaitingStaff = 4
    /// Staff confirmed they deleted it from the file and from where they loaded it.
    case confirmedByStaff = 5

    public var isFinal: Bool { self == .erased || self == .suppressed || self == .confirmedByStaff }

    public var label: String {
        switch self {
        case .delivered: "delivered"
        case .outstanding: "deletion outstanding"
        case .erased: "erased"
        case .suppressed: "suppressed"
        case .awaitingStaff: "awaiting staff confirmation"
        case .confirmedByStaff: "deleted (confirmed by staff)"
        }
    }
}

/// One place as a deletion receipt reports it: where, what is true there, since when.
public struct PlaceReport: Sendable, Equatable {
    public let place: RecordPlace
    public let state: PlaceState
    public let at: UInt64

    public init(place: RecordPlace, state: PlaceState, at: UInt64) {
        self.place = place
        self.state = state
        self.at = at
    }

    /// "erased at the hub; suppressed in Action Network; 1 file export awaiting staff confirmation"
    public static func summary(_ places: [PlaceReport]) -> String {
        var parts: [String] = []
        for p in places where p.place.kind != .file {
            let at = p.place.kind == .hub ? "at the hub" : "in \(p.place.name)"
            switch p.state {
            case .outstanding: parts.append("deletion outstanding in \(p.place.name) (the hub retries)")
            default: parts.append("\(p.state.label) \(at)")
            }
        }
        var files: [PlaceState: Int] = [:]
        for p in places where p.place.kind == .file {
            // A receipt with many files reports them per state, named "N files".
            let merged = p.place.name.hasSuffix(" files") ? Int(p.place.name.dropLast(6)) : nil
            files[p.state, default: 0] += merged ?? 1
        }
        for (state, n) in files.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            parts.append("\(n) file export\(n == 1 ? "" : "s") \(state.label)")
        }
        return parts.joined(separator: "; ")
    }
}

/// Where one grant's record went, and — once the grant is revoked or expires — the deletion
/// work item at each place and how it ended (Protocol/consent.md §4.5). Kept by the hub for
/// every grant whose record left the hub, and for every closed grant.
///
/// encoded = `u8 version (= 1) ‖ u8 reason (0 none, 1 revoked, 2 expired) ‖ u64 requested_ms ‖
///            uvarint n ‖ n × entry`
/// entry   = `u8 place_kind ‖ text place_name ‖ u8 state ‖ uvarint record_version ‖ u64 delivered_ms
///            ‖ u64 updated_ms ‖ text external_id ‖ uvarint attempts ‖ u64 next_attempt_ms ‖ text last_error`
public struct RecordTrail: Sendable, Equatable {
    public enum Reason: UInt8, Sendable { case none = 0, revoked = 1, expired = 2 }

    public struct Entry: Sendable, Equatable {
        public var place: RecordPlace
        public var state: PlaceState
        /// The record version delivered there.
        public var version: UInt64
        public var deliveredAt: UInt64
        /// When `state` last changed.
        public var updatedAt: UInt64
        /// The downstream's own reference to what it holds (an OSDI person URL); hub-internal,
        /// never in a receipt.
        public var externalID: String
        /// Deletion attempts made (connectors), and when the next one is due.
        public var attempts: UInt64
        public var nextAttemptAt: UInt64
        public var lastError: String

        public init(place: RecordPlace, state: PlaceState, version: UInt64, deliveredAt: UInt64, updatedAt: UInt64, externalID: String = "",
                    attempts: UInt64 = 0, nextAttemptAt: UInt64 = 0, lastError: String = "") {
            self.place = place
            self.state = state
            self.version = version
            self.deliveredAt = deliveredAt
            self.updatedAt = updatedAt
            self.externalID = externalID
            self.attempts = attempts
            self.nextAttemptAt = nextAttemptAt
            self.lastError = lastError
        }
    }

    public var reason: Reason = .none
    /// When the deletion was asked (the revocation or the expiry); 0 while none was.
    public var requestedAt: UInt64 = 0
    /// Sorted by place.
    public private(set) var entries: [Entry] = []

    public init() {}

    public var isRetracting: Bool { reason != .none }
    /// Every place's deletion has ended (erased, suppressed or confirmed by staff).
    public var isComplete: Bool { isRetracting && entries.allSatisfy(\.state.isFinal) }

    public func entry(_ place: RecordPlace) -> Entry? { entries.first { $0.place == place } }

    public mutating func set(_ e: Entry) {
        if let i = entries.firstIndex(where: { $0.place == e.place }) {
            entries[i] = e
        } else {
            entries.append(e)
            entries.sort { $0.place < $1.place }
        }
    }

    /// What a deletion receipt reports: every place; past 60 exported files (a receipt must fit
    /// in a 4 KiB answer), the files are reported as one place per state, named "N files".
    public var report: [PlaceReport] {
        let all = entries.map { PlaceReport(place: $0.place, state: $0.state, at: $0.updatedAt) }
        let files = all.filter { $0.place.kind == .file }
        guard files.count > 60 else { return all }
        var merged: [PlaceState: (n: Int, at: UInt64)] = [:]
        for f in files { merged[f.state] = ((merged[f.state]?.n ?? 0) + 1, max(merged[f.state]?.at ?? 0, f.at)) }
        return all.filter { $0.place.kind != .file }
            + merged.sorted { $0.key.rawValue < $1.key.rawValue }.map { PlaceReport(place: .file("\($0.value.n) files"), state: $0.key, at: $0.value.at) }
    }

    /// Delay before deletion attempt `attempts + 1` at a connector: 1 s doubling, at most an hour.
    public static func backoff(afterAttempts attempts: UInt64) -> UInt64 {
        let shift = min(attempts > 0 ? attempts - 1 : 0, 12)
        return min(UInt64(1_000) << shift, 3_600_000)
    }

    /// A delivery (or a newer version delivered) to `place`. If the grant is already being
    /// deleted (the delivery raced the revocation), the place gets its deletion item at once.
    public mutating func delivered(to place: RecordPlace, version: UInt64, externalID: String, now: UInt64) {
        var e = entry(place) ?? Entry(place: place, state: .delivered, version: version, deliveredAt: now, updatedAt: now)
        e.version = version
        e.externalID = externalID.isEmpty ? e.externalID : externalID
        e.updatedAt = now
        e.state = .delivered
        if isRetracting { Self.open(&e, now: now) }
        set(e)
    }

    /// Starts the deletion everywhere: the hub erases its own copy (`hubHeld`: it held one), each
    /// connector gets a work item, each exported file awaits staff. A trail already deleting is
    /// left as it is (a revocation sent again, or one after expiry).
    public mutating func startRetraction(_ why: Reason, now: UInt64) {
        guard !isRetracting else { return }
        reason = why
        requestedAt = now
        set(Entry(place: .hub, state: .erased, version: 0, deliveredAt: 0, updatedAt: now))
        for var e in entries where e.place.kind != .hub {
            Self.open(&e, now: now)
            set(e)
        }
    }

    private static func open(_ e: inout Entry, now: UInt64) {
        e.state = e.place.kind == .file ? .awaitingStaff : .outstanding
        e.updatedAt = now
        e.attempts = 0
        e.nextAttemptAt = now
        e.lastError = ""
    }

    /// Whether the hub has work for this place: a connector's outstanding deletion past its
    /// backoff, or an exported file's rows not yet on a deletion list for staff.
    public static func isDue(_ e: Entry, now: UInt64) -> Bool {
        switch e.place.kind {
        case .hub: false
        case .connector: e.state == .outstanding && e.nextAttemptAt <= now
        case .file: e.state == .awaitingStaff && e.attempts == 0 && e.nextAttemptAt <= now
        }
    }

    /// A deletion attempt ended. At a connector: `erased` or `suppressed`, or an error (the item
    /// stays outstanding and is tried again after the backoff); nothing else may end it. For an
    /// exported file: `awaitingStaff` once its rows are on a deletion list (`reference`: the
    /// list's name), or an error (listed again later).
    public mutating func settle(_ place: RecordPlace, result: Result<PlaceState, RetractionFailure>, reference: String = "", now: UInt64) {
        guard var e = entry(place), Self.isDue(e, now: .max) else { return }
        e.attempts += 1
        switch result {
        case .success(.awaitingStaff) where place.kind == .file:
            e.externalID = reference
            e.lastError = ""
        case let .success(state) where place.kind == .connector && (state == .erased || state == .suppressed):
            e.state = state
            e.updatedAt = now
            e.lastError = ""
        case .success:
            e.lastError = "a connector may only report erased or suppressed"
            e.nextAttemptAt = now + Self.backoff(afterAttempts: e.attempts)
        case let .failure(f):
            e.lastError = f.reason
            e.nextAttemptAt = now + Self.backoff(afterAttempts: e.attempts)
        }
        set(e)
    }

    /// Staff confirmed the file's rows are deleted.
    public mutating func confirmFile(_ name: String, now: UInt64) -> Bool {
        guard var e = entry(.file(name)), e.state == .awaitingStaff else { return false }
        e.state = .confirmedByStaff
        e.updatedAt = now
        set(e)
        return true
    }

    public var encoded: [UInt8] {
        var w = ByteWriter()
        w.u8(1)
        w.u8(reason.rawValue)
        w.u64(requestedAt)
        w.uvarint(entries.count)
        for e in entries {
            w.u8(e.place.kind.rawValue)
            w.text(e.place.name)
            w.u8(e.state.rawValue)
            w.uvarint(e.version)
            w.u64(e.deliveredAt)
            w.u64(e.updatedAt)
            w.text(e.externalID)
            w.uvarint(e.attempts)
            w.u64(e.nextAttemptAt)
            w.text(String(e.lastError.prefix(500)))
        }
        return w.bytes
    }

    public init(encoded b: [UInt8]) throws(DecodeError) {
        var r = ByteReader(b)
        guard try r.u8() == 1 else { throw DecodeError("unsupported record trail version") }
        guard let why = Reason(rawValue: try r.u8()) else { throw DecodeError("unknown deletion reason") }
        reason = why
        requestedAt = try r.u64()
        let n = try r.count(max: 1_000, "places")
        for _ in 0..<n {
            guard let kind = RecordPlace.Kind(rawValue: try r.u8()) else { throw DecodeError("unknown place kind") }
            let name = try r.text(max: 500)
            guard let state = PlaceState(rawValue: try r.u8()) else { throw DecodeError("unknown place state") }
            set(Entry(place: RecordPlace(kind: kind, name: name), state: state, version: try r.uvarint(), deliveredAt: try r.u64(), updatedAt: try r.u64(),
                      externalID: try r.text(max: 2_000), attempts: try r.uvarint(), nextAttemptAt: try r.u64(), lastError: try r.text(max: 2_000)))
        }
        guard r.isAtEnd else { throw DecodeError("trailing bytes") }
    }
}

/// Why a connector could not delete (or deliver) now: it keeps trying.
public struct RetractionFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}
