import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The test's stand-in for Action Network (which this machine cannot reach): an in-process HTTP
/// server implementing the documented shapes of the API v2 calls the OSDI connector makes — the
/// person signup helper (`POST /api/v2/people/`, upsert by email, `add_tags`), `GET
/// /api/v2/tags/`, `GET /api/v2/people/{id}/taggings`, `DELETE /api/v2/tags/{tag}/taggings/{id}`,
/// `PUT /api/v2/people/{id}`, and `DELETE /api/v2/people/{id}` answered 405 as Action Network
/// does (people cannot be deleted over its API) — and recording every request it received. Faults
/// (a status, or no answer for a while) can be queued for the next requests.
final class OSDITestServer: @unchecked Sendable {
    // Everything below is guarded by `lock`: route handlers run on NIO threads.
    struct Person {
        var id: String
        var body: [String: Any]
        var emailStatus: String
        var phoneStatus: String
        var taggings: [String: String] = [:] // tagging id → tag id
    }

    struct Received {
        let method: String
        let path: String
        let token: String?
        let body: [String: Any]?
    }

    enum Fault { case status(Int), hang(Duration) }

    private let lock = NSLock()
    private var people: [String: Person] = [:]
    private var tags: [String: String] = [:] // tag id → name
    private var faults: [Fault] = []
    private var log: [Received] = []
    private var counter = 0
    let token = "test-osdi-token"
    var allowDeletingPeople = false
    private var task: Task<Void, any Error>?
    private(set) var port = 0

    var base: String { "http://127.0.0.1:\(port)/api/v2/" }

    func received() -> [Received] { lock.withLock { log } }
    func person(email: String) -> Person? {
        lock.withLock { people.values.first { (($0.body["email_addresses"] as? [[String: Any]])?.first?["address"] as? String) == email } }
    }
    var peopleCount: Int { lock.withLock { people.count } }
    func inject(_ f: [Fault]) { lock.withLock { faults += f } }
    func tagName(_ id: String) -> String? { lock.withLock { tags[id] } }

    private func nextID(_ kind: String) -> String {
        counter += 1
        return "\(kind)-\(counter)"
    }

