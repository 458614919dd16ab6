import Foundation
import KithCrypto
import Testing

@Suite("Wycheproof vectors")
struct WycheproofTests {
    struct AEADGroup: Decodable {
        let ivSize: Int
        let keySize: Int
        let tagSize: Int
        let tests: [AEADTest]
    }

    struct AEADTest: Decodable {
        let tcId: Int
        let comment: String
        let key: String
        let iv: String
        let aad: String
        let msg: String
        let ct: String
        let tag: String
        let result: WycheproofResult
    }

    /// Runs every AEAD vector: valid ones must encrypt to ct‖tag and decrypt back; invalid ones
    /// must fail to decrypt (or be refused for their nonce/key size).
    func runAEAD(file: String, encrypt: ([UInt8], SymmetricKey, [UInt8], [UInt8]) throws -> [UInt8], decrypt: ([UInt8], SymmetricKey, [UInt8], [UInt8]) throws -> [UInt8]) throws -> Int {
        guard let data = try Vectors.load("wycheproof/\(file)") else { return 0 }
        let f = try JSONDecoder().decode(WycheproofFile<AEADGroup>.self, from: data)
        var checked = 0
        for group in f.testGroups {
            for t in group.tests {
                checked += 1
                let keyBytes = Vectors.hex(t.key)
                let iv = Vectors.hex(t.iv), aad = Vectors.hex(t.aad), msg = Vectors.hex(t.msg)
                let sealed = Vectors.hex(t.ct) + Vectors.hex(t.tag)
                guard let key = try? SymmetricKey(bytes: keyBytes) else {
                    #expect(t.result == .invalid, "tc \(t.tcId): key of \(keyBytes.count) bytes refused but vector is \(t.result)")
                    continue
                }
                switch t.result {
                case .valid:
                    let ct = try encrypt(msg, key, iv, aad)
                    #expect(ct == sealed, "tc \(t.tcId) (\(t.comment)): ciphertext differs")
                    let pt = try decrypt(sealed, key, iv, aad)
                    #expect(pt == msg, "tc \(t.tcId) (\(t.comment)): plaintext differs")
                case .invalid:
                    #expect(throws: CryptoError.self, "tc \(t.tcId) (\(t.comment)) must be rejected") {
                        _ = try decrypt(sealed, key, iv, aad)
                    }
                case .acceptable:
                    _ = try? decrypt(sealed, key, iv, aad)
                }
            }
        }
        #expect(checked == f.numberOfTests, "\(file): checked \(checked) of \(f.numberOfTests)")
        print("\(file): checked \(checked) vectors")
        return checked
    }

    @Test func chacha20Poly1305() throws {
        _ = try runAEAD(
            file: "chacha20_poly1305_test.json",
            encrypt: { try ChaCha20Poly1305.encrypt($0, key: $1, nonce: $2, associatedData: $3) },
            decrypt: { try ChaCha20Poly1305.decrypt($0, key: $1, nonce: $2, associatedData: $3) }
        )
    }

    @Test func xchacha20Poly1305() throws {
        _ = try runAEAD(
            file: "xchacha20_poly1305_test.json",
            encrypt: { try XChaCha20Poly1305.encrypt($0, key: $1, nonce: $2, associatedData: $3) },
            decrypt: { try XChaCha20Poly1305.decrypt($0, key: $1, nonce: $2, associatedData: $3) }
        )
    }

    struct X25519Group: Decodable {
        let curve: String
        let tests: [X25519Test]
    }

    struct X25519Test: Decodable {
        let tcId: Int
        let comment: String
        let `public`: String
        let `private`: String
        let shared: String
        let result: WycheproofResult
    }

    @Test func x25519() throws {
        guard let data = try Vectors.load("wycheproof/x25519_test.json") else { return }
        let f = try JSONDecoder().decode(WycheproofFile<X25519Group>.self, from: data)
        var checked = 0, refusedAcceptable = 0
        for group in f.testGroups {
            #expect(group.curve == "curve25519")
            for t in group.tests {
                checked += 1
                let priv = try X25519.PrivateKey(bytes: Vectors.hex(t.private))
                let pub = try X25519.PublicKey(bytes: Vectors.hex(t.public))
                let expected = Vectors.hex(t.shared)
                switch t.result {
                case .valid:
                    let s = try priv.sharedSecret(with: pub)
                    #expect(s.unsafeCopy() == expected, "tc \(t.tcId) (\(t.comment))")
                case .invalid:
                    let s = try? priv.sharedSecret(with: pub)
                    #expect(s == nil || s!.unsafeCopy() != expected, "tc \(t.tcId) (\(t.comment)) must not agree")
                case .acceptable:
                    // libsodium refuses all-zero shared secrets; otherwise the result must match.
                    if let s = try? priv.sharedSecret(with: pub) {
                        #expect(s.unsafeCopy() == expected, "tc \(t.tcId) (\(t.comment))")
                    } else {
                        #expect(expected.allSatisfy { $0 == 0 }, "tc \(t.tcId): refused a non-zero shared secret")
                        refusedAcceptable += 1
                    }
                }
            }
        }
        #expect(checked == f.numberOfTests)
        print("x25519_test.json: checked \(checked) vectors (\(refusedAcceptable) acceptable all-zero results refused)")
    }

    struct Ed25519Group: Decodable {
        struct Key: Decodable { let pk: String }
        let publicKey: Key
        let tests: [Ed25519Test]
    }

    struct Ed25519Test: Decodable {
        let tcId: Int
        let comment: String
        let msg: String
        let sig: String
        let result: WycheproofResult
    }

    @Test func ed25519() throws {
        guard let data = try Vectors.load("wycheproof/ed25519_test.json") else { return }
        let f = try JSONDecoder().decode(WycheproofFile<Ed25519Group>.self, from: data)
        var checked = 0
        for group in f.testGroups {
            let pk = try Ed25519.PublicKey(bytes: Vectors.hex(group.publicKey.pk))
            for t in group.tests {
                checked += 1
                let ok = pk.isValidSignature(Vectors.hex(t.sig), for: Vectors.hex(t.msg))
                switch t.result {
                case .valid: #expect(ok, "tc \(t.tcId) (\(t.comment)) must verify")
                case .invalid: #expect(!ok, "tc \(t.tcId) (\(t.comment)) must be rejected")
                case .acceptable: break
                }
            }
        }
        #expect(checked == f.numberOfTests)
        print("ed25519_test.json: checked \(checked) vectors")
    }
}
