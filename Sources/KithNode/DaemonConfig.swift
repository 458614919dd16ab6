import Foundation

/// kithd's configuration file (`kithd.toml`), a documented subset of TOML v1.0: comments, bare
/// keys, basic and literal strings, integers, booleans and arrays of them. (TOMLKit, the TOML
/// library in our package mirror, depends on a package the mirror lacks, so this small reader
/// stands in; every construct outside the subset is a clear error with its line number.)
public struct DaemonConfig: Equatable, Sendable {
    public var dataDir: String?
    public var listen: String?
    public var peers: [String] = []
    public var antiEntropyInterval: Int?
    public var logLevel: String?
    public var lanDiscovery = false
    public var upwardViaPeers = false
    public var lanInterface: String?
    public var lanPort: Int?
    public var relayScopes: [String] = []
    public var advertise: String?
    public var apiListen: String?
    public var guiListen: String?
    /// `text`, `json` or `journal` (nil: journal under journald, else text).
    public var logFormat: String?
    /// The line each key was read from, so later checks (host:port…) can name it.
    public var lines: [String: Int] = [:]

    public init() {}

    /// The levels `log_level` and `--log-level` accept, in order.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    /// The formats `log_format` and `--log-format` accept.
    public static let logFormats = ["text", "json", "journal"]

    public struct ParseError: Error, Equatable, CustomStringConvertible, Sendable {
        public let line: Int
        public let reason: String
        public var description: String { "line \(line): \(reason)" }
    }

    public enum Value: Equatable, Sendable {
        case string(String), integer(Int), bool(Bool), array([Value])
    }

    public static let knownKeys: Set<String> = ["data_dir", "listen", "peers", "anti_entropy_interval", "log_level", "lan_discovery", "upward_via_peers", "advertise",
                                                "lan_interface", "lan_port", "relay_scopes", "api_listen", "gui_listen", "log_format"]

    public init(toml text: String) throws(ParseError) {
        self.init()
        for (key, (value, line)) in try Self.parse(text) {
            lines[key] = line
            func string() throws(ParseError) -> String {
                guard case let .string(s) = value else { throw ParseError(line: line, reason: "\(key) must be a string") }
                return s
            }
            func strings() throws(ParseError) -> [String] {
                guard case let .array(items) = value else { throw ParseError(line: line, reason: "\(key) must be an array of strings") }
                var out: [String] = []
                for i in items {
                    guard case let .string(s) = i else { throw ParseError(line: line, reason: "\(key) must be an array of strings") }
                    out.append(s)
                }
                return out
            }
            switch key {
            case "data_dir": dataDir = try string()
            case "listen": listen = try string()
            case "peers": peers = try strings()
            case "log_level":
                let level = try string()
                guard Self.logLevels.contains(level) else {
                    throw ParseError(line: line, reason: "unknown log level '\(level)' (use one of: \(Self.logLevels.joined(separator: ", ")))")
                }
                logLevel = level
            case "log_format":
                let format = try string()
                guard Self.logFormats.contains(format) else {
                    throw ParseError(line: line, reason: "unknown log format '\(format)' (use one of: \(Self.logFormats.joined(separator: ", ")))")
                }
                logFormat = format
            case "relay_scopes": relayScopes = try strings()
            case "advertise": advertise = try string()
            case "api_listen": apiListen = try string()
            case "gui_listen": guiListen = try string()
            case "anti_entropy_interval":
                guard case let .integer(n) = value, n >= 0 else { throw ParseError(line: line, reason: "anti_entropy_interval must be a non-negative integer (seconds)") }
                antiEntropyInterval = n
            case "lan_interface": lanInterface = try string()
            case "lan_port":
                guard case let .integer(n) = value, (1...65_535).contains(n) else { throw ParseError(line: line, reason: "lan_port must be 1...65535") }
                lanPort = n
            case "upward_via_peers":
                guard case let .bool(b) = value else { throw ParseError(line: line, reason: "upward_via_peers must be true or false") }
                upwardViaPeers = b
            case "lan_discovery":
                guard case let .bool(b) = value else { throw ParseError(line: line, reason: "lan_discovery must be true or false") }
                lanDiscovery = b
            default:
                throw ParseError(line: line, reason: "unknown key '\(key)' (known: \(Self.knownKeys.sorted().joined(separator: ", ")))")
            }
        }
    }

