/// Every route of the local HTTP API (Protocol/api.md, Protocol/openapi.yaml), as data: the
/// server registers exactly these, the CLI builds its requests from them, and a test checks the
/// OpenAPI document against them. Each names the node operation it performs.
///
/// `{name}` segments are taken from (and given to) the request field of that name. For GET and
/// DELETE the other fields travel in the query string; otherwise as the JSON body.
public struct APIRoute: Sendable, Hashable {
    public enum Method: String, Sendable, Hashable {
        case get = "GET", post = "POST", patch = "PATCH", delete = "DELETE"
    }

    public let op: String
    public let method: Method
    public let path: String

    public init(_ op: String, _ method: Method, _ path: String) {
        self.op = op
        self.method = method
        self.path = path
    }

    /// The path's parameter names, in order.
    public var parameters: [String] {
        path.split(separator: "/").compactMap { $0.hasPrefix("{") && $0.hasSuffix("}") ? String($0.dropFirst().dropLast()) : nil }
    }

    /// Fields in the query string rather than a body.
    public var usesQuery: Bool { method == .get || method == .delete }

    /// The chapter path segment meaning "the one chapter this node is in".
    public static let onlyChapter = "_"

    public static let all: [APIRoute] = [
        APIRoute("status", .get, "/v1/status"),
        APIRoute("session-open", .post, "/v1/session"),
        APIRoute("session-close", .delete, "/v1/session"),
        APIRoute("session-link", .post, "/v1/session/links"),
        APIRoute("peers", .get, "/v1/peers"),
        APIRoute("sync-now", .post, "/v1/sync"),
        APIRoute("events", .get, "/v1/events"),
        APIRoute("changes", .get, "/v1/changes"),
        APIRoute("contact-list", .get, "/v1/contacts"),
        APIRoute("contact-add", .post, "/v1/contacts"),
        APIRoute("contact-show", .get, "/v1/contacts/{contact}"),
        APIRoute("contact-patch", .patch, "/v1/contacts/{contact}"),
        APIRoute("contact-delete", .delete, "/v1/contacts/{contact}"),
        APIRoute("consent-show", .get, "/v1/contacts/{contact}/consent"),
        APIRoute("edits", .post, "/v1/edits"),
        APIRoute("export", .get, "/v1/export"),
        APIRoute("device-pair", .post, "/v1/devices/pairings"),
        APIRoute("device-revoke", .post, "/v1/devices/revocations"),
        APIRoute("device-list", .get, "/v1/devices"),
        APIRoute("name-set", .post, "/v1/names"),
        APIRoute("chapter-list", .get, "/v1/chapters"),
        APIRoute("chapter-create", .post, "/v1/chapters"),
        APIRoute("chapter-join", .post, "/v1/chapters/join"),
        APIRoute("chapter-show", .get, "/v1/chapters/{chapter}"),
        APIRoute("chapter-members", .get, "/v1/chapters/{chapter}/members"),
        APIRoute("chapter-remove", .delete, "/v1/chapters/{chapter}/members/{member}"),
        APIRoute("chapter-invites", .get, "/v1/chapters/{chapter}/invites"),
        APIRoute("chapter-invite", .post, "/v1/chapters/{chapter}/invites"),
        APIRoute("chapter-invite-close", .delete, "/v1/chapters/{chapter}/invites/{invite}"),
        APIRoute("chapter-requests", .get, "/v1/chapters/{chapter}/requests"),
        APIRoute("chapter-approve", .post, "/v1/chapters/{chapter}/requests/{member}/approve"),
        APIRoute("chapter-deny", .post, "/v1/chapters/{chapter}/requests/{member}/deny"),
        APIRoute("chapter-leave", .post, "/v1/chapters/{chapter}/leave"),
        APIRoute("chapter-map", .get, "/v1/chapters/{chapter}/map"),
        APIRoute("chapter-edit", .post, "/v1/chapters/{chapter}/contacts/{contact}/edits"),
        APIRoute("chapter-affiliate", .post, "/v1/chapters/{chapter}/affiliations"),
        APIRoute("share", .post, "/v1/shares"),
        APIRoute("unshare", .post, "/v1/shares/retractions"),
        APIRoute("consent-grant", .post, "/v1/consent/grants"),
        APIRoute("consent-revoke", .post, "/v1/consent/revocations"),
        APIRoute("audit", .get, "/v1/audit"),
    ]

    public static func route(for op: String) -> APIRoute? { all.first { $0.op == op } }
}
