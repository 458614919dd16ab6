import Foundation
import KithConsent
import KithCRDT
import KithCrypto

/// A downstream system the hub delivers held records to, and deletes them from when their grant
/// is revoked or expires (Protocol/consent.md §4.5): Action Network over OSDI, or CSV files for
/// staff (KithHubConnectors). The hub calls it from one loop, never from a member's connection.
public protocol HubConnector: Sendable {
    /// Its name in receipts and `kithd hub status` ("Action Network").
    var name: String { get }
    /// Whether `place` is one of this connector's (its name, or one of the files it wrote).
    func owns(_ place: RecordPlace) -> Bool
    /// Delivers records (new ones, or newer versions); one result per record, in order: where it
    /// now is and the downstream's reference to it, or why not (delivered again next round).
    func deliver(_ records: [HubDelivery]) async -> [Result<Delivered, RetractionFailure>]
    /// Deletes what was delivered (one result per item, in order): `erased` or `suppressed` for a
    /// connector — only what the downstream confirmed —, `awaitingStaff` once a file's rows are on
    /// a deletion list; an error leaves the item outstanding (tried again after a backoff).
    func retract(_ items: [HubRetractionItem]) async -> [Result<Retracted, RetractionFailure>]
}

public struct Delivered: Sendable, Equatable {
    public let place: RecordPlace
    public let externalID: String
    public init(place: RecordPlace, externalID: String) {
        self.place = place
        self.externalID = externalID
    }
}

public struct Retracted: Sendable, Equatable {
    public let state: PlaceState
    /// For a file: the deletion list it is on.
    public let reference: String
    public init(_ state: PlaceState, reference: String = "") {
        self.state = state
        self.reference = reference
    }
}

/// A held record on its way downstream.
public struct HubDelivery: Sendable {
    public let key: GrantKey
    public let version: UInt64
    public let grant: Grant
    public let chapterName: String
    public let values: [(String, String)]

    public init(key: GrantKey, version: UInt64, grant: Grant, chapterName: String, values: [(String, String)]) {
        self.key = key
        self.version = version
        self.grant = grant
        self.chapterName = chapterName
        self.values = values
    }

    /// The record's id downstream, naming no one: base64url(BLAKE2b-256(member ‖ grant id))'s
    /// first 22 characters. A deletion list names rows by it.
    public var kithID: String { HubDelivery.kithID(key) }

    public static func kithID(_ key: GrantKey) -> String { "kith-" + String(Base64URL.encode(BLAKE2b.hash(key.bytes)).prefix(22)) }

    public func value(_ field: String) -> String? { values.first { $0.0 == field }?.1 }
}

/// A deletion to perform downstream.
public struct HubRetractionItem: Sendable {
    public let key: GrantKey
    public let entry: RecordTrail.Entry
    public let requestedAt: UInt64
    public var kithID: String { HubDelivery.kithID(key) }
}

/// How a connector is doing, for `kithd hub status`.
public struct ConnectorHealth: Sendable {
    public var lastSuccessAt: UInt64 = 0
    public var lastFailureAt: UInt64 = 0
    public var lastError = ""
    public var delivered = 0
    public var failures = 0
    public var healthy: Bool { lastFailureAt <= lastSuccessAt }
}

extension HubNode {
    /// Records a connector may take in one round.
    static let connectorBatch = 200

    /// One round of every connector: deliver what is new, then the deletions due. Called
    /// periodically by `kithd hub run` (and by tests). Network calls are made outside the
    /// hub's write order, so members are answered while a downstream system is slow.
    public func connectorRound() async {
        for c in connectors {
            await deliverRound(c)
            await retractRound(c)
        }
    }

