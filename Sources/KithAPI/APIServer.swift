import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import KithCRDT
import KithCrypto
import KithInterchange
import KithNetwork
import KithQuery
import KithWeb
import Synchronization
import Logging
import NIOCore
import NIOHTTPTypes
import NIOSSL
import HummingbirdTLS

/// How the local HTTP API listens and whom it lets in (Protocol/api.md §2).
public struct APIConfiguration: Sendable {
    public var host: String
    /// 0 = any free port (the bound port is written to `<data-dir>/kithd.api`).
    public var port: Int
    /// The secret every request carries in `X-API-Key` (or `Authorization: Bearer`).
    public var apiKey: String
    /// Largest request body accepted (bytes); `POST /v1/edits` (imports) gets `maxEditsBody`.
    public var maxBody = 1 << 20
    public var maxEditsBody = 32 << 20
    /// A connection that sends nothing for this long is closed.
    public var idleTimeout: Duration = .seconds(30)
    /// A request's head and body must arrive within this.
    public var requestDeadline: Duration = .seconds(10)
    /// Most connections open at once; more wait in the accept queue.
    public var maxConnections = 64
    /// Serve over TLS (the GUI listener beyond loopback): cookies get `Secure`.
    public var tls: TLSConfiguration?
    /// Where the GUI listener is and its certificate fingerprint, for `GET /v1/status` and the
    /// status page (shared by both listeners: the address is known once the GUI listener binds).
    public var gui: GUIListener?
    /// Further names a `Host`/`Origin` may carry (a GUI listener on 0.0.0.0: this machine's
    /// addresses and host name).
    public var extraHosts: Set<String> = []

    public init(host: String = "127.0.0.1", port: Int = 7480, apiKey: String) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
    }

    /// Loopback addresses the API may listen on without TLS.
    public static func isLoopback(_ host: String) -> Bool {
        host == "127.0.0.1" || host == "::1" || host == "localhost" || host.hasPrefix("127.")
    }
}

/// The TLS listener for browsers on the home network: what was configured, the certificate's
/// fingerprint, and the address to open once it is bound (`https://host:port/`, the port the
/// OS chose when `listen` ends in `:0`).
public final class GUIListener: Sendable {
    public let listen: String
    public let fingerprint: String
    private let bound = Mutex<String?>(nil)

    public init(listen: String, fingerprint: String) {
        self.listen = listen
        self.fingerprint = fingerprint
    }

    public func bound(at address: String) { bound.withLock { $0 = address } }

    /// For `GET /v1/status` and the status page: `listen`, `fingerprint`, and `address` once bound.
    public var fields: [String: String] {
        var f = ["listen": listen, "fingerprint": fingerprint]
        if let address = bound.withLock({ $0 }) { f["address"] = address }
        return f
    }
}

/// An API refusal: one JSON shape for every error (`code`, `message`, `status`).
public struct APIError: Error, Sendable {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String
    public var candidates: [String] = []

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, candidates: [String] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.candidates = candidates
    }

    init(_ e: QueryError) {
        self.init(HTTPResponse.Status(code: e.code.httpStatus), e.code.rawValue, e.message, candidates: e.candidates)
    }

    var response: Response {
        var body: [String: Any] = ["code": code, "message": message, "status": Int(status.code)]
        if !candidates.isEmpty { body["candidates"] = candidates }
        return APIServer.json(body, status: status)
    }
}

/// The local HTTP API served by kithd: the routes of `APIRoute.all`, answered by the node's
/// queries (typed) and `NodeCommands` (administration). Built on Hummingbird 2.
public struct APIServer: Sendable {
    public let configuration: APIConfiguration
    let handlers: APIHandlers
    let logger: Logger

    let sessions: APISessions

    public init(configuration: APIConfiguration, node: SyncNode, commands: NodeCommands, sessions: APISessions, logger: Logger) {
        self.configuration = configuration
        self.sessions = sessions
        self.handlers = APIHandlers(node: node, commands: commands, configuration: configuration, sessions: sessions)
        self.logger = logger
    }

