import Foundation
import KithConsent
import KithCrypto
import NIOCore
import NIOPosix

/// The hub's streamed export (`kithd hub export`): every held record, read from the store a page
/// at a time (keyset pagination on the row id, `HubStorage.heldPage`), opened and encoded on
/// every core while the next page is read, and handed to a sink chunk by chunk. Memory holds a
/// page or two, whatever the number of records; the hub's writes run between pages.
///
/// Rows come in id order (`member ‖ grant id`), the same on SQLite and PostgreSQL.
public enum HubExportStream {
    /// Rows read per page.
    public static let pageSize = 2_000

    /// A CSV export's field columns: every field a member can share.
    public static var fieldColumns: [String] { ShareableField.allCases.map(\.rawValue) }

    /// What an export did.
    public struct Summary: Sendable, Equatable {
        public var rows = 0
        /// Held rows that did not parse or open (left out; the store is damaged or not this organization's).
        public var unreadable = 0
        /// Rows left out because the hub closed their grant while the export ran.
        public var skippedClosed = 0

        public init(rows: Int = 0, unreadable: Int = 0, skippedClosed: Int = 0) {
            self.rows = rows
            self.unreadable = unreadable
            self.skippedClosed = skippedClosed
        }
    }

    /// Walks every held record: `page` gets each page's rows, decoded (on every core), in id order.
    /// `keep`, when given, says which row ids to keep (a running hub drops the rows of grants it
    /// closed whose deletion is still being written).
    public static func rows(storage: any HubStorage, organization: X25519.PrivateKey, pageSize: Int = pageSize,
                            keep: (@Sendable ([[UInt8]]) async -> [Bool])? = nil,
                            page: ([HubExport.Row]) async throws -> Void) async throws -> Summary {
        var summary = Summary()
        try await pages(storage: storage, pageSize: pageSize) { rows in
            let kept = try await filter(rows, keep: keep, summary: &summary)
            let decoded = await parallel(kept) { slice in
                slice.map { try? HubExport.row(id: $0.id, held: $0.bytes, organization: organization) }
            }
            let good = decoded.compactMap { $0 }
            summary.unreadable += decoded.count - good.count
            summary.rows += good.count
            try await page(good)
        }
        return summary
    }

    /// Writes the export in `format` to `sink`, one chunk of bytes at a time (the header with the
    /// first rows; the footer last); never an empty chunk.
    public static func write(storage: any HubStorage, organization: X25519.PrivateKey, format: HubExport.Format, pageSize: Int = pageSize,
                             keep: (@Sendable ([[UInt8]]) async -> [Bool])? = nil,
                             sink: ([UInt8]) async throws -> Void) async throws -> Summary {
        let writer = HubExport.Writer(format: format, fieldColumns: fieldColumns)
        var summary = Summary()
        var chunk = writer.header()
        try await pages(storage: storage, pageSize: pageSize) { rows in
            let kept = try await filter(rows, keep: keep, summary: &summary)
            // Each slice is opened and encoded on its own core, then joined in order.
            let encoded = await parallel(kept) { slice -> [(bytes: [UInt8], rows: Int, unreadable: Int)] in
                var out: [UInt8] = []
                out.reserveCapacity(slice.count * 400)
                var n = 0, bad = 0
                for r in slice {
                    guard let row = try? HubExport.row(id: r.id, held: r.bytes, organization: organization) else {
                        bad += 1
                        continue
                    }
                    writer.append(row, to: &out)
                    n += 1
                }
                return [(out, n, bad)]
            }
            for part in encoded {
                chunk += summary.rows == 0 ? part.bytes.dropFirst(part.rows > 0 ? writer.firstRowDrops : 0) : part.bytes[...]
                summary.rows += part.rows
                summary.unreadable += part.unreadable
            }
            if !chunk.isEmpty { try await sink(chunk) }
            chunk = []
        }
        let last = chunk + writer.footer(empty: summary.rows == 0)
        if !last.isEmpty { try await sink(last) }
        return summary
    }

    /// Reads page after page, the next one while `body` works on the current one.
    static func pages(storage: any HubStorage, pageSize: Int, _ body: ([(id: [UInt8], bytes: [UInt8])]) async throws -> Void) async throws {
        let size = max(1, pageSize)
        var current = try await storage.heldPage(after: nil, limit: size)
        while !current.isEmpty {
            let last = current[current.count - 1].id
            let more = current.count == size
            async let next = more ? storage.heldPage(after: last, limit: size) : []
            do {
                try await body(current)
            } catch {
                _ = try? await next
                throw error
            }
            current = try await next
        }
    }

