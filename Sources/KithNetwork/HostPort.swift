import Foundation

/// "host:port", "[v6]:port": the one parser for every address kithd reads (listen, peers,
/// invite and pairing hints, hub addresses). Port 0 ("any") only where a listener allows it.
public enum HostPort {
    public static func parse(_ s: String, allowAnyPort: Bool = false) -> (host: String, port: Int)? {
        guard let i = s.lastIndex(of: ":"), let port = Int(s[s.index(after: i)...]),
              (allowAnyPort ? 0 : 1)...65_535 ~= port else { return nil }
        let host = String(s[..<i]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return host.isEmpty ? nil : (host, port)
    }
}