    /// Parses root-level `key = value` lines (tables are refused: kithd's config has none yet).
    public static func parse(_ text: String) throws(ParseError) -> [(String, (Value, Int))] {
        var out: [(String, (Value, Int))] = []
        var seen = Set<String>()
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0).replacingCRLF() }
        var i = 0
        while i < lines.count {
            let lineNo = i + 1
            let line = stripComment(lines[i])
            i += 1
            if line.allSatisfy(\.isWhitespace) { continue }
            if line.trimmedLite().hasPrefix("[") { throw ParseError(line: lineNo, reason: "tables are not used in kithd.toml") }
            guard let eq = line.firstIndex(of: "=") else { throw ParseError(line: lineNo, reason: "expected key = value") }
            let key = String(line[..<eq]).trimmedLite()
            guard !key.isEmpty, key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else {
                throw ParseError(line: lineNo, reason: "'\(key)' is not a bare key")
            }
            guard seen.insert(key).inserted else { throw ParseError(line: lineNo, reason: "key '\(key)' defined twice") }
            var rest = String(line[line.index(after: eq)...]).trimmedLite()
            // Multi-line arrays: keep reading until brackets balance.
            while rest.hasPrefix("["), !bracketsBalanced(rest), i < lines.count {
                rest += " " + stripComment(lines[i]).trimmedLite()
                i += 1
            }
            try refuseUnquoted(key: key, rest, line: lineNo)
            var p = Substring(rest)
            let value = try parseValue(&p, line: lineNo)
            guard p.trimmedLite().isEmpty else { throw ParseError(line: lineNo, reason: "unexpected text after the value: '\(p.trimmedLite())'") }
            out.append((key, (value, lineNo)))
        }
        return out
    }

    /// `listen = 0.0.0.0:7434` or `log_level = debug`: text written without quotes. The error
    /// shows the line as it should be written.
    static func refuseUnquoted(key: String, _ rest: String, line: Int) throws(ParseError) {
        guard let first = rest.first, first != "\"", first != "'", first != "[" else { return }
        let token = rest.trimmedLite()
        if token == "true" || token == "false" || Int(token.replacingUnderscores()) != nil { return }
        let quoted = token.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        throw ParseError(line: line, reason: "the value of \(key) is text and needs quotes: \(key) = \"\(quoted)\"")
    }

    static func stripComment(_ s: String) -> String {
        var inBasic = false, inLiteral = false, escaped = false
        for (idx, ch) in zip(s.indices, s) {
            if escaped { escaped = false; continue }
            if inBasic && ch == "\\" { escaped = true; continue }
            if ch == "\"" && !inLiteral { inBasic.toggle() }
            if ch == "'" && !inBasic { inLiteral.toggle() }
            if ch == "#" && !inBasic && !inLiteral { return String(s[..<idx]) }
        }
        return s
    }

    static func bracketsBalanced(_ s: String) -> Bool {
        var depth = 0, inBasic = false, inLiteral = false, escaped = false
        for ch in s {
            if escaped { escaped = false; continue }
            if inBasic && ch == "\\" { escaped = true; continue }
            if ch == "\"" && !inLiteral { inBasic.toggle() }
            if ch == "'" && !inBasic { inLiteral.toggle() }
            if !inBasic && !inLiteral { if ch == "[" { depth += 1 } else if ch == "]" { depth -= 1 } }
        }
        return depth == 0
    }

    static func parseValue(_ p: inout Substring, line: Int) throws(ParseError) -> Value {
        p = p.drop(while: { $0 == " " || $0 == "\t" })
        guard let first = p.first else { throw ParseError(line: line, reason: "missing value") }
        switch first {
        case "\"":
            p = p.dropFirst()
            var out = ""
            while let ch = p.first {
                p = p.dropFirst()
                if ch == "\"" { return .string(out) }
                if ch == "\\" {
                    guard let e = p.first else { break }
                    p = p.dropFirst()
                    switch e {
                    case "\"": out.append("\"")
                    case "\\": out.append("\\")
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "r": out.append("\r")
                    case "u", "U":
                        let n = e == "u" ? 4 : 8
                        let hex = String(p.prefix(n))
                        guard hex.count == n, let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) else {
                            throw ParseError(line: line, reason: "bad \\\(e) escape")
                        }
                        out.unicodeScalars.append(scalar)
                        p = p.dropFirst(n)
                    default: throw ParseError(line: line, reason: "unknown escape \\\(e)")
                    }
                } else {
                    out.append(ch)
                }
            }
            throw ParseError(line: line, reason: "unterminated string")
        case "'":
            p = p.dropFirst()
            guard let end = p.firstIndex(of: "'") else { throw ParseError(line: line, reason: "unterminated string") }
            let s = String(p[..<end])
            p = p[p.index(after: end)...]
            return .string(s)
        case "[":
            p = p.dropFirst()
            var items: [Value] = []
            while true {
                p = p.drop(while: { $0 == " " || $0 == "\t" || $0 == "," })
                if p.first == "]" { p = p.dropFirst(); return .array(items) }
                if p.isEmpty { throw ParseError(line: line, reason: "unterminated array") }
                items.append(try parseValue(&p, line: line))
                p = p.drop(while: { $0 == " " || $0 == "\t" })
                if p.first == "," { p = p.dropFirst() } else if p.first != "]" { throw ParseError(line: line, reason: "expected , or ] in array") }
            }
        default:
            let token = String(p.prefix(while: { !($0 == " " || $0 == "\t" || $0 == "," || $0 == "]") }))
            p = p.dropFirst(token.count)
            if token == "true" { return .bool(true) }
            if token == "false" { return .bool(false) }
            if let n = Int(token.replacingUnderscores()) { return .integer(n) }
            throw ParseError(line: line, reason: "'\(token)' is not a string, integer, boolean or array")
        }
    }
}

