import KithCrypto

/// A LAN discovery announcement (Protocol/sync.md §7): it tells nodes that can compute the same
/// discovery key where to connect, and tells everyone else nothing they can link over time.
///
/// `"KITHLAN1" ‖ epoch u64 ‖ port u16 ‖ instance[8] ‖ tag[16]`, where
/// `tag = BLAKE2b-128(key = discovery key, "kith/lan/v1" ‖ epoch ‖ port ‖ instance)` and the epoch
/// is Unix time / 300 (it rotates every five minutes).
public struct LANAnnouncement: Equatable, Sendable {
    public static let magic = Array("KITHLAN1".utf8)
    public static let length = 8 + 8 + 2 + 8 + 16
    public static let epochSeconds: UInt64 = 300

    public let epoch: UInt64
    public let port: UInt16
    public let instance: [UInt8]
    public let tag: [UInt8]

    /// The discovery key of a member's devices: `BLAKE2b-256("kith/lan/member" ‖ member key)`.
    /// (Anyone who knows the member's public key can recognise its announcements; chapters will
    /// announce under a key derived from the secret chapter epoch key instead.)
    public static func memberKey(_ member: Ed25519.PublicKey) -> [UInt8] {
        BLAKE2b.hash(Array("kith/lan/member".utf8) + member.bytes)
    }

    static func tag(key: [UInt8], epoch: UInt64, port: UInt16, instance: [UInt8]) -> [UInt8] {
        var msg = Array("kith/lan/v1".utf8)
        msg.appendBigEndian(epoch)
        msg.appendBigEndian(port)
        msg += instance
        return BLAKE2b.hash(msg, outputLength: 16, key: key)
    }

    public init(key: [UInt8], port: UInt16, instance: [UInt8], nowSeconds: UInt64) {
        epoch = nowSeconds / Self.epochSeconds
        self.port = port
        self.instance = instance
        tag = Self.tag(key: key, epoch: epoch, port: port, instance: instance)
    }

    public var encoded: [UInt8] {
        var out = Self.magic
        out.appendBigEndian(epoch)
        out.appendBigEndian(port)
        return out + instance + tag
    }

    /// Parses and authenticates an announcement for `key`: the tag must match and the epoch must
    /// be the current one or its neighbour (clock skew). Nil for anything else — foreign,
    /// stale, malformed — which a listener silently ignores.
    public static func verify(_ bytes: [UInt8], key: [UInt8], nowSeconds: UInt64) -> LANAnnouncement? {
        guard bytes.count == length, Array(bytes.prefix(8)) == magic else { return nil }
        let epoch = UInt64(bigEndianBytes: bytes[8..<16])
        let port = UInt16(bigEndianBytes: bytes[16..<18])
        let instance = Array(bytes[18..<26]), tag = Array(bytes[26..<42])
        let current = nowSeconds / epochSeconds
        // `epoch <= current + 1` first: it keeps `epoch + 1` from overflowing (a datagram with an
        // all-ones epoch trapped here, found by Fuzz/ target lan).
        guard epoch <= current + 1, epoch + 1 >= current, port != 0 else { return nil }
        guard ConstantTime.equals(Self.tag(key: key, epoch: epoch, port: port, instance: instance), tag) else { return nil }
        return LANAnnouncement(epoch: epoch, port: port, instance: instance, tag: tag)
    }

    private init(epoch: UInt64, port: UInt16, instance: [UInt8], tag: [UInt8]) {
        self.epoch = epoch
        self.port = port
        self.instance = instance
        self.tag = tag
    }
}
