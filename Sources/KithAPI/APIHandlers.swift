import Foundation
import HTTPTypes
import Hummingbird
import KithCRDT
import KithCrypto
import KithInterchange
import KithNetwork
import KithQuery
import NIOCore

/// What each route does: typed contact queries and edits on the node, the other operations
/// through `NodeCommands` with the route's path, query and body fields merged.
struct APIHandlers: Sendable {
    let node: SyncNode
    let commands: NodeCommands
    let configuration: APIConfiguration
    let sessions: APISessions

    func respond(_ route: APIRoute, _ request: Request, _ context: KithRequestContext) async throws -> Response {
        var request = request
        var fields: [String: Any] = [:]
        // Query parameters carry a GET's or DELETE's fields; a route with a body takes its fields
        // from the body only (a stray `?approve=true` must not be read as text and ignored).
        if route.usesQuery {
            for (name, value) in request.uri.queryParameters { fields[String(name)] = String(value) }
        } else if !request.uri.queryParameters.isEmpty {
            throw APIError(.badRequest, "invalid_request", "\(route.method.rawValue) \(route.path) takes its fields in the JSON body, not the query string")
        }
        for name in route.parameters {
            guard let value = context.parameters.get(name) else { continue }
            fields[name] = value.removingPercentEncoding ?? value
        }
        var body = ByteBuffer()
        if !route.usesQuery {
            let limit = route.op == "edits" ? configuration.maxEditsBody : configuration.maxBody
            do {
                body = try await request.collectBody(upTo: limit)
            } catch {
                throw APIError(.contentTooLarge, "too_large", "the request body is larger than \(limit) bytes")
            }
            if body.readableBytes > 0, !isTyped(route.op) {
                guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else {
                    throw APIError(.badRequest, "invalid_json", "the body must be one JSON object")
                }
                for (k, v) in object where fields[k] == nil { fields[k] = v }
            }
        }
        if fields["chapter"] as? String == APIRoute.onlyChapter { fields["chapter"] = nil }
        switch route.op {
        case "contact-list":
            let page = try await node.contactPage(scope: fields["scope"] as? String, q: fields["q"] as? String, tag: fields["tag"] as? String,
                                                  limit: try int(fields, "limit"), cursor: fields["cursor"] as? String,
                                                  merged: bool(fields, "merged"))
            return try APIServer.json(encodable: page)
        case "contact-show":
            let c = try await node.contactDetails(scope: fields["scope"] as? String, reference: fields["contact"] as? String ?? "",
                                                  merged: bool(fields, "merged"))
            return try APIServer.json(encodable: c)
        case "contact-add":
            return try APIServer.json(encodable: try await node.applyPatch(try decode(ContactPatch.self, body), to: nil), status: .created)
        case "contact-patch":
            return try APIServer.json(encodable: try await node.applyPatch(try decode(ContactPatch.self, body), to: fields["contact"] as? String))
        case "contact-delete":
            let id = try await node.deleteContact(fields["contact"] as? String ?? "", forget: bool(fields, "forget"))
            return APIServer.json(["id": id, bool(fields, "forget") ? "forgotten" : "deleted": true])
        case "edits":
            let batches = try decode(EditBatches.self, body).decoded()
            try await node.commitEdits(batches)
            return APIServer.json(["changes": batches.filter { !$0.isEmpty }.count, "contacts": batches.reduce(0) { $0 + $1.count }])
        case "changes":
            return try await changes(fields)
        case "export":
            let format = (fields["format"] as? String ?? "vcard").lowercased()
            let contacts = await node.allContacts()
            guard let (text, type) = Interchange.export(contacts, format: format) else {
                throw APIError(.badRequest, "invalid_request", "unknown format '\(format)' (formats: \(Interchange.exportFormats.joined(separator: ", ")))")
            }
            return Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-store"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        case "events":
            return events(session: APIGuard.sessionCookie(request.headers[.cookie]).flatMap { APIGuard.presentedKey(request) == nil ? $0 : nil })
        case "session-open":
            return try await openSession(body)
        case "session-link":
            // Only with the API key (the local user's secret), never from a browser session (which
            // may carry some other Authorization header, e.g. Basic: that is no key).
            guard APIGuard.presentedKey(request) != nil else {
                throw APIError(.forbidden, "refused", "login links are made with the API key (kith open), not from a browser session")
            }
            let link = sessions.makeLink()
            return APIServer.json(["path": "/login/link?token=" + link, "expiresIn": Int(APISessions.linkLifetime)], status: .created)
        case "session-close":
            if let token = APIGuard.sessionCookie(request.headers[.cookie]) { sessions.close(token) }
            var r = APIServer.json(["closed": true])
            r.headers[.setCookie] = "\(APIGuard.cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
            return r
        case "chapter-map":
            // Typed here (not through NodeCommands' JSON objects): the map is the largest answer.
            do {
                let (summary, page, duplicates) = try await node.chapterContacts(chapter: fields["chapter"] as? String, q: fields["q"] as? String,
                                                                               limit: try int(fields, "limit"), cursor: fields["cursor"] as? String)
                let names = try await node.names(chapter: fields["chapter"] as? String)
                return try APIServer.json(encodable: ChapterMapAnswer(chapter: summary, contacts: page.contacts, total: page.total, next: page.next,
                                                                      likelyDuplicates: duplicates.map { $0.map(\.description) }, names: names))
            } catch let e as ChapterCommandError {
                throw APIError(.notFound, "not_found", e.message)
            }
        default:
            do {
                var answer = try await commands.perform(route.op, fields)
                if route.op == "status", let gui = configuration.gui { answer["gui"] = gui.fields }
                return APIServer.json(answer)
            } catch {
                throw APIError(error.notFound ? .notFound : .badRequest, error.notFound ? "not_found" : "refused", error.message)
            }
        }
    }