extension String {
    func trimmedLite() -> String {
        String(drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }

    func replacingCRLF() -> String { hasSuffix("\r") ? String(dropLast()) : self }

    func replacingUnderscores() -> String {
        let parts = split(separator: "_", omittingEmptySubsequences: false)
        guard parts.allSatisfy({ !$0.isEmpty }) else { return "x" } // "1__0", "_1" are invalid TOML
        return parts.joined()
    }
}

extension Substring {
    func trimmedLite() -> String { String(self).trimmedLite() }
}

/// The address kithd puts in invites: never a loopback address unless kithd listens on one
/// (another member's machine could not reach 127.0.0.1).
public enum AdvertisedAddress {
    public static func isLoopback(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return h == "localhost" || h == "::1" || h.hasPrefix("127.") || h == "0:0:0:0:0:0:0:1"
    }

    public static func isWildcard(_ host: String) -> Bool { host == "0.0.0.0" || host == "::" || host == "[::]" }

    /// `host:port` for a listener on `listenHost`: that host itself, or — on all interfaces — the
    /// first IPv4 address among `interfaceAddresses` that is not loopback or link-local, else the
    /// first global IPv6 one. nil when there is none (then invites need `advertise`).
    public static func choose(listenHost: String, port: Int, interfaceAddresses: [String]) -> String? {
        func join(_ h: String) -> String { h.contains(":") ? "[\(h)]:\(port)" : "\(h):\(port)" }
        guard isWildcard(listenHost) else { return join(listenHost) }
        let usable = interfaceAddresses.filter { !isLoopback($0) }
        if let v4 = usable.first(where: { !$0.contains(":") && !$0.hasPrefix("169.254.") }) { return join(v4) }
        if let v6 = usable.first(where: { $0.contains(":") && !$0.lowercased().hasPrefix("fe80") }) { return join(v6) }
        return nil
    }

    /// Why a configured `advertise` cannot be used with `listen`, or nil when it can.
    public static func problem(advertiseHost: String, listenHost: String) -> String? {
        guard isLoopback(advertiseHost), !isLoopback(listenHost) else { return nil }
        return "\(advertiseHost) is a loopback address, which no other member's machine can reach, while kithd listens on \(listenHost); advertise this machine's LAN or public address"
    }
}
