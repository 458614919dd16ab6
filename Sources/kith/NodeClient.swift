import Foundation
import KithCRDT
import KithCrypto
import KithInterchange
import KithNetwork
import KithNode
import KithQuery
import KithStore
import NIOCore
import NIOHTTP1

/// What the contact commands need from a node. With kithd running it is `APIClient` (the local
/// HTTP API: the daemon answers from the state it holds); without, `LocalClient` opens the store
/// and answers with the same `ContactQueries`, so both print the same thing.
protocol ContactClient: AnyObject {
    func page(q: String?, tag: String?, limit: Int?, cursor: String?, merged: Bool, scope: String?) throws -> ContactPage
    func show(_ reference: String, merged: Bool, scope: String?) throws -> ContactDTO
    func apply(_ patch: ContactPatch, to reference: String?) throws -> ContactDTO
    func delete(_ reference: String, forget: Bool) throws -> String
    func commitEdits(_ batches: [[ContactEdit]]) throws
    func export(format: String) throws -> (text: String, count: Int)
    /// What an import matches against: every contact the node holds (ImportExport.swift).
    func importMatcher() throws -> ImportMatcher
    /// The import is over (the local store writes its snapshot once, not during the import).
    func importFinished()
}

/// The running kithd's local HTTP API (Protocol/api.md), from `<data-dir>/kithd.api` and
/// `<data-dir>/api-key`.
final class APIClient: ContactClient {
    let base: String
    let host: String
    let port: Int
    let key: String

    struct Refused: Error, CustomStringConvertible {
        let status: Int
        let code: String
        let message: String
        let candidates: [String]
        var description: String { candidates.isEmpty ? message : message + "\n" + candidates.map { "  " + $0 }.joined(separator: "\n") }
    }

    struct Unreachable: Error {}

    /// Nil when no daemon has written its address (kithd is not running).
    init?(directory: DataDirectory) throws {
        guard let address = APIKey.address(in: directory) else { return nil }
        base = "http://" + address
        guard let colon = address.lastIndex(of: ":"), let p = Int(address[address.index(after: colon)...]) else {
            throw CLIFailure(message: "\(APIKey.addressPath(directory)) does not hold host:port; stop kithd, delete it and start kithd again")
        }
        var h = String(address[..<colon])
        if h.hasPrefix("["), h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        host = h
        port = p
        key = try APIKey.load(from: directory)
    }

