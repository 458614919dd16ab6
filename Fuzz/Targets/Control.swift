import KithCRDT
import KithCrypto

enum ControlTargets {
    /// One line of the control socket (kithd reads up to each newline): ControlRequest, compiled
    /// into the fuzz binary from Sources/KithNetwork/ControlRequest.swift.
    static func control(_ data: [UInt8]) {
        let line = Array(data.prefix { $0 != 0x0A })
        guard let fields = ControlRequest.parse(line)?.fields else { return }
        if let batches = try? ControlRequest.batches(fields) {
            for b in batches {
                for e in b {
                    check(ControlRequest.edit(Base64URL.encode(e.encoded)) == e, "an edit survives base64url and decoding")
                }
            }
        }
        if let text = fields["edit"] as? String { _ = ControlRequest.edit(text) }
        if let s = try? ControlRequest.seconds(fields, "expires", max: 100 * 366 * 86_400, what: "expiry") {
            check(s >= 1 && s <= 100 * 366 * 86_400, "seconds are in range")
        }
    }
}