    private func deliverRound(_ c: any HubConnector) async {
        let due = ledger.undelivered(limit: Self.connectorBatch, to: c.owns)
        guard !due.isEmpty else { return }
        // The records themselves are in the store (the ledger keeps a few facts of each).
        let stored: [(id: [UInt8], bytes: [UInt8])]
        do { stored = try await storage.heldRows(due.map(\.key.bytes)) } catch {
            logger.error("could not read records to deliver", metadata: ["connector": "\(c.name)", "reason": "\(error)"])
            return
        }
        let batch = stored.compactMap { row -> HubDelivery? in
            guard let key = HubStoreSchema.decodeGrantKey(row.id), let h = HubStoreSchema.decodeHeldRow(row.bytes),
                  let record = try? UpwardRecord(trusted: h.record), record.version == ledger.held[key]?.version else { return nil }
            let values = h.fields ?? (try? record.open(with: keys.agreement)) ?? []
            return HubDelivery(key: key, version: record.version, grant: record.grant, chapterName: h.chapterName, values: values)
        }
        guard !batch.isEmpty else { return }
        for d in batch { inFlight[d.key, default: []].insert(c.name) }
        let results = await c.deliver(batch)
        await enter()
        defer { leave() }
        for d in batch {
            inFlight[d.key]?.remove(c.name)
            if inFlight[d.key]?.isEmpty == true { inFlight[d.key] = nil }
        }
        let now = clock()
        var rows: [(key: GrantKey, bytes: [UInt8])] = []
        for (d, r) in zip(batch, results) {
            switch r {
            case let .success(got):
                rows.append((d.key, ledger.delivered(d.key, to: got.place, version: d.version, externalID: got.externalID, nowMilliseconds: now).encoded))
                health[c.name, default: ConnectorHealth()].delivered += 1
                health[c.name, default: ConnectorHealth()].lastSuccessAt = now
            case let .failure(f):
                note(c.name, failure: f, now: now)
            }
        }
        do { try await commit([.trails(rows)]) } catch {
            // The places stay known in memory; a restart before the next write delivers again (an update downstream).
            logger.error("could not store where records went", metadata: ["connector": "\(c.name)", "reason": "\(error)"])
        }
        if !rows.isEmpty { logger.info("records delivered", metadata: ["connector": "\(c.name)", "count": "\(rows.count)"]) }
    }

    private func retractRound(_ c: any HubConnector) async {
        let now = clock()
        let due = ledger.dueDeletions(nowMilliseconds: now).filter { c.owns($0.entry.place) }.prefix(Self.connectorBatch).map {
            HubRetractionItem(key: $0.key, entry: $0.entry, requestedAt: ledger.trails[$0.key]?.requestedAt ?? 0)
        }
        guard !due.isEmpty else { return }
        let results = await c.retract(Array(due))
        await enter()
        defer { leave() }
        let done = clock()
        var rows: [(key: GrantKey, bytes: [UInt8])] = []
        for (item, r) in zip(due, results) {
            let result = r.map(\.state)
            if case let .failure(f) = r { note(c.name, failure: f, now: done) } else { health[c.name, default: ConnectorHealth()].lastSuccessAt = done }
            if let t = ledger.settle(item.key, at: item.entry.place, result: result, reference: (try? r.get())?.reference ?? "", nowMilliseconds: done) {
                rows.append((item.key, t.encoded))
                let state = t.entry(item.entry.place)?.state ?? .outstanding
                logger.info("deletion downstream", metadata: ["grant": "\(Base64URL.encode(item.key.grant))", "place": "\(item.entry.place)",
                                                              "state": "\(state.label)", "error": "\(t.entry(item.entry.place)?.lastError ?? "")"])
            }
        }
        do { try await commit([.trails(rows)]) } catch {
            logger.error("could not store deletion results (they are made again)", metadata: ["connector": "\(c.name)", "reason": "\(error)"])
        }
    }

    /// A deletion receipt for a record a connector is sending right now reports that connector as
    /// outstanding: the record may land there after the hub erased its copy (its delivery then
    /// opens the deletion item, `HubLedger.delivered`), so "erased everywhere" would not be true.
    func reportingDeliveriesInFlight(_ answer: HubAnswer, request: [UInt8], now: UInt64) -> HubAnswer {
        guard answer.kind == .deleted, let member = try? Ed25519.PublicKey(bytes: answer.memberKey),
              let sending = inFlight[GrantKey(member: member, grant: answer.grantID)], !sending.isEmpty else { return answer }
        let known = Set(answer.places.map(\.place))
        let extra = sending.sorted().map { RecordPlace.connector($0) }.filter { !known.contains($0) }.map { PlaceReport(place: $0, state: .outstanding, at: now) }
        guard !extra.isEmpty else { return answer }
        let places = answer.places.isEmpty ? [PlaceReport(place: .hub, state: .erased, at: now)] + extra : answer.places + extra
        return HubAnswer.make(.deleted, request: request, member: member, grantID: answer.grantID, version: answer.version, at: answer.at, places: places,
                              signer: keys.signing)
    }

    private func note(_ name: String, failure: RetractionFailure, now: UInt64) {
        health[name, default: ConnectorHealth()].failures += 1
        health[name, default: ConnectorHealth()].lastFailureAt = now
        health[name, default: ConnectorHealth()].lastError = failure.reason
        logger.warning("connector failed", metadata: ["connector": "\(name)", "reason": "\(failure.reason)"])
    }

