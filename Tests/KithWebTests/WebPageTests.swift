import Foundation
import KithCRDT
import KithCrypto
import KithInterchange
import KithQuery
import Testing
@testable import KithWeb

/// The web page's pure parts: templates over the API's types (escaping, the strings table),
/// form parsing (including hostile uploads), the invite QR code and the import preview. The
/// pages themselves are tested in a real browser (Tests/web, scripts/test-web).
@Suite("Web page")
struct WebPageTests {
    let pages = WebPages()

    func contact(name: String, notes: String = "") throws -> ContactDTO {
        let json = """
        {"id": "3fA9xQ0bR1uY2ZbKq7m9Lw", "name": \(try String(decoding: JSONEncoder().encode(name), as: UTF8.self)),
         "givenName": \(try String(decoding: JSONEncoder().encode(name), as: UTF8.self)), "notes": \(try String(decoding: JSONEncoder().encode(notes), as: UTF8.self)),
         "phones": [{"number": "+442079460018", "raw": "+44 20 7946 0018"}], "emails": [], "tags": ["gotv"], "knows": [], "links": [],
         "conversations": [{"date": "2026-11-01", "channel": "door", "outcome": "supportive", "note": ""}]}
        """
        return try JSONDecoder().decode(ContactDTO.self, from: Data(json.utf8))
    }

    /// A contact's name or notes are data, never markup: a stored XSS attempt is shown as text.
    @Test func contactFieldsAreEscaped() throws {
        let evil = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>"
        let html = pages.page("contact", title: evil, data: ["contact": try contact(name: evil, notes: evil)], viewer: .init(csrf: "tok"))
        #expect(!html.contains("<script>alert"))
        #expect(!html.contains("<img src=x"))
        #expect(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"))
        // The page carries the session's CSRF token in every form that changes something.
        let forms = html.components(separatedBy: "<form method=\"post\"").count - 1
        let tokens = html.components(separatedBy: "name=\"csrf\" value=\"tok\"").count - 1
        #expect(forms >= 5)
        #expect(tokens == forms)
    }

    /// The list shows the API's own page type: names, the first phone, tags, the next-page link.
    @Test func contactListRendersTheAPIPage() throws {
        let page = ContactPage(contacts: [try contact(name: "Zoë Müller")], next: "CURSOR", total: 7)
        let html = pages.fragment("contact-list", data: ["page": page, "qEncoded": "z"], viewer: .init(csrf: "tok"))
        #expect(html.contains("Zoë Müller"))
        #expect(html.contains("+44 20 7946 0018"))
        #expect(html.contains("#gotv"))
        #expect(html.contains("cursor=CURSOR"))
        #expect(html.contains(">7<"))
    }

    /// Every `{{t.key}}` a template uses is in the strings table (a missing one would show its
    /// key to the person), and every page renders with no data at all.
    @Test func everyTemplateKeyIsInTheStringsTable() {
        let regex = try! NSRegularExpression(pattern: "\\{\\{t\\.([A-Za-z0-9_]+)\\}\\}")
        var missing: [String] = []
        for (name, text) in WebTemplates.all {
            for m in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                let key = String(text[Range(m.range(at: 1), in: text)!])
                if WebStrings.english[key] == nil { missing.append("\(name): \(key)") }
            }
            if name != "layout" { #expect(!pages.page(name, title: name, data: [:], viewer: .init(csrf: "t")).isEmpty) }
        }
        #expect(missing.isEmpty, "\(missing)")
    }

