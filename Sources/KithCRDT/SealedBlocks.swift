import KithCrypto

/// Names the epoch key that sealed a block of an encrypted scope: the first 16 bytes of the id of
/// the membership op that started the epoch (Protocol/chapters.md §5).
public struct EpochRef: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public static let length = 16

    public init(bytes: some Collection<UInt8>) throws(DecodeError) {
        guard bytes.count == Self.length else { throw DecodeError("an epoch reference is 16 bytes, got \(bytes.count)") }
        self.bytes = Array(bytes)
    }

    public var description: String { Base64URL.encode(bytes) }
}

/// How a replica reads the blocks of its scope.
public enum ScopeMode: Sendable, Equatable {
    /// Blocks are plaintext (a member's private scope: its confidentiality is the store's
    /// sealing and the Noise transport).
    case plain
    /// Every block is sealed under an epoch key of the scope's chapter; blocks whose key is not
    /// (yet) held wait until it arrives.
    case encrypted
    /// A blind relay: changes are verified, chained, stored and forwarded, never read.
    case opaque
}

/// The key a device seals its blocks with when writing to an encrypted scope.
public struct BlockSealer: Sendable {
    public let epoch: EpochRef
    public let key: SymmetricKey

    public init(epoch: EpochRef, key: SymmetricKey) {
        self.epoch = epoch
        self.key = key
    }
}

/// Sealed block layout: `epoch ref(16) ‖ nonce(24) ‖ XChaCha20-Poly1305(plain block)`, with
/// associated data `"kith/block/v1" ‖ u8 scope length ‖ scope ‖ author device key`, so a block
/// cannot be moved into another scope or another author's change.
enum SealedBlock {
    static let domain = Array("kith/block/v1".utf8)
    static let overhead = EpochRef.length + XChaCha20Poly1305.nonceLength + XChaCha20Poly1305.tagLength

    static func associatedData(scope: ScopeID, author: DeviceKey) -> [UInt8] {
        domain + [UInt8(scope.bytes.count)] + scope.bytes + author.bytes
    }

    static func seal(_ plain: [UInt8], with sealer: BlockSealer, ad: [UInt8]) -> [UInt8] {
        let nonce = SecureRandom.bytes(XChaCha20Poly1305.nonceLength)
        let ct = try! XChaCha20Poly1305.encrypt(plain, key: sealer.key, nonce: nonce, associatedData: ad)
        return sealer.epoch.bytes + nonce + ct
    }

    enum Opened {
        case plain([UInt8])
        /// The epoch key is not held (yet).
        case missingKey(EpochRef)
        /// Held key, but the block does not authenticate: tampered or sealed by a confused writer.
        case unreadable(String)
    }

    static func open(_ block: ArraySlice<UInt8>, keys: [EpochRef: SymmetricKey], ad: [UInt8]) -> Opened {
        guard block.count >= overhead + 17 else { return .unreadable("a sealed block of \(block.count) bytes is too short") }
        let s = block.startIndex
        let ref = try! EpochRef(bytes: block[s..<(s + 16)])
        guard let key = keys[ref] else { return .missingKey(ref) }
        let nonce = Array(block[(s + 16)..<(s + 40)])
        guard let plain = try? XChaCha20Poly1305.decrypt(Array(block[(s + 40)...]), key: key, nonce: nonce, associatedData: ad) else {
            return .unreadable("a block sealed under epoch \(ref) does not authenticate")
        }
        return .plain(plain)
    }
}
