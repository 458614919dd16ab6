import KithCRDT
import KithInterchange
import Testing

@Suite("vCard")
struct VCardTests {
    /// Shaped like real exports: a 3.0 card from a phone (quoted-printable, CHARSET, folded
    /// lines, several TEL/EMAIL with TYPE params), a 4.0 card with non-Latin script and escapes,
    /// a 2.1 card with bare params, CRLF and a BOM, an empty field, and two broken cards.
    static let sample: String = "\u{FEFF}" + [
        "BEGIN:VCARD", "VERSION:3.0", "N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Lef=C3=A8vre;Chlo=C3=A9;;;", "FN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Chlo=C3=A9 Lef=C3=A8vre",
        "TEL;TYPE=CELL;TYPE=pref:+33 6 12 34 56 78", "TEL;TYPE=HOME:01 42 00 00 00", "EMAIL;TYPE=INTERNET;TYPE=HOME:chloe@example.fr",
        "EMAIL;TYPE=WORK:c.lefevre@work.example", "NOTE;ENCODING=QUOTED-PRINTABLE:Met at the market=0D=0A=",
        "cares about transit", "ORG:", "END:VCARD",
        "BEGIN:VCARD", "VERSION:4.0", "UID:urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1", "FN:王 芳", "N:王;芳;;;",
        "TEL;VALUE=uri;TYPE=\"voice,cell\":tel:+86-10-1234-5678", "ADR;TYPE=home:;;12 Quince Row\\, Flat 2;Leeds;;LS1 4AP;UK",
        "NOTE:line one\\nline two with a long tail that is folded because it goes past seventy-five o",
        " ctets of text", "CATEGORIES:gotv,door-knock", "X-KITH-SUPPORT:5", "END:VCARD",
        "BEGIN:VCARD", "VERSION:2.1", "N:Okafor;Emeka", "TEL;CELL;PREF:555-0100", "END:VCARD",
        "BEGIN:VCARD", "VERSION:4.0", "ORG:Nobody Inc", "END:VCARD",
        "BEGIN:VCARD", "VERSION:4.0", "FN:No End",
    ].joined(separator: "\r\n") + "\r\n"

    @Test func parsesRealWorldShapes() {
        let b = VCard.parse(Array(Self.sample.utf8))
        #expect(b.contacts.count == 3)
        #expect(b.issues.count == 2)
        #expect(b.issues[0].origin == "card 4 (line 30)" && b.issues[0].reason.contains("no name"))
        #expect(b.issues[1].reason.contains("END:VCARD"))
        let chloe = b.contacts[0]
        #expect(chloe.fields[.givenName] == "Chloé" && chloe.fields[.familyName] == "Lefèvre")
        #expect(chloe.fields[.displayName] == nil) // FN equals "given family"
        #expect(chloe.phones.map(\.value) == ["+33 6 12 34 56 78", "01 42 00 00 00"])
        #expect(chloe.emails.map(\.value) == ["chloe@example.fr", "c.lefevre@work.example"])
        #expect(chloe.fields[.notes] == "Met at the market\ncares about transit")
        let wang = b.contacts[1]
        #expect(wang.fields[.givenName] == "芳" && wang.fields[.familyName] == "王")
        #expect(wang.phones.map(\.value) == ["+86-10-1234-5678"])
        #expect(wang.fields[.address] == "12 Quince Row, Flat 2" && wang.fields[.city] == "Leeds" && wang.fields[.postalCode] == "LS1 4AP")
        #expect(wang.fields[.notes] == "line one\nline two with a long tail that is folded because it goes past seventy-five octets of text")
        #expect(wang.tags == ["gotv", "door-knock"])
        #expect(wang.uid == "urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1")
        #expect(b.contacts[2].phones.map(\.value) == ["555-0100"])
        // Same UID → same contact id, every time.
        #expect(wang.contactID == VCard.parse(Array(Self.sample.utf8)).contacts[1].contactID)
    }