    /// The same for the keys the routes (KithAPI/WebRoutes*.swift) ask for by name.
    @Test func everyRouteKeyIsInTheStringsTable() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/KithAPI")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("WebRoutes") }
        #expect(files.count >= 4)
        let regex = try NSRegularExpression(pattern: "pages\\.text\\(\"([A-Za-z0-9_]+)\"\\)")
        var keys = 0
        for f in files {
            let text = try String(contentsOf: dir.appendingPathComponent(f), encoding: .utf8)
            for m in regex.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                let key = String(text[Range(m.range(at: 1), in: text)!])
                keys += 1
                #expect(WebStrings.english[key] != nil, "\(f): \(key)")
            }
        }
        #expect(keys > 20)
    }

    @Test func urlEncodedFormsKeepRepeatedFields() {
        let f = WebForm.urlEncoded("csrf=a%2Bb&fields=name&fields=phones&note=met+at+the+caf%C3%A9&empty=&fields=")
        #expect(f["csrf"] == "a+b")
        #expect(f.all("fields") == ["name", "phones"])
        #expect(f["note"] == "met at the café")
        #expect(f["empty"] == nil)
        #expect(f["absent"] == nil)
    }

    @Test func multipartUploadGivesTheFileAndTheFields() throws {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n"
            + "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.vcf\"\r\nContent-Type: text/vcard\r\n\r\n"
            + "BEGIN:VCARD\r\nFN:Ada\r\n--XyZnot-a-boundary\r\nEND:VCARD\r\n\r\n--XyZ--\r\n"
        let f = try WebForm.parse(Array(body.utf8), contentType: "multipart/form-data; boundary=XyZ")
        #expect(f["csrf"] == "tok")
        let file = try #require(f.files["file"])
        #expect(file.filename == "a.vcf")
        #expect(String(decoding: file.bytes, as: UTF8.self) == "BEGIN:VCARD\r\nFN:Ada\r\n--XyZnot-a-boundary\r\nEND:VCARD\r\n")
    }

    /// Hostile or broken uploads are refused with a reason, never trap.
    @Test func brokenMultipartIsRefused() {
        let cases: [(String, String)] = [
            ("--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end", "multipart/form-data; boundary=XyZ"),
            ("--XyZ\r\nno headers here--XyZ--", "multipart/form-data; boundary=XyZ"),
            ("--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--", "multipart/form-data; boundary=XyZ"),
            ("anything", "multipart/form-data"),
            ("anything", "multipart/form-data; boundary="),
            ("--XyZ--XyZ", "multipart/form-data; boundary=XyZ"),
            ("--XyZ\r\n\r\n--XyZ--\r\n", "multipart/form-data; boundary=XyZ"),
        ]
        for (body, type) in cases {
            #expect(throws: WebForm.Invalid.self, "\(body)") { try WebForm.parse(Array(body.utf8), contentType: type) }
        }
    }

    /// libqrencode's symbol: the size of a version (21 + 4·(v−1)), the three finder patterns,
    /// and an SVG with a quiet zone; a text too long for any QR code is an error.
    @Test func inviteQRCode() throws {
        let invite = "kith:" + String(repeating: "AkXUPlG0a8RMxlXEDk9pROQeb63S5gYDB02l0qQJDdNWuSqArBB", count: 3)
        let qr = try QRCode(invite)
        #expect((qr.size - 21) % 4 == 0 && qr.size > 21)
        for (r, c) in [(0, 0), (0, qr.size - 7), (qr.size - 7, 0)] {
            for i in 0..<7 {
                #expect(qr.isDark(row: r, column: c + i) && qr.isDark(row: r + 6, column: c + i))
                #expect(qr.isDark(row: r + i, column: c) && qr.isDark(row: r + i, column: c + 6))
            }
            #expect(!qr.isDark(row: r + 1, column: c + 1) && qr.isDark(row: r + 3, column: c + 3))
        }
        let svg = qr.svg(title: "an <invite>")
        #expect(svg.hasPrefix("<svg") && svg.contains("viewBox=\"0 0 \(qr.size + 8) \(qr.size + 8)\"") && svg.contains("an &lt;invite&gt;"))
        #expect(throws: QRCode.Failure.self) { try QRCode(String(repeating: "x", count: 4000)) }
    }

    /// The preview runs the real importer without writing: created, then (against what the node
    /// holds) matched by id so a second upload of the same file creates nothing; the bad card is
    /// a problem; the format comes from the content.
    @Test func importPreviewCountsCreatedMergedSkipped() throws {
        let file = """
        BEGIN:VCARD\r\nVERSION:4.0\r\nUID:one\r\nFN:Ada One\r\nEMAIL:ada@example.org\r\nEND:VCARD\r
        BEGIN:VCARD\r\nVERSION:4.0\r\nUID:two\r\nFN:Bo Two\r\nPHOTO:data:image/png;base64,AAAA\r\nEND:VCARD\r
        BEGIN:VCARD\r\nVERSION:4.0\r\nEND:VCARD\r

        """
        let first = try ImportPlan.make(filename: "x.vcf", bytes: Array(file.utf8), region: PhoneRegion(code: "US"), existing: [])
        #expect(first.format == "vcard")
        #expect(first.created == 2 && first.merged == 0 && first.unchanged == 0 && first.problems.count == 1)
        #expect(first.dropped.contains { $0.field == "PHOTO" && $0.count == 1 })
        // What the node holds after committing the preview's edits.
        var r = Replica(scope: ScopeID(name: "p"))
        var a = ChangeAuthor(signer: .init())
        try a.commit(first.edits, to: &r, wallMilliseconds: 1_790_000_000_000)
        let again = try ImportPlan.make(filename: "x", bytes: Array(file.utf8), region: nil, existing: r.contacts().map(ContactDTO.init))
        #expect(again.created == 0 && again.merged == 0 && again.unchanged == 2 && again.edits.isEmpty)
        let csv = try ImportPlan.make(filename: "people.csv", bytes: Array("First Name,Last Name\nAda,Lovelace\n".utf8), region: nil, existing: [])
        #expect(csv.format.hasSuffix("csv") && csv.created == 1)
        #expect(first.batches(maxOps: 1).flatMap { $0 }.count == 2)
        #expect(throws: Interchange.Unreadable.self) { try ImportPlan.make(filename: "a.xlsx", bytes: [0x50, 0x4B, 0x03, 0x04, 0, 0], region: nil, existing: []) }
    }
}
