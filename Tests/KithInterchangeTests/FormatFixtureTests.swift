import Foundation
import KithCRDT
import KithCrypto
@testable import KithInterchange
import Testing

/// Files shaped like the real exports organizers bring (Tests/Fixtures/interchange): each is
/// recognised by content, read field by field, and what it holds that Kith does not keep is
/// counted in the "dropped" summary.
enum Fixture {
    static func bytes(_ name: String) throws -> [UInt8] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/interchange/\(name)")
        return [UInt8](try Data(contentsOf: url))
    }

    static func batch(_ name: String, format: String? = nil) throws -> ImportBatch {
        try Interchange.parse(bytes(name), format: format)
    }

    /// The replica a batch gives, every record converted leniently (as `kith import` does).
    static func replica(_ batch: ImportBatch, region: String?) throws -> Replica {
        var author = ChangeAuthor(signer: try Ed25519.PrivateKey(seed: [UInt8](repeating: 7, count: 32)))
        var replica = Replica(scope: ScopeID(name: "private"))
        let edits = batch.contacts.compactMap { try? $0.convert(region: region.flatMap(PhoneRegion.init(code:))).edit }
        try author.commit(edits, to: &replica, wallMilliseconds: 1_790_000_000_000)
        return replica
    }
}

extension ImportBatch {
    func contact(_ given: String) -> ImportedContact? { contacts.first { $0.fields[.givenName] == given } }
}

@Suite("Export formats")
struct FormatFixtureTests {
    @Test func appleICloudVCard30() throws {
        let b = try Fixture.batch("apple-icloud-3.0.vcf")
        #expect(b.format == "vcard")
        #expect(b.contacts.count == 2)
        #expect(b.skipped.count == 1 && b.skipped[0].reason.contains("group"))
        let ada = try #require(b.contact("Ada"))
        #expect(ada.fields[.familyName] == "Lovelace")
        #expect(ada.fields[.organization] == "Analytical Engines Ltd, Research")
        #expect(ada.fields[.title] == "Programmer")
        #expect(ada.fields[.nickname] == "Enchantress of Numbers")
        #expect(ada.fields[.birthday] == "1815-12-10")
        #expect(ada.fields[.address] == "12 St James's Square")
        #expect(ada.fields[.city] == "London")
        #expect(ada.fields[.region] == "Greater London")
        #expect(ada.fields[.postalCode] == "SW1Y 4LB")
        #expect(ada.fields[.country] == "United Kingdom")
        #expect(ada.emails == [ImportedValue("ada@example.org", label: "home"), ImportedValue("ada.lovelace@engines.example", label: "campaign")])
        #expect(ada.phones == [ImportedValue("+44 (0)7700 900123", label: "mobile"), ImportedValue("020 7946 0018", label: "work")])
        #expect(ada.urls == [ImportedValue("https://ada.example.org", label: "homepage")])
        #expect(ada.tags == ["volunteers", "Ward 5"])
        let grace = try #require(b.contact("Grace"))
        #expect(grace.fields[.birthday] == "--12-09")
        #expect(b.dropped == ["PHOTO": 1, "X-SOCIALPROFILE": 2, "X-ABADR": 1, "X-ADDRESSBOOKSERVER-MEMBER": 1])

        let edit = try ada.convert(region: PhoneRegion(code: "GB")).edit
        #expect(edit.ops.contains(.add(.phones, "+447700900123", payload: "+44 (0)7700 900123")))
        #expect(edit.ops.contains(.add(.labels, "tel:+447700900123", payload: "mobile")))
        #expect(edit.ops.contains(.add(.phones, "+442079460018", payload: "020 7946 0018")))
        let g = try grace.convert(region: PhoneRegion(code: "US")).edit
        #expect(g.ops.contains(.add(.phones, "+14155550132;ext=12", payload: "(415) 555-0132 ext. 12")))
    }