    /// `POST /v1/session {"password"}`: a wrong password waits a second (and costs an Argon2id
    /// hash), so guessing over the network is slow.
    func openSession(_ body: ByteBuffer) async throws -> Response {
        struct Login: Decodable { let password: String }
        let login = try decode(Login.self, body)
        guard sessions.passwordHash != nil else {
            throw APIError(.forbidden, "no_password", "no GUI password is set: run `kith gui-password` on this machine first")
        }
        // The hash runs off the cooperative pool, one at a time: a flood of guesses gets 429s
        // instead of slowing every other request.
        let result = await sessions.login(password: login.password)
        let token: String, csrf: String
        switch result {
        case let .opened(t, c): (token, csrf) = (t, c)
        case .busy:
            throw APIError(.tooManyRequests, "busy", "another login is being checked; try again in a moment")
        case .wrong:
            throw APIError(.unauthorized, "unauthorized", "wrong password")
        }
        var r = APIServer.json(["csrfToken": csrf, "expiresIn": Int(APISessions.lifetime)])
        r.headers[.setCookie] = "\(APIGuard.cookieName)=\(token); Path=/; Max-Age=\(Int(APISessions.lifetime)); HttpOnly; SameSite=Strict"
            + (configuration.tls != nil ? "; Secure" : "")
        return r
    }

    func isTyped(_ op: String) -> Bool { op == "contact-add" || op == "contact-patch" || op == "edits" || op == "session-open" }

    func int(_ fields: [String: Any], _ key: String) throws(APIError) -> Int? {
        guard let v = fields[key] else { return nil }
        if let n = v as? Int { return n }
        guard let t = v as? String, let n = Int(t) else { throw APIError(.badRequest, "invalid_request", "\(key) must be a whole number") }
        return n
    }

    func bool(_ fields: [String: Any], _ key: String) -> Bool {
        if let b = fields[key] as? Bool { return b }
        return ["1", "true", "yes"].contains((fields[key] as? String)?.lowercased() ?? "")
    }

