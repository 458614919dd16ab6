import KithCRDT
import KithCrypto
import KithInterchange
import Testing

/// Inputs that crashed an importer under the fuzz targets (Fuzz/, scripts/fuzz), pinned.
@Suite("Fuzz regressions: interchange")
struct InterchangeFuzzRegressionTests {
    /// Target `vcard`: a conversation dated in the year 20,000,000 overflowed `Day.from`
    /// (UInt32 of the day count) and trapped `kith import`; a larger year overflowed Int. Now
    /// that value alone is dropped, with a warning naming its line; the person is imported.
    @Test func conversationInTheFarFutureIsAnIssueNotATrap() {
        for year in ["20000000", "9223372036854775807", "10000"] {
            let card = "BEGIN:VCARD\nFN:Ada\nX-KITH-CONVERSATION:\(year)-01-01;door;ok;note\nEND:VCARD\n"
            let batch = VCard.parse(Array(card.utf8))
            #expect(batch.contacts.count == 1 && batch.contacts[0].log.isEmpty, "year \(year)")
            #expect(batch.contacts.first?.warnings.map(\.reason).first?.hasPrefix("line 3: X-KITH-CONVERSATION dropped") == true, "year \(year)")
            #expect(batch.issues.isEmpty, "year \(year)")
        }
        #expect(Day.parse("9999-12-31") != nil)
        #expect(Day.parse("20000000-01-01") == nil)
        #expect(Day.from(year: 20_000_000, month: 1, day: 1) == UInt32.max)
    }

    /// Target `vcard` (property: an export re-imports): a TEL value holding CR then an escaped
    /// `\n` imports as a raw phone with a CR LF, which is one Swift Character, so the X-RAW
    /// parameter kept it and the exported card broke across lines.
    @Test func rawPhoneWithCarriageReturnLineFeedExportsOnOneLine() throws {
        let card = Array("BEGIN:VCARD\nFN:Ada\nTEL:+44 20 7946 0018\r\\nx\nEND:VCARD\n".utf8)
        let imported = VCard.parse(card)
        #expect(imported.issues.isEmpty)
        let contact = try #require(imported.contacts.first)
        #expect(contact.phones.first?.value.contains("\r\n") == true)
        let edit = try contact.edit(region: PhoneRegion(code: "GB"))
        let change = try Change.make(scope: ScopeID(name: "private"), signer: Ed25519.PrivateKey(), seq: 1, previous: .zero,
                                     timestamp: HybridTimestamp(milliseconds: 1), edits: [edit])
        var replica = Replica(scope: ScopeID(name: "private"))
        _ = try replica.receive(change, nowMilliseconds: 10)
        let again = VCard.parse(Array(VCard.write(replica.contacts()).utf8))
        #expect(again.issues.isEmpty, "\(again.issues)")
        #expect(again.contacts.count == 1)
    }

    /// Target `vcard` (property: what the importer accepts, a change accepts): a 335-byte email
    /// passed `edit(region:)` and then failed its change, aborting `kith import`
    /// part-way. Now that record alone is skipped, with the reason.
    @Test func overlongEmailIsAnIssueOfItsRecord() {
        let email = String(repeating: "a", count: 330) + "@x.org"
        let card = "BEGIN:VCARD\nFN:Ada\nEMAIL:\(email)\nEND:VCARD\nBEGIN:VCARD\nFN:Grace\nEND:VCARD\n"
        let batch = VCard.parse(Array(card.utf8))
        #expect(batch.contacts.count == 2)
        #expect(throws: ImportIssue.self) { try batch.contacts[0].edit(region: nil) }
        #expect((try? batch.contacts[1].edit(region: nil)) != nil)
    }

    /// Target `csv` (property: an export re-imports): a display name with a comma followed by a
    /// combining mark (one Character) was written unquoted, so the row grew a column.
    @Test func commaWithCombiningMarkIsQuotedOnExport() throws {
        let input = Hex.decode(
            "efbbbf4e616d652c50686f6e652031202d2056616c75652c452d4661696c2031202d2056616c75652c47726f7570204d656d6265727368697"
                + "00a22486f707065722cdcb872616365222c2834313529203533382d30313332200"
                + "02d303139392c677261636540553b78616d706c652e6f72672c2a206d79436f6e7461637473203a3a3a20467269656e35730a2c2c2c0a")!
        let batch = CSVInterchange.parse(input)
        let contact = try #require(batch.contacts.first)
        let change = try Change.make(scope: ScopeID(name: "private"), signer: Ed25519.PrivateKey(), seq: 1, previous: .zero,
                                     timestamp: HybridTimestamp(milliseconds: 1), edits: [contact.edit(region: PhoneRegion(code: "GB"))])
        var replica = Replica(scope: ScopeID(name: "private"))
        _ = try replica.receive(change, nowMilliseconds: 10)
        let again = CSVInterchange.parse(Array(CSVInterchange.write(replica.contacts()).utf8))
        #expect(again.issues.isEmpty, "\(again.issues)")
        #expect(again.contacts.first?.fields[.displayName] == contact.fields[.displayName])
    }
}
