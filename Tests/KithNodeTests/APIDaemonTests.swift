import AsyncHTTPClient
import Foundation
import KithCRDT
import KithCrypto
import KithNode
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing

/// The local HTTP API of a real kithd, from a real HTTP client (AsyncHTTPClient): the happy
/// path and every refusal of Protocol/api.md §2 — each a JSON error with the right status, the
/// daemon unaffected and nothing written.
@Suite("Local HTTP API: kithd process")
struct APIDaemonTests {
    struct Answer {
        let status: Int
        let json: [String: Any]
    }

    /// Real answers, checked against Protocol/openapi.json at the end (scripts/check-openapi).
    final class Recorder: @unchecked Sendable {
        var answers: [[String: Any]] = []
        func record(_ op: String, _ a: Answer) -> Answer {
            answers.append(["op": op, "status": a.status, "body": a.json])
            return a
        }
    }

    static let http: HTTPClient = {
        var c = HTTPClient.Configuration()
        c.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
    }()

    static func send(_ method: HTTPMethod, _ url: String, key: String?, headers: [(String, String)] = [], body: [UInt8]? = nil) throws -> Answer {
        var request = try HTTPClient.Request(url: url, method: method)
        if let key { request.headers.add(name: "X-API-Key", value: key) }
        for (k, v) in headers { request.headers.replaceOrAdd(name: k, value: v) }
        if let body { request.body = .bytes(body) }
        let response = try http.execute(request: request, deadline: .now() + .seconds(20)).wait()
        let data = response.body.map { Data($0.readableBytesView) } ?? Data()
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return Answer(status: Int(response.status.code), json: json)
    }