    func start() async throws {
        let router = Router(context: BasicRequestContext.self)
        router.post("/api/v2/people") { request, _ in try await self.handle(request, "POST", "/api/v2/people/", nil) }
        router.get("/api/v2/tags") { request, _ in try await self.handle(request, "GET", "/api/v2/tags/", nil) }
        router.get("/api/v2/people/:id/taggings") { request, c in try await self.handle(request, "GET", "taggings", [c.parameters.get("id") ?? ""]) }
        router.put("/api/v2/people/:id") { request, c in try await self.handle(request, "PUT", "person", [c.parameters.get("id") ?? ""]) }
        router.delete("/api/v2/people/:id") { request, c in try await self.handle(request, "DELETE", "person", [c.parameters.get("id") ?? ""]) }
        router.delete("/api/v2/tags/:tag/taggings/:id") { request, c in
            try await self.handle(request, "DELETE", "tagging", [c.parameters.get("tag") ?? "", c.parameters.get("id") ?? ""])
        }
        let bound = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { bound.continuation.yield($0.localAddress?.port ?? 0) }, logger: quiet)
        task = Task { try await app.runService() }
        for await p in bound.stream {
            port = p
            break
        }
    }

    func stop() async {
        task?.cancel()
        _ = try? await task?.value
    }

    private func json(_ status: HTTPResponse.Status, _ value: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: value)) ?? Data()
        return Response(status: status, headers: [.contentType: "application/hal+json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    private func handle(_ request: Request, _ method: String, _ route: String, _ ids: [String]?) async throws -> Response {
        let bytes = try await request.body.collect(upTo: 1 << 20)
        let body = try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView)) as? [String: Any]
        let token = request.headers[HTTPField.Name("OSDI-API-Token")!]
        let fault: Fault? = lock.withLock {
            log.append(Received(method: method, path: request.uri.path, token: token, body: body))
            return faults.isEmpty ? nil : faults.removeFirst()
        }
        switch fault {
        case let .status(code)?: return json(HTTPResponse.Status(code: code), ["error": "injected fault \(code)"])
        case let .hang(d)?:
            try? await Task.sleep(for: d)
            return json(.serviceUnavailable, ["error": "too late"])
        case nil: break
        }
        guard token == self.token else { return json(.unauthorized, ["error": "API Key invalid or not present"]) }
        return lock.withLock { self.dispatch(method, route, ids ?? [], body) }
    }

    private func personJSON(_ p: Person) -> [String: Any] {
        var out = p.body
        out["identifiers"] = ["action_network:\(p.id)"] + ((p.body["identifiers"] as? [String]) ?? [])
        out["_links"] = ["self": ["href": base + "people/\(p.id)"], "osdi:taggings": ["href": base + "people/\(p.id)/taggings"]]
        return out
    }

    /// Called with `lock` held.
    private func dispatch(_ method: String, _ route: String, _ ids: [String], _ body: [String: Any]?) -> Response {
        switch (method, route) {
        case ("POST", "/api/v2/people/"):
            guard let person = body?["person"] as? [String: Any],
                  let email = (person["email_addresses"] as? [[String: Any]])?.first?["address"] as? String else {
                return json(.badRequest, ["error": "You must specify a valid person with an email address"])
            }
            var p = people.values.first { (($0.body["email_addresses"] as? [[String: Any]])?.first?["address"] as? String) == email }
                ?? Person(id: nextID("person"), body: person, emailStatus: "subscribed", phoneStatus: "subscribed")
            p.body = person
            // Action Network's default for a new person is "subscribed"; the status sent wins.
            p.emailStatus = (person["email_addresses"] as? [[String: Any]])?.first?["status"] as? String ?? p.emailStatus
            p.phoneStatus = (person["phone_numbers"] as? [[String: Any]])?.first?["status"] as? String ?? p.phoneStatus
            for name in body?["add_tags"] as? [String] ?? [] {
                let tag = tags.first { $0.value == name }?.key ?? {
                    let t = nextID("tag")
                    tags[t] = name
                    return t
                }()
                if !p.taggings.values.contains(tag) { p.taggings[nextID("tagging")] = tag }
            }
            people[p.id] = p
            return json(.ok, personJSON(p))
        case ("GET", "/api/v2/tags/"):
            return json(.ok, ["_embedded": ["osdi:tags": tags.sorted { $0.key < $1.key }.map { ["name": $0.value, "_links": ["self": ["href": base + "tags/\($0.key)"]]] }]])
        case ("GET", "taggings"):
            guard let p = people[ids[0]] else { return json(.notFound, ["error": "no such person"]) }
            return json(.ok, ["_embedded": ["osdi:taggings": p.taggings.map { id, tag in
                ["_links": ["self": ["href": base + "tags/\(tag)/taggings/\(id)"], "osdi:tag": ["href": base + "tags/\(tag)"],
                            "osdi:person": ["href": base + "people/\(p.id)"]]]
            }]])
        case ("DELETE", "tagging"):
            guard let pid = people.first(where: { $0.value.taggings[ids[1]] == ids[0] })?.key else { return json(.notFound, ["error": "no such tagging"]) }
            people[pid]?.taggings[ids[1]] = nil
            return json(.ok, ["notice": "This tagging was successfully deleted."])
        case ("PUT", "person"):
            guard var p = people[ids[0]] else { return json(.notFound, ["error": "no such person"]) }
            if let s = (body?["email_addresses"] as? [[String: Any]])?.first?["status"] as? String { p.emailStatus = s }
            if let s = (body?["phone_numbers"] as? [[String: Any]])?.first?["status"] as? String { p.phoneStatus = s }
            people[p.id] = p
            return json(.ok, personJSON(p))
        case ("DELETE", "person"):
            guard allowDeletingPeople else { return json(.methodNotAllowed, ["error": "People cannot be deleted via the API"]) }
            guard people.removeValue(forKey: ids[0]) != nil else { return json(.notFound, ["error": "no such person"]) }
            return json(.ok, ["notice": "deleted"])
        default:
            return json(.notFound, ["error": "no such route"])
        }
    }
}
