/// Why a node (data directory, key ring, identity) could not be created or opened.
public struct NodeError: Error, Equatable, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        public static let alreadyInitialized = Code("already-initialized")
        public static let notInitialized = Code("not-initialized")
        public static let insecurePermissions = Code("insecure-permissions")
        public static let wrongOwner = Code("wrong-owner")
        public static let io = Code("io")
        public static let corrupt = Code("corrupt")
        public static let invalidPassphrase = Code("invalid-passphrase")
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { detail }
    public static func == (a: NodeError, b: NodeError) -> Bool { a.code == b.code }
}
