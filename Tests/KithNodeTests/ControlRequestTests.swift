import KithCRDT
import KithCrypto
@testable import KithNetwork
import Testing

/// The control API's request decoding (ControlRequest, also driven by the fuzz target `control`).
@Suite("Control requests")
struct ControlRequestTests {
    func fields(_ line: String) -> [String: Any] { ControlRequest.parse(Array(line.utf8))!.fields }

    @Test func requestLines() {
        #expect(ControlRequest.parse(Array("{\"op\":\"status\"}".utf8))?.op == "status")
        #expect(ControlRequest.parse(Array("{\"op\":7}".utf8)) == nil)
        #expect(ControlRequest.parse(Array("[\"op\"]".utf8)) == nil)
        #expect(ControlRequest.parse(Array("{\"op\":\"status\"".utf8)) == nil)
    }

    @Test func commitBatches() throws {
        let edit = ContactEdit(contact: ContactID(high: 1, low: 2), ops: [.setField(.city, "Leeds")])
        let text = Base64URL.encode(edit.encoded)
        #expect(try ControlRequest.batches(fields("{\"op\":\"commit\",\"batches\":[[\"\(text)\"],[]]}")) == [[edit], []])
        #expect(throws: ControlRequest.Invalid.self) { try ControlRequest.batches(fields("{\"op\":\"commit\",\"batches\":[[\"AAAA\"]]}")) }
        #expect(throws: ControlRequest.Invalid.self) { try ControlRequest.batches(fields("{\"op\":\"commit\",\"batches\":\"x\"}")) }
    }

    /// `consent-grant` read `expires` with `UInt64.init` and multiplied it by 1000: a negative
    /// or huge value trapped kithd. Now both are refused with a message.
    @Test func grantExpiryIsChecked() throws {
        let max = 100 * 366 * 86_400
        #expect(try ControlRequest.seconds(fields("{\"op\":\"consent-grant\"}"), "expires", max: max, what: "x") == nil)
        #expect(try ControlRequest.seconds(fields("{\"op\":\"consent-grant\",\"expires\":3600}"), "expires", max: max, what: "x") == 3600)
        for bad in ["-1", "0", "9223372036854775807", "1.5", "\"90d\""] {
            #expect(throws: ControlRequest.Invalid.self, "expires \(bad)") {
                try ControlRequest.seconds(fields("{\"op\":\"consent-grant\",\"expires\":\(bad)}"), "expires", max: max, what: "x")
            }
        }
    }
}
