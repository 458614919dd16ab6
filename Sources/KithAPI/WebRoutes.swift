import Foundation
import HTTPTypes
import Hummingbird
import KithCRDT
import KithCrypto
import KithInterchange
import KithNetwork
import KithQuery
import KithWeb
import NIOCore

/// The web page's routes (README "The web page"), on the same listeners as the API: each reads
/// the node through the same query or command an API route uses and hands the answer to a
/// template (KithWeb). Every page needs a browser session (the `kith_session` cookie); every
/// form that changes something carries the session's CSRF token (`csrf` field) — the API's
/// guard has already refused a foreign `Host`, a cross-origin `Origin` and cross-site fetches.
struct WebRoutes: Sendable {
    let node: SyncNode
    let commands: NodeCommands
    let configuration: APIConfiguration
    let sessions: APISessions
    let pages: WebPages
    let imports: WebImportJobs

    /// A logged-in browser: its session token and CSRF token.
    struct Session: Sendable {
        let token: String
        let csrf: String
        var viewer: WebPages.Viewer { WebPages.Viewer(csrf: csrf) }
    }

    /// What a page shows instead when a handler refuses (HTTP status and the person's message).
    struct Refusal: Error {
        let status: HTTPResponse.Status
        let message: String
    }

    static let fragmentHeader = HTTPField.Name("X-Kith-Fragment")!

    typealias Context = KithRequestContext
    typealias Handler = @Sendable (Request, Context, Session) async throws -> Response
    typealias FormHandler = @Sendable (Request, Context, Session, WebForm) async throws -> Response

    func register(on router: Router<Context>) {
        router.get("/") { _, _ in Self.redirect("/contacts") }
        router.get("/assets/kith.css") { _, _ in Self.asset(WebAssets.css, type: "text/css; charset=utf-8") }
        router.get("/assets/kith.js") { _, _ in Self.asset(WebAssets.js, type: "text/javascript; charset=utf-8") }
        registerLogin(on: router)
        registerContacts(on: router)
        registerSharing(on: router)
        registerChapter(on: router)
        registerParty(on: router)
        registerImport(on: router)
        router.get("/status", use: page(status))
    }

    // MARK: Sessions and rendering

    func session(_ request: Request) -> Session? {
        guard let token = APIGuard.sessionCookie(request.headers[.cookie]), let csrf = sessions.csrf(for: token) else { return nil }
        return Session(token: token, csrf: csrf)
    }

    /// A page: without a live session, the login page instead.
    func page(_ handler: @escaping Handler) -> @Sendable (Request, Context) async throws -> Response {
        { request, context in
            guard let s = session(request) else { return Self.redirect("/login") }
            return try await guarded(request, s) { try await handler(request, context, s) }
        }
    }

    /// A form post: a live session and its CSRF token in the form (or `X-CSRF-Token`), else 403.
    func form(limit: Int? = nil, _ handler: @escaping FormHandler) -> @Sendable (Request, Context) async throws -> Response {
        { request, context in
            guard let s = session(request) else { return Self.redirect("/login") }
            var request = request
            return try await guarded(request, s) {
                let max = limit ?? configuration.maxBody
                let body: ByteBuffer
                do { body = try await request.collectBody(upTo: max) } catch {
                    throw Refusal(status: .contentTooLarge, message: pages.text("error_too_large"))
                }
                let parsed: WebForm
                do { parsed = try WebForm.parse(Array(body.readableBytesView), contentType: request.headers[.contentType]) } catch let e as WebForm.Invalid {
                    throw Refusal(status: .badRequest, message: e.message)
                }
                let sent = parsed["csrf"] ?? request.headers[HTTPField.Name("X-CSRF-Token")!] ?? ""
                guard ConstantTime.equals(Array(sent.utf8), Array(s.csrf.utf8)) else {
                    throw Refusal(status: .forbidden, message: pages.text("error_csrf"))
                }
                return try await handler(request, context, s, parsed)
            }
        }
    }

    /// Turns a refusal of the node (a bad reference, a rule of the chapter) into an error page.
    func guarded(_ request: Request, _ s: Session, _ body: () async throws -> Response) async throws -> Response {
        let status: HTTPResponse.Status, message: String
        do {
            return try await body()
        } catch let e as Refusal {
            (status, message) = (e.status, e.message)
        } catch let e as QueryError {
            (status, message) = (HTTPResponse.Status(code: e.code.httpStatus), e.message)
        } catch let e as NodeCommands.Failure {
            (status, message) = (e.notFound ? .notFound : .badRequest, e.message)
        } catch let e as ChapterCommandError {
            (status, message) = (.badRequest, e.message)
        }
        let back = request.headers[.referer].flatMap { URL(string: $0)?.path } ?? "/contacts"
        return html(request, "error", title: pages.text("error_title"), data: ["message": message, "back": back], session: s, status: status)
    }