    /// Staff confirmed they deleted the rows of exported file `name` (every row on its deletion
    /// lists so far); returns how many deletions that completed.
    func confirmFile(_ name: String) async throws(ConsentError) -> Int {
        await enter()
        defer { leave() }
        let known = ledger.trails.values.contains { $0.entry(.file(name)) != nil }
        guard known else { throw ConsentError(.malformed, "no record went into an exported file named \"\(name)\" (kithd hub retractions lists the files awaiting staff)") }
        var next = ledger
        let changed = next.confirmFile(name, nowMilliseconds: clock())
        do { try await commit([.trails(changed.map { ($0.key, $0.value.encoded) })]) } catch {
            throw ConsentError(.unavailable, "the hub could not store the confirmation: \(error)")
        }
        ledger = next
        logger.info("staff confirmed a file's deletions", metadata: ["file": "\(name)", "count": "\(changed.count)"])
        return changed.count
    }

    /// `kithd hub retractions`: every deletion not finished, oldest first, with its age.
    func retractionList() -> [[String: Any]] {
        let now = clock()
        return ledger.outstandingDeletions().map { item in
            var row: [String: Any] = [
                "grant": Base64URL.encode(item.key.grant), "member": item.key.member.description, "kithID": HubDelivery.kithID(item.key),
                "place": item.entry.place.description, "placeKind": "\(item.entry.place.kind)", "state": item.entry.state.label,
                "ageSeconds": (now &- item.requestedAt) / 1000, "attempts": item.entry.attempts,
                "overdue": now &- item.requestedAt > overdueAfter,
            ]
            if !item.entry.lastError.isEmpty { row["lastError"] = item.entry.lastError }
            if item.entry.place.kind == .file && !item.entry.externalID.isEmpty { row["deletionList"] = item.entry.externalID }
            return row
        }
    }

    /// Deletions outstanding and overdue, with the oldest overdue items (place and age) for `kithd hub status`.
    func deletionStatus() -> [String: Any] {
        let now = clock()
        let open = ledger.outstandingDeletions()
        let overdue = open.filter { now &- $0.requestedAt > overdueAfter }
        return ["outstanding": open.count, "overdue": overdue.count,
                "oldestAgeSeconds": open.map { (now &- $0.requestedAt) / 1000 }.max() ?? 0, "overdueAfterHours": overdueAfter / 3_600_000,
                "overdueItems": overdue.prefix(Self.overdueShown).map { item in
                    ["grant": Base64URL.encode(item.key.grant), "place": item.entry.place.description, "state": item.entry.state.label,
                     "ageSeconds": (now &- item.requestedAt) / 1000, "attempts": item.entry.attempts] as [String: Any]
                }]
    }

    /// Overdue deletions `kithd hub status` lists (oldest first; `kithd hub retractions` lists all).
    static let overdueShown = 10

    /// What is wrong now, in words (empty: healthy): the store refusing writes, a connector
    /// failing, deletions overdue.
    func healthProblems() -> [String] {
        var out: [String] = []
        if let storeFailure { out.append("the hub cannot store records: \(storeFailure)") }
        for c in connectors {
            let h = health[c.name] ?? ConnectorHealth()
            if !h.healthy { out.append("connector \(c.name) is failing: \(h.lastError)") }
        }
        let now = clock()
        let overdue = ledger.outstandingDeletions().filter { now &- $0.requestedAt > overdueAfter }.count
        if overdue > 0 { out.append("\(overdue) deletion\(overdue == 1 ? " is" : "s are") overdue") }
        return out
    }

    /// Records whether the latest write to the store failed; logs the change (once, not per write).
    func noteStore(failure error: (any Error)?) {
        switch (storeFailure, error) {
        case (nil, let e?):
            storeFailure = "\(e)"
            logger.error("the hub cannot store records; members are answered \"send it again later\"", metadata: ["reason": "\(e)"])
        case (_?, nil):
            storeFailure = nil
            logger.notice("the hub stores records again")
        case (_?, let e?):
            storeFailure = "\(e)"
        case (nil, nil):
            break
        }
    }

    func connectorStatus() -> [[String: Any]] {
        connectors.map { c in
            let h = health[c.name] ?? ConnectorHealth()
            var row: [String: Any] = ["name": c.name, "healthy": h.healthy, "delivered": h.delivered, "failures": h.failures]
            if h.lastSuccessAt > 0 { row["lastSuccessAt"] = h.lastSuccessAt }
            if !h.lastError.isEmpty { row["lastError"] = h.lastError }
            return row
        }
    }
}
