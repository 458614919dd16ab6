import Foundation
import Hummingbird
import KithNetwork
import KithQuery
import KithWeb

/// Sharing with the chapter, the chapter itself (members, invites with their QR code, join
/// requests, removal, leaving, the shared map) and what the party sees (grants, receipts,
/// revocations, the audit log): each through the `NodeCommands` op of its API route.
extension WebRoutes {
    func fieldChoices(checked: Set<String>) -> [[String: Any]] {
        ShareableField.allCases.map { ["value": $0.rawValue, "label": pages.text("field_" + $0.rawValue), "checked": checked.contains($0.rawValue)] }
    }

    func chapters() async -> [SyncNode.ChapterSummary] {
        await node.chapterList().filter { $0.role != "relay" }
    }

    /// The chapter a page shows: the one its `c` parameter names when this node is in it, else the
    /// first (a member of one chapter never sees the parameter). Forms use `formChapter`.
    func chapter(named id: String?) async -> SyncNode.ChapterSummary? {
        let all = await chapters()
        return all.first { $0.id == id } ?? all.first
    }

    /// The chapter a form acts on: exactly the one its `c` field names. A form from a stale page
    /// (the chapter was left, or this computer was removed from it, after the page was loaded) is
    /// refused rather than acting on whichever chapter comes first; without `c`, only a member of
    /// exactly one chapter has an answer.
    func formChapter(_ f: WebForm) async throws -> SyncNode.ChapterSummary {
        let all = await chapters()
        if let id = f["c"], !id.isEmpty {
            guard let chapter = all.first(where: { $0.id == id }), chapter.role != "removed" else { throw Refusal(status: .conflict, message: pages.text("chapter_gone")) }
            return chapter
        }
        let current = all.filter { $0.role != "removed" }
        guard let only = current.first else { throw Refusal(status: .badRequest, message: pages.text("chapter_none")) }
        guard current.count == 1 else { throw Refusal(status: .badRequest, message: pages.text("chapter_which")) }
        return only
    }

    /// `?c=ID` for the chapter an API answer names (create, join), so the page shows that one.
    static func chapterQuery(_ answer: [String: Any]) -> String {
        ((answer["chapter"] as? [String: Any])?["id"] as? String).map { "?c=" + encode($0) } ?? ""
    }

    /// Links to each chapter for a member of more than one, the shown one marked.
    func chapterPicker(showing current: SyncNode.ChapterSummary?, path: String) async -> [String: Any]? {
        let all = await chapters()
        guard all.count > 1 else { return nil }
        return ["chapters": all.map { ["name": $0.name, "href": "\(path)?c=\(Self.encode($0.id))", "current": $0.id == current?.id] }]
    }

    // MARK: Share

    func registerSharing(on router: Router<Context>) {
        router.get("/share", use: page { request, _, s in
            let query = request.uri.queryParameters
            var data: [String: Any] = [
                "chapters": await chapters().map { ["id": $0.id, "name": $0.name] },
                "fieldChoices": fieldChoices(checked: Set(ShareableField.defaults.map(\.rawValue))),
                "statement": ShareableField.defaults.map { pages.text("field_" + $0.rawValue) }.joined(separator: ", "),
                "contactsValue": query.get("contact") ?? "", "tagValue": query.get("tag") ?? "",
            ]
            if let shared = query.get("shared") {
                let names = shared.split(separator: ",").map { pages.text("field_" + $0) }
                data["result"] = ["fieldsText": names.joined(separator: ", "), "count": Int(query.get("count") ?? "") ?? 0]
            }
            if query.get("retracted") != nil { data["retracted"] = true }
            return html(request, "share", title: pages.text("share_title"), data: data, session: s, nav: "share")
        })
        router.post("/share", use: form { _, _, _, f in
            var fields: [String: Any] = [:]
            let ids = (f["contacts"] ?? "").split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
            if !ids.isEmpty { fields["contacts"] = ids }
            if let tag = f["tag"] { fields["tag"] = tag.trimmingCharacters(in: CharacterSet(charactersIn: "#")) }
            if let chapter = f["chapter"] { fields["chapter"] = chapter }
            if f["action"] == "unshare" {
                _ = try await commands.perform("unshare", fields)
                return Self.redirect("/share?retracted=1")
            }
            let chosen = f.all("fields")
            guard !chosen.isEmpty else { throw Refusal(status: .badRequest, message: pages.text("error_no_fields")) }
            fields["fields"] = chosen.joined(separator: ",")
            let answer = try await commands.perform("share", fields)
            let shared = (answer["fields"] as? [String] ?? chosen).joined(separator: ",")
            return Self.redirect("/share?shared=\(Self.encode(shared))&count=\(answer["contacts"] as? Int ?? 0)")
        })
    }