    @Test func android21QuotedPrintable() throws {
        let b = try Fixture.batch("android-2.1.vcf")
        let zoe = try #require(b.contact("Zoë"))
        #expect(zoe.fields[.familyName] == "Müller")
        #expect(zoe.fields[.address] == "Straße des 17. Juni 1")
        #expect(zoe.fields[.country] == "Deutschland")
        #expect(zoe.fields[.notes] == "Met at the tenants' meeting, wants to help with flyers")
        #expect(zoe.phones.map(\.label) == ["mobile", "work"])
        #expect(try zoe.convert(region: nil).edit.ops.contains(.add(.phones, "+49301234567;ext=89", payload: "+49 30 1234567;ext=89")))
        let marco = try #require(b.contact("Marco"))
        #expect(marco.fields[.birthday] == "1990-03-31")
        // Italy keeps its leading 0 in E.164.
        #expect(try marco.convert(region: PhoneRegion(code: "IT")).edit.ops.contains(.add(.phones, "+390212345678", payload: "02 1234 5678")))
        #expect(b.dropped["PHOTO"] == 1 && b.dropped["X-ANDROID-CUSTOM"] == 1)
    }

    @Test func outlookWindows1252() throws {
        let b = try Fixture.batch("outlook-windows-1252.vcf")
        let s = try #require(b.contacts.first)
        #expect(s.fields[.familyName] == "O’Brien")
        #expect(s.fields[.givenName] == "Siobhán")
        #expect(s.fields[.organization] == "Café Collective, Kitchen")
        #expect(s.fields[.title] == "Coördinator")
        #expect(s.fields[.notes] == "Pledged € 50 – call back")
        #expect(s.fields[.region] == "MA" && s.fields[.country] == "United States of America")
        let e = try s.convert(region: PhoneRegion(code: "US")).edit
        #expect(e.ops.contains(.add(.phones, "+16175550199;ext=204", payload: "(617) 555-0199 x204")))
        #expect(b.dropped["X-MS-OL-DESIGN"] == 1)
    }

    @Test func vCard40GroupsBadFieldsAndTruncation() throws {
        let b = try Fixture.batch("rfc6350-4.0.vcf")
        #expect(b.contacts.count == 1)
        #expect(b.skipped.map(\.origin) == ["card 2 (line 16)"])
        #expect(b.issues.map(\.reason) == ["file ends before END:VCARD"])
        let amara = try #require(b.contact("Amara"))
        #expect(amara.fields[.birthday] == "--04-12")
        #expect(amara.fields[.region] == "IL")
        // Support "9" drops that field, with a warning; the person is imported.
        let c = try amara.convert(region: nil)
        #expect(c.warnings.count == 1 && c.warnings[0].reason.contains("support"))
        #expect(c.edit.ops.contains(.add(.phones, "+14155550100;ext=5", payload: "+1-415-555-0100;ext=5")))
        #expect(!c.edit.ops.contains { if case .setField(.support, _) = $0 { true } else { false } })
        #expect(throws: ImportIssue.self) { _ = try amara.edit(region: nil) } // the strict form refuses it
        #expect(b.dropped == ["GEO": 1, "IMPP": 1, "MEMBER": 1])
    }

    @Test func jCard() throws {
        let b = try Fixture.batch("contacts.jcard.json")
        #expect(b.format == "jcard")
        #expect(b.contacts.count == 2)
        let ana = try #require(b.contact("Ana María"))
        #expect(ana.fields[.familyName] == "Pérez")
        #expect(ana.fields[.organization] == "Tenants United")
        #expect(ana.fields[.birthday] == "1988-07-14")
        #expect(ana.fields[.region] == "CDMX" && ana.fields[.country] == "México")
        #expect(ana.phones.map(\.value) == ["+52-55-1234-5678"])
        #expect(ana.tags == ["tenants", "ward 3"])
        #expect(b.dropped == ["PHOTO": 1])
    }

    @Test func googleContactsCSV() throws {
        let b = try Fixture.batch("google-contacts.csv")
        #expect(b.format == "google-csv")
        let ada = try #require(b.contact("Ada"))
        #expect(ada.emails.map(\.value) == ["ada@example.org", "ada@engines.example", "ada@work.example"])
        #expect(ada.emails.map(\.label) == ["Home", "Home", "Work"])
        #expect(ada.phones.map(\.value) == ["+44 7700 900123", "020 7946 0018", "020 7946 0019"])
        #expect(ada.tags == ["Volunteers", "Ward 5"])
        #expect(ada.fields[.organization] == "Analytical Engines Ltd" && ada.fields[.title] == "Programmer")
        #expect(ada.fields[.region] == "Greater London" && ada.fields[.country] == "United Kingdom")
        #expect(ada.fields[.birthday] == "1815-12-10" && ada.fields[.nickname] == "Ada L")
        #expect(ada.urls == [ImportedValue("https://ada.example.org", label: "Blog")])
        let grace = try #require(b.contact("Grace"))
        #expect(grace.fields[.birthday] == "--12-09")
        #expect(b.dropped["Photo"] == 1 && b.dropped["Organization 1 - Department"] == 1)
    }

