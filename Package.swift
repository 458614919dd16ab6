// swift-tools-version: 6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Kith",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "kith", targets: ["kith"]),
        .executable(name: "kithd", targets: ["kithd"]),
        .executable(name: "kith-bench", targets: ["kith-bench"]),
        .library(name: "KithCrypto", targets: ["KithCrypto"]),
        .library(name: "KithCRDT", targets: ["KithCRDT"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/yaslab/CSV.swift.git", from: "2.5.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        // libsodium, the only cryptography implementation Kith uses.
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        // Safe Swift types over libsodium: keys, AEAD, hashes, sealed boxes, certificates, key rings.
        .target(name: "KithCrypto", dependencies: ["CSodium"], swiftSettings: strict),
        // Google's libphonenumber (C++, Debian's libphonenumber-dev) behind a small C ABI: phone
        // numbers parsed and normalized to E.164 with their extension kept apart.
        .target(
            name: "CPhone",
            linkerSettings: [.linkedLibrary("phonenumber"), .linkedLibrary("stdc++")]
        ),
        // The contact map as a pure, deterministic, convergent set of signed changes. No I/O.
        .target(name: "KithCRDT", dependencies: ["KithCrypto", "CPhone"], swiftSettings: strict),
        // Chapters: the signed membership log, its evaluation, epoch keys and invites. No I/O.
        .target(name: "KithChapter", dependencies: ["KithCRDT", "KithCrypto"], swiftSettings: strict),
        // Consent: grants, sealed upward records, revocations, receipts and the hub's rules. No I/O.
        .target(name: "KithConsent", dependencies: ["KithChapter", "KithCRDT", "KithCrypto"], swiftSettings: strict),
        // Durable, encrypted-at-rest storage of a replica (SQLite WAL, sealed rows, in-memory index).
        // SQLite, the embedded store's engine (system library).
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "KithStore", dependencies: ["KithCRDT", "KithCrypto", "CSQLite"], swiftSettings: strict),
        // Peer-to-peer transport: the Noise XX handshake and transport (sans I/O); sync sessions next.
        .target(name: "KithSync", dependencies: ["KithCRDT", "KithCrypto"], swiftSettings: strict),
        // TCP peers over SwiftNIO, driving the sans-I/O handshake and sync session; owns the store in a daemon.
        .target(
            name: "KithNetwork",
            dependencies: [
                "KithSync", "KithStore", "KithQuery", "KithCRDT", "KithCrypto", "KithChapter", "KithConsent",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Queries over a replica: the incremental search index, list order and paging, the JSON
        // shape of a contact and patches → edits. Shared by kithd and the CLI. No I/O.
        .target(name: "KithQuery", dependencies: ["KithCRDT", "KithCrypto", "KithInterchange"], swiftSettings: strict),
        // libqrencode (Debian's libqrencode-dev): QR codes for invites on the web page.
        .systemLibrary(name: "CQRencode", pkgConfig: "libqrencode", providers: [.apt(["libqrencode-dev"])]),
        // The web page (README "The web page"): Mustache templates over the API's own answers, the
        // strings table, the page's CSS and JavaScript, invite QR codes as SVG. No I/O.
        .target(
            name: "KithWeb",
            dependencies: [
                "KithQuery", "KithCRDT", "KithInterchange", "CQRencode",
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: strict
        ),
        // The local HTTP API (Protocol/api.md, Protocol/openapi.yaml): JSON over Hummingbird, answered
        // from the node's in-memory state; the CLI, the web page and scripts use it.
        .target(
            name: "KithAPI",
            dependencies: [
                "KithNetwork", "KithQuery", "KithStore", "KithCRDT", "KithCrypto", "KithNode", "KithWeb", "KithInterchange",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The organization hub's PostgreSQL storage (HubStorage over postgres-nio): only kithd and its tests link it.
        .target(
            name: "KithHubPostgres",
            dependencies: [
                "KithNetwork", "KithConsent", "KithStore", "KithCRDT", "KithCrypto",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Where the hub's records go beyond it: Action Network over OSDI, CSV files for staff (Action
        // Network, VAN), and the deletions there.
        .target(
            name: "KithHubConnectors",
            dependencies: [
                "KithNetwork", "KithConsent", "KithCrypto",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // vCard and CSV import/export: text ↔ contacts, no I/O.
        .target(
            name: "KithInterchange",
            dependencies: ["KithCRDT", "KithCrypto", .product(name: "CSV", package: "CSV.swift")],
            swiftSettings: strict
        ),
        // Seeded synthetic contacts shared by benchmarks, the demo and tests.
        .target(name: "KithSampleData", dependencies: ["KithCRDT"], swiftSettings: strict),
        // kithd's log lines: text, JSON or journald format, one event per line, message first (swift-log handler).
        .target(name: "KithLogging", dependencies: [.product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        // Talking to systemd without libsystemd: sd_notify datagrams (readiness, reload, stop, watchdog).
        .target(name: "KithSystemd", swiftSettings: strict),
        // A member's node on disk: data directory, key ring and identity files, shared by kith and kithd.
        .target(name: "KithNode", dependencies: ["KithCrypto", "KithStore"], swiftSettings: strict),
        .executableTarget(
            name: "kith",
            dependencies: [
                "KithNode", "KithCrypto", "KithCRDT", "KithStore", "KithInterchange", "KithNetwork", "KithChapter", "KithQuery",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "kithd",
            dependencies: [
                "KithNode", "KithCrypto", "KithNetwork", "KithCRDT", "KithChapter", "KithConsent", "KithStore", "KithAPI", "KithHubPostgres", "KithHubConnectors",
                "KithLogging", "KithSystemd",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "kith-bench",
            dependencies: [
                "KithCRDT", "KithCrypto", "KithChapter", "KithSampleData", "KithStore", "KithInterchange", "KithNetwork", "KithNode", "KithSync", "KithQuery",
                "KithConsent", "KithHubPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/kith-bench",
            swiftSettings: strict
        ),
        .testTarget(name: "KithCryptoTests", dependencies: ["KithCrypto"], swiftSettings: strict),
        .testTarget(
            name: "KithCRDTTests",
            dependencies: [
                "KithCRDT", "KithCrypto",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KithChapterTests",
            dependencies: ["KithChapter", "KithCRDT", "KithCrypto", "KithSampleData", "KithSync"],
            swiftSettings: strict
        ),
        .testTarget(name: "KithConsentTests", dependencies: ["KithConsent", "KithChapter", "KithCRDT", "KithCrypto"], swiftSettings: strict),
        .testTarget(
            name: "KithQueryTests",
            dependencies: ["KithQuery", "KithCRDT", "KithCrypto", "KithSampleData", "KithInterchange", "KithStore", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KithHubStorageTests",
            dependencies: [
                "KithHubPostgres", "KithHubConnectors", "KithNetwork", "KithConsent", "KithChapter", "KithCRDT", "KithCrypto", "KithStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "KithWebTests", dependencies: ["KithWeb", "KithQuery", "KithCRDT", "KithCrypto", "KithInterchange"], swiftSettings: strict),
        .testTarget(name: "KithSyncTests", dependencies: ["KithSync", "KithCrypto", "KithCRDT"], swiftSettings: strict),
        .testTarget(name: "KithInterchangeTests", dependencies: ["KithInterchange", "KithCRDT", "CPhone"], swiftSettings: strict),
        .testTarget(
            name: "KithStoreTests",
            dependencies: ["KithStore", "KithCRDT", "KithCrypto", "KithSampleData", "KithInterchange"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KithNodeTests",
            dependencies: [
                "KithNode", "KithCrypto", "KithCRDT", "KithStore", "KithChapter", "KithConsent", "KithInterchange", "KithSampleData",
                "KithNetwork", "KithLogging", "KithSystemd", "kith", "kithd",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
    ]
)
