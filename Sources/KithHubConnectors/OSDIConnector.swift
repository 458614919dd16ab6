import AsyncHTTPClient
import Foundation
import KithConsent
import KithNetwork
import NIOCore
import NIOHTTP1

/// Delivers held records to an OSDI server as Action Network's API v2 implements it, and deletes
/// them there when their grant closes (Protocol/consent.md §4.5).
///
/// Delivery: the person signup helper, `POST <endpoint>people/` with header `OSDI-API-Token`,
/// body `{"person": {given_name, family_name, email_addresses, phone_numbers, postal_addresses,
/// identifiers: ["kith:<kith id>"]}, "add_tags": [<the grant's purpose>]}`. Email and phone
/// `status` is "subscribed" only when the grant's purpose is one the organization lists as a
/// subscription (`subscribePurposes`) *and* the contact themself agreed to be shared (rule 1);
/// otherwise "unsubscribed" — never the server's default. The answer's `_links.self.href` is
/// the person's URL, kept (hub-internal) to delete later.
///
/// Deletion, what the API permits: remove the taggings of the grant's tag (`GET <person>/taggings`,
/// `DELETE` each tagging whose `osdi:tag` is that tag), set every email and phone "unsubscribed"
/// (`PUT <person>`), and — only if `deletePeople` (a server that allows it; Action Network does
/// not) — `DELETE <person>`. The result is *erased* only when that DELETE succeeded, otherwise
/// *suppressed* (the person stays downstream, untagged and unsubscribed). Any timeout, 4xx or
/// 5xx leaves the item outstanding: the hub retries with backoff; nothing is claimed.
///
/// Not run against the live Action Network service (unreachable from where it was built): tested
/// against a local server implementing the documented request and response shapes.
public final class OSDIConnector: HubConnector {
    public struct Configuration: Sendable {
        public var name: String
        /// The API root, ending in "/": "https://actionnetwork.org/api/v2/".
        public var endpoint: String
        public var apiKey: String
        public var subscribePurposes: Set<String>
        public var deletePeople: Bool
        public var timeout: TimeAmount

        public init(name: String = "Action Network", endpoint: String, apiKey: String, subscribePurposes: Set<String> = [], deletePeople: Bool = false,
                    timeout: TimeAmount = .seconds(15)) {
            self.name = name
            self.endpoint = endpoint.hasSuffix("/") ? endpoint : endpoint + "/"
            self.apiKey = apiKey
            self.subscribePurposes = subscribePurposes
            self.deletePeople = deletePeople
            self.timeout = timeout
        }
    }

    public let configuration: Configuration
    public var name: String { configuration.name }
    private let client: HTTPClient

    public init(_ configuration: Configuration) {
        self.configuration = configuration
        client = HTTPClient(eventLoopGroupProvider: .singleton,
                            configuration: .init(redirectConfiguration: .disallow, timeout: .init(connect: configuration.timeout, read: configuration.timeout)))
    }

    deinit { try? client.syncShutdown() }

    public func shutdown() async { try? await client.shutdown() }

    public func owns(_ place: RecordPlace) -> Bool { place == .connector(name) }

    // MARK: HTTP

    struct Reply {
        let status: UInt
        let json: Any?
    }

