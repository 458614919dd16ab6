import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How kithd writes its log lines (README "Logs"): one event per line, the message before its
/// metadata, metadata as `key=value` sorted by key.
public enum LogFormat: String, CaseIterable, Sendable {
    /// `2026-12-03T07:08:28.123Z info kithd: peer authenticated peer=10.0.0.5:7434`
    case text
    /// One JSON object per line: `ts`, `level`, `label`, `msg`, then the metadata's keys.
    case json
    /// For journald: no timestamp (the journal adds its own), the syslog priority as `<N>`.
    case journal

    public static let names = allCases.map(\.rawValue).joined(separator: ", ")
}

/// The level and format every kithd logger reads, changeable while the daemon runs (SIGHUP).
public final class LogSettings: @unchecked Sendable {
    // @unchecked: both fields are only read and written under `lock`.
    private let lock = NSLock()
    private var _level: Logger.Level
    private var _format: LogFormat

    public init(level: Logger.Level, format: LogFormat) {
        _level = level
        _format = format
    }

    public var level: Logger.Level {
        get { lock.withLock { _level } }
        set { lock.withLock { _level = newValue } }
    }

    public var format: LogFormat {
        get { lock.withLock { _format } }
        set { lock.withLock { _format = newValue } }
    }
}

/// The log levels kithd accepts, in order, as they are written in `kithd.toml` and `--log-level`.
public let logLevelNames = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")

/// A swift-log handler writing one line per event in a `LogFormat` to a sink (stderr in kithd).
public struct KithLogHandler: LogHandler {
    public let label: String
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let settings: LogSettings
    let sink: @Sendable (String) -> Void
    let clock: @Sendable () -> Date
    /// A level set on one `Logger` (`logger.logLevel = …`) wins over the shared one for that logger.
    private var ownLevel: Logger.Level?

    public init(label: String, settings: LogSettings, sink: @escaping @Sendable (String) -> Void = StandardError.write,
                clock: @escaping @Sendable () -> Date = Date.init) {
        self.label = label
        self.settings = settings
        self.sink = sink
        self.clock = clock
    }

    public var logLevel: Logger.Level {
        get { ownLevel ?? settings.level }
        set { ownLevel = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let m = event.metadata { all.merge(m) { _, new in new } }
        sink(Self.line(format: settings.format, date: clock(), level: event.level, label: label, message: event.message.description, metadata: all))
    }

    /// The line (with its newline) for one event: pure, so every format is tested byte for byte.
    public static func line(format: LogFormat, date: Date, level: Logger.Level, label: String, message: String,
                            metadata: Logger.Metadata) -> String {
        let keys = metadata.keys.sorted()
        switch format {
        case .text, .journal:
            var out = format == .journal ? "<\(syslogPriority(level))>" : timestamp(date) + " " + level.rawValue + " "
            out += label + ": " + escapeLine(plainAddresses(message))
            for k in keys { out += " " + k + "=" + textValue(flatten(metadata[k]!)) }
            return out + "\n"
        case .json:
            var out = "{\"ts\":" + jsonString(timestamp(date)) + ",\"level\":" + jsonString(level.rawValue)
            out += ",\"label\":" + jsonString(label) + ",\"msg\":" + jsonString(plainAddresses(message))
            for k in keys {
                // The four fixed keys keep their meaning: a metadata key of the same name gets a leading _.
                let name = ["ts", "level", "label", "msg"].contains(k) ? "_" + k : k
                out += "," + jsonString(name) + ":" + jsonString(flatten(metadata[k]!))
            }
            return out + "}\n"
        }
    }

    /// syslog priorities (RFC 5424) as journald reads them from a `<N>` prefix.
    public static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// UTC, millisecond precision, ISO 8601: `2026-12-03T07:08:28.123Z`.
    public static func timestamp(_ date: Date) -> String {
        let totalMs = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var t = time_t(totalMs / 1000)
        var parts = tm()
        gmtime_r(&t, &parts)
        let ms = Int(totalMs % 1000)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(msText)Z"
    }

    static func flatten(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case let .string(s): plainAddresses(s)
        case let .stringConvertible(c): plainAddresses(c.description)
        case let .array(items): items.map(flatten).joined(separator: ",")
        case let .dictionary(d): d.keys.sorted().map { "\($0):\(flatten(d[$0]!))" }.joined(separator: ",")
        }
    }

