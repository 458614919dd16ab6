import Foundation
import KithCrypto
import Testing

@Suite("Primitives: round trips and attacks")
struct PrimitiveTests {
    @Test func xchachaSealOpenAndTamper() throws {
        let key = SymmetricKey()
        let msg = Array("Ada Lovelace, +44 20 7946 0000".utf8)
        let sealed = XChaCha20Poly1305.seal(msg, key: key, associatedData: Array("record-1".utf8))
        #expect(sealed.count == msg.count + 24 + 16)
        #expect(try XChaCha20Poly1305.open(sealed, key: key, associatedData: Array("record-1".utf8)) == msg)
        // Wrong key, wrong associated data, every flipped byte, truncation: all refused.
        #expect(throws: CryptoError.self) { _ = try XChaCha20Poly1305.open(sealed, key: SymmetricKey(), associatedData: Array("record-1".utf8)) }
        #expect(throws: CryptoError.self) { _ = try XChaCha20Poly1305.open(sealed, key: key, associatedData: Array("record-2".utf8)) }
        for i in sealed.indices {
            var t = sealed
            t[i] ^= 0x80
            #expect(throws: CryptoError.self) { _ = try XChaCha20Poly1305.open(t, key: key, associatedData: Array("record-1".utf8)) }
        }
        #expect(throws: CryptoError.self) { _ = try XChaCha20Poly1305.open(Array(sealed.prefix(39)), key: key) }
        // Same plaintext twice gives different ciphertexts (random nonces).
        #expect(XChaCha20Poly1305.seal(msg, key: key) != XChaCha20Poly1305.seal(msg, key: key))
        // Empty plaintext round-trips.
        #expect(try XChaCha20Poly1305.open(XChaCha20Poly1305.seal([UInt8](), key: key), key: key) == [])
    }