    private func call(_ method: HTTPMethod, _ url: String, _ body: [String: Any]? = nil) async throws(RetractionFailure) -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "OSDI-API-Token", value: configuration.apiKey)
        request.headers.add(name: "Accept", value: "application/hal+json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            guard let data = try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]) else { throw RetractionFailure("cannot encode the request") }
            request.body = .bytes(ByteBuffer(bytes: data))
        }
        let what = "\(method.rawValue) \(Self.redact(url))"
        do {
            let response = try await client.execute(request, timeout: configuration.timeout)
            let bytes = try await response.body.collect(upTo: 4 << 20)
            let status = response.status.code
            let json = try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))
            guard (200..<300).contains(status) else {
                let message = ((json as? [String: Any])?["error"] as? String).map { ": \($0)" } ?? ""
                throw RetractionFailure("\(name) answered \(status) to \(what)\(message)")
            }
            return Reply(status: status, json: json)
        } catch let f as RetractionFailure {
            throw f
        } catch {
            throw RetractionFailure("\(name) did not answer \(what): \(error)")
        }
    }

    /// URLs are logged and shown without query strings.
    static func redact(_ url: String) -> String { String(url.prefix { $0 != "?" }) }

    static func href(_ json: Any?, _ rel: String) -> String? {
        (((json as? [String: Any])?["_links"] as? [String: Any])?[rel] as? [String: Any])?["href"] as? String
    }

    // MARK: Delivery

    /// The signup helper's body for a record (see the type's documentation).
    func signup(_ d: HubDelivery) -> [String: Any] {
        let (given, family) = FileExportConnector.split(d.value("name") ?? "")
        let agreed = ContactConsent(field: d.value("consent")) == .share
        let status = agreed && configuration.subscribePurposes.contains(d.grant.purpose) ? "subscribed" : "unsubscribed"
        var person: [String: Any] = ["identifiers": ["kith:" + d.kithID]]
        if !given.isEmpty { person["given_name"] = given }
        if !family.isEmpty { person["family_name"] = family }
        let emails = Self.items(d.value("emails")), phones = Self.items(d.value("phones"))
        if !emails.isEmpty { person["email_addresses"] = emails.enumerated().map { ["address": $0.element, "primary": $0.offset == 0, "status": status] } }
        if !phones.isEmpty { person["phone_numbers"] = phones.enumerated().map { ["number": $0.element, "primary": $0.offset == 0, "status": status] } }
        if let zip = d.value("postalCode"), !zip.isEmpty { person["postal_addresses"] = [["postal_code": zip]] }
        return ["person": person, "add_tags": [d.grant.purpose]]
    }

    static func items(_ joined: String?) -> [String] {
        (joined ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    public func deliver(_ records: [HubDelivery]) async -> [Result<Delivered, RetractionFailure>] {
        var out: [Result<Delivered, RetractionFailure>] = []
        for d in records {
            do throws(RetractionFailure) {
                let reply = try await call(.POST, configuration.endpoint + "people/", signup(d))
                guard let person = Self.href(reply.json, "self") else { throw RetractionFailure("\(name)'s answer names no person (_links.self)") }
                // The tag is remembered with the person: the deletion removes exactly that tagging.
                out.append(.success(Delivered(place: .connector(name), externalID: Self.reference(person: person, tag: d.grant.purpose))))
            } catch {
                out.append(.failure(error))
            }
        }
        return out
    }

    /// `person URL ‖ "\n" ‖ tag name`: what the deletion needs, and nothing personal.
    static func reference(person: String, tag: String) -> String { person + "\n" + tag }

    // MARK: Deletion

    public func retract(_ items: [HubRetractionItem]) async -> [Result<Retracted, RetractionFailure>] {
        var out: [Result<Retracted, RetractionFailure>] = []
        for item in items {
            do throws(RetractionFailure) { out.append(.success(try await retract(item.entry.externalID))) } catch { out.append(.failure(error)) }
        }
        return out
    }

    private func retract(_ reference: String) async throws(RetractionFailure) -> Retracted {
        let parts = reference.split(separator: "\n", maxSplits: 1).map(String.init)
        guard let person = parts.first, person.hasPrefix(configuration.endpoint) else {
            throw RetractionFailure("no \(name) person is known for this record (its delivery was not confirmed); staff must check \(name) by hand")
        }
        let tag = parts.count > 1 ? parts[1] : ""
        // 1. The tagging the hub added.
        if !tag.isEmpty, let tagHref = try await tagURL(named: tag) {
            let taggings = try await call(.GET, person + "/taggings")
            let list = (((taggings.json as? [String: Any])?["_embedded"] as? [String: Any])?["osdi:taggings"] as? [[String: Any]]) ?? []
            for t in list where Self.href(t, "osdi:tag") == tagHref {
                guard let own = Self.href(t, "self") else { continue }
                _ = try await call(.DELETE, own)
            }
        }
        // 2. Unsubscribed everywhere it can be.
        _ = try await call(.PUT, person, ["email_addresses": [["primary": true, "status": "unsubscribed"]],
                                          "phone_numbers": [["primary": true, "status": "unsubscribed"]]])
        // 3. Deleted, where the server permits it.
        if configuration.deletePeople {
            _ = try await call(.DELETE, person)
            return Retracted(.erased)
        }
        return Retracted(.suppressed)
    }

    /// The URL of the tag named `name` (`GET <endpoint>tags/`, following `next` pages), nil when none.
    private func tagURL(named tag: String) async throws(RetractionFailure) -> String? {
        var page: String? = configuration.endpoint + "tags/"
        var pages = 0
        while let url = page, pages < 100 {
            let reply = try await call(.GET, url)
            let tags = (((reply.json as? [String: Any])?["_embedded"] as? [String: Any])?["osdi:tags"] as? [[String: Any]]) ?? []
            if let t = tags.first(where: { $0["name"] as? String == tag }) { return Self.href(t, "self") }
            page = Self.href(reply.json, "next")
            pages += 1
        }
        return nil
    }
}