    @Test func outlookCSV() throws {
        let b = try Fixture.batch("outlook.csv")
        #expect(b.format == "outlook-csv")
        let s = try #require(b.contact("Siobhán"))
        #expect(s.fields[.organization] == "Café Collective" && s.fields[.title] == "Coördinator")
        #expect(s.fields[.address] == "1 Café Row" && s.fields[.region] == "MA" && s.fields[.postalCode] == "02108")
        #expect(s.fields[.birthday] == "1979-05-14")
        #expect(s.fields[.nickname] == "Shiv")
        #expect(Set(s.phones.map(\.value)) == ["617-555-0142", "(617) 555-0199 x204", "617-555-0100", "+1 617 555 0177", "617-555-0198"])
        #expect(s.phones.first { $0.value == "+1 617 555 0177" }?.label == "mobile")
        #expect(s.emails.map(\.value) == ["siobhan@cafe.example", "siobhan.obrien@home.example"])
        #expect(s.urls.map(\.value) == ["https://cafe.example"])
        let t = try #require(b.contact("Tomás"))
        #expect(t.fields[.address] == "12 Elm St" && t.fields[.birthday] == nil && t.warnings.isEmpty)
        // "Title" is Outlook's honorific, not a job title.
        #expect(b.dropped["Title"] == 2)
    }

    @Test func actionNetworkCSV() throws {
        let b = try Fixture.batch("actionnetwork-people.csv")
        #expect(b.format == "actionnetwork-csv")
        let m = try #require(b.contact("Maria"))
        #expect(m.externalIDs == ["actionnetwork:c0ffee00-1111-4a4a-9b9b-123456789abc"])
        #expect(m.fields[.address] == "2500 Mission St" && m.fields[.region] == "CA" && m.fields[.postalCode] == "94110")
        #expect(m.fields[.emailSubscription] == "subscribed" && m.fields[.smsSubscription] == "subscribed")
        #expect(m.phones.map(\.value) == ["(415) 555-0170"] && m.tags == ["volunteer", "canvass"])
        #expect(b.contact("Jamal")?.fields[.emailSubscription] == "bouncing")
        #expect(b.contact("Jamal")?.fields[.smsSubscription] == "unsubscribed")
        #expect(b.contact("Lee")?.fields[.emailSubscription] == "complained")
        #expect(b.dropped["can2_county"] == 3)
    }

    @Test func ngpVANExport() throws {
        let b = try Fixture.batch("ngpvan-export.csv")
        #expect(b.format == "van-csv")
        let linh = try #require(b.contact("Linh"))
        #expect(linh.externalIDs == ["van:123456", "voterfile:OH:OH0012345"])
        #expect(linh.fields[.postalCode] == "43215-1234")
        #expect(linh.fields[.support] == "5") // VAN 1 = strong support
        #expect(linh.fields[.voterFileID] == "OH0012345")
        #expect(linh.fields[.birthday] == "1990-03-22")
        #expect(linh.fields[.organization] == "Columbus Schools" && linh.fields[.title] == "Teacher")
        #expect(linh.emails == [ImportedValue("linh.nguyen@example.com", label: "preferred")])
        #expect(linh.phones.map(\.label) == ["home", "mobile"])
        // Support ID 9 is not on VAN's scale: that value is dropped with a warning, the person kept.
        let chidi = try #require(b.contact("Chidi"))
        #expect(chidi.fields[.support] == nil && chidi.warnings.count == 1)
        #expect(b.dropped["Support ID"] == 1 && b.dropped["Party"] == 2)
    }

