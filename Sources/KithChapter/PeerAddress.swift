import KithCRDT
import KithCrypto

/// A chapter device's reachable address, for the chapter overlay's peer exchange
/// (Protocol/sync.md §9): signed by the device (so no one else can announce an address for it)
/// and sealed under a key derived from the chapter's epoch key (so a removed member, who never
/// gets the new epoch's key, learns no address announced after the removal).
///
/// ```
/// record    = device[32] ‖ u64 issued_ms ‖ epoch[16] ‖ nonce[24] ‖ bytes sealed ‖ signature[64]
/// sealed    = XChaCha20-Poly1305(address_key, nonce, text address, ad = signed prefix)
/// signature = Ed25519(device, "kith/address/v1" ‖ chapter_id ‖ device ‖ issued_ms ‖ epoch ‖ nonce ‖ bytes sealed)
/// address_key = BLAKE2b-256(key = epoch key, "kith/address-key/v1")
/// ```
public struct PeerAddressRecord: Sendable, Equatable {
    public let device: Ed25519.PublicKey
    public let issuedMilliseconds: UInt64
    public let epoch: EpochRef
    public let nonce: [UInt8]
    public let sealed: [UInt8]
    public let signature: [UInt8]

    /// Longest address text ("host:port") a record may carry.
    public static let maxAddressLength = 255
    /// Longest encoded record: 32 + 8 + 16 + 24 + varint + (255 + 16) + 64.
    public static let maxEncodedLength = 512
    static let domain = Array("kith/address/v1".utf8)
    static let keyDomain = Array("kith/address-key/v1".utf8)

    /// The epoch's address key, derived from the epoch key.
    public static func key(epochKey: SymmetricKey) -> SymmetricKey {
        let k = epochKey.secret.withBytes { BLAKE2b.hash(keyDomain, outputLength: 32, key: Array($0)) }
        return try! SymmetricKey(bytes: k)
    }

    /// Seals and signs `address` for `chapter` under the epoch `epoch` (whose key is `epochKey`).
    /// `nonce` is random unless given (golden vectors).
    public static func make(address: String, chapter: ChapterID, device: Ed25519.PrivateKey, issuedMilliseconds: UInt64,
                            epoch: EpochRef, epochKey: SymmetricKey, nonce: [UInt8]? = nil) throws(MembershipError) -> PeerAddressRecord {
        let text = Array(address.utf8)
        guard !text.isEmpty, text.count <= maxAddressLength, !text.contains(where: { $0 < 0x21 || $0 == 0x7F }) else {
            throw MembershipError(.malformed, "an announced address is 1–\(maxAddressLength) printable bytes without spaces")
        }
        let n = nonce ?? SecureRandom.bytes(XChaCha20Poly1305.nonceLength)
        let ad = associatedData(chapter: chapter, device: device.publicKey, issued: issuedMilliseconds, epoch: epoch, nonce: n)
        let sealed = try! XChaCha20Poly1305.encrypt(text, key: key(epochKey: epochKey), nonce: n, associatedData: ad)
        let signature = device.signature(for: signed(ad: ad, sealed: sealed))
        return PeerAddressRecord(device: device.publicKey, issuedMilliseconds: issuedMilliseconds, epoch: epoch, nonce: n, sealed: sealed, signature: signature)
    }

    init(device: Ed25519.PublicKey, issuedMilliseconds: UInt64, epoch: EpochRef, nonce: [UInt8], sealed: [UInt8], signature: [UInt8]) {
        self.device = device
        self.issuedMilliseconds = issuedMilliseconds
        self.epoch = epoch
        self.nonce = nonce
        self.sealed = sealed
        self.signature = signature
    }

    public init(decoding bytes: [UInt8]) throws(MembershipError) {
        var r = ByteReader(bytes)
        do {
            device = try Ed25519.PublicKey(bytes: try r.raw(32))
        } catch { throw MembershipError(.malformed, "address record: bad device key") }
        do {
            issuedMilliseconds = try r.u64()
            epoch = try EpochRef(bytes: try r.raw(EpochRef.length))
            nonce = Array(try r.raw(XChaCha20Poly1305.nonceLength))
            sealed = Array(try r.lengthPrefixed(max: Self.maxAddressLength + XChaCha20Poly1305.tagLength))
            signature = Array(try r.raw(Ed25519.signatureLength))
        } catch { throw MembershipError(.malformed, "address record: \(error.reason)") }
        guard sealed.count > XChaCha20Poly1305.tagLength else { throw MembershipError(.malformed, "address record: empty address") }
        guard r.isAtEnd else { throw MembershipError(.malformed, "address record: \(r.remaining) trailing bytes") }
    }

    public var encoded: [UInt8] {
        var w = ByteWriter()
        w.raw(device.bytes)
        w.u64(issuedMilliseconds)
        w.raw(epoch.bytes)
        w.raw(nonce)
        w.lengthPrefixed(sealed)
        w.raw(signature)
        return w.bytes
    }

    static func associatedData(chapter: ChapterID, device: Ed25519.PublicKey, issued: UInt64, epoch: EpochRef, nonce: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.raw(domain)
        w.raw(chapter.bytes)
        w.raw(device.bytes)
        w.u64(issued)
        w.raw(epoch.bytes)
        w.raw(nonce)
        return w.bytes
    }

    static func signed(ad: [UInt8], sealed: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.raw(ad)
        w.lengthPrefixed(sealed)
        return w.bytes
    }

    /// Checks the record against the chapter's state and opens it, the cheap checks first: the
    /// device must be a current device of a current member, the record must be sealed under the
    /// chapter's current epoch, whose key this node holds (`epochKey`), the signature must
    /// verify, and the address must decrypt. Returns the address text.
    public func open(chapter: ChapterID, state: ChapterState, epochKey: SymmetricKey) throws(MembershipError) -> String {
        try open(chapter: chapter, state: state, addressKey: Self.key(epochKey: epochKey))
    }

    /// `open(chapter:state:epochKey:)` with the epoch's address key already derived
    /// (`key(epochKey:)`): a node keeps it per epoch instead of deriving it for every record.
    public func open(chapter: ChapterID, state: ChapterState, addressKey: SymmetricKey) throws(MembershipError) -> String {
        guard state.isCurrentDevice(device) else {
            throw MembershipError(.notAuthorized, "address record for \(device), which is not a current device of the chapter")
        }
        guard let current = state.currentEpoch, current.ref == epoch else {
            throw MembershipError(.notAuthorized, "address record for \(device) is sealed under an epoch that is not the chapter's current one")
        }
        let ad = Self.associatedData(chapter: chapter, device: device, issued: issuedMilliseconds, epoch: epoch, nonce: nonce)
        guard device.isValidSignature(signature, for: Self.signed(ad: ad, sealed: sealed)) else {
            throw MembershipError(.badSignature, "address record for \(device): the signature does not verify")
        }
        let plain: [UInt8]
        do { plain = try XChaCha20Poly1305.decrypt(sealed, key: addressKey, nonce: nonce, associatedData: ad) } catch {
            throw MembershipError(.badSignature, "address record for \(device) does not open under the current epoch's key")
        }
        guard let text = String(validating: plain, as: UTF8.self), !plain.contains(where: { $0 < 0x21 || $0 == 0x7F }) else {
            throw MembershipError(.malformed, "address record for \(device): the address is not printable text")
        }
        return text
    }
}