    @Test func wrongLengthsAreErrorsNotCrashes() throws {
        #expect(throws: CryptoError.self) { _ = try SymmetricKey(bytes: [UInt8](repeating: 1, count: 31)) }
        #expect(throws: CryptoError.self) { _ = try Ed25519.PublicKey(bytes: [UInt8](repeating: 1, count: 33)) }
        #expect(throws: CryptoError.self) { _ = try Ed25519.PrivateKey(seed: [UInt8](repeating: 1, count: 31)) }
        #expect(throws: CryptoError.self) { _ = try X25519.PublicKey(bytes: [UInt8]()) }
        #expect(throws: CryptoError.self) {
            _ = try ChaCha20Poly1305.encrypt([1, 2], key: SymmetricKey(), nonce: [UInt8](repeating: 0, count: 24), associatedData: [UInt8]())
        }
        #expect(!Ed25519.PrivateKey().publicKey.isValidSignature([UInt8](repeating: 0, count: 63), for: [1]))
    }

    @Test func signaturesRejectWrongKeyAndTamperedMessage() {
        let a = Ed25519.PrivateKey(), b = Ed25519.PrivateKey()
        let msg = Array("change 42".utf8)
        let sig = a.signature(for: msg)
        #expect(a.publicKey.isValidSignature(sig, for: msg))
        #expect(!b.publicKey.isValidSignature(sig, for: msg))
        #expect(!a.publicKey.isValidSignature(sig, for: Array("change 43".utf8)))
        var badSig = sig
        badSig[10] ^= 1
        #expect(!a.publicKey.isValidSignature(badSig, for: msg))
    }

    @Test func x25519AgreementAndLowOrderPoint() throws {
        let a = X25519.PrivateKey(), b = X25519.PrivateKey()
        #expect(try a.sharedSecret(with: b.publicKey) == b.sharedSecret(with: a.publicKey))
        let zero = try X25519.PublicKey(bytes: [UInt8](repeating: 0, count: 32))
        #expect(throws: CryptoError(.weakPublicKey, "")) { _ = try a.sharedSecret(with: zero) }
    }

    @Test func sealedBoxRoundTrip() throws {
        let org = X25519.PrivateKey()
        let record = Array(#"{"name":"Ada"}"#.utf8)
        let box = SealedBox.seal(record, to: org.publicKey)
        #expect(box.count == record.count + SealedBox.overhead)
        #expect(try SealedBox.open(box, with: org) == record)
        #expect(throws: CryptoError.self) { _ = try SealedBox.open(box, with: X25519.PrivateKey()) }
        #expect(throws: CryptoError.self) { _ = try SealedBox.open([1, 2, 3], with: org) }
        #expect(try SealedBox.open(SealedBox.seal([UInt8](), to: org.publicKey), with: org) == [])
    }

    @Test func blake2bKnownAnswersAndStreaming() throws {
        // BLAKE2b-512 of "abc" (RFC 7693 Appendix A).
        let abc = BLAKE2b.hash(Array("abc".utf8), outputLength: 64)
        #expect(Hex.encode(abc) == "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923")
        let data = (0..<1000).map { UInt8($0 % 251) }
        let h = BLAKE2b.Hasher(outputLength: 32)
        h.update(data[0..<10])
        h.update(data[10...])
        #expect(h.finalize() == BLAKE2b.hash(data))
        let key = [UInt8](repeating: 7, count: 32)
        #expect(BLAKE2b.hash(data, key: key) != BLAKE2b.hash(data))
        let kh = BLAKE2b.Hasher(outputLength: 32, key: key)
        kh.update(data)
        #expect(kh.finalize() == BLAKE2b.hash(data, key: key))
    }

    @Test func argon2idDerivesDeterministically() throws {
        let salt = [UInt8](repeating: 9, count: 16)
        let limits = Argon2id.Limits.interactive
        let k1 = try Argon2id.deriveKey(passphrase: Array("correct horse".utf8), salt: salt, limits: limits)
        let k2 = try Argon2id.deriveKey(passphrase: Array("correct horse".utf8), salt: salt, limits: limits)
        let k3 = try Argon2id.deriveKey(passphrase: Array("correct horsf".utf8), salt: salt, limits: limits)
        #expect(k1 == k2)
        #expect(!(k1 == k3))
        #expect(throws: CryptoError.self) { _ = try Argon2id.deriveKey(passphrase: [1], salt: [1, 2], limits: limits) }
    }

    @Test func constantTimeEquality() {
        #expect(ConstantTime.equals([1, 2, 3], [1, 2, 3]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2, 4]))
        #expect(!ConstantTime.equals([1, 2, 3], [1, 2]))
        #expect(ConstantTime.equals([UInt8](), [UInt8]()))
        var secret: [UInt8] = [1, 2, 3]
        ConstantTime.wipe(&secret)
        #expect(secret == [0, 0, 0])
    }

    @Test func base64urlAndHex() {
        let bytes: [UInt8] = [0xfb, 0xff, 0x00, 0x10]
        #expect(Base64URL.encode(bytes) == "-_8AEA")
        #expect(Base64URL.decode("-_8AEA") == bytes)
        #expect(Base64URL.decode("not base64!") == nil)
        #expect(Hex.decode(Hex.encode(bytes)) == bytes)
        #expect(Hex.decode("zz") == nil)
    }
}

@Suite("Identity: certificates and key rings")
struct IdentityTests {
    func makeCert(expiresAt: UInt64? = nil) -> (Ed25519.PrivateKey, DeviceCertificate) {
        let member = Ed25519.PrivateKey()
        let cert = DeviceCertificate.issue(
            member: member,
            deviceSigningKey: Ed25519.PrivateKey().publicKey,
            deviceAgreementKey: X25519.PrivateKey().publicKey,
            createdAt: 1_000_000, expiresAt: expiresAt
        )
        return (member, cert)
    }

