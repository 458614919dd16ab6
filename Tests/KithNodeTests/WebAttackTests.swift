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

    /// The router ignores empty path segments (`//v1/contacts` is `/v1/contacts`): the guard
    /// must not take such a path for a web page and let it past the API key.
    @Test func apiRoutesNeedTheKeyWhateverTheSlashes() throws {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Secret", "--data-dir", a]).status == 0)
        let daemon = try Daemon(data: a, logName: "attack")
        _ = try daemon.port
        let port = try Self.apiPort(a)
        let key = try String(contentsOfFile: a + "/api-key", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)

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
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        let daemon = try Daemon(data: a, logName: "links")
        _ = try daemon.port
        let port = try Self.apiPort(a)
        let key = try String(contentsOfFile: a + "/api-key", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        // A session through a link made with the key (what `kith open` does).
        let made = try Self.raw(port, "POST", "/v1/session/links", headers: [("X-API-Key", key)])
        #expect(made.status == 201)
        let path = try #require(made.body.range(of: #"/login/link\?token=[A-Za-z0-9_-]+"#, options: .regularExpression).map { String(made.body[$0]) })
        let opened = try Self.raw(port, "GET", path)
        let cookie = try #require(opened.header("Set-Cookie")?.split(separator: ";").first.map(String.init))
        // The page's CSRF token, as a script on the page would read it.
        let form = try Self.raw(port, "GET", "/contacts/new", headers: [("Cookie", cookie)])
        let csrf = try #require(form.body.range(of: #"name="csrf" value="[^"]+""#, options: .regularExpression)
            .map { String(form.body[$0].dropFirst(#"name="csrf" value=""#.count).dropLast()) })
        for extra in [[], [("Authorization", "Basic eDp5")], [("Authorization", "Bearer")], [("Authorization", "Negotiate x")]] {
            let r = try Self.raw(port, "POST", "/v1/session/links", headers: [("Cookie", cookie), ("X-CSRF-Token", csrf)] + extra)
            #expect(r.status == 403 && !r.body.contains("token="), "session + \(extra): \(r.status) \(r.body)")
        }
        daemon.stop()
    }
}