    /// `kith contact show --json`, the id after `--` (about 1 id in 64 starts with '-').
    static func showJSON(_ id: String, _ data: String) throws -> [String: Any] {
        let r = try Binaries.run("kith", ["contact", "show", "--json", "--data-dir", data, "--", id])
        guard r.status == 0 else { throw Timeout(what: "kith contact show: \(r.stderr)") }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] ?? [:]
    }

    /// base64url of an encoded edit giving a new contact a given name.
    static func editText(given: String) -> String {
        Base64URL.encode(ContactEdit(contact: .random(), ops: [.setField(.givenName, given)]).encoded)
    }

    /// An edit that decodes but that no change may carry: forget beside another op.
    static func forgetPlusSet() -> String {
        Base64URL.encode(ContactEdit(contact: .random(), ops: [.forget, .setField(.givenName, "X")]).encoded)
    }

    @Test func queriesEditsAndRefusals() throws {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        let key = try String(contentsOfFile: a + "/api-key", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        var st = stat()
        #expect(stat(a + "/api-key", &st) == 0 && st.st_mode & 0o077 == 0, "the API key file is private")
        let daemon = try Daemon(data: a, logName: "api")
        _ = try daemon.port
        let address = try #require(APIKey.address(in: DataDirectory(path: a)))
        let base = "http://" + address

        let rec = Recorder()
        // Writes and queries.
        let add = try rec.record("contact-add", Self.send(.POST, base + "/v1/contacts", key: key,
                                body: Array(#"{"set":{"givenName":"Zoë","familyName":"Müller"},"addPhones":["+44 20 7946 0000"],"addTags":["gotv"],"logConversation":{"channel":"door","outcome":"supportive"},"consent":{"level":"contact","method":"at the door"}}"#.utf8)))
        #expect(add.status == 201, "\(add.json)")
        let id = try #require(add.json["id"] as? String)
        let found = try rec.record("contact-list", Self.send(.GET, base + "/v1/contacts?q=zoe%20%23gotv", key: key))
        #expect(found.status == 200 && (found.json["contacts"] as? [[String: Any]])?.first?["id"] as? String == id)
        #expect(found.json["total"] as? Int == 1)
        let byPhone = try Self.send(.GET, base + "/v1/contacts?q=7946%200000", key: key)
        #expect(byPhone.json["total"] as? Int == 1)
        let patched = try rec.record("contact-patch", Self.send(.PATCH, base + "/v1/contacts/\(id.prefix(6))", key: key, body: Array(#"{"set":{"city":"Leeds"},"removeTags":["gotv"]}"#.utf8)))
        #expect(patched.status == 200 && patched.json["city"] as? String == "Leeds" && (patched.json["tags"] as? [String]) == [])
        let status = try rec.record("status", Self.send(.GET, base + "/v1/status", key: key))
        _ = try rec.record("peers", Self.send(.GET, base + "/v1/peers", key: key))
        _ = try rec.record("contact-show", Self.send(.GET, base + "/v1/contacts/\(id)", key: key))
        _ = try rec.record("changes", Self.send(.GET, base + "/v1/changes?limit=5", key: key))
        #expect(status.status == 200 && status.json["contacts"] as? Int == 1)

        // Refusals: one JSON shape, the right status.
        func refused(_ a: Answer, _ status: Int, _ code: String) {
            _ = rec.record("contact-list", a)
            #expect(a.status == status, "\(a.json)")
            #expect(a.json["code"] as? String == code && (a.json["message"] as? String)?.isEmpty == false && a.json["status"] as? Int == status, "\(a.json)")
        }
        refused(try Self.send(.GET, base + "/v1/status", key: nil), 401, "unauthorized")
        refused(try Self.send(.GET, base + "/v1/status", key: "wrong-key-wrong-key-wrong-key-wrong"), 401, "unauthorized")
        refused(try Self.send(.GET, base + "/v1/status", key: key, headers: [("Host", "evil.example:7480")]), 403, "bad_host")
        refused(try Self.send(.GET, base + "/v1/status", key: key, headers: [("Origin", "http://evil.example")]), 403, "cross_origin")
        refused(try Self.send(.GET, base + "/v1/nothing-here", key: key), 404, "no_route")
        refused(try Self.send(.POST, base + "/v1/contacts", key: key, body: Array("{not json".utf8)), 400, "invalid_json")
        refused(try Self.send(.POST, base + "/v1/contacts", key: key, body: Array(#"{"set":{"givenName":7}}"#.utf8)), 400, "invalid_json")
        refused(try Self.send(.POST, base + "/v1/contacts", key: key, body: Array(#"{"set":{"shoeSize":"9"}}"#.utf8)), 400, "invalid_request")
        refused(try Self.send(.POST, base + "/v1/contacts", key: key, body: [UInt8](repeating: 0x20, count: 2 << 20)), 413, "too_large")
        refused(try Self.send(.GET, base + "/v1/contacts?limit=abc", key: key), 400, "invalid_request")
        refused(try Self.send(.GET, base + "/v1/contacts?cursor=%21%21", key: key), 400, "invalid_request")
        refused(try Self.send(.GET, base + "/v1/contacts/zzzzzzzz", key: key), 404, "not_found")

        // A batch refused in an import refuses the whole request: nothing of the earlier batches is
        // applied (it used to stay in memory unwritten and stop every later write).
        let good = try Self.send(.GET, base + "/v1/contacts", key: key).json["total"] as? Int
        let poison = #"{"batches":[["\#(Self.editText(given: "Poisoner"))"],["\#(Self.forgetPlusSet())"]]}"#
        refused(try Self.send(.POST, base + "/v1/edits", key: key, body: Array(poison.utf8)), 400, "invalid_request")
        #expect(try Self.send(.GET, base + "/v1/contacts", key: key).json["total"] as? Int == good)
        #expect(try Self.send(.POST, base + "/v1/contacts", key: key, body: Array(#"{"set":{"givenName":"After"}}"#.utf8)).status == 201, "writes still work")
        let afterID = try #require(((try Self.send(.GET, base + "/v1/contacts?q=after", key: key).json["contacts"] as? [[String: Any]])?.first?["id"]) as? String)
        #expect(try Self.send(.DELETE, base + "/v1/contacts/\(afterID)", key: key).status == 200)
        // Fields of a body route come from the body, with their JSON types.
        refused(try Self.send(.POST, base + "/v1/chapters?name=x", key: key, body: Array("{}".utf8)), 400, "invalid_request")

        // A slow client that never finishes its request is cut off; others are served meanwhile.
        let port = Int(address.split(separator: ":").last!)!
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = in_port_t(UInt16(port).bigEndian)
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(rc == 0)
        let head = "POST /v1/contacts HTTP/1.1\r\nHost: \(address)\r\nX-API-Key: \(key)\r\nContent-Length: 100\r\n\r\n{"
        _ = head.withCString { write(fd, $0, strlen($0)) }
        #expect(try Self.send(.GET, base + "/v1/status", key: key).status == 200)
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buf = [UInt8](repeating: 0, count: 64)
        let started = Date()
        let n = read(fd, &buf, 64)
        close(fd)
        #expect(n <= 0 && Date().timeIntervalSince(started) < 19, "the daemon closed the slow connection")

        // Every real answer recorded above matches the OpenAPI document.
        let answersFile = tmp.path("answers.json")
        try JSONSerialization.data(withJSONObject: rec.answers).write(to: URL(fileURLWithPath: answersFile))
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let check = try Binaries.runAny(root + "/scripts/check-openapi", [answersFile])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("real answers") && !check.stdout.contains("(0 of them"), "\(check.stdout)")

        // Nothing refused was written; the daemon still runs and answers.
        #expect(daemon.process.isRunning)
        let after = try Self.send(.GET, base + "/v1/contacts", key: key)
        #expect(after.json["total"] as? Int == 1)
        // The CLI goes through the same API and prints the same JSON.
        let cli = try Self.showJSON(id, a)
        #expect(cli["city"] as? String == "Leeds" && cli["givenName"] as? String == "Zoë")
        daemon.stop()
        #expect(APIKey.address(in: DataDirectory(path: a)) == nil, "the address file is removed at a clean stop")
        // Without the daemon the CLI answers from the store, the same way.
        let local = try Self.showJSON(id, a)
        #expect(local["city"] as? String == "Leeds")
    }
}

/// The GUI listener: TLS with kithd's self-signed certificate, a password, browser sessions
/// (cookie + CSRF token).
@Suite("Web GUI listener: kithd process")
struct GUIListenerTests {
    static let https: HTTPClient = {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none // self-signed: the person compares the fingerprint
        var c = HTTPClient.Configuration(tlsConfiguration: tls)
        c.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
    }()

    struct Answer {
        let status: Int
        let json: [String: Any]
        let headers: HTTPHeaders
    }

    static func send(_ method: HTTPMethod, _ url: String, headers: [(String, String)] = [], body: String? = nil) throws -> Answer {
        var request = try HTTPClient.Request(url: url, method: method)
        for (k, v) in headers { request.headers.replaceOrAdd(name: k, value: v) }
        if let body { request.body = .string(body) }
        let response = try https.execute(request: request, deadline: .now() + .seconds(20)).wait()
        let data = response.body.map { Data($0.readableBytesView) } ?? Data()
        return Answer(status: Int(response.status.code), json: (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:],
                      headers: response.headers)
    }

    @Test func passwordSessionsAndCSRF() throws {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        // No password yet: kithd refuses to serve the GUI.
        let refused = try Binaries.run("kithd", ["--data-dir", a, "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--gui-listen", "127.0.0.1:0"])
        #expect(refused.status != 0 && refused.stderr.contains("gui-password"), "\(refused.stderr)")
        try "short\n".write(toFile: tmp.path("pw-short"), atomically: true, encoding: .utf8)
        #expect(try Binaries.run("kith", ["gui-password", "--password-file", tmp.path("pw-short"), "--data-dir", a]).status == 1)
        try "correct horse battery\n".write(toFile: tmp.path("pw"), atomically: true, encoding: .utf8)
        #expect(try Binaries.run("kith", ["gui-password", "--password-file", tmp.path("pw"), "--data-dir", a]).status == 0)
        #expect(try String(contentsOfFile: a + "/gui-password", encoding: .utf8).hasPrefix("$argon2id$"), "only the hash is stored")

        let daemon = try Daemon(data: a, extra: ["--gui-listen", "127.0.0.1:0"], logName: "gui")
        _ = try daemon.port
        let base = try waitFor("the GUI address", seconds: 10) { () -> String? in
            (try? String(contentsOfFile: a + "/kithd.gui", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(base.hasPrefix("https://127.0.0.1:"))
        let root = String(base.dropLast()) // no trailing /

        // Plain HTTP to the TLS port gets no answer.
        #expect(throws: (any Error).self) { _ = try APIDaemonTests.send(.GET, root.replacingOccurrences(of: "https:", with: "http:") + "/v1/status", key: nil) }
        // Without a key or session: refused.
        #expect(try Self.send(.GET, root + "/v1/status").status == 401)
        // A wrong password is refused (after a pause); the right one opens a session.
        let started = Date()
        #expect(try Self.send(.POST, root + "/v1/session", body: #"{"password":"wrong horse"}"#).status == 401)
        #expect(Date().timeIntervalSince(started) >= 0.9, "a wrong password costs a second")
        let login = try Self.send(.POST, root + "/v1/session", body: #"{"password":"correct horse battery"}"#)
        #expect(login.status == 200, "\(login.json)")
        let setCookie = try #require(login.headers.first(name: "Set-Cookie"))
        #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && setCookie.contains("Secure"))
        let cookie = String(setCookie.split(separator: ";")[0])
        let csrf = try #require(login.json["csrfToken"] as? String)

        // Reads of a session carry the token too (a cookie can reach another port of this host).
        #expect(try Self.send(.GET, root + "/v1/status", headers: [("Cookie", cookie)]).status == 403)
        let status = try Self.send(.GET, root + "/v1/status", headers: [("Cookie", cookie), ("X-CSRF-Token", csrf)])
        #expect(status.status == 200)
        let fingerprint = (status.json["gui"] as? [String: Any])?["fingerprint"] as? String ?? ""
        #expect(fingerprint.hasPrefix("SHA256:") && fingerprint.count == 7 + 32 * 3 - 1, "\(fingerprint)")
        #expect((status.json["gui"] as? [String: Any])?["address"] as? String == base, "the address to open, with the port the OS chose")
        let shown = try Binaries.run("kith", ["status", "--data-dir", a]).stdout
        #expect(shown.contains(fingerprint), "kith status shows the certificate fingerprint")
        #expect(shown.contains("web GUI     \(base)"), "and the address to open: \(shown)")

        // A change from the session needs the CSRF token.
        let body = #"{"set":{"givenName":"Ada"}}"#
        let noToken = try Self.send(.POST, root + "/v1/contacts", headers: [("Cookie", cookie)], body: body)
        #expect(noToken.status == 403 && noToken.json["code"] as? String == "csrf")
        let wrongToken = try Self.send(.POST, root + "/v1/contacts", headers: [("Cookie", cookie), ("X-CSRF-Token", "x" + csrf)], body: body)
        #expect(wrongToken.status == 403)
        #expect(try Self.send(.POST, root + "/v1/contacts", headers: [("Cookie", cookie), ("X-CSRF-Token", csrf)], body: body).status == 201)
        // A forged cookie is no session.
        #expect(try Self.send(.GET, root + "/v1/status", headers: [("Cookie", "kith_session=forged"), ("X-CSRF-Token", csrf)]).status == 401)
        // Another origin on the same host (another port) is another origin.
        let port = root.split(separator: ":").last!
        #expect(try Self.send(.GET, root + "/v1/status", headers: [("Cookie", cookie), ("X-CSRF-Token", csrf), ("Origin", "https://127.0.0.1:1")]).status == 403)
        #expect(try Self.send(.GET, root + "/v1/status", headers: [("Cookie", cookie), ("X-CSRF-Token", csrf), ("Origin", "https://127.0.0.1:\(port)")]).status == 200)
        // Logging out ends the session.
        #expect(try Self.send(.DELETE, root + "/v1/session", headers: [("Cookie", cookie), ("X-CSRF-Token", csrf)]).status == 200)
        #expect(try Self.send(.GET, root + "/v1/status", headers: [("Cookie", cookie), ("X-CSRF-Token", csrf)]).status == 401)
        // The API key works on the GUI listener too; the plain loopback API is unaffected.
        let key = try String(contentsOfFile: a + "/api-key", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Self.send(.GET, root + "/v1/contacts", headers: [("X-API-Key", key)]).json["total"] as? Int == 1)
        daemon.stop()
        #expect(!FileManager.default.fileExists(atPath: a + "/kithd.gui"))
    }
}