    private static func filter(_ rows: [(id: [UInt8], bytes: [UInt8])], keep: (@Sendable ([[UInt8]]) async -> [Bool])?,
                               summary: inout Summary) async throws -> [(id: [UInt8], bytes: [UInt8])] {
        guard let keep else { return rows }
        let flags = await keep(rows.map(\.id))
        let kept = zip(rows, flags).filter(\.1).map(\.0)
        summary.skippedClosed += rows.count - kept.count
        return kept
    }

    /// `work` over `rows` split in one slice per core, run in parallel; the results in order.
    static func parallel<T: Sendable>(_ rows: [(id: [UInt8], bytes: [UInt8])],
                                      _ work: @escaping @Sendable (ArraySlice<(id: [UInt8], bytes: [UInt8])>) -> [T]) async -> [T] {
        let cores = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8))
        guard rows.count > 64, cores > 1 else { return work(rows[...]) }
        let per = (rows.count + cores - 1) / cores
        let shared = rows
        return await withTaskGroup(of: (Int, [T]).self) { group in
            for (i, start) in stride(from: 0, to: shared.count, by: per).enumerated() {
                group.addTask { (i, work(shared[start..<min(start + per, shared.count)])) }
            }
            var parts: [(Int, [T])] = []
            for await p in group { parts.append(p) }
            return parts.sorted { $0.0 < $1.0 }.flatMap(\.1)
        }
    }
}

// MARK: The running hub's export, over its control socket

/// The framing of a streamed export on the hub's control socket (after the request line
/// `{"op":"export","format":"json|jsonl|csv"}`): a JSON line `{"ok":true,"stream":"chunks"}`
/// (or `{"ok":false,"error":…}` and nothing more), then chunks, each `<length in hex>\n` and
/// that many bytes, then `0\n` and a JSON trailer line: `{"ok":true,"rows":n,"unreadable":n}` or
/// `{"ok":false,"error":…}` when the export failed part way (what came before is incomplete).
/// Sans I/O: feed it bytes as they come.
public struct ExportStreamDecoder: Sendable {
    public struct Trailer: Sendable, Equatable {
        public var ok: Bool
        public var error: String
        public var rows: Int
        public var unreadable: Int
    }

    public enum Event: Sendable, Equatable {
        /// Export bytes, in order.
        case bytes([UInt8])
        /// The end: the hub's trailer, or its refusal.
        case end(Trailer)
    }

    private enum State { case header, size, body(Int), trailer, done }
    private var state = State.header
    private var buffer: [UInt8] = []
    /// A size line or JSON line longer than this is not the hub speaking.
    static let maxLine = 64 * 1024

    public init() {}

    public var isDone: Bool { if case .done = state { return true } else { return false } }

    /// The events `bytes` completes.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws -> [Event] {
        buffer += bytes
        var events: [Event] = []
        var at = 0
        loop: while true {
            switch state {
            case .done:
                break loop
            case let .body(n):
                let take = min(n, buffer.count - at)
                if take > 0 { events.append(.bytes(Array(buffer[at..<(at + take)]))) }
                at += take
                state = n - take == 0 ? .size : .body(n - take)
                if n - take > 0 { break loop }
            case .header, .size, .trailer:
                guard let nl = buffer[at...].firstIndex(of: 0x0A) else {
                    guard buffer.count - at <= Self.maxLine else { throw ExportStreamError("the hub's export stream has a line longer than \(Self.maxLine) bytes") }
                    break loop
                }
                let line = Array(buffer[at..<nl])
                at = nl + 1
                switch state {
                case .header:
                    let j = try Self.json(line)
                    if j.ok {
                        state = .size
                    } else {
                        events.append(.end(j))
                        state = .done
                    }
                case .size:
                    guard let n = Int(String(decoding: line, as: UTF8.self), radix: 16), n >= 0, n <= 1 << 30 else {
                        throw ExportStreamError("the hub's export stream has a bad chunk size")
                    }
                    state = n == 0 ? .trailer : .body(n)
                default:
                    events.append(.end(try Self.json(line)))
                    state = .done
                }
            }
        }
        buffer.removeFirst(at)
        return events
    }

    /// A header or trailer line.
    static func json(_ line: [UInt8]) throws -> Trailer {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
            throw ExportStreamError("the hub's export stream has a line that is not a JSON object")
        }
        return Trailer(ok: o["ok"] as? Bool ?? false, error: o["error"] as? String ?? "", rows: (o["rows"] as? NSNumber)?.intValue ?? 0,
                       unreadable: (o["unreadable"] as? NSNumber)?.intValue ?? 0)
    }
}