    func decode<T: Decodable>(_ type: T.Type, _ body: ByteBuffer) throws(APIError) -> T {
        guard body.readableBytes > 0 else { throw APIError(.badRequest, "invalid_json", "this route needs a JSON body") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch let DecodingError.typeMismatch(_, c), let DecodingError.valueNotFound(_, c) {
            throw APIError(.badRequest, "invalid_json", "wrong type at \(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)")
        } catch let DecodingError.keyNotFound(k, _) {
            throw APIError(.badRequest, "invalid_json", "missing field '\(k.stringValue)'")
        } catch {
            throw APIError(.badRequest, "invalid_json", "the body is not valid JSON for this route")
        }
    }

    /// `GET /v1/changes?since=DEVICE:SEQ,…&limit=N`: the encoded changes the client lacks.
    func changes(_ fields: [String: Any]) async throws -> Response {
        var since = VersionVector()
        for pair in (fields["since"] as? String ?? "").split(separator: ",") {
            let parts = pair.split(separator: ":")
            guard parts.count == 2, let bytes = Base64URL.decode(String(parts[0])), let device = try? DeviceKey(bytes: bytes),
                  let seq = UInt64(parts[1]) else {
                throw APIError(.badRequest, "invalid_request", "since is DEVICE:SEQ,… (base64url device key, sequence number)")
            }
            since[device] = seq
        }
        let limit = try int(fields, "limit") ?? 1000
        guard (1...10_000).contains(limit) else { throw APIError(.badRequest, "invalid_request", "limit must be 1 to 10000") }
        let (changes, more) = try await node.changes(scope: fields["scope"] as? String, since: since, limit: limit)
        return APIServer.json(["changes": changes.map(Base64URL.encode), "more": more])
    }

    /// `GET /v1/events`: Server-Sent Events, one JSON object per event, a comment every 15 s.
    func events(session: String?) -> Response {
        let sessions = self.sessions
        let stream = node.events.subscribe()
        let body = ResponseBody { writer in
            try await writer.write(ByteBuffer(string: ": kithd events\n\n"))
            let (merged, sink) = AsyncStream<NodeEvent?>.makeStream(bufferingPolicy: .bufferingNewest(512))
            let forward = Task {
                for await e in stream { sink.yield(e) }
                sink.finish()
            }
            let heartbeat = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(15))
                    sink.yield(nil)
                }
            }
            defer {
                forward.cancel()
                heartbeat.cancel()
            }
            for await e in merged {
                // A stream opened by a browser session ends with it (logout, expiry).
                if let session, sessions.csrf(for: session) == nil { break }
                guard let e else {
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    continue
                }
                let data = String(decoding: try APIServer.encoder.encode(e), as: UTF8.self)
                try await writer.write(ByteBuffer(string: "event: \(e.type)\ndata: \(data)\n\n"))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: body)
    }
}

/// `GET /v1/chapters/{chapter}/map`.
struct ChapterMapAnswer: Encodable {
    let chapter: SyncNode.ChapterSummary
    let contacts: [ContactDTO]
    let total: Int
    let next: String?
    let likelyDuplicates: [[String]]
    /// Member key → the display name the member set (Protocol/chapters.md `set name`).
    let names: [String: String]
}

/// `POST /v1/edits`: `{"batches": [[base64url edit, …], …]}`, one signed change per batch.
struct EditBatches: Decodable {
    let batches: [[String]]

    func decoded() throws(APIError) -> [[ContactEdit]] {
        var out: [[ContactEdit]] = []
        for b in batches {
            var edits: [ContactEdit] = []
            for text in b {
                guard let bytes = Base64URL.decode(text), let e = try? ContactEdit(decoding: bytes) else {
                    throw APIError(.badRequest, "invalid_request", "an edit does not decode (base64url of an encoded ContactEdit, Protocol/data-model.md)")
                }
                edits.append(e)
            }
            out.append(edits)
        }
        return out
    }
}