    @Test func certificateRoundTripAndVerify() throws {
        let (member, cert) = makeCert(expiresAt: 2_000_000)
        let decoded = try DeviceCertificate(encoded: cert.encoded)
        #expect(decoded == cert)
        #expect(cert.encoded.count == DeviceCertificate.encodedLength)
        try decoded.verify(now: 1_500_000, expectedMember: member.publicKey)
    }

    @Test func certificateRejectsWrongSignerTamperingAndExpiry() throws {
        let (_, cert) = makeCert(expiresAt: 2_000_000)
        #expect(throws: CryptoError(.wrongSigner, "")) {
            try cert.verify(now: 1_500_000, expectedMember: Ed25519.PrivateKey().publicKey)
        }
        #expect(throws: CryptoError(.certificateExpired, "")) { try cert.verify(now: 2_000_000) }
        #expect(throws: CryptoError(.certificateNotYetValid, "")) { try cert.verify(now: 900_000) }
        // Flip each byte of the signed part: either it no longer parses or it no longer verifies.
        let bytes = cert.encoded
        for i in 1..<bytes.count {
            var t = bytes
            t[i] ^= 0x01
            if let c = try? DeviceCertificate(encoded: t) {
                #expect(throws: CryptoError.self, "flipped byte \(i) still verifies") { try c.verify(now: 1_500_000) }
            }
        }
        var badVersion = bytes
        badVersion[0] = 9
        #expect(throws: CryptoError(.malformed, "")) { _ = try DeviceCertificate(encoded: badVersion) }
        #expect(throws: CryptoError(.malformed, "")) { _ = try DeviceCertificate(encoded: Array(bytes.dropLast())) }
        // A certificate claiming another member's key is rejected even without an expected member.
        var swapped = bytes
        swapped.replaceSubrange(1..<33, with: Ed25519.PrivateKey().publicKey.bytes)
        #expect(throws: CryptoError(.invalidSignature, "")) { try DeviceCertificate(encoded: swapped).verify(now: 1_500_000) }
    }

    @Test func keyRingPlainAndWrapped() throws {
        let ring = KeyRing.generate()
        let plain = try ring.encoded()
        #expect(!KeyRing.isProtected(plain))
        let back = try KeyRing(encoded: plain, passphrase: nil)
        #expect(back.deviceSigningKey.publicKey == ring.deviceSigningKey.publicKey)
        #expect(back.memberKey?.publicKey == ring.memberKey?.publicKey)
        #expect(back.storageKey == ring.storageKey)

        let pass = SecureBytes(copying: Array("hunter2 but longer".utf8))
        let wrapped = try ring.encoded(passphrase: pass, limits: .interactive)
        #expect(KeyRing.isProtected(wrapped))
        let unwrapped = try KeyRing(encoded: wrapped, passphrase: pass)
        #expect(unwrapped.deviceAgreementKey.publicKey == ring.deviceAgreementKey.publicKey)
        #expect(throws: CryptoError(.wrongPassphrase, "")) {
            _ = try KeyRing(encoded: wrapped, passphrase: SecureBytes(copying: Array("hunter3 but longer".utf8)))
        }
        #expect(throws: CryptoError(.passphraseRequired, "")) { _ = try KeyRing(encoded: wrapped, passphrase: nil) }
        // Tampering with the Argon2 parameters in the header is detected (header is authenticated).
        var tampered = wrapped
        tampered[25] ^= 0x01
        #expect(throws: CryptoError.self) { _ = try KeyRing(encoded: tampered, passphrase: pass) }
        #expect(throws: CryptoError(.malformed, "")) { _ = try KeyRing(encoded: Array("NOTAKEYRING".utf8), passphrase: nil) }
        // The plaintext secrets do not appear in the wrapped encoding.
        let seed = ring.deviceSigningKey.seed.unsafeCopy()
        #expect(!wrapped.containsSubsequence(seed))
        #expect(plain.containsSubsequence(seed))
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard needle.count <= count else { return false }
        for i in 0...(count - needle.count) where self[i..<(i + needle.count)].elementsEqual(needle) { return true }
        return false
    }
}
