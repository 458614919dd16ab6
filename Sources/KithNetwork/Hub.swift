import Foundation
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
import KithStore
import KithSync
import Logging
import NIOCore
import NIOPosix

/// Where a hub keeps what it holds. SQLite (`SQLiteHubStorage`) by default; a PostgreSQL back
/// end implements the same few calls.
public protocol HubStorage: AnyObject {
    func records() throws -> [(record: [UInt8], receipt: [UInt8], chapterName: String)]
    func closedGrants() throws -> [[UInt8]: UInt64]
    func chapterOps() throws -> [ChapterID: [[UInt8]]]
    func put(grant: [UInt8], record: [UInt8], receipt: [UInt8], chapterName: String) throws
    func close(grant: [UInt8], version: UInt64) throws
    func putChapterOps(_ chapter: ChapterID, _ ops: [(id: [UInt8], bytes: [UInt8])]) throws
}

/// The default hub storage: the sealed-records table of a Kith store in the hub's directory.
public final class SQLiteHubStorage: HubStorage {
    let store: ContactStore

    public init(directory: String, keys: OrganizationKeys, storageKey: SymmetricKey) throws {
        store = try ContactStore(directory: directory, scope: ScopeID(name: "hub"), deviceKey: keys.signing, storageKey: storageKey, mode: .opaque)
    }

    public func records() throws -> [(record: [UInt8], receipt: [UInt8], chapterName: String)] {
        try store.records(.hubRecord).compactMap { r in
            var reader = ByteReader(r.bytes)
            guard let rec = try? reader.lengthPrefixed(max: 1 << 20), let rcp = try? reader.lengthPrefixed(max: 4_096),
                  let name = try? reader.text(max: 200) else { return nil }
            return (Array(rec), Array(rcp), name)
        }
    }

    public func closedGrants() throws -> [[UInt8]: UInt64] {
        var out: [[UInt8]: UInt64] = [:]
        for r in try store.records(.hubClosed) where r.bytes.count == 8 { out[r.id] = UInt64(bigEndianBytes: r.bytes) }
        return out
    }

    public func chapterOps() throws -> [ChapterID: [[UInt8]]] {
        var out: [ChapterID: [[UInt8]]] = [:]
        for r in try store.records(.hubChapterOp) where r.id.count == 48 {
            if let c = try? ChapterID(bytes: r.id[0..<16]) { out[c, default: []].append(r.bytes) }
        }
        return out
    }

    public func put(grant: [UInt8], record: [UInt8], receipt: [UInt8], chapterName: String) throws {
        var w = ByteWriter()
        w.lengthPrefixed(record)
        w.lengthPrefixed(receipt)
        w.text(chapterName)
        try store.putRecords(.hubRecord, [(grant, w.bytes)])
    }

    public func close(grant: [UInt8], version: UInt64) throws {
        try store.deleteRecords(.hubRecord, ids: [grant])
        var v: [UInt8] = []
        v.appendBigEndian(version)
        try store.putRecords(.hubClosed, [(grant, v)])
    }

    public func putChapterOps(_ chapter: ChapterID, _ ops: [(id: [UInt8], bytes: [UInt8])]) throws {
        try store.putRecords(.hubChapterOp, ops.map { (chapter.bytes + $0.id, $0.bytes) })
    }
}

