import Foundation
import Logging
import NIOCore

/// Admits inbound connections to a listening port (kithd's peer port, a hub's port): at most
/// `maxTotal` open and `maxPerAddress` from one IP address. At either limit the oldest
/// connection that has not authenticated yet (from that address, or from the address holding
/// the most) is closed to make room, so an idle flood cannot keep a real device out; when every
/// such slot holds an authenticated peer, the newcomer is refused.
public final class ConnectionGate: @unchecked Sendable {
    // @unchecked: every access to the mutable state holds `lock`.
    public let maxTotal: Int
    public let maxPerAddress: Int
    private let lock = NSLock()
    private var open: [Int: Entry] = [:]
    private var perAddress: [String: Int] = [:]
    private var nextID = 0

    struct Entry {
        let address: String
        var authenticated: Bool
        let close: @Sendable () -> Void
    }

    /// Why a connection was not admitted.
    public enum Refusal: Error, Equatable, Sendable {
        case tooManyFromAddress
        case full
    }

    /// An admitted connection: its ticket, and the address of the connection closed to make room.
    public struct Admission: Sendable {
        public let ticket: Int
        public let evicted: String?
    }

    public init(maxTotal: Int = 256, maxPerAddress: Int = 32) {
        self.maxTotal = maxTotal
        self.maxPerAddress = maxPerAddress
    }

    /// Admits a connection from `address` (an IP address, no port), or says why not. `close`
    /// closes it if it must make room later. Returns the ticket to pass to `authenticated` and
    /// `release`.
    public func admit(address: String, close: @escaping @Sendable () -> Void) -> Result<Admission, Refusal> {
        var evicted: (@Sendable () -> Void)?
        let result: Result<Admission, Refusal> = lock.withLock {
            var evictedAddress: String?
            if perAddress[address, default: 0] >= maxPerAddress {
                guard let victim = open.filter({ $0.value.address == address && !$0.value.authenticated }).min(by: { $0.key < $1.key }) else {
                    return .failure(.tooManyFromAddress)
                }
                evicted = victim.value.close
                evictedAddress = address
                removeLocked(victim.key)
            } else if open.count >= maxTotal {
                // The oldest unauthenticated connection of the address holding the most.
                guard let victim = open.filter({ !$0.value.authenticated }).max(by: { a, b in
                    let na = perAddress[a.value.address, default: 0], nb = perAddress[b.value.address, default: 0]
                    return na != nb ? na < nb : a.key > b.key
                }) else { return .failure(.full) }
                evicted = victim.value.close
                evictedAddress = victim.value.address
                removeLocked(victim.key)
            }
            nextID += 1
            open[nextID] = Entry(address: address, authenticated: false, close: close)
            perAddress[address, default: 0] += 1
            return .success(Admission(ticket: nextID, evicted: evictedAddress))
        }
        evicted?()
        return result
    }

    /// The connection finished its handshake: it is not evicted to make room any more.
    public func authenticated(_ ticket: Int) {
        lock.withLock { open[ticket]?.authenticated = true }
    }

    /// The connection closed.
    public func release(_ ticket: Int) {
        lock.withLock { removeLocked(ticket) }
    }

    public var openCount: Int { lock.withLock { open.count } }

    private func removeLocked(_ ticket: Int) {
        guard let e = open.removeValue(forKey: ticket) else { return }
        let n = perAddress[e.address, default: 1] - 1
        perAddress[e.address] = n > 0 ? n : nil
    }
}

extension ConnectionGate {
    /// Admits an accepted `channel` (closed if it must make room later), logging refusals and
    /// evictions through `limiter`; nil when refused (the caller closes it).
    static func admitLogging(_ channel: any Channel, to gate: ConnectionGate, limiter: LogRateLimiter, logger: Logger, what: String) -> Int? {
        let address = channel.remoteAddress?.ipAddress ?? "?"
        switch gate.admit(address: address, close: { channel.close(promise: nil) }) {
        case let .success(a):
            if let victim = a.evicted {
                logger.warning(limitedBy: limiter, "evicted-\(what)", "connection limit reached on the \(what); closed a connection that had not authenticated to make room",
                               metadata: ["limit": "\(gate.maxTotal) in all, \(gate.maxPerAddress) per address", "closedFrom": "\(victim)"])
            }
            return a.ticket
        case .failure(.tooManyFromAddress):
            logger.warning(limitedBy: limiter, "per-address-\(what)", "refused a connection on the \(what): every connection from its address is authenticated and the per-address limit is reached",
                           metadata: ["address": "\(address)", "limit": "\(gate.maxPerAddress)"])
        case .failure(.full):
            logger.warning(limitedBy: limiter, "full-\(what)", "refused a connection on the \(what): connection limit reached and every connection is authenticated",
                           metadata: ["address": "\(address)", "limit": "\(gate.maxTotal)"])
        }
        return nil
    }
}

/// Lets a repeated warning through a few times per minute and counts the rest: the first one
/// let through after a quiet spell says how many were left out ("… and 1,204 more in the last
/// minute"), so a flood of hostile connections cannot flood the log.
public final class LogRateLimiter: @unchecked Sendable {
    // @unchecked: every access to `windows` holds `lock`.
    public let burst: Int
    public let intervalMilliseconds: UInt64
    private let clock: @Sendable () -> UInt64
    private let lock = NSLock()
    private var windows: [String: (start: UInt64, count: Int, suppressed: Int)] = [:]

    public init(burst: Int = 5, intervalMilliseconds: UInt64 = 60_000,
                clock: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970 * 1000) }) {
        self.burst = burst
        self.intervalMilliseconds = intervalMilliseconds
        self.clock = clock
    }

    /// nil when a message of kind `key` should be left out now; otherwise the number left out
    /// since the previous one logged (0 for none).
    public func admit(_ key: String) -> Int? {
        let now = clock()
        return lock.withLock {
            var w = windows[key] ?? (now, 0, 0)
            if now &- w.start >= intervalMilliseconds {
                let suppressed = w.suppressed
                windows[key] = (now, 1, 0)
                return suppressed
            }
            if w.count >= burst {
                w.suppressed += 1
                windows[key] = w
                return nil
            }
            w.count += 1
            windows[key] = w
            if windows.count > 1_000 { windows = windows.filter { now &- $0.value.start < intervalMilliseconds } }
            return 0
        }
    }

    /// The wording appended to a message let through after `suppressed` were left out.
    public static func suffix(_ suppressed: Int) -> String {
        guard suppressed > 0 else { return "" }
        let digits = String(suppressed)
        var grouped = ""
        for (i, ch) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { grouped += "," }
            grouped.append(ch)
        }
        return " (… and \(grouped) more in the last minute)"
    }
}

extension Logger {
    /// A warning of kind `key` through `limiter` (see `LogRateLimiter`).
    func warning(limitedBy limiter: LogRateLimiter, _ key: String, _ message: String, metadata: Logger.Metadata = [:]) {
        guard let suppressed = limiter.admit(key) else { return }
        warning("\(message)\(LogRateLimiter.suffix(suppressed))", metadata: metadata)
    }
}

extension SocketAddress {
    /// `203.0.113.5:7400` or `[2001:db8::1]:7400`: how people write an address, for logs and
    /// status pages (NIO's description reads `[IPv4]203.0.113.5/203.0.113.5:7400`).
    public var hostAndPort: String {
        guard let ip = ipAddress else { return description }
        let host = ip.contains(":") ? "[\(ip)]" : ip
        return port.map { "\(host):\($0)" } ?? host
    }
}
