import Foundation
import PostgresNIO

/// Where a hub's PostgreSQL store is: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, or over a
/// Unix socket `postgres://USER@/DATABASE?host=/run/postgresql` (libpq's form: a `host` that
/// starts with `/` is the socket's directory). `sslmode=disable|prefer|require` (TCP only;
/// default `prefer`). User and password are percent-decoded.
public struct PostgresStoreURL: Sendable, CustomStringConvertible, Equatable {
    public enum Endpoint: Sendable, Equatable {
        /// The socket's directory and the port in its file name (`.s.PGSQL.<port>`).
        case socket(directory: String, port: Int)
        case tcp(host: String, port: Int)
    }

    public enum TLSMode: String, Sendable {
        case disable, prefer, require
    }

    public var endpoint: Endpoint
    public var username: String
    public var password: String?
    public var database: String
    public var tls: TLSMode

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    /// True when `text` names a PostgreSQL store (and not a directory).
    public static func isPostgres(_ text: String) -> Bool {
        text.hasPrefix("postgres://") || text.hasPrefix("postgresql://")
    }

    public init(_ text: String) throws(Invalid) {
        guard Self.isPostgres(text), let c = URLComponents(string: text) else {
            throw Invalid(description: "a PostgreSQL store is postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE or postgres://USER@/DATABASE?host=/socket/dir")
        }
        var query: [String: String] = [:]
        for item in c.queryItems ?? [] {
            guard ["host", "port", "sslmode", "user", "password"].contains(item.name), let v = item.value else {
                throw Invalid(description: "unknown parameter '\(item.name)' in the store URL (known: host, port, sslmode, user, password)")
            }
            query[item.name] = v
        }
        let port: Int
        if let p = query["port"] ?? c.port.map(String.init) {
            guard let n = Int(p), (1...65_535).contains(n) else { throw Invalid(description: "the store URL's port must be 1...65535") }
            port = n
        } else {
            port = 5432
        }
        let host = query["host"] ?? c.host.flatMap { $0.isEmpty ? nil : $0.removingPercentEncoding }
        if let host, host.hasPrefix("/") {
            endpoint = .socket(directory: host, port: port)
        } else if let host {
            endpoint = .tcp(host: host, port: port)
        } else {
            endpoint = .socket(directory: "/var/run/postgresql", port: port)
        }
        guard let user = query["user"] ?? c.user.flatMap({ $0.removingPercentEncoding }), !user.isEmpty else {
            throw Invalid(description: "the store URL names no user (postgres://USER@…)")
        }
        username = user
        password = query["password"] ?? c.password.flatMap { $0.removingPercentEncoding }
        let db = String(c.path.drop { $0 == "/" }).removingPercentEncoding ?? ""
        guard !db.isEmpty, !db.contains("/") else { throw Invalid(description: "the store URL names no database (…/DATABASE)") }
        database = db
        if let mode = query["sslmode"] {
            guard let m = TLSMode(rawValue: mode) else { throw Invalid(description: "sslmode must be disable, prefer or require") }
            tls = m
        } else {
            tls = .prefer
        }
    }

    /// The URL without its password (for logs and errors).
    public var description: String {
        switch endpoint {
        case let .socket(dir, port): "postgres://\(username)@/\(database)?host=\(dir)" + (port == 5432 ? "" : "&port=\(port)")
        case let .tcp(host, port): "postgres://\(username)@\(host):\(port)/\(database)"
        }
    }

    public var configuration: PostgresConnection.Configuration {
        get throws {
            switch endpoint {
            case let .socket(dir, port):
                return .init(unixSocketPath: dir + "/.s.PGSQL.\(port)", username: username, password: password, database: database)
            case let .tcp(host, port):
                let t: PostgresConnection.Configuration.TLS = switch tls {
                case .disable: .disable
                case .prefer: .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
                case .require: .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
                }
                return .init(host: host, port: port, username: username, password: password, database: database, tls: t)
            }
        }
    }
}