/// An organization's hub: receives sealed upward records from members of affiliated chapters,
/// keeps them, deletes them on revocation or expiry, signs receipts, and exports what it holds.
public actor HubNode {
    public nonisolated let keys: OrganizationKeys
    private var ledger: HubLedger
    private var chapters: [ChapterID: MembershipLog] = [:]
    private let storage: any HubStorage
    private let logger: Logger
    private let clock: @Sendable () -> UInt64

    public init(keys: OrganizationKeys, storage: any HubStorage, logger: Logger, clock: @escaping @Sendable () -> UInt64 = ContactStore.systemClock) throws {
        self.keys = keys
        self.storage = storage
        self.logger = logger
        self.clock = clock
        var ledger = HubLedger(keys: keys)
        let closed = try storage.closedGrants()
        try ledger.restore(records: try storage.records(), closed: Array(closed.keys), versions: closed, nowMilliseconds: clock())
        self.ledger = ledger
        for (id, ops) in try storage.chapterOps() {
            if let log = try? MembershipLog(chapter: id, ops: ops) { chapters[id] = log }
        }
    }

    /// The hub's own certificate for the handshake: its organization key certifies its X25519 key.
    public nonisolated var certificate: DeviceCertificate {
        DeviceCertificate.issue(member: keys.signing, deviceSigningKey: keys.signing.publicKey, deviceAgreementKey: keys.agreement.publicKey,
                                createdAt: 1_700_000_000)
    }

    /// Merges a chapter's log a member sent; kept only if the chapter is affiliated with this hub.
    func receiveLog(chapter bytes: [UInt8], ops encoded: [[UInt8]]) {
        guard let id = try? ChapterID(bytes: bytes) else { return }
        do {
            var log = try chapters[id] ?? MembershipLog(chapter: id, ops: encoded)
            let added = try log.receive(encoded.map { try MembershipOp(decoding: $0) })
            guard log.state.affiliation?.signingKey == keys.signing.publicKey else { return }
            let new = chapters[id] == nil ? log.allOps : added
            chapters[id] = log
            try storage.putChapterOps(id, new.map { ($0.id.bytes, $0.encoded) })
        } catch {
            logger.warning("refused a chapter log", metadata: ["reason": "\(error)"])
        }
    }

    func accept(_ record: [UInt8]) throws(ConsentError) -> [UInt8] {
        let now = clock()
        let chapter = (try? UpwardRecord(encoded: record, nowSeconds: now / 1000)).flatMap { chapters[$0.grant.chapter]?.state }
        let receipt = try ledger.accept(record, chapter: chapter, nowMilliseconds: now)
        guard let held = ledger.held.values.first(where: { $0.receipt == receipt }) else { return receipt.encoded }
        do {
            try storage.put(grant: held.record.grant.id, record: held.record.encoded, receipt: receipt.encoded, chapterName: held.chapterName)
        } catch {
            throw ConsentError(.malformed, "the hub could not store the record: \(error)")
        }
        logger.info("record stored", metadata: ["grant": "\(Base64URL.encode(held.record.grant.id))", "version": "\(held.record.version)"])
        return receipt.encoded
    }

    func revoke(_ revocation: [UInt8]) throws(ConsentError) -> [UInt8] {
        let receipt = try ledger.revoke(revocation, nowMilliseconds: clock())
        do { try storage.close(grant: receipt.grantID, version: receipt.version) } catch {
            throw ConsentError(.malformed, "the hub could not delete the record: \(error)")
        }
        logger.info("record deleted on revocation", metadata: ["grant": "\(Base64URL.encode(receipt.grantID))"])
        return receipt.encoded
    }

    /// Deletes expired records (called periodically).
    public func expire() {
        for id in ledger.expire(nowMilliseconds: clock()) {
            try? storage.close(grant: id, version: ledger.highestVersion[id] ?? 0)
            logger.info("record deleted on expiry", metadata: ["grant": "\(Base64URL.encode(id))"])
        }
    }

    /// What the hub holds now, one row per record: for the organization's CRM.
    public func export() -> [[String: String]] {
        ledger.held.values.sorted { $0.record.grant.createdAt < $1.record.grant.createdAt }.map { h in
            var row: [String: String] = [
                "grant": Base64URL.encode(h.record.grant.id), "chapter": h.chapterName, "contact": h.record.grant.contact.description,
                "purpose": h.record.grant.purpose, "granted_by": h.record.grant.member.description,
                "expires": h.record.grant.expiresAt.map { String($0 / 1000) } ?? "", "rule": "\(h.rule)",
                "version": String(h.record.version),
            ]
            for (k, v) in h.values { row[k] = v }
            return row
        }
    }

    /// Serves one member connection: logs, records and revocations in, receipts out.
    nonisolated func serve(_ link: NoiseLink, label: String) async {
        do {
            while true {
                switch try await link.receive() {
                case let .membership(chapter, ops):
                    await receiveLog(chapter: chapter, ops: ops)
                case let .upward(record):
                    let answer: SyncMessage
                    do { answer = .receipt(try await accept(record)) } catch {
                        logger.warning("record refused", metadata: ["peer": "\(label)", "reason": "\(error.detail)"])
                        answer = .hubRefused(reason: error.detail)
                    }
                    try await link.send(answer)
                case let .revokeGrant(revocation):
                    let answer: SyncMessage
                    do { answer = .receipt(try await revoke(revocation)) } catch { answer = .hubRefused(reason: error.detail) }
                    try await link.send(answer)
                case .hello:
                    continue
                default:
                    throw NoiseLink.Failure(message: "unexpected message for a hub")
                }
            }
        } catch {
            logger.debug("hub connection ended", metadata: ["peer": "\(label)", "reason": "\(error)"])
        }
    }

    /// Listens for member connections on `host:port`; returns the bound port and the accept loop.
    public nonisolated func listen(host: String, port: Int) async throws -> (port: Int, serve: @Sendable () async -> Void) {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let bound = server.channel.localAddress?.port ?? port
        let hub = self, logger = self.logger, cert = certificate, agreement = keys.agreement
        return (bound, {
            do {
                try await server.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await child in inbound {
                            let label = child.channel.remoteAddress?.description ?? "member"
                            group.addTask {
                                try? await child.executeThenClose { i, o in
                                    let link = NoiseLink(inbound: i, outbound: o)
                                    try await link.handshake(role: .responder, staticKey: agreement, certificate: cert, now: ContactStore.systemClock() / 1000)
                                    await hub.serve(link, label: label)
                                }
                            }
                        }
                    }
                }
            } catch {
                if !Task.isCancelled { logger.error("hub listener stopped", metadata: ["reason": "\(error)"]) }
            }
        })
    }
}

