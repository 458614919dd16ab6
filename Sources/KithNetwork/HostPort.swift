import Foundation

/// "host:port", "[v6]:port": the one parser for every address kithd reads (listen, peers,
/// invite and pairing hints, hub addresses, overlay address records). Strict, so one address has
/// one spelling (Protocol/sync.md §9.1):
///
///     address = host ":" port
///     host    = name / "[" v6 "]"
///     name    = 1*(any byte 0x21–0xFF except 0x7F ":" "[" "]")
///     v6      = 2*(HEXDIG / ":" / "."), at least one ":"
///     port    = "0" / %x31-39 0*4DIGIT, at most 65535
///
/// ASCII digits only, no sign, no leading zero; brackets only as one pair around an IPv6
/// literal (which must have them). Port 0 ("any") only where a listener allows it.
public enum HostPort {
    public static func parse(_ s: String, allowAnyPort: Bool = false) -> (host: String, port: Int)? {
        let bytes = Array(s.utf8)
        guard let colon = bytes.lastIndex(of: UInt8(ascii: ":")) else { return nil }
        let portBytes = bytes[(colon + 1)...], hostBytes = bytes[..<colon]
        guard let port = parsePort(portBytes), port >= (allowAnyPort ? 0 : 1) else { return nil }
        if hostBytes.first == UInt8(ascii: "[") {
            guard hostBytes.count >= 4, hostBytes.last == UInt8(ascii: "]") else { return nil }
            let inner = hostBytes.dropFirst().dropLast()
            guard inner.contains(UInt8(ascii: ":")), inner.allSatisfy({ isHex($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") }) else {
                return nil
            }
            return (String(decoding: inner, as: UTF8.self), port)
        }
        guard !hostBytes.isEmpty, hostBytes.allSatisfy({ $0 >= 0x21 && $0 != 0x7F && $0 != UInt8(ascii: ":") && $0 != UInt8(ascii: "[") && $0 != UInt8(ascii: "]") })
        else { return nil }
        return (String(decoding: hostBytes, as: UTF8.self), port)
    }

    /// "0" or 1–5 ASCII digits without a leading zero, at most 65535.
    private static func parsePort(_ digits: ArraySlice<UInt8>) -> Int? {
        guard (1...5).contains(digits.count), digits.allSatisfy({ (0x30...0x39).contains($0) }),
              digits.count == 1 || digits.first != UInt8(ascii: "0") else { return nil }
        let value = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        return value <= 65_535 ? value : nil
    }

    private static func isHex(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x41...0x46).contains(b) || (0x61...0x66).contains(b)
    }
}
