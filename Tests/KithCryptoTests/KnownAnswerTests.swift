import Foundation
import KithCrypto
import Testing

/// Known-answer tests from PyNaCl's vector files (djb's Ed25519 list, libsodium's sealed boxes,
/// RFC 8439 / libsodium AEAD vectors).
@Suite("PyNaCl known answers")
struct KnownAnswerTests {
    @Test func ed25519SignInput() throws {
        guard let data = try Vectors.load("pynacl/ed25519") else { return }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        var checked = 0
        for line in lines {
            // sk(64 bytes: seed ‖ pk) : pk : message : signature ‖ message :
            let f = line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 4 else { continue }
            let sk = Vectors.hex(f[0]), pk = Vectors.hex(f[1]), msg = Vectors.hex(f[2]), sm = Vectors.hex(f[3])
            let key = try Ed25519.PrivateKey(seed: Array(sk.prefix(32)))
            #expect(key.publicKey.bytes == pk, "vector \(checked): public key differs")
            let sig = key.signature(for: msg)
            #expect(sig == Array(sm.prefix(64)), "vector \(checked): signature differs")
            #expect(key.publicKey.isValidSignature(sig, for: msg))
            var bad = msg + [0]
            bad[bad.count - 1] = 1
            #expect(!key.publicKey.isValidSignature(sig, for: bad))
            checked += 1
        }
        #expect(checked == 1024)
        print("pynacl/ed25519: checked \(checked) vectors")
    }

    @Test func sealedBoxOpen() throws {
        guard let data = try Vectors.load("pynacl/sealed_box_ref.txt") else { return }
        var checked = 0
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(separator: "\t").map(String.init)
            guard f.count >= 4 else { continue }
            let sk = Vectors.hex(f[0]), pk = Vectors.hex(f[1])
            let pt = Vectors.hex(String(f[2].split(separator: ":", omittingEmptySubsequences: false)[1]))
            let ct = Vectors.hex(String(f[3].split(separator: ":", omittingEmptySubsequences: false)[1]))
            let key = try X25519.PrivateKey(bytes: sk)
            #expect(key.publicKey.bytes == pk)
            #expect(try SealedBox.open(ct, with: key) == pt)
            var tampered = ct
            tampered[tampered.count / 2] ^= 0x01
            #expect(throws: CryptoError.self) { _ = try SealedBox.open(tampered, with: key) }
            #expect(throws: CryptoError.self) { _ = try SealedBox.open(ct, with: X25519.PrivateKey()) }
            checked += 1
        }
        #expect(checked == 3)
        print("pynacl/sealed_box_ref.txt: checked \(checked) vectors")
    }

    /// Files of `KEY: hex` blocks separated by blank lines.
    func aeadBlocks(_ file: String) throws -> [[String: [UInt8]]]? {
        guard let data = try Vectors.load(file) else { return nil }
        var blocks: [[String: [UInt8]]] = [], cur: [String: [UInt8]] = [:]
        for raw in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty {
                if !cur.isEmpty { blocks.append(cur); cur = [:] }
                continue
            }
            if line.hasPrefix("#") || line.hasPrefix("AEAD:") { continue }
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if parts.count == 2 { cur[parts[0]] = Vectors.hex(parts[1]) }
        }
        if !cur.isEmpty { blocks.append(cur) }
        return blocks
    }

    @Test func chachaAndXChachaReference() throws {
        var checked = 0
        for (file, isX) in [("pynacl/chacha20-poly1305-ietf_ref.txt", false), ("pynacl/xchacha20-poly1305-ietf_ref.txt", true)] {
            guard let blocks = try aeadBlocks(file) else { return }
            for b in blocks {
                let key = try SymmetricKey(bytes: b["KEY"]!)
                let out = isX
                    ? try XChaCha20Poly1305.encrypt(b["IN"]!, key: key, nonce: b["NONCE"]!, associatedData: b["AD"] ?? [])
                    : try ChaCha20Poly1305.encrypt(b["IN"]!, key: key, nonce: b["NONCE"]!, associatedData: b["AD"] ?? [])
                #expect(out == b["CT"]! + b["TAG"]!, "\(file) block \(checked)")
                checked += 1
            }
        }
        #expect(checked == 5)
        print("pynacl AEAD references: checked \(checked) vectors")
    }
}