    // MARK: Chapter

    func registerChapter(on router: Router<Context>) {
        router.get("/chapter", use: page { request, _, s in
            var notice: String?
            if request.uri.queryParameters.get("held") != nil { notice = pages.text("chapter_held") }
            if request.uri.queryParameters.get("removed") != nil { notice = pages.text("chapter_removed") }
            let chapter = await chapter(named: request.uri.queryParameters.get("c"))
            return try await chapterPage(request, s, chapter: chapter, invite: nil, notice: notice)
        })
        router.post("/chapter/create", use: form { _, _, _, f in
            let answer = try await commands.perform("chapter-create", ["name": f["name"] ?? ""])
            return Self.redirect("/chapter" + Self.chapterQuery(answer))
        })
        router.post("/chapter/join", use: form { _, _, _, f in
            let answer = try await commands.perform("chapter-join", ["invite": f["invite"] ?? ""])
            return Self.redirect(answer["held"] != nil ? "/chapter?held=1" : "/chapter" + Self.chapterQuery(answer))
        })
        router.post("/chapter/invites", use: form { request, _, s, f in
            let chapter = try await formChapter(f)
            var fields: [String: Any] = ["chapter": chapter.id, "uses": Int(f["uses"] ?? "1") ?? 1]
            if f["approve"] != nil { fields["approve"] = true }
            let answer = try await commands.perform("chapter-invite", fields)
            let text = answer["invite"] as? String ?? ""
            let qr: String
            do { qr = try QRCode(text).svg(title: pages.text("chapter_invite_qr")) } catch { qr = "" }
            // Shown in the answer, never put in an address (it admits whoever has it).
            return try await chapterPage(request, s, chapter: chapter, invite: ["text": text, "svg": qr], notice: nil)
        })
        router.post("/chapter/requests/{member}/{decision}", use: form { _, context, _, f in
            let decision = context.parameters.get("decision") ?? ""
            guard decision == "approve" || decision == "deny" else { throw Refusal(status: .notFound, message: pages.text("error_no_decision")) }
            let chapter = try await formChapter(f).id
            _ = try await commands.perform("chapter-" + decision, ["chapter": chapter, "member": context.parameters.get("member") ?? ""])
            return Self.redirect("/chapter?c=" + Self.encode(chapter))
        })
        router.post("/chapter/members/{member}/remove", use: form { _, context, _, f in
            let chapter = try await formChapter(f).id
            _ = try await commands.perform("chapter-remove", ["chapter": chapter, "member": context.parameters.get("member") ?? ""])
            return Self.redirect("/chapter?removed=1&c=" + Self.encode(chapter))
        })
        router.post("/chapter/leave", use: form { _, _, _, f in
            let chapter = try await formChapter(f).id
            _ = try await commands.perform("chapter-leave", ["chapter": chapter])
            return Self.redirect("/chapter")
        })
        router.get("/chapter/map", use: page { request, _, s in
            guard let chapter = await chapter(named: request.uri.queryParameters.get("c")) else { return Self.redirect("/chapter") }
            let q = request.uri.queryParameters.get("q").flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 }
            let (summary, page, duplicates) = try await node.chapterContacts(chapter: chapter.id, q: q, limit: 200, cursor: request.uri.queryParameters.get("cursor"))
            let me = node.identity.member.description
            let names = Dictionary(page.contacts.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
            let memberNames = await memberNames(chapter: chapter.id)
            let contacts = page.contacts.map { c -> ContactDTO in
                var c = c
                c.knows = c.knows.map { k in
                    var k = k
                    k.member = k.member == me ? pages.text("chapter_you") : Self.memberLabel(k.member, names: memberNames)
                    return k
                }
                return c
            }
            let map: [String: Any] = ["chapter": summary, "contacts": contacts, "total": page.total,
                                      "duplicates": duplicates.map { group in group.map { id in names[id.description].map { "\($0) (\(id.description.prefix(8)))" } ?? id.description } }]
            var data: [String: Any] = ["map": map, "q": q ?? "", "chapterId": chapter.id]
            if let picker = await chapterPicker(showing: chapter, path: "/chapter/map") { data["picker"] = picker }
            return html(request, "chapter-map", title: pages.text("chapter_map"), data: data, session: s, nav: "chapter", live: true)
        })
    }

