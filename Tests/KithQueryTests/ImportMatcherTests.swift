import KithCRDT
import KithCrypto
import KithInterchange
import KithQuery
import Testing

/// Import matching (README "Import"): id, external id, email, phone; only what is new is
/// written; conflicts and name + postal code suggestions are reported, never acted on.
@Suite("Import matching")
struct ImportMatcherTests {
    static func record(_ origin: String, _ build: (inout ImportedContact) -> Void) throws -> ConvertedContact {
        var c = ImportedContact(origin: origin)
        build(&c)
        return try c.convert(region: PhoneRegion(code: "GB"))
    }

    static func existing() throws -> (Replica, [ContactID]) {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        let ids = (0..<2).map { ContactID(high: 9, low: UInt64($0)) }
        try a.commit([
            ContactEdit(contact: ids[0], ops: [.setField(.givenName, "Ada"), .setField(.familyName, "Lovelace"), .setField(.postalCode, "SW1Y 4LB"),
                                               .add(.emails, "ada@example.org"), .add(.phones, "+442079460018")]),
            ContactEdit(contact: ids[1], ops: [.setField(.givenName, "Grace"), .add(.emails, "grace@example.org"), .add(.externalIDs, "van:42")]),
        ], to: &r, wallMilliseconds: 1_790_000_000_000)
        return (r, ids)
    }

    @Test func matchesWriteOnlyWhatIsNew() throws {
        let (r, ids) = try Self.existing()
        var m = ImportMatcher(existing: r.contacts().map(ContactDTO.init))
        // By email (any case), adding a title: one op.
        let ada = try Self.record("row 1") {
            $0.fields = [.givenName: "Ada", .title: "Programmer"]
            $0.emails = [ImportedValue("ADA@example.org")]
        }
        guard case let .update(e, how) = m.plan(ada).decision else { Issue.record("not an update"); return }
        #expect(e.contact == ids[0] && how == "email")
        #expect(e.ops == [.setField(.title, "Programmer")])
        // The same record again: unchanged.
        guard case .unchanged(ids[0], _) = m.plan(ada).decision else { Issue.record("not unchanged"); return }
        // By phone in another format; by external id before email.
        let byPhone = try Self.record("row 2") { $0.phones = [ImportedValue("+44 (0)20 7946 0018")] }
        guard case .unchanged(ids[0], "phone") = m.plan(byPhone).decision else { Issue.record("phone"); return }
        let byVAN = try Self.record("row 3") {
            $0.externalIDs = ["van:42"]
            $0.emails = [ImportedValue("ada@example.org")]
        }
        guard case let .update(v, "external id") = m.plan(byVAN).decision else { Issue.record("external id"); return }
        #expect(v.contact == ids[1])
        // A Kith export's record (its UID a Kith id) is its own contact, whatever it shares.
        let kithRecord = try Self.record("card 4") {
            $0.uid = ContactID(high: 77, low: 77).description
            $0.emails = [ImportedValue("ada@example.org")]
        }
        guard case let .create(k) = m.plan(kithRecord).decision else { Issue.record("a Kith id merged"); return }
        #expect(k.contact == ContactID(high: 77, low: 77))
    }

