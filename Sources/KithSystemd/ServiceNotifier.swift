import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The service manager's notification protocol (sd_notify(3)) without libsystemd: each state
/// change is one datagram of `KEY=VALUE` lines sent to the unix socket named by `$NOTIFY_SOCKET`
/// (a path, or `@name` in the abstract namespace). Without `$NOTIFY_SOCKET` nothing is sent.
public struct ServiceNotifier: Sendable {
    public let socketPath: String

    /// nil when no service manager listens (`$NOTIFY_SOCKET` unset or empty).
    public init?(environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty, path.hasPrefix("/") || path.hasPrefix("@") else { return nil }
        socketPath = path
    }

    /// The startup is complete: the port is bound, the stores are open.
    public static func ready(status: String) -> String { "READY=1\nSTATUS=\(oneLine(status))\nMAINPID=\(getpid())" }
    /// A reload of the configuration begins (systemd ≥ 253 wants the monotonic time with it).
    public static func reloading(monotonicMicroseconds: UInt64 = monotonicMicroseconds()) -> String {
        "RELOADING=1\nMONOTONIC_USEC=\(monotonicMicroseconds)"
    }
    public static let stopping = "STOPPING=1"
    public static let watchdog = "WATCHDOG=1"

    public static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }

    static func oneLine(_ s: String) -> String { s.replacingOccurrences(of: "\n", with: " ") }

    /// Sends one datagram; returns the reason when it could not be sent (the daemon logs it and goes on).
    @discardableResult
    public func send(_ message: String) -> String? {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return "socket: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return "NOTIFY_SOCKET is longer than a unix socket path may be" }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        // Abstract names are exactly as long as given; a path is NUL-terminated.
        let length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + pathBytes.count + (pathBytes.first == 0 ? 0 : 1)
        let bytes = Array(message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), sa, socklen_t(length)) }
            }
        }
        return sent == bytes.count ? nil : "sendto \(socketPath): \(String(cString: strerror(errno)))"
    }

    /// How often to ping the watchdog: half of `$WATCHDOG_USEC` (sd_watchdog_enabled(3)), when it
    /// is set and `$WATCHDOG_PID`, if present, names this process.
    public static func watchdogInterval(environment: [String: String] = ProcessInfo.processInfo.environment,
                                        pid: Int32 = getpid()) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], Int32(owner) != pid { return nil }
        return .microseconds(Int64(clamping: usec / 2))
    }
}