    func chapterPage(_ request: Request, _ s: Session, chapter: SyncNode.ChapterSummary?, invite: [String: String]?, notice: String?) async throws -> Response {
        var data: [String: Any] = [:]
        if let notice { data["notice"] = notice }
        if let picker = await chapterPicker(showing: chapter, path: "/chapter") { data["picker"] = picker }
        if let chapter {
            data["chapterId"] = chapter.id
            let members = try await commands.perform("chapter-members", ["chapter": chapter.id])
            let isAdmin = chapter.role == "admin"
            data["chapter"] = chapter
            data["roleText"] = pages.text("role_" + chapter.role)
            data["isAdmin"] = isAdmin
            data["memberList"] = (members["members"] as? [[String: Any]] ?? []).map { m -> [String: Any] in
                var m = m
                let key = m["member"] as? String ?? ""
                m["short"] = String(key.prefix(12))
                m["label"] = (m["name"] as? String) ?? String(key.prefix(12))
                m["named"] = m["name"] is String
                m["you"] = (m["you"] as? Bool) ?? false
                m["admin"] = (m["admin"] as? Bool) ?? false
                m["canRemove"] = isAdmin && !((m["you"] as? Bool) ?? false)
                return m
            }
            if isAdmin {
                let requests = (try? await commands.perform("chapter-requests", ["chapter": chapter.id]))?["requests"] as? [[String: Any]] ?? []
                data["requests"] = requests.map { r -> [String: Any] in
                    var r = r
                    let key = r["member"] as? String ?? ""
                    r["short"] = String(key.prefix(12))
                    return r
                }
            }
            if let invite { data["invite"] = invite }
        }
        return html(request, "chapter", title: pages.text("chapter_title"), data: data, session: s, nav: "chapter", live: true)
    }

    // MARK: What the party sees

    func registerParty(on router: Router<Context>) {
        router.get("/party", use: page { request, _, s in
            try await partyPage(request, s)
        })
        router.post("/party/grant", use: form { _, _, _, f in
            guard let contact = f["contact"] else { throw Refusal(status: .badRequest, message: pages.text("error_no_contact")) }
            let chosen = f.all("fields")
            guard !chosen.isEmpty else { throw Refusal(status: .badRequest, message: pages.text("error_no_fields")) }
            var fields: [String: Any] = ["contacts": [contact], "fields": chosen.joined(separator: ","), "purpose": f["purpose"] ?? ""]
            if let expires = f["expires"] {
                guard let seconds = Self.duration(expires) else {
                    throw Refusal(status: .badRequest, message: pages.text("error_expiry"))
                }
                fields["expires"] = seconds
            }
            let answer = try await commands.perform("consent-grant", fields)
            // A refusal for one contact (no consent recorded) comes back as a result, not an error.
            if let results = answer["results"] as? [[String: String]], let refused = results.first(where: { $0["result"] == "refused" }) {
                throw Refusal(status: .badRequest, message: refused["reason"] ?? "refused")
            }
            return Self.redirect("/party")
        })
        router.post("/party/revoke", use: form { _, _, _, f in
            guard let contact = f["contact"] else { throw Refusal(status: .badRequest, message: pages.text("error_no_contact")) }
            _ = try await commands.perform("consent-revoke", ["contacts": [contact]])
            return Self.redirect("/party")
        })
    }