    /// The page (or, for the page's script, only `<main>`'s content or the contact list).
    func html(_ request: Request, _ template: String, title: String, data: [String: Any], session: Session?, nav: String? = nil,
              live: Bool = false, status: HTTPResponse.Status = .ok) -> Response {
        let viewer = session?.viewer ?? WebPages.Viewer(csrf: nil)
        let text: String
        switch request.headers[Self.fragmentHeader] {
        case "main" where session != nil: text = pages.fragment(template, data: data, viewer: viewer)
        case "list" where session != nil && template == "contacts": text = pages.fragment("contact-list", data: data, viewer: viewer)
        default: text = pages.page(template, title: title, data: data, viewer: viewer, nav: nav, live: live)
        }
        return Response(status: status, headers: Self.pageHeaders(type: "text/html; charset=utf-8"), body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// No framing, no inline script, nothing from elsewhere, no address in a referrer to elsewhere
    /// (`no-referrer` would make browsers send `Origin: null` on form posts, which the guard refuses).
    static func pageHeaders(type: String) -> HTTPFields {
        var h = HTTPFields()
        h[.contentType] = type
        h[.cacheControl] = "no-store"
        h[HTTPField.Name("Content-Security-Policy")!] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        h[HTTPField.Name("X-Frame-Options")!] = "DENY"
        h[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        h[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        return h
    }

    static func asset(_ text: String, type: String) -> Response {
        var h = pageHeaders(type: type)
        h[.cacheControl] = "private, max-age=300"
        return Response(status: .ok, headers: h, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// 303: the browser follows with a GET (post → redirect → get).
    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }

    static func encode(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? ""
    }

    func sessionCookie(_ token: String) -> String {
        "\(APIGuard.cookieName)=\(token); Path=/; Max-Age=\(Int(APISessions.lifetime)); HttpOnly; SameSite=Strict" + (configuration.tls != nil ? "; Secure" : "")
    }

    // MARK: Login

    func registerLogin(on router: Router<Context>) {
        router.get("/login") { request, _ in
            if session(request) != nil { return Self.redirect("/contacts") }
            return html(request, "login", title: pages.text("login_title"), data: [:], session: nil)
        }
        router.post("/login") { request, _ in
            var request = request
            let body = try await request.collectBody(upTo: 4096)
            let password = WebForm.urlEncoded(String(buffer: body))["password"] ?? ""
            let message: String
            if sessions.passwordHash == nil {
                message = pages.text("login_nopassword")
            } else {
                switch await sessions.login(password: password) {
                case let .opened(token, _):
                    var r = Self.redirect("/contacts")
                    r.headers[.setCookie] = sessionCookie(token)
                    return r
                case .busy: message = pages.text("login_busy")
                case .wrong: message = pages.text("login_wrong")
                }
            }
            return html(request, "login", title: pages.text("login_title"), data: ["message": message], session: nil, status: .unauthorized)
        }
        // `kith open`: a one-time link made with the API key (POST /v1/session/links).
        router.get("/login/link") { request, _ in
            guard let link = request.uri.queryParameters.get("token"), let opened = sessions.redeem(link: link) else {
                return html(request, "login", title: pages.text("login_title"), data: ["message": pages.text("login_link_used")], session: nil,
                            status: .unauthorized)
            }
            var r = Self.redirect("/contacts")
            r.headers[.setCookie] = sessionCookie(opened.token)
            return r
        }
        router.post("/logout", use: form { _, _, s, _ in
            sessions.close(s.token)
            var r = Self.redirect("/login")
            r.headers[.setCookie] = "\(APIGuard.cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
            return r
        })
    }

    // MARK: Status

    @Sendable func status(_ request: Request, _ context: Context, _ s: Session) async throws -> Response {
        var status = try await commands.perform("status", [:])
        if let gui = configuration.gui { status["gui"] = gui.fields }
        let peers = await node.peerInfo()
        let pending = status["pending"] as? Int ?? 0
        let summary = peers.isEmpty ? pages.text("status_alone")
            : pending > 0 ? String(format: pages.text("status_syncing"), pending)
            : peers.count == 1 ? pages.text("status_uptodate_one") : String(format: pages.text("status_uptodate"), peers.count)
        func time(_ ms: UInt64) -> String { Self.dateTime(ms) }
        let peerList: [[String: Any]] = peers.map { p in
            var d: [String: Any] = ["name": p.name, "memberShort": String(p.member.prefix(12)), "ownDevice": p.ownDevice, "connected": time(p.connectedAt)]
            if let c = p.lastCaughtUp { d["caughtUp"] = time(c) }
            if let who = p.ownDevice ? p.deviceName : p.memberName { d["who"] = who }
            return d
        }
        let ownDevices: [[String: Any]] = peers.filter(\.ownDevice).map { ["device": String($0.device.prefix(16)), "name": $0.name] }
        let host = request.head.authority ?? "\(configuration.host):\(configuration.port)"
        let data: [String: Any] = [
            "status": status, "summary": summary, "peerList": peerList, "ownDevices": ownDevices,
            "webAddress": (configuration.tls != nil ? "https://" : "http://") + host + "/",
        ]
        return html(request, "status", title: pages.text("status_title"), data: data, session: s, nav: "status", live: true)
    }

    static func dateTime(_ ms: UInt64) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm"
        return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }
}
