import Foundation
import KithChapter
import KithCRDT
import KithCrypto
import KithQuery
import KithStore

/// Chapter, sharing, consent and device operations (Protocol/api.md §4).
extension NodeCommands {
    static func object(_ value: some Encodable) -> Any {
        (try? JSONEncoder().encode(value)).flatMap { try? JSONSerialization.jsonObject(with: $0) } ?? NSNull()
    }

    func handleChapter(_ op: String, _ request: [String: Any]) async throws -> [String: Any] {
        let chapter = request["chapter"] as? String
        switch op {
        case "device-pair":
            let expires = try ControlRequest.integer(request, "expires") ?? 600
            guard expires > 0, expires <= 86_400 else { throw ChapterCommandError("a pairing code expires within 1 second to 1 day") }
            let hint = (request["hint"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? inviteHint
            return ["ok": true, "code": try await node.openPairing(expiresIn: UInt64(expires), hint: hint), "hint": hint]
        case "device-revoke":
            guard let device = request["device"] as? String else { throw ChapterCommandError("device-revoke needs a \"device\"") }
            return ["ok": true, "revoked": try await node.revokeDevice(device)]
        case "device-list":
            return ["ok": true, "devices": Self.object(await node.deviceList())]
        case "name-set":
            guard let name = request["name"] as? String else { throw ChapterCommandError("name-set needs a \"name\" (empty clears it)") }
            let (subject, count) = try await node.setName(name, device: (request["device"] as? String).flatMap { $0.isEmpty ? nil : $0 })
            return ["ok": true, "subject": subject, "name": name, "chapters": count]
        case "chapter-create":
            guard let name = request["name"] as? String, !name.isEmpty else { throw ChapterCommandError("chapter-create needs a \"name\"") }
            return ["ok": true, "chapter": Self.object(try await node.createChapter(name: name))]
        case "chapter-list":
            return ["ok": true, "chapters": Self.object(await node.chapterList())]
        case "chapter-members":
            let (summary, members) = try await node.members(chapter: chapter)
            return ["ok": true, "chapter": Self.object(summary), "members": Self.object(members)]
        case "chapter-invite":
            let expires = try ControlRequest.integer(request, "expires") ?? 48 * 3600
            let uses = try ControlRequest.integer(request, "uses") ?? 1
            guard expires > 0, expires <= 90 * 86_400 else { throw ChapterCommandError("an invite expires within 1 second to 90 days") }
            let hint = (request["hint"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? inviteHint
            let text = try await node.openInvite(chapter: chapter, expiresIn: UInt64(expires), uses: uses,
                                                 approval: try ControlRequest.bool(request, "approve") ?? false, hint: hint)
            return ["ok": true, "invite": text, "hint": hint, "expires": expires, "uses": uses]
        case "chapter-join":
            guard let text = request["invite"] as? String else { throw ChapterCommandError("chapter-join needs an \"invite\"") }
            guard let network else { throw ChapterCommandError("this daemon cannot dial out") }
            let invite: ChapterInvite
            do { invite = try ChapterInvite(text: text, now: node.clock() / 1000) } catch { throw ChapterCommandError(error.detail) }
            try await node.checkNotMember(of: invite.chapter)
            let outcome: Result<SyncNode.ChapterSummary, ChapterCommandError>
            do { outcome = .success(try await network.join(invite)) } catch { outcome = .failure(error) }
            switch outcome {
            case let .success(summary): return ["ok": true, "chapter": Self.object(summary)]
            case let .failure(e) where e.held: return ["ok": true, "held": true, "message": e.message]
            case let .failure(e): throw e
            }
        case "chapter-edit":
            guard let contact = request["contact"] as? String else { throw ChapterCommandError("chapter-edit needs a \"contact\"") }
            var ops: [KithCRDT.Operation] = []
            if let text = request["edit"] as? String {
                guard let e = ControlRequest.edit(text) else {
                    throw ChapterCommandError("chapter-edit: the \"edit\" does not decode")
                }
                ops = e.ops
            }
            let knows = (request["knows"] as? Int).map { UInt8(clamping: $0) }
            return ["ok": true, "contact": try await node.annotate(chapter: chapter, contact: contact, ops: ops, knows: knows).description]
        case "chapter-affiliate":
            guard let card = request["card"] as? String, let hub = request["hub"] as? String else {
                throw ChapterCommandError("chapter-affiliate needs a \"card\" and a \"hub\"")
            }
            let name = try await node.affiliate(chapter: chapter, card: card, hub: hub, allowWithoutContactConsent: try ControlRequest.bool(request, "allowWithoutContactConsent") ?? false)
            return ["ok": true, "organization": name]
        case "chapter-show":
            return ["ok": true, "chapter": (try? JSONSerialization.jsonObject(with: try await node.chapterDetails(chapter: chapter))) ?? [:]]
        case "consent-grant":
            // Checked before use: a negative or huge "expires" used to trap the daemon (UInt64(-1), `* 1000`).
            let expiresIn: UInt64?
            do { expiresIn = try ControlRequest.seconds(request, "expires", max: 100 * 366 * 86_400, what: "a grant's expiry") } catch {
                throw ChapterCommandError(error.message)
            }
            let ids = try await node.resolveContacts(references: request["contacts"] as? [String] ?? [], tag: request["tag"] as? String)
            guard let fieldsText = request["fields"] as? String else { throw ChapterCommandError("say which fields: --fields name,email,…") }
            let fields = try ShareableField.parse(fieldsText)
            let results = try await node.grantConsent(contacts: ids, chapter: chapter, organization: request["organization"] as? String,
                                                      fields: fields, purpose: request["purpose"] as? String ?? "",
                                                      expiresIn: expiresIn)
            return ["ok": true, "results": results]
        case "consent-revoke":
            let ids = try await node.resolveContacts(references: request["contacts"] as? [String] ?? [], tag: request["tag"] as? String)
            return ["ok": true, "results": try await node.revokeConsent(contacts: ids)]
        case "consent-show":
            let refs = (request["contacts"] as? [String]) ?? (request["contact"] as? String).map { [$0] } ?? []
            let ids = try await node.resolveContacts(references: refs, tag: nil)
            return ["ok": true, "grants": (try? JSONSerialization.jsonObject(with: try await node.consentShow(contact: ids[0]))) ?? []]
        case "audit":
            return ["ok": true, "entries": Self.object(try await node.auditTrail())]
        case "chapter-requests":
            return ["ok": true, "requests": Self.object(try await node.joinRequests(chapter: chapter))]
        case "chapter-approve", "chapter-deny":
            guard let member = request["member"] as? String else { throw ChapterCommandError("\(op) needs a \"member\"") }
            return ["ok": true, "member": try await node.decideJoin(chapter: chapter, member: member, approve: op == "chapter-approve")]
        case "chapter-remove":
            guard let member = request["member"] as? String else { throw ChapterCommandError("chapter-remove needs a \"member\"") }
            let removed = try await node.removeMember(chapter: chapter, member: member)
            return ["ok": true, "removed": removed, "openInvites": Self.object(try await node.openInvites(chapter: chapter))]
        case "chapter-invites":
            return ["ok": true, "invites": Self.object(try await node.openInvites(chapter: chapter))]
        case "chapter-invite-close":
            guard let invite = request["invite"] as? String else { throw ChapterCommandError("chapter-invite-close needs an \"invite\" id") }
            return ["ok": true, "closed": try await node.closeInvite(chapter: chapter, invite: invite)]
        case "chapter-leave":
            return ["ok": true, "left": try await node.leave(chapter: chapter)]
        case "chapter-map":
            let limit = try ControlRequest.integer(request, "limit")
            let (summary, page, duplicates) = try await node.chapterContacts(chapter: chapter, q: request["q"] as? String, limit: limit,
                                                                           cursor: request["cursor"] as? String)
            var answer: [String: Any] = ["chapter": Self.object(summary), "contacts": Self.object(page.contacts), "total": page.total,
                                         "likelyDuplicates": duplicates.map { $0.map(\.description) },
                                         "names": try await node.names(chapter: chapter)]
            if let next = page.next { answer["next"] = next }
            return answer
        case "share", "unshare":
            let ids = try await node.resolveContacts(references: request["contacts"] as? [String] ?? [], tag: request["tag"] as? String)
            if op == "unshare" { return ["ok": true, "retracted": try await node.unshare(contacts: ids, chapter: chapter)] }
            let fields = try (request["fields"] as? String).map(ShareableField.parse) ?? ShareableField.defaults
            return ["ok": true, "shared": try await node.share(contacts: ids, chapter: chapter, fields: fields), "contacts": ids.count,
                    "fields": fields.map(\.rawValue)]
        default:
            throw ChapterCommandError("unknown op '\(op)'")
        }
    }

}

extension SyncNode {
    /// Contact references (ids or unique prefixes) and/or every contact with a tag.
    func resolveContacts(references: [String], tag: String?) throws(ChapterCommandError) -> [ContactID] {
        var out: [ContactID] = []
        for r in references {
            do { out.append(try store.replica.resolve(r)) } catch { throw ChapterCommandError(error.detail) }
        }
        if let tag { out += contacts(tagged: tag) }
        guard !out.isEmpty else { throw ChapterCommandError(tag != nil ? "no contact has the tag '\(tag!)'" : "name at least one contact or --tag") }
        return Array(Set(out)).sorted()
    }
}