    @Test func mobilizeOneRowPerSignupIsOnePerson() throws {
        let b = try Fixture.batch("mobilize-attendees.csv")
        #expect(b.format == "mobilize-csv")
        #expect(b.contacts.count == 2)
        let rosa = try #require(b.contact("Rosa"))
        #expect(rosa.externalIDs == ["mobilize:77"])
        #expect(rosa.events == [ImportedValue("mobilize:41234@2026-10-03", label: "Canvass kickoff (attended)"),
                                ImportedValue("mobilize:41240@2026-10-10", label: "Phone bank"),
                                ImportedValue("mobilize:41251@2026-10-17", label: "Town hall")])
        // A cancelled signup records no event.
        #expect(b.contact("Ed")?.events == [])
    }

    @Test func formatIsForcedOrRecognised() throws {
        #expect(try Interchange.detect(Fixture.bytes("android-2.1.vcf")) == "vcard")
        #expect(try Interchange.detect(Fixture.bytes("contacts.jcard.json")) == "jcard")
        #expect(try Interchange.detect(Fixture.bytes("outlook.csv")) == "csv")
        let forced = try Fixture.batch("google-contacts.csv", format: "csv")
        #expect(forced.format == "csv")
        #expect(throws: Interchange.Unreadable.self) { _ = try Interchange.parse([0x50, 0x4B, 0x03, 0x04, 0, 0, 1], format: nil) }
        #expect(throws: Interchange.Unreadable.self) { _ = try Interchange.parse(Array("x,y\n".utf8), format: "nonsense") }
        #expect(throws: Interchange.Unreadable.self) { _ = try Interchange.parse(Array("hello\n".utf8), format: "vcard") }
        let unknownCharset = VCard.parse(Array("BEGIN:VCARD\nFN:A\nNOTE;CHARSET=KOI8-R:x\nEND:VCARD\n".utf8))
        #expect(unknownCharset.contacts[0].warnings.first?.reason.contains("KOI8-R") == true)
    }

    /// `kith import` reads vCard in chunks: any chunking gives what reading the whole file gives,
    /// line numbers included.
    @Test func streamingEqualsWholeFile() throws {
        for name in ["apple-icloud-3.0.vcf", "android-2.1.vcf", "rfc6350-4.0.vcf"] {
            let bytes = try Fixture.bytes(name)
            let whole = VCard.parse(bytes)
            for size in [1, 7, 64, 1_000] {
                var stream = VCard.Stream()
                var b = ImportBatch()
                var i = 0
                while i < bytes.count {
                    b.append(stream.feed(bytes[i..<min(i + size, bytes.count)]))
                    i += size
                }
                b.append(stream.finish())
                #expect(b.contacts == whole.contacts, "\(name) in chunks of \(size)")
                #expect(b.issues == whole.issues && b.skipped == whole.skipped && b.dropped == whole.dropped, "\(name) in chunks of \(size)")
                #expect(b.cards == whole.cards)
            }
        }
    }

    @Test func exportsRoundTrip() throws {
        let source = try Fixture.replica(try Fixture.batch("apple-icloud-3.0.vcf"), region: "GB")
        // vCard 4.0 keeps everything.
        let again = try Fixture.replica(try Interchange.parse(Array(VCard.write(source.contacts()).utf8), format: nil), region: "GB")
        #expect(again.contacts() == source.contacts())
        // Google CSV and Action Network CSV keep what those tools hold.
        for format in ["google-csv", "actionnetwork-csv", "csv"] {
            let text = try #require(Interchange.export(source.contacts(), format: format)).text
            let b = try Interchange.parse(Array(text.utf8), format: nil)
            #expect(b.format == format)
            let back = try Fixture.replica(b, region: "GB")
            for c in source.contacts() {
                let d = try #require(back.contacts().first { $0.emails.first == c.emails.first }, "\(format)")
                for f: Field in [.givenName, .familyName, .postalCode, .city, .region, .country, .emailSubscription] {
                    #expect(d[f] == c[f], "\(format) \(f)")
                }
                if format != "actionnetwork-csv" {
                    #expect(d.phones == c.phones && d.emails == c.emails, "\(format)")
                    #expect(d[.organization] == c[.organization] && d[.birthday] == c[.birthday], "\(format)")
                }
            }
        }
    }
}