extension HubNode {
    /// The hub's local control socket (`<hub-dir>/hub.sock`, 0600): one JSON line in
    /// (`{"op":"export"}`), one JSON line out (`{"ok":true,"rows":[…]}`), so a running hub can
    /// be exported without stopping it.
    public nonisolated func bindControl(path: String) async throws -> @Sendable () async -> Void {
        let hub = self
        return try await LocalSocket.bind(path: path, logger: logger, what: "hub control socket") { client in
            try? await client.executeThenClose { i, o in
                var buffer: [UInt8] = []
                for try await chunk in i {
                    buffer += chunk.readableBytesView
                    guard buffer.contains(0x0A) else { continue }
                    let request = (try? JSONSerialization.jsonObject(with: Data(buffer))) as? [String: Any]
                    let answer: [String: Any] = request?["op"] as? String == "export"
                        ? ["ok": true, "rows": await hub.export()]
                        : ["ok": false, "error": "the hub's control socket knows only {\"op\":\"export\"}"]
                    let data = (try? JSONSerialization.data(withJSONObject: answer, options: [.sortedKeys])) ?? Data()
                    try await o.write(ByteBuffer(bytes: Array(data) + [0x0A]))
                    return
                }
            }
        }
    }

    /// Asks a running hub for its export over its control socket; nil when none answers.
    public static func exportFromRunningHub(socket path: String) async -> [[String: String]]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(unixDomainSocketPath: path) { ch in
                    ch.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: ch) }
                }
        } catch {
            return nil
        }
        let data: Data? = try? await channel.executeThenClose { i, o in
            try await o.write(ByteBuffer(bytes: Array("{\"op\":\"export\"}\n".utf8)))
            var buffer: [UInt8] = []
            for try await chunk in i {
                buffer += chunk.readableBytesView
                if buffer.last == 0x0A { break }
            }
            return Data(buffer)
        }
        guard let data, let answer = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { return nil }
        return answer["rows"] as? [[String: String]]
    }
}