    /// The Hummingbird application; `onBound` gets the port actually bound.
    public func application(onBound: @escaping @Sendable (Int) async -> Void) throws -> some ApplicationProtocol {
        let router = Router(context: KithRequestContext.self)
        let pages = WebPages()
        router.add(middleware: APIGuard(configuration: configuration, sessions: sessions, logger: logger, pages: pages))
        let handlers = self.handlers
        for route in APIRoute.all {
            let path = RouterPath(route.path)
            router.on(path, method: HTTPRequest.Method(rawValue: route.method.rawValue)!) { request, context in
                try await handlers.respond(route, request, context)
            }
        }
        WebRoutes(node: handlers.node, commands: handlers.commands, configuration: configuration, sessions: sessions,
                  pages: pages, imports: WebImportJobs()).register(on: router)
        let deadline = configuration.requestDeadline
        let http1: HTTPServerBuilder = .http1(configuration: .init(
            additionalChannelHandlers: [RequestDeadlineHandler(deadline: deadline)],
            idleTimeout: .nanoseconds(Int64(configuration.idleTimeout.components.seconds) * 1_000_000_000)
        ))
        return Application(
            router: router,
            server: try configuration.tls.map { try .tls(http1, tlsConfiguration: $0) } ?? http1,
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port),
                serverName: "kithd",
                availableConnectionsDelegate: MaximumAvailableConnections(configuration.maxConnections)
            ),
            onServerRunning: { [node = handlers.node] channel in
                await onBound(channel.localAddress?.port ?? 0)
                // The list order index is built on the first query (~1.7 s at 100k contacts,
                // release): build it now, so the web page's first load does not wait for it.
                Task { _ = try? await node.contactPage(scope: nil, q: nil, tag: nil, limit: 1, cursor: nil, merged: false) }
            },
            logger: logger
        )
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }()

    static func json(encodable value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Refuses what must never reach a handler: a wrong or missing API key, a `Host` that is not
/// this API (DNS rebinding), a cross-origin browser request; and turns every error into the
/// one JSON shape.
struct APIGuard: RouterMiddleware {
    typealias Context = KithRequestContext
    let configuration: APIConfiguration
    let sessions: APISessions
    let logger: Logger
    /// Renders refusals as a page for a browser loading a page (not the API, not a script).
    let pages: WebPages

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var response = try await answer(request, context: context, next: next)
        // How long the node took (the benchmark reads it; browsers show it in their dev tools).
        let d = ContinuousClock.now - start
        let ms = Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
        response.headers[HTTPField.Name("Server-Timing")!] = "app;dur=" + String(format: "%.3f", ms)
        return response
    }

    func answer(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            try check(request, context)
            return try await next(request, context)
        } catch let e as APIError {
            return reply(e, request)
        } catch let e as QueryError {
            return reply(APIError(e), request)
        } catch let e as HTTPError {
            switch e.status {
            case .notFound:
                return reply(APIError(.notFound, "no_route", "no such route: \(request.method) \(request.uri.path) (see Protocol/openapi.yaml)"), request)
            case .methodNotAllowed:
                return reply(APIError(.methodNotAllowed, "method_not_allowed", "\(request.method) is not allowed on \(request.uri.path)"), request)
            case .contentTooLarge:
                return reply(APIError(.contentTooLarge, "too_large", "the request body is larger than this route accepts"), request)
            default:
                return reply(APIError(e.status, "http_error", e.body ?? "\(e.status)"), request)
            }
        } catch {
            logger.error("API handler failed", metadata: ["route": "\(request.method) \(request.uri.path)", "reason": "\(error)"])
            return reply(APIError(.internalServerError, "failed", "kithd could not answer: \(error)"), request)
        }
    }

    /// The API's JSON refusal; for a person loading a page (another user's browser, a foreign
    /// Host, an unknown address) a page that says why.
    func reply(_ e: APIError, _ request: Request) -> Response {
        guard Self.wantsPage(request) else { return e.response }
        let message = e.code == "no_route" ? pages.text("error_no_page") + " " + request.uri.path : e.message
        let text = pages.page("error", title: pages.text("error_title"), data: ["message": message, "back": "/"], viewer: WebPages.Viewer(csrf: nil))
        return Response(status: e.status, headers: WebRoutes.pageHeaders(type: "text/html; charset=utf-8"),
                        body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// A browser navigating to a page: outside `/v1`, asking for HTML (scripts' fetches ask for `*/*`).
    static func wantsPage(_ request: Request) -> Bool {
        request.uri.path.split(separator: "/").first != "v1" && (request.headers[.accept]?.contains("text/html") ?? false)
    }

    func check(_ request: Request, _ context: Context) throws(APIError) {
        // Another user of this computer: a browser sends a 127.0.0.1 cookie to every port of
        // 127.0.0.1, so a server of theirs on another port gets the session cookie when the
        // browser visits it. On loopback only kithd's own user is served (LoopbackPeer).
        guard context.ownUser else {
            throw APIError(.forbidden, "other_user", "refused: this connection comes from another user of this computer")
        }
        // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example.
        let host = request.head.authority ?? ""
        guard allowedHost(host) else {
            throw APIError(.forbidden, "bad_host", "refused: Host '\(host)' is not this API's address (DNS rebinding protection)")
        }
        // Browsers send Origin on cross-origin requests (and on same-origin POSTs): only this API's own origin passes.
        // Same origin only: scheme, host and port of this listener (a page on another port of
        // localhost is another origin).
        if let origin = request.headers[.origin] {
            let own = (configuration.tls != nil ? "https://" : "http://") + host.lowercased()
            guard origin.lowercased() == own else {
                throw APIError(.forbidden, "cross_origin", "refused: cross-origin request from '\(origin)'")
            }
        }
        if request.headers[HTTPField.Name("Sec-Fetch-Site")!] == "cross-site" {
            throw APIError(.forbidden, "cross_origin", "refused: cross-site request")
        }
        // The web page (WebRoutes) checks its own session: a page load carries no header, a
        // form its CSRF token in the form. Host, Origin and Sec-Fetch-Site are checked above.
        // Which it is, is decided by the path's segments as the router sees them: the router
        // skips empty segments, so `//v1/contacts` is the API route `/v1/contacts`.
        let segments = request.uri.path.split(separator: "/")
        if segments.first != "v1" { return }
        // Logging in needs no key (the password is the credential).
        if segments == ["v1", "session"], request.method == .post { return }
        if let given = Self.presentedKey(request) {
            guard ConstantTime.equals(Array(given.utf8), Array(configuration.apiKey.utf8)) else {
                throw APIError(.unauthorized, "unauthorized", "wrong API key")
            }
            return
        }
        // A browser session: the cookie, and for anything that changes state the CSRF token
        // (a page elsewhere can make the browser send the cookie, never read the token).
        if let token = Self.sessionCookie(request.headers[.cookie]) {
            guard let csrf = sessions.csrf(for: token) else {
                throw APIError(.unauthorized, "unauthorized", "the session has expired or was closed; log in again")
            }
            // Every request of a session carries its token, reads too (a cookie can reach a
            // server on another port of this host; the token never leaves the page). EventSource
            // cannot set headers: /v1/events takes it as `csrf=`.
            let sent = request.headers[HTTPField.Name("X-CSRF-Token")!]
                ?? (segments == ["v1", "events"] ? request.uri.queryParameters.get("csrf") : nil)
            guard let sent, ConstantTime.equals(Array(sent.utf8), Array(csrf.utf8)) else {
                throw APIError(.forbidden, "csrf", "refused: a request of a browser session needs its X-CSRF-Token")
            }
            return
        }
        throw APIError(.unauthorized, "unauthorized", "missing API key: send the key from <data-dir>/api-key in the X-API-Key header (or log in: POST /v1/session)")
    }

    static let cookieName = "kith_session"

    /// The API key a request presents (`X-API-Key`, or `Authorization: Bearer`), nil if none.
    /// A request that reaches a handler with one presented the right key (`check` refuses a
    /// wrong one); without one it came with a browser session.
    static func presentedKey(_ request: Request) -> String? {
        request.headers[HTTPField.Name("X-API-Key")!]
            ?? request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
    }

    static func sessionCookie(_ header: String?) -> String? {
        guard let header else { return nil }
        for part in header.split(separator: ";") {
            let kv = part.trimmingCharacters(in: .whitespaces)
            if kv.hasPrefix(cookieName + "=") { return String(kv.dropFirst(cookieName.count + 1)) }
        }
        return nil
    }

    /// `localhost`, a loopback literal or the configured listen host, with or without a port.
    func allowedHost(_ value: String) -> Bool {
        var host = value
        if host.hasPrefix("[") {
            guard let end = host.firstIndex(of: "]") else { return false }
            host = String(host[host.index(after: host.startIndex)..<end])
        } else if let colon = host.lastIndex(of: ":"), host.filter({ $0 == ":" }).count == 1 {
            host = String(host[..<colon])
        }
        host = host.lowercased()
        return host == "localhost" || host == "127.0.0.1" || host == "::1" || host == configuration.host.lowercased()
            || configuration.extraHosts.contains(host)
    }
}

/// Closes a connection whose request does not fully arrive within the deadline (a slow client
/// holding a connection open byte by byte). Sits after HTTP decoding: sees request parts.
final class RequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    let deadline: TimeAmount
    private var timer: Scheduled<Void>?

    init(deadline: Duration) {
        self.deadline = .milliseconds(Int64(deadline.components.seconds) * 1000 + deadline.components.attoseconds / 1_000_000_000_000_000)
    }

    /// The first request must start within the deadline too (a connection that sends nothing,
    /// or never finishes its TLS handshake, would otherwise hold a slot until the idle timeout).
    func handlerAdded(context: ChannelHandlerContext) {
        arm(context)
    }

    private func arm(_ context: ChannelHandlerContext) {
        timer?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: deadline) { loopBound.value.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            arm(context)
        case .end:
            timer?.cancel()
            timer = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }
}