public struct ExportStreamError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension HubNode {
    /// The format of a streamed-export request line (`{"op":"export","format":…}`), or nil when the
    /// line asks for something else.
    nonisolated static func exportRequest(_ line: Data) -> HubExport.Format? {
        guard let o = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any], o["op"] as? String == "export" else { return nil }
        return HubExport.Format(rawValue: o["format"] as? String ?? "json") ?? .json
    }

    /// Which of these held-row ids are of grants still open (a closed grant's row may still be
    /// in the store while its deletion is being written).
    func stillOpen(_ ids: [[UInt8]]) -> [Bool] {
        ids.map { id in HubStoreSchema.decodeGrantKey(id).map { !ledger.closed.contains($0) } ?? false }
    }

    /// Every held record as a row of cells, in id order (for tests and small tools; an export of
    /// any size streams: `HubExportStream.write`).
    public func export() async throws -> [[String: String]] {
        var out: [[String: String]] = []
        let hub = self
        _ = try await HubExportStream.rows(storage: storage, organization: keys.agreement, keep: { await hub.stillOpen($0) }) { page in
            out += page.map(\.cells)
        }
        return out
    }

    /// Streams the export to a control-socket client (framing: `ExportStreamDecoder`); the
    /// client's reading paces it.
    nonisolated func streamExport(_ format: HubExport.Format, to o: NIOAsyncChannelOutboundWriter<ByteBuffer>) async throws {
        try await o.write(ByteBuffer(string: "{\"ok\":true,\"stream\":\"chunks\"}\n"))
        let hub = self
        let trailer: [String: Any]
        do {
            let s = try await HubExportStream.write(storage: storage, organization: keys.agreement, format: format, keep: { await hub.stillOpen($0) }) { chunk in
                guard !chunk.isEmpty else { return } // a zero length ends the stream
                try await o.write(ByteBuffer(string: String(chunk.count, radix: 16) + "\n"))
                try await o.write(ByteBuffer(bytes: chunk))
            }
            trailer = ["ok": true, "rows": s.rows, "unreadable": s.unreadable]
            logger.info("export streamed", metadata: ["rows": "\(s.rows)", "unreadable": "\(s.unreadable)", "format": "\(format.rawValue)"])
        } catch {
            logger.error("export failed", metadata: ["reason": "\(error)"])
            trailer = ["ok": false, "error": "the export stopped: \(error)"]
        }
        try await o.write(ByteBuffer(bytes: Array("0\n".utf8) + Array(Self.json(trailer)) + [0x0A]))
    }

    /// Exports from the hub running on `socket` into `sink`; nil when no hub answers there.
    /// Throws when the hub refuses or the export fails part way.
    public static func exportFromRunningHub(socket path: String, format: HubExport.Format,
                                            sink: @escaping @Sendable ([UInt8]) throws -> Void) async throws -> HubExportStream.Summary? {
        guard let channel = await connectControl(socket: path) else { return nil }
        let request = Array(json(["op": "export", "format": format.rawValue])) + [0x0A]
        return try await channel.executeThenClose { i, o in
            try await o.write(ByteBuffer(bytes: request))
            var decoder = ExportStreamDecoder()
            for try await chunk in i {
                for event in try decoder.feed(chunk.readableBytesView) {
                    switch event {
                    case let .bytes(b):
                        try sink(b)
                    case let .end(trailer):
                        guard trailer.ok else { throw ExportStreamError(trailer.error.isEmpty ? "the hub refused the export" : trailer.error) }
                        return HubExportStream.Summary(rows: trailer.rows, unreadable: trailer.unreadable)
                    }
                }
            }
            throw ExportStreamError("the hub closed its control socket before the export ended (it stopped?)")
        }
    }
}
