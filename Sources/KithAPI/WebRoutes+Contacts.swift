import Foundation
import Hummingbird
import KithNetwork
import KithQuery
import KithWeb

/// The contact pages: search as you type, the paged list, a contact's page, add and edit, tag,
/// log a conversation, link two records, forget. Each change is one `ContactPatch` — the body
/// of `PATCH /v1/contacts/{contact}` — applied by the same node call.
extension WebRoutes {
    /// The fields the add/edit form shows, in order (API names).
    static let editableFields = ["givenName", "familyName", "displayName", "support", "relationship", "address", "city", "postalCode", "voterFileId", "notes"]
    static let channels = ["door", "phone", "text", "in-person", "other"]
    static let outcomes = ["supportive", "undecided", "opposed", "no-answer"]

    func registerContacts(on router: Router<Context>) {
        router.get("/contacts", use: page { request, _, s in
            let q = request.uri.queryParameters.get("q").flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 }
            let tag = request.uri.queryParameters.get("tag")
            let cursor = request.uri.queryParameters.get("cursor")
            let page = try await node.contactPage(scope: nil, q: q, tag: tag, limit: 50, cursor: cursor, merged: false)
            var data: [String: Any] = ["page": page, "q": q ?? "", "qEncoded": Self.encode(q ?? "")]
            if cursor != nil { data["cursor"] = true }
            return html(request, "contacts", title: pages.text("contacts_title"), data: data, session: s, nav: "contacts", live: true)
        })
        router.get("/contacts/new", use: page { request, _, s in
            html(request, "contact-form", title: pages.text("contact_new"), data: formData(nil, action: "/contacts", cancel: "/contacts"),
                 session: s, nav: "contacts")
        })
        router.post("/contacts", use: form { _, _, _, f in
            var patch = patch(from: f, current: nil)
            patch.addTags = (f["tags"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.nilIfEmpty
            guard patch != ContactPatch() else { throw Refusal(status: .badRequest, message: pages.text("error_empty_contact")) }
            let c = try await node.applyPatch(patch, to: nil)
            return Self.redirect("/contacts/\(c.id)")
        })
        router.get("/contacts/{contact}", use: page { request, context, s in
            let c = try await contact(context)
            var data: [String: Any] = ["contact": c, "knownBy": await knownBy(c.id),
                                       "consentText": pages.text("consent_" + (c.consent?.level ?? "none"))]
            data["channels"] = Self.channels.enumerated().map { ["value": $1, "label": pages.text("channel_" + $1.replacingOccurrences(of: "-", with: "_")), "checked": $0 == 0] }
            data["outcomes"] = Self.outcomes.map { ["value": $0, "label": pages.text("outcome_" + $0.replacingOccurrences(of: "-", with: "_"))] }
            return html(request, "contact", title: c.name, data: data, session: s, nav: "contacts", live: true)
        })
        router.get("/contacts/{contact}/edit", use: page { request, context, s in
            let c = try await contact(context)
            return html(request, "contact-form", title: c.name, data: formData(c, action: "/contacts/\(c.id)", cancel: "/contacts/\(c.id)"),
                        session: s, nav: "contacts")
        })
        router.post("/contacts/{contact}", use: form { _, context, _, f in
            let c = try await contact(context)
            let patch = patch(from: f, current: c)
            if patch != ContactPatch() { _ = try await node.applyPatch(patch, to: c.id) }
            return Self.redirect("/contacts/\(c.id)")
        })
        router.post("/contacts/{contact}/tag", use: edit { f, _ in
            guard let tag = f["tag"] else { throw Refusal(status: .badRequest, message: pages.text("error_no_tag")) }
            return ContactPatch(addTags: tag.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "#")) })
        })
        router.post("/contacts/{contact}/untag", use: edit { f, _ in
            guard let tag = f["tag"] else { throw Refusal(status: .badRequest, message: pages.text("error_no_tag")) }
            return ContactPatch(removeTags: [tag])
        })
        router.post("/contacts/{contact}/log", use: edit { f, _ in
            let channel = f["channel"] ?? Self.channels[0]
            guard let outcome = f["outcome"] else { throw Refusal(status: .badRequest, message: pages.text("error_no_outcome")) }
            return ContactPatch(logConversation: .init(channel: channel, outcome: outcome, note: f["note"]))
        })
        router.post("/contacts/{contact}/link", use: edit { f, _ in
            guard let other = f["other"] else { throw Refusal(status: .badRequest, message: pages.text("error_no_other")) }
            return ContactPatch(link: [other])
        })
        router.get("/contacts/{contact}/forget", use: page { request, context, s in
            let c = try await contact(context)
            return html(request, "forget", title: pages.text("contact_forget"), data: ["contact": c], session: s, nav: "contacts")
        })
        router.post("/contacts/{contact}/forget", use: form { _, context, _, _ in
            let c = try await contact(context)
            _ = try await node.deleteContact(c.id, forget: true)
            return Self.redirect("/contacts")
        })
    }

    func contact(_ context: Context) async throws -> ContactDTO {
        let ref = context.parameters.get("contact").map { $0.removingPercentEncoding ?? $0 } ?? ""
        return try await node.contactDetails(scope: nil, reference: ref, merged: false)
    }

    /// A form that applies one patch to the contact in the path, then shows its page again.
    func edit(_ make: @escaping @Sendable (WebForm, ContactDTO) throws -> ContactPatch) -> @Sendable (Request, Context) async throws -> Response {
        form { _, context, _, f in
            let c = try await contact(context)
            _ = try await node.applyPatch(try make(f, c), to: c.id)
            return Self.redirect("/contacts/\(c.id)")
        }
    }

    /// The add/edit form's patch: only what differs from the contact as shown.
    func patch(from f: WebForm, current c: ContactDTO?) -> ContactPatch {
        var patch = ContactPatch()
        var set: [String: String] = [:]
        let now = c.map(Self.fieldValues) ?? [:]
        for name in Self.editableFields {
            guard f.fields.contains(where: { $0.name == name }) else { continue }
            let value = f[name] ?? ""
            if value != (now[name] ?? "") { set[name] = value }
        }
        patch.set = set.nilIfEmpty
        patch.addPhones = f.all("addPhone").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.nilIfEmpty
        patch.addEmails = f.all("addEmail").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.nilIfEmpty
        patch.removePhones = f.all("removePhone").nilIfEmpty
        patch.removeEmails = f.all("removeEmail").nilIfEmpty
        if let level = f["consentLevel"], level != (c?.consent?.level ?? "none") || (f["consentMethod"] ?? "") != (c?.consent?.method ?? "") {
            patch.consent = .init(level: level, method: f["consentMethod"])
        }
        return patch
    }

    static func fieldValues(_ c: ContactDTO) -> [String: String] {
        var out: [String: String] = [:]
        out["givenName"] = c.givenName
        out["familyName"] = c.familyName
        out["displayName"] = c.displayName
        out["support"] = c.support
        out["relationship"] = c.relationship
        out["address"] = c.address
        out["city"] = c.city
        out["postalCode"] = c.postalCode
        out["voterFileId"] = c.voterFileId
        out["notes"] = c.notes
        return out
    }

    func formData(_ c: ContactDTO?, action: String, cancel: String) -> [String: Any] {
        let values = c.map(Self.fieldValues) ?? [:]
        var data: [String: Any] = ["action": action, "cancel": cancel]
        data["fields"] = Self.editableFields.map { name -> [String: Any] in
            ["name": name, "label": pages.text("contact_" + name), "value": values[name] ?? "", "multiline": name == "notes" || name == "address",
             "numeric": name == "support"]
        }
        if let c { data["contact"] = c }
        let level = c?.consent?.level ?? "none"
        data["consentLevels"] = ["none", "contact", "share"].map { ["value": $0, "label": pages.text("consent_" + $0), "selected": $0 == level] }
        data["consentMethod"] = c?.consent?.method ?? ""
        return data
    }

    /// Per chapter holding this person, the members who said they know them.
    func knownBy(_ id: String) async -> [[String: Any]] {
        var out: [[String: Any]] = []
        for ch in await node.chapterList() where ch.role != "relay" {
            guard let c = try? await node.contactDetails(scope: ch.id, reference: id, merged: false), !c.knows.isEmpty else { continue }
            let names = await memberNames(chapter: ch.id)
            let me = node.identity.member.description
            out.append(["chapter": ch.name, "members": c.knows.map { $0.member == me ? pages.text("chapter_you") : Self.memberLabel($0.member, names: names) }])
        }
        return out
    }
}

extension Array {
    var nilIfEmpty: Self? { isEmpty ? nil : self }
}

extension Dictionary {
    var nilIfEmpty: Self? { isEmpty ? nil : self }
}