    /// "90d", "12h", "30m" or plain seconds.
    static func duration(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [Character: Int] = ["d": 86_400, "h": 3600, "m": 60, "s": 1]
        if let last = t.last, let unit = units[last], let n = Int(t.dropLast()), n > 0 { return n * unit }
        return Int(t).flatMap { $0 > 0 ? $0 : nil }
    }

    func partyPage(_ request: Request, _ s: Session) async throws -> Response {
        var data: [String: Any] = ["fieldChoices": fieldChoices(checked: ["name"])]
        if let c = request.uri.queryParameters.get("contact") { data["contactValue"] = c }
        if let chapter = await chapters().first,
           let details = try? await commands.perform("chapter-show", ["chapter": chapter.id]),
           let org = (details["chapter"] as? [String: Any])?["organization"] as? [String: Any] {
            data["organization"] = org
        }
        let entries = (try await commands.perform("audit", [:]))["entries"] as? [[String: Any]] ?? []
        data["audit"] = entries.reversed().map { e -> [String: Any] in
            var e = e
            e["when"] = Self.dateTime(UInt64((e["at"] as? Int) ?? 0))
            e["contactShort"] = String((e["contact"] as? String ?? "").prefix(12))
            return e
        }
        var seen = Set<String>()
        var grants: [[String: Any]] = []
        for e in entries {
            guard let contact = e["contact"] as? String, !contact.isEmpty, seen.insert(contact).inserted else { continue }
            let shown = (try? await commands.perform("consent-show", ["contact": contact]))?["grants"] as? [[String: Any]] ?? []
            let name = (try? await node.contactDetails(scope: nil, reference: contact, merged: false))?.name ?? contact
            for g in shown {
                var g = g
                var state = g["state"] as? String ?? "?"
                if state == "active", (g["acknowledgedVersion"] as? Int ?? 0) == 0 { state = "pending" }
                g["contact"] = contact
                g["contactName"] = name
                g["fieldsText"] = (g["fields"] as? [String] ?? []).joined(separator: ", ")
                g["expiresText"] = (g["expires"] as? Int).map { Self.dateTime(UInt64($0)) } ?? pages.text("party_never")
                g["stateText"] = pages.text("state_" + state)
                g["revocable"] = state == "active" || state == "pending"
                g["holds"] = ((g["organizationHolds"] as? [String: String]) ?? [:]).sorted { $0.key < $1.key }.map { ["key": $0.key, "value": $0.value] }
                grants.append(g)
            }
        }
        data["grants"] = grants
        return html(request, "party", title: pages.text("party_title"), data: data, session: s, nav: "party", live: true)
    }

    /// The display names members gave themselves in one chapter (`set name`), by member key.
    func memberNames(chapter: String) async -> [String: String] {
        guard let (_, members) = try? await node.members(chapter: chapter) else { return [:] }
        return Dictionary(members.compactMap { m in m.name.map { (m.member, $0) } }, uniquingKeysWith: { a, _ in a })
    }

    /// A member as people should see them: the name they set, else the first 12 characters of their key.
    static func memberLabel(_ member: String, names: [String: String]) -> String {
        names[member] ?? String(member.prefix(12))
    }
}
