import KithCRDT
import KithCrypto
import KithInterchange
import Testing

/// Inputs that crashed an importer under the fuzz targets (Fuzz/, scripts/fuzz), pinned.
@Suite("Fuzz regressions: interchange")
struct InterchangeFuzzRegressionTests {
    /// Target `vcard`: a conversation dated in the year 20,000,000 overflowed `Day.from`
    /// (UInt32 of the day count) and trapped `kith import`; a larger year overflowed Int.
    @Test func conversationInTheFarFutureIsAnIssueNotATrap() {
        for year in ["20000000", "9223372036854775807", "10000"] {
            let card = "BEGIN:VCARD\nFN:Ada\nX-KITH-CONVERSATION:\(year)-01-01;door;ok;note\nEND:VCARD\n"
            let batch = VCard.parse(Array(card.utf8))
            #expect(batch.contacts.isEmpty, "year \(year)")
            #expect(batch.issues.count == 1, "year \(year)")
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
        let edit = try contact.edit(defaultCallingCode: "44")
        let change = try Change.make(scope: ScopeID(name: "private"), signer: Ed25519.PrivateKey(), seq: 1, previous: .zero,
                                     timestamp: HybridTimestamp(milliseconds: 1), edits: [edit])
        var replica = Replica(scope: ScopeID(name: "private"))
        _ = try replica.receive(change, nowMilliseconds: 10)
        let again = VCard.parse(Array(VCard.write(replica.contacts()).utf8))
        #expect(again.issues.isEmpty, "\(again.issues)")
        #expect(again.contacts.count == 1)
    }
}