    /// `kith import` without kithd builds its matcher from the replica's views, not from pages
    /// of DTOs: both must hold the same members, or a re-import would write again (or skip).
    @Test func aMatcherFromTheReplicaDecidesAsOneFromDTOs() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        let id = ContactID(high: 5, low: 5)
        let full = try Self.record("card 1") {
            $0.fields = [.givenName: "Rosa", .familyName: "Parks", .organization: "NAACP", .title: "Secretary", .postalCode: "36104"]
            $0.phones = [ImportedValue("+1 334 555 0100", label: "work"), ImportedValue("+1 334 555 0101", label: "mobile")]
            $0.emails = [ImportedValue("rosa@example.org", label: "home")]
            $0.urls = [ImportedValue("https://example.org/rosa")]
            $0.externalIDs = ["van:7"]
            $0.events = [ImportedValue("mobilize:9@2026-10-03", label: "Canvass")]
            $0.tags = ["volunteer"]
        }
        try a.commit([ContactEdit(contact: id, ops: full.edit.ops)], to: &r, wallMilliseconds: 1_790_000_000_000)
        // A phone removed later: its label stays in the set but no longer counts.
        let adds = r.liveAdds(of: "+13345550101", in: .phones, contact: id)
        #expect(adds.count == 1)
        try a.commit([ContactEdit(contact: id, ops: [.remove(.phones, "+13345550101", observed: adds)])], to: &r, wallMilliseconds: 1_790_000_000_001)
        var fromDTOs = ImportMatcher(existing: r.contacts().map(ContactDTO.init))
        var fromReplica = ImportMatcher(replica: r)
        #expect(fromReplica.contactCount == 1)
        func decide(_ m: inout ImportMatcher, _ c: ConvertedContact) -> String {
            switch m.plan(c).decision {
            case let .create(e): "create \(e.ops.count)"
            case let .update(e, how): "update \(e.contact) \(how) \(e.ops)"
            case let .unchanged(i, how): "unchanged \(i) \(how)"
            case let .conflict(ids, how): "conflict \(ids) \(how)"
            }
        }
        let same = try Self.record("card 2") {
            $0.fields = [.givenName: "Rosa", .organization: "NAACP"]
            $0.phones = [ImportedValue("+1 (334) 555-0100", label: "work")]
            $0.emails = [ImportedValue("ROSA@example.org", label: "home")]
            $0.urls = [ImportedValue("https://example.org/rosa")]
            $0.externalIDs = ["van:7"]
            $0.tags = ["volunteer"]
        }
        let newer = try Self.record("card 3") {
            $0.emails = [ImportedValue("rosa@example.org", label: "work")]
            $0.phones = [ImportedValue("+1 334 555 0101", label: "mobile")]
            $0.fields = [.title: "President"]
        }
        for c in [same, newer, full] {
            #expect(decide(&fromDTOs, c) == decide(&fromReplica, c))
        }
        var fresh = ImportMatcher(replica: r)
        guard case .unchanged(id, "external id") = fresh.plan(same).decision else { Issue.record("not unchanged"); return }
    }

    /// The matcher `kith import` keeps in the store decides exactly as the one it was saved from
    /// (ids, conflicts, suggestions, what is unchanged), and bytes that are not one are refused.
    @Test func anEncodedMatcherDecidesAsTheOriginal() throws {
        var (r, ids) = try Self.existing()
        // A third contact with Grace's email: a key two contacts share.
        var other = ChangeAuthor(signer: .init())
        try other.commit([ContactEdit(contact: ContactID(high: 9, low: 7), ops: [.setField(.givenName, "G"), .add(.emails, "grace@example.org")])],
                         to: &r, wallMilliseconds: 1_790_000_000_000)
        var m = ImportMatcher(replica: r)
        // And one learned from a record planned as new.
        let twin = try Self.record("row 0") { $0.fields = [.givenName: "Twin"]; $0.phones = [ImportedValue("+44 20 7946 0099")] }
        _ = m.plan(twin)
        var decoded = try #require(ImportMatcher(encoded: m.encoded))
        #expect(decoded == m && decoded.contactCount == 4)
        let records = [
            twin,
            try Self.record("row 1") { $0.emails = [ImportedValue("ada@example.org"), ImportedValue("grace@example.org")] },
            try Self.record("row 2") { $0.phones = [ImportedValue("020 7946 0018")] },
            try Self.record("row 3") { $0.fields = [.givenName: "Ada", .familyName: "Lovelace", .postalCode: "SW1Y4LB"]; $0.emails = [ImportedValue("x@example.org")] },
            try Self.record("row 4") { $0.externalIDs = ["van:42"]; $0.fields = [.givenName: "Grace"]; $0.emails = [ImportedValue("grace@example.org")] },
        ]
        for c in records {
            let (a, sa) = m.plan(c), (b, sb) = decoded.plan(c)
            #expect(String(describing: a) == String(describing: b) && sa == sb, "\(c.origin)")
        }
        guard case .unchanged(ids[1], "external id") = decoded.plan(records[4]).decision else { Issue.record("not unchanged"); return }
        // Truncated, extended or another version: not a matcher (the import rebuilds it).
        let bytes = m.encoded
        #expect(ImportMatcher(encoded: Array(bytes.dropLast())) == nil)
        #expect(ImportMatcher(encoded: bytes + [0]) == nil)
        #expect(ImportMatcher(encoded: [2] + bytes.dropFirst()) == nil)
        #expect(ImportMatcher(encoded: []) == nil)
    }

    @Test func conflictsAndSuggestionsAreReportedNotActedOn() throws {
        let (r, ids) = try Self.existing()
        var m = ImportMatcher(existing: r.contacts().map(ContactDTO.init))
        let both = try Self.record("row 1") { $0.emails = [ImportedValue("ada@example.org"), ImportedValue("grace@example.org")] }
        guard case let .conflict(c, "email") = m.plan(both).decision else { Issue.record("no conflict"); return }
        #expect(c == ids.sorted())
        let namesake = try Self.record("row 2") {
            $0.fields = [.givenName: "Ada", .familyName: "Lovelace", .postalCode: "SW1Y 4LB"]
            $0.emails = [ImportedValue("other@example.org")]
        }
        let (d, suggestion) = m.plan(namesake)
        guard case .create = d else { Issue.record("not created"); return }
        #expect(suggestion == ids[0])
    }

    @Test func rowsOfOnePersonInOneFileBecomeOneContact() throws {
        var m = ImportMatcher()
        let a = try Self.record("row 1") {
            $0.emails = [ImportedValue("rosa@example.org")]
            $0.events = [ImportedValue("mobilize:1@2026-10-03", label: "Canvass")]
        }
        let b = try Self.record("row 2") {
            $0.emails = [ImportedValue("Rosa@Example.org")]
            $0.events = [ImportedValue("mobilize:2@2026-10-10", label: "Phone bank")]
        }
        guard case let .create(first) = m.plan(a).decision, case let .update(second, "email") = m.plan(b).decision else {
            Issue.record("not create then update")
            return
        }
        #expect(second.contact == first.contact)
        #expect(second.ops == [.add(.events, "mobilize:2@2026-10-10", payload: "Phone bank")])
    }
}

