import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Attacks on the web page's listener from outside, against a real kithd: requests written
/// byte for byte on a TCP socket (an HTTP client library would tidy the path the attacker chose).
@Suite("Web page attacks: kithd process")
struct WebAttackTests {
    struct Raw {
        let status: Int
        let headers: [(String, String)]
        let body: String
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    /// One HTTP/1.1 request with exactly this target, on a new connection to 127.0.0.1:`port`.
    static func raw(_ port: Int, _ method: String, _ target: String, headers: [(String, String)] = [], body: String = "") throws -> Raw {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Timeout(what: "socket") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw Timeout(what: "connect to \(port)") }
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        let bytes = Array((head + "\r\n" + body).utf8)
        guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == bytes.count else { throw Timeout(what: "send") }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            answer += buffer[0..<n]
        }
        let text = String(decoding: answer, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw Timeout(what: "an answer to \(method) \(target): \(text)") }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        let fields = lines.dropFirst().compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        return Raw(status: status, headers: fields, body: String(text[split.upperBound...]))
    }

    static func apiPort(_ data: String) throws -> Int {
        try waitFor("the API address") { () -> Int? in
            (try? String(contentsOfFile: data + "/kithd.api", encoding: .utf8))
                .flatMap { $0.split(separator: " ").first?.split(separator: ":").last }.flatMap { Int($0) }
        }
    }

    /// A kithd with a fresh data directory (and a contact named `contact`): the directory, its
    /// path, the daemon, its API port and API key.
    static func start(_ log: String, contact: String? = "Secret") throws -> (TempDir, String, Daemon, Int, String) {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        if let contact { #expect(try Binaries.run("kith", ["contact", "add", "--given", contact, "--data-dir", a]).status == 0) }
        let daemon = try Daemon(data: a, logName: log)
        _ = try daemon.port
        let key = try String(contentsOfFile: a + "/api-key", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        return (tmp, a, daemon, try apiPort(a), key)
    }

    /// A browser session through a link made with the key (what `kith open` does): its cookie
    /// (`kith_session=…`) and the page's CSRF token, as a script on the page would read it.
    static func session(_ port: Int, key: String) throws -> (cookie: String, csrf: String) {
        let made = try raw(port, "POST", "/v1/session/links", headers: [("X-API-Key", key)])
        #expect(made.status == 201)
        let path = try #require(made.body.range(of: #"/login/link\?token=[A-Za-z0-9_-]+"#, options: .regularExpression).map { String(made.body[$0]) })
        let opened = try raw(port, "GET", path)
        let cookie = try #require(opened.header("Set-Cookie")?.split(separator: ";").first.map(String.init))
        let form = try raw(port, "GET", "/contacts/new", headers: [("Cookie", cookie)])
        let csrf = try #require(form.body.range(of: #"name="csrf" value="[^"]+""#, options: .regularExpression)
            .map { String(form.body[$0].dropFirst(#"name="csrf" value=""#.count).dropLast()) })
        return (cookie, csrf)
    }

    /// A browser sends a 127.0.0.1 cookie to every port of 127.0.0.1: another user of this
    /// computer whose server there the browser visits gets the session cookie. Replayed from that
    /// user's own client, it must open nothing (pages need only the cookie). Needs root, to run
    /// the attacker's client as another user (`setpriv`, uid 65534).
    @Test(.enabled(if: getuid() == 0, "needs root to run a client as another user"))
    func anotherLocalUserCannotReplayASessionCookie() throws {
        let (tmp, _, daemon, port, key) = try Self.start("uid")
        defer { withExtendedLifetime(tmp) {} }
        let (cookie, csrf) = try Self.session(port, key: key)
        // kithd's own user: the session works.
        #expect(try Self.raw(port, "GET", "/contacts", headers: [("Cookie", cookie)]).body.contains("Secret"))
        let script = """
            import sys, urllib.request, urllib.error
            def get(path, headers):
                try:
                    r = urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:\(port)" + path, headers=headers))
                    return r.status, r.read().decode()
                except urllib.error.HTTPError as e:
                    return e.code, e.read().decode()
            for path, headers in [("/contacts", {"Cookie": sys.argv[1]}), ("/v1/contacts", {"Cookie": sys.argv[1], "X-CSRF-Token": sys.argv[2]}), ("/v1/contacts", {"X-API-Key": sys.argv[3]})]:
                status, body = get(path, headers)
                print(status, "Secret" in body, body[:200].replace("\\n", " "))
            """
        let other = try Binaries.runAny("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script, cookie, csrf, key])
        #expect(other.status == 0, "\(other.stderr)")
        let lines = other.stdout.split(separator: "\n")
        #expect(lines.count == 3, "\(other.stdout)")
        for line in lines {
            #expect(line.hasPrefix("403 False") && line.contains("other_user"), "another user's request: \(line)")
        }
        #expect(try Self.raw(port, "GET", "/contacts", headers: [("Cookie", cookie)]).body.contains("Secret"), "kithd serves its own user still")
        daemon.stop()
    }

    /// The router ignores empty path segments (`//v1/contacts` is `/v1/contacts`): the guard
    /// must not take such a path for a web page and let it past the API key.
    @Test func apiRoutesNeedTheKeyWhateverTheSlashes() throws {
        let (tmp, a, daemon, port, key) = try Self.start("attack")
        defer { withExtendedLifetime(tmp) {} }

        for target in ["/v1/contacts", "//v1/contacts", "///v1/contacts", "//v1//contacts"] {
            let r = try Self.raw(port, "GET", target)
            #expect(r.status == 401, "GET \(target) without the key: \(r.status) \(r.body)")
            #expect(!r.body.contains("Secret"), "GET \(target) without the key showed a contact")
        }
        // Writes too, and a login link (a browser session without the GUI password).
        let add = try Self.raw(port, "POST", "//v1/contacts", body: #"{"set":{"givenName":"Mallory"}}"#)
        #expect(add.status == 401, "\(add.body)")
        let link = try Self.raw(port, "POST", "//v1/session/links", headers: [("X-API-Key", "not-the-key")])
        #expect(link.status == 401 && !link.body.contains("token="), "\(link.body)")
        #expect(try names(a) == ["Secret"], "nothing written without the key")
        // The key still opens them, whatever the slashes.
        #expect(try Self.raw(port, "GET", "//v1/contacts", headers: [("X-API-Key", key)]).body.contains("Secret"))
        daemon.stop()
    }

    /// `POST /v1/session/links` is for the API key only: a browser session that adds some other
    /// `Authorization` header (not a Bearer key) must not mint login links.
    @Test func aBrowserSessionCannotMakeLoginLinks() throws {
        let (tmp, a, daemon, port, key) = try Self.start("links", contact: nil)
        defer { withExtendedLifetime((tmp, a)) {} }
        let (cookie, csrf) = try Self.session(port, key: key)
        for extra in [[], [("Authorization", "Basic eDp5")], [("Authorization", "Bearer")], [("Authorization", "Negotiate x")]] {
            let r = try Self.raw(port, "POST", "/v1/session/links", headers: [("Cookie", cookie), ("X-CSRF-Token", csrf)] + extra)
            #expect(r.status == 403 && !r.body.contains("token="), "session + \(extra): \(r.status) \(r.body)")
        }
        daemon.stop()
    }
}