    /// SwiftNIO describes a socket address as `[IPv4]name/192.0.2.1:7434` or `[IPv6]name/::1:7434`
    /// (inside error descriptions too); a log line shows it as `192.0.2.1:7434` or `[::1]:7434`.
    public static func plainAddresses(_ s: String) -> String {
        guard s.contains("[IPv") else { return s }
        var out = "", rest = Substring(s)
        while let marker = rest.range(of: "[IPv") {
            out += rest[..<marker.lowerBound]
            let after = rest[marker.upperBound...]
            guard let family = after.first, family == "4" || family == "6", after.dropFirst().first == "]",
                  let slash = after.firstIndex(of: "/"), !after[..<slash].contains(where: { $0 == " " || $0 == "," || $0 == ")" }) else {
                out += "[IPv"
                rest = after
                continue
            }
            let address = after[after.index(after: slash)...].prefix { $0.isHexDigit || $0 == "." || $0 == ":" || $0 == "%" }
            if family == "6", let colon = address.lastIndex(of: ":") {
                out += "[" + address[..<colon] + "]" + address[colon...]
            } else {
                out += address
            }
            rest = after[address.endIndex...]
        }
        return out + rest
    }

    /// A value as `key=value` text: bare when it is one word, else double-quoted with `"` `\` escaped.
    static func textValue(_ s: String) -> String {
        let bare = !s.isEmpty && s.unicodeScalars.allSatisfy { $0.value > 0x20 && $0 != "\"" && $0 != "\\" && $0 != "=" && $0.value != 0x7f }
        if bare { return s }
        var out = "\""
        for ch in escapeLine(s) {
            if ch == "\"" || ch == "\\" { out.append("\\") }
            out.append(ch)
        }
        return out + "\""
    }

    /// Keeps an event on one line: newlines and other control characters become visible escapes.
    static func escapeLine(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else { return s }
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7f { out += "\\x" + (u.value < 0x10 ? "0" : "") + String(u.value, radix: 16) } else { out.unicodeScalars.append(u) }
            }
        }
        return out
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7f {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

/// Whole lines to stderr with one `write(2)` each, so lines of concurrent events never interleave.
public enum StandardError {
    private static let lock = NSLock()

    @Sendable public static func write(_ line: String) {
        var bytes = Array(line.utf8)
        lock.withLock {
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeMutableBytes { systemWrite(2, $0.baseAddress! + offset, $0.count - offset) }
                if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { break }
            }
        }
        bytes.removeAll()
    }
}

/// Whether stderr is connected to journald: systemd sets `$JOURNAL_STREAM` to `DEV:INODE` of the
/// stream it gave the service; it only counts if stderr is still that stream (not redirected).
public enum JournalDetection {
    public static func isJournal(environment: [String: String], stderrDevice: UInt64, stderrInode: UInt64) -> Bool {
        guard let value = environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        return dev == stderrDevice && ino == stderrInode
    }

    /// The format kithd uses when none is configured: `journal` under journald, else `text`.
    public static func defaultFormat(environment: [String: String] = ProcessInfo.processInfo.environment) -> LogFormat {
        var st = stat()
        guard fstat(2, &st) == 0 else { return .text }
        return isJournal(environment: environment, stderrDevice: UInt64(st.st_dev), stderrInode: UInt64(st.st_ino)) ? .journal : .text
    }
}

#if canImport(Glibc)
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
#endif