    static func encode(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .urlQueryValueAllowed) ?? s
    }

    /// Performs `op` (an `APIRoute`) with `fields`; returns the raw answer body.
    func send(_ op: String, _ fields: [String: Any] = [:], body: Data? = nil) throws -> (status: Int, body: Data, type: String) {
        guard let route = APIRoute.route(for: op) else { throw CLIFailure(message: "internal: no API route for \(op)") }
        var rest = fields
        var path = route.path
        for name in route.parameters {
            let value = (rest.removeValue(forKey: name) as? String).flatMap { $0.isEmpty ? nil : $0 } ?? (name == "chapter" ? APIRoute.onlyChapter : "")
            path = path.replacingOccurrences(of: "{\(name)}", with: value.addingPercentEncoding(withAllowedCharacters: .urlPathAllowedSegment) ?? value)
        }
        var payload = body
        if route.usesQuery {
            let query = rest.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.encode("\($0.value)"))" }.joined(separator: "&")
            if !query.isEmpty { path += "?" + query }
        } else if payload == nil {
            payload = try JSONSerialization.data(withJSONObject: rest)
        }
        var headers = [("X-API-Key", key)]
        if payload != nil { headers.append(("Content-Type", "application/json")) }
        let response: LocalHTTP.Response
        do {
            response = try LocalHTTP.exchange(host: host, port: port, method: HTTPMethod(rawValue: route.method.rawValue), path: path,
                                              headers: headers, body: payload.map { Array($0) },
                                              timeout: .seconds(op == "chapter-join" ? 120 : 60))
        } catch {
            switch error {
            case .refused: throw Unreachable()
            case .timedOut: throw CLIFailure(message: "kithd's API at \(base) did not answer in time")
            case let .other(reason): throw CLIFailure(message: "kithd's API at \(base): \(reason)")
            }
        }
        let data = Data(response.body)
        let status = response.status
        guard (200..<300).contains(status) else {
            let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            throw Refused(status: status, code: object?["code"] as? String ?? "http_\(status)",
                          message: object?["message"] as? String ?? "kithd answered HTTP \(status)",
                          candidates: object?["candidates"] as? [String] ?? [])
        }
        return (status, data, response.headers.first(name: "Content-Type") ?? "")
    }

    /// An administrative op's JSON answer.
    func call(_ op: String, _ fields: [String: Any] = [:]) throws -> [String: Any] {
        let (_, data, _) = try send(op, fields)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw CLIFailure(message: "kithd sent an unreadable answer")
        }
        return object
    }

    func typed<T: Decodable>(_ type: T.Type, _ op: String, _ fields: [String: Any] = [:], body: Data? = nil) throws -> T {
        let (_, data, _) = try send(op, fields, body: body)
        do { return try JSONDecoder().decode(T.self, from: data) } catch {
            throw CLIFailure(message: "kithd sent an answer this kith does not understand (\(error)); are kith and kithd the same version?")
        }
    }

    func page(q: String?, tag: String?, limit: Int?, cursor: String?, merged: Bool, scope: String?) throws -> ContactPage {
        var f: [String: Any] = [:]
        if let q { f["q"] = q }
        if let tag { f["tag"] = tag }
        if let limit { f["limit"] = limit }
        if let cursor { f["cursor"] = cursor }
        if merged { f["merged"] = "true" }
        if let scope { f["scope"] = scope }
        return try typed(ContactPage.self, "contact-list", f)
    }

    func show(_ reference: String, merged: Bool, scope: String?) throws -> ContactDTO {
        var f: [String: Any] = ["contact": reference]
        if merged { f["merged"] = "true" }
        if let scope { f["scope"] = scope }
        return try typed(ContactDTO.self, "contact-show", f)
    }

    func apply(_ patch: ContactPatch, to reference: String?) throws -> ContactDTO {
        let body = try JSONEncoder().encode(patch)
        if let reference { return try typed(ContactDTO.self, "contact-patch", ["contact": reference], body: body) }
        return try typed(ContactDTO.self, "contact-add", [:], body: body)
    }

    func delete(_ reference: String, forget: Bool) throws -> String {
        let answer = try call("contact-delete", forget ? ["contact": reference, "forget": "true"] : ["contact": reference])
        return answer["id"] as? String ?? reference
    }

    func commitEdits(_ batches: [[ContactEdit]]) throws {
        _ = try call("edits", ["batches": batches.map { $0.map { Base64URL.encode($0.encoded) } }])
    }

    func export(format: String) throws -> (text: String, count: Int) {
        let (_, data, _) = try send("export", ["format": format])
        let text = String(decoding: data, as: UTF8.self)
        let marker = format.lowercased() == "csv" ? "\n" : "BEGIN:VCARD"
        return (text, max(0, text.components(separatedBy: marker).count - 1 - (format.lowercased() == "csv" ? 1 : 0)))
    }
}

/// The daemon's API, or — when no daemon answers (none wrote its address, or the one that did
/// is gone: connection refused, so nothing was sent) — the store opened here.
final class AutoClient: ContactClient {
    private let api: APIClient?
    private let openLocal: () throws -> LocalClient
    private var local: LocalClient?

    init(api: APIClient?, openLocal: @escaping () throws -> LocalClient) {
        self.api = api
        self.openLocal = openLocal
    }

    private func run<T>(_ body: (any ContactClient) throws -> T) throws -> T {
        if let api, local == nil {
            do { return try body(api) } catch is APIClient.Unreachable {}
        }
        if local == nil { local = try openLocal() }
        return try body(local!)
    }

    func page(q: String?, tag: String?, limit: Int?, cursor: String?, merged: Bool, scope: String?) throws -> ContactPage {
        try run { try $0.page(q: q, tag: tag, limit: limit, cursor: cursor, merged: merged, scope: scope) }
    }
    func show(_ reference: String, merged: Bool, scope: String?) throws -> ContactDTO { try run { try $0.show(reference, merged: merged, scope: scope) } }
    func apply(_ patch: ContactPatch, to reference: String?) throws -> ContactDTO { try run { try $0.apply(patch, to: reference) } }
    func delete(_ reference: String, forget: Bool) throws -> String { try run { try $0.delete(reference, forget: forget) } }
    func commitEdits(_ batches: [[ContactEdit]]) throws { try run { try $0.commitEdits(batches) } }
    func export(format: String) throws -> (text: String, count: Int) { try run { try $0.export(format: format) } }
    func importMatcher() throws -> ImportMatcher { try run { try $0.importMatcher() } }
    func importFinished() { local?.importFinished() }
}