    @Test func roundTripsThroughKith() throws {
        let b = VCard.parse(Array(Self.sample.utf8))
        var replica = Replica(scope: ScopeID(name: "private"))
        var author = ChangeAuthor(signer: .init())
        let edits = try b.contacts.map { try $0.edit(region: PhoneRegion(code: "FR")) }
        try author.commit(edits, to: &replica, wallMilliseconds: 1_790_000_000_000)
        let exported = VCard.write(replica.contacts())
        for line in exported.split(separator: "\r\n") { #expect(line.utf8.count <= 75) }
        let again = VCard.parse(Array(exported.utf8))
        #expect(again.issues.isEmpty)
        var replica2 = Replica(scope: ScopeID(name: "private"))
        var author2 = ChangeAuthor(signer: .init())
        try author2.commit(try again.contacts.map { try $0.edit(region: nil) }, to: &replica2, wallMilliseconds: 1_790_000_000_000)
        #expect(replica2.contacts() == replica.contacts())
        let chloe = replica.contacts().first { $0[.givenName] == "Chloé" }!
        #expect(chloe.values(.phones).contains(SetValue(key: "+33142000000", payload: "01 42 00 00 00")))
    }

    @Test func badRecordsAreReportedNotImported() {
        let text = "BEGIN:VCARD\nFN:Ok\nEND:VCARD\nBEGIN:VCARD\nFN:Bad\nEMAIL:not-an-email\nEND:VCARD\nstray text\nBEGIN:VCARD\nthis line has no colon\nFN:X\nEND:VCARD\n"
        let b = VCard.parse(Array(text.utf8))
        #expect(b.contacts.count == 2)
        #expect(b.issues.map(\.origin) == ["line 8", "card 3 (line 9)"])
        #expect(throws: ImportIssue.self) { _ = try b.contacts[1].edit(region: nil) }
    }

    @Test func days() {
        #expect(Day.parse("1970-01-01") == 0)
        #expect(Day.parse("2026-11-23").map(Day.format) == "2026-11-23")
        #expect(Day.format(Day.parse("2000-02-29")!) == "2000-02-29")
        #expect(Day.parse("2026-13-01") == nil)
    }
}

@Suite("CSV")
struct CSVTests {
    @Test func headerRecognitionMapAndErrors() throws {
        let csv = "\u{FEFF}First Name,Last Name,Mobile Phone,E-mail Address,Zip,Ward,Labels\r\n" +
            "Ada,Lovelace,(555) 867-5309,ada@example.org,02139,5,\"gotv;door-knock\"\r\n" +
            "\"Ní Bhriain, Siobhán\",,,,,,\r\n" +
            "José,García,,jose@example,,,\r\n" +
            "Too,Many,Cols,a@b.co,1,2,3,4\r\n"
        let b = CSVInterchange.parse(Array(csv.utf8), mapping: ["Ward": .tags])
        #expect(b.notices.isEmpty)
        #expect(b.contacts.count == 3)
        #expect(b.issues.map(\.origin) == ["row 4 (line 5)"])
        #expect(b.contacts[0].fields[.postalCode] == "02139")
        #expect(b.contacts[0].tags == ["5", "gotv", "door-knock"])
        #expect(b.contacts[1].fields[.givenName] == "Ní Bhriain, Siobhán")
        #expect(throws: ImportIssue.self) { _ = try b.contacts[2].edit(region: nil) } // bad email
        let e = try b.contacts[0].edit(region: PhoneRegion(code: "US"))
        #expect(e.ops.contains(.add(.phones, "+15558675309", payload: "(555) 867-5309")))
    }

    @Test func unknownColumnsAreNoticed() {
        let b = CSVInterchange.parse(Array("Name,Shoe size\nAda,38\n".utf8))
        #expect(b.notices.first?.contains("Shoe size") == true)
        #expect(b.contacts.first?.fields[.displayName] == "Ada")
        let none = CSVInterchange.parse(Array("foo,bar\n1,2\n".utf8))
        #expect(none.contacts.isEmpty && !none.issues.isEmpty)
    }

    @Test func exportRoundTrips() throws {
        var replica = Replica(scope: ScopeID(name: "private"))
        var author = ChangeAuthor(signer: .init())
        let rows = "given_name,family_name,phones,emails,tags,notes,support\nAda,\"Love, lace\",\"(555) 867-5309; +44 20 7946 0000\",ada@example.org,\"a; b\",\"multi\nline \"\"quoted\"\"\",3\n"
        let b = CSVInterchange.parse(Array(rows.utf8))
        try author.commit(try b.contacts.map { try $0.edit(region: PhoneRegion(code: "US")) }, to: &replica, wallMilliseconds: 1_790_000_000_000)
        let out = CSVInterchange.write(replica.contacts())
        let b2 = CSVInterchange.parse(Array(out.utf8))
        #expect(b2.issues.isEmpty && b2.notices.isEmpty)
        var replica2 = Replica(scope: ScopeID(name: "private"))
        var author2 = ChangeAuthor(signer: .init())
        try author2.commit(try b2.contacts.map { try $0.edit(region: PhoneRegion(code: "US")) }, to: &replica2, wallMilliseconds: 1_790_000_000_000)
        #expect(replica2.contacts() == replica.contacts())
        #expect(replica.contacts()[0][.notes] == "multi\nline \"quoted\"")
    }
}

@Suite("Hostile input")
struct HostileInputTests {
    struct Rng: RandomNumberGenerator {
        var s: UInt64
        mutating func next() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            return z ^ (z >> 27)
        }
    }

    /// Random bytes and mutated real files never crash the parsers; whatever they accept still
    /// passes through `edit` as a typed result or a typed issue.
    @Test func randomAndMutatedFilesNeverCrash() {
        var rng = Rng(s: 99)
        let seedFiles = [Array(VCardTests.sample.utf8), Array("First Name,Email,Tags\nAda,ada@example.org,\"a;b\"\n\"unterminated,x\n".utf8)]
        var parsed = 0
        for round in 0..<1_500 {
            var bytes: [UInt8]
            if round % 3 == 0 {
                bytes = (0..<Int.random(in: 0..<400, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                bytes = seedFiles[round % 2]
                for _ in 0..<Int.random(in: 1..<12, using: &rng) where !bytes.isEmpty {
                    let i = Int.random(in: 0..<bytes.count, using: &rng)
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: bytes[i] = UInt8.random(in: 0...255, using: &rng)
                    case 1: bytes.remove(at: i)
                    default: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: i)
                    }
                }
            }
            for batch in [VCard.parse(bytes), CSVInterchange.parse(bytes)] {
                for c in batch.contacts {
                    _ = try? c.edit(region: PhoneRegion(code: "US"))
                    parsed += 1
                }
            }
        }
        #expect(parsed > 0)
    }
}
