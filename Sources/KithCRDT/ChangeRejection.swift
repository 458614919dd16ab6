/// Why a replica refused a change. Nothing of a rejected change is applied.
public struct ChangeRejection: Error, Equatable, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The bytes do not parse (framing, opcode, field grammar, limits).
        public static let malformed = Code("malformed")
        /// A format version this build does not read.
        public static let unsupportedVersion = Code("unsupported-version")
        /// The Ed25519 signature does not verify against the author device key.
        public static let badSignature = Code("bad-signature")
        /// The blocks do not hash to the signed digest.
        public static let tampered = Code("tampered")
        /// `previous` is not the id of the author's change with seq - 1 in this scope.
        public static let brokenChain = Code("broken-chain")
        /// The author's clock did not move forward from its previous change.
        public static let clockRegression = Code("clock-regression")
        /// Stamped further in the future than the replica tolerates.
        public static let fromTheFuture = Code("from-the-future")
        /// The same (scope, device, seq) with different bytes: evidence is kept.
        public static let equivocation = Code("equivocation")
        /// A change for another scope than this replica's.
        public static let wrongScope = Code("wrong-scope")
    }

    public let code: Code
    public let detail: String

    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String { detail }
    public static func == (a: ChangeRejection, b: ChangeRejection) -> Bool { a.code == b.code }
}