/// No kithd: the CLI opens the store itself (under its lock) and answers with `ContactQueries`.
final class LocalClient: ContactClient {
    let store: ContactStore
    let directory: DataDirectory
    private let indexCache = ContactIndexCache()

    init(store: ContactStore, directory: DataDirectory) {
        self.store = store
        self.directory = directory
    }

    /// Loaded from the snapshot's index section when it has one; saved in the snapshot the
    /// store writes when it closes.
    var index: ContactIndex { store.currentIndex(indexCache) }

    func localOnly(_ scope: String?) throws {
        if let scope, scope != "private" { throw CLIFailure(message: daemonNotRunning(directory, detail: "chapter maps are read from it")) }
    }

    func page(q: String?, tag: String?, limit: Int?, cursor: String?, merged: Bool, scope: String?) throws -> ContactPage {
        try localOnly(scope)
        return try ContactQueries.page(store.replica, index, q: q, tag: tag, limit: limit, cursor: cursor, merged: merged)
    }

    func show(_ reference: String, merged: Bool, scope: String?) throws -> ContactDTO {
        try localOnly(scope)
        return try ContactQueries.show(reference, store.replica, index, merged: merged)
    }

    func apply(_ patch: ContactPatch, to reference: String?) throws -> ContactDTO {
        let (id, edits) = try ContactQueries.edits(patch, to: reference, store.replica, index, nowMilliseconds: ContactStore.systemClock())
        try store.commit(batches: [edits])
        guard let c = store.replica.contact(id) else { throw CLIFailure(message: "the contact is not visible after the change") }
        return ContactDTO(c)
    }

    func delete(_ reference: String, forget: Bool) throws -> String {
        let edits = try ContactQueries.deletion(reference, store.replica, index, forget: forget)
        try store.commit(batches: [edits])
        return edits[0].contact.description
    }

    func commitEdits(_ batches: [[ContactEdit]]) throws {
        try store.commit(batches: batches)
    }

    func export(format: String) throws -> (text: String, count: Int) {
        let contacts = store.replica.contacts()
        guard let (text, _) = Interchange.export(contacts, format: format) else {
            throw CLIFailure(message: "unknown --format '\(format)' (formats: \(Interchange.exportFormats.joined(separator: ", ")))")
        }
        return (text, contacts.count)
    }
}

extension CharacterSet {
    static let urlPathAllowedSegment: CharacterSet = {
        var s = CharacterSet.urlPathAllowed
        s.remove(charactersIn: "/?#")
        return s
    }()

    static let urlQueryValueAllowed: CharacterSet = {
        var s = CharacterSet.urlQueryAllowed
        s.remove(charactersIn: "&=+?#")
        return s
    }()
}

/// The running kithd's API, or exits with a clear message when it is not running.
func daemonClient(_ data: DataDirOption) throws -> APIClient {
    guard let client = try failing({ try APIClient(directory: data.directory) }) else {
        fail(daemonNotRunning(data.directory, detail: "no kithd has written its address to \(APIKey.addressPath(data.directory))"))
    }
    return client
}

/// "`kith peers` needs kithd running for DIR …; start it with: kithd --data-dir DIR".
func daemonNotRunning(_ dir: DataDirectory, detail: String) -> String {
    "`\(GlobalOptions.commandName)` needs kithd running for \(dir.path), and it is not (\(detail)); "
        + "start it with: kithd --data-dir \(dir.path)   (or, with the systemd unit: sudo systemctl start kithd)"
}

/// Sends one administrative request to the running kithd and returns its answer, or exits with its error.
func daemonRequest(_ data: DataDirOption, _ request: [String: Any]) throws -> [String: Any] {
    let client = try daemonClient(data)
    let op = request["op"] as? String ?? ""
    var fields = request
    fields["op"] = nil
    return try failing {
        do { return try client.call(op, fields) } catch is APIClient.Unreachable {
            throw CLIFailure(message: daemonNotRunning(data.directory, detail: "its API at \(client.base) refused the connection"))
        }
    }
}