/// The API's patch and contact object for the revision-2 fields and sets.
@Suite("Patch: organizer fields")
struct OrganizerFieldPatchTests {
    @Test func setLabelAndShow() throws {
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        let id = ContactID(high: 3, low: 3)
        func apply(_ p: ContactPatch) throws {
            let edits = try p.edits(for: id, in: r, nowMilliseconds: 1_790_000_000_000) { _ throws(QueryError) in id }
            try a.commit(edits, to: &r, wallMilliseconds: 1_790_000_000_000)
        }
        try apply(ContactPatch(set: ["givenName": "Ada", "organization": "Engines", "birthday": "--12-10", "emailSubscription": "subscribed"],
                               addPhones: ["(415) 555-0132 ext. 12"], phoneLabels: ["(415) 555-0132 ext. 12": "work"],
                               addUrls: ["https://ada.example.org"], addExternalIds: ["van:123456"], region: "US"))
        var dto = ContactDTO(r.contact(id)!)
        #expect(dto.organization == "Engines" && dto.birthday == "--12-10" && dto.emailSubscription == "subscribed")
        let phone = try #require(dto.phones.first)
        #expect(dto.phones.count == 1 && phone.number == "+14155550132;ext=12" && phone.raw == "(415) 555-0132 ext. 12")
        #expect(phone.extension == "12" && phone.label == "work")
        #expect(dto.externalIds == ["van:123456"] && dto.urls?.map(\.url) == ["https://ada.example.org"])
        // Relabel (the latest label shows), then remove the label.
        try apply(ContactPatch(phoneLabels: ["+1 415 555 0132 x12": "mobile"]))
        dto = ContactDTO(r.contact(id)!)
        #expect(dto.phones.first?.label == "mobile")
        try apply(ContactPatch(phoneLabels: ["+14155550132;ext=12": ""], removeExternalIds: ["van:123456"]))
        dto = ContactDTO(r.contact(id)!)
        #expect(dto.phones.first?.label == nil && dto.externalIds == nil)
        // Bad values are refused with the field named.
        for bad in [ContactPatch(set: ["birthday": "10/12/1815"]), ContactPatch(set: ["smsSubscription": "maybe"]),
                    ContactPatch(addExternalIds: ["VAN 1"]), ContactPatch(phoneLabels: ["+44 20 7946 0000": "work"]),
                    ContactPatch(addPhones: ["020 7946 0000"], region: "XX")] {
            #expect(throws: QueryError.self) { try apply(bad) }
        }
    }
}
