import Foundation
import KithCrypto
import KithSync
import Testing

/// Locates `../shared/vectors` beside the repository (or `$KITH_VECTORS_DIR`).
func vectorsFile(_ relative: String) -> Data? {
    if let env = ProcessInfo.processInfo.environment["KITH_VECTORS_DIR"], !env.isEmpty {
        return try? Data(contentsOf: URL(fileURLWithPath: env).appendingPathComponent(relative))
    }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let url = root.deletingLastPathComponent().appendingPathComponent("shared/vectors").appendingPathComponent(relative)
    guard FileManager.default.fileExists(atPath: url.deletingLastPathComponent().path) else { return nil }
    return try? Data(contentsOf: url)
}

func hex(_ s: String) -> [UInt8] { Hex.decode(s)! }

@Suite("Noise XX")
struct NoiseTests {
    /// Every Noise_XX_25519_ChaChaPoly_BLAKE2b vector of both vector files, with the fixed
    /// ephemeral keys they give: handshake messages, handshake hash and transport messages.
    @Test func publishedVectors() throws {
        var checked = 0
        for file in ["noise/noise_xx_ik_nk_25519_chachapoly_blake2b.json", "noise/noise_25519_chachapoly_subset.json"] {
            guard let data = vectorsFile(file) else {
                print("SKIP: shared/vectors not found; \(file) not checked")
                return
            }
            let doc = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            for v in doc["vectors"] as! [[String: Any]] where v["protocol_name"] as? String == Noise.protocolName {
                if let psks = v["init_psks"] as? [Any], !psks.isEmpty { continue }
                var initiator = NoiseHandshake(role: .initiator, staticKey: try X25519.PrivateKey(bytes: hex(v["init_static"] as! String)),
                                               prologue: hex(v["init_prologue"] as! String),
                                               ephemeral: try X25519.PrivateKey(bytes: hex(v["init_ephemeral"] as! String)))
                var responder = NoiseHandshake(role: .responder, staticKey: try X25519.PrivateKey(bytes: hex(v["resp_static"] as! String)),
                                               prologue: hex(v["resp_prologue"] as! String),
                                               ephemeral: try X25519.PrivateKey(bytes: hex(v["resp_ephemeral"] as! String)))
                var initT: NoiseTransport?, respT: NoiseTransport?
                for (i, m) in (v["messages"] as! [[String: String]]).enumerated() {
                    let payload = hex(m["payload"]!), expected = hex(m["ciphertext"]!)
                    let fromInitiator = i % 2 == 0
                    if i < 3 {
                        let ct = fromInitiator ? try initiator.writeMessage(payload: payload) : try responder.writeMessage(payload: payload)
                        #expect(ct == expected, "\(file) message \(i)")
                        let pt = fromInitiator ? try responder.readMessage(ct) : try initiator.readMessage(ct)
                        #expect(pt == payload)
                        if i == 2 {
                            initT = initiator.transport()
                            respT = responder.transport()
                            if let hh = v["handshake_hash"] as? String {
                                #expect(initiator.handshakeHash == hex(hh) && responder.handshakeHash == hex(hh))
                            }
                        }
                    } else {
                        let ct = fromInitiator ? try initT!.seal(payload) : try respT!.seal(payload)
                        #expect(ct == expected, "\(file) transport message \(i)")
                        let pt = fromInitiator ? try respT!.open(ct) : try initT!.open(ct)
                        #expect(pt == payload)
                    }
                }
                #expect(initT?.remoteStatic == (try X25519.PrivateKey(bytes: hex(v["resp_static"] as! String))).publicKey)
                checked += 1
            }
        }
        #expect(checked >= 6)
        print("noise vectors: checked \(checked) Noise_XX_25519_ChaChaPoly_BLAKE2b handshakes")
    }

    func handshake() throws -> (NoiseTransport, NoiseTransport, [[UInt8]]) {
        var i = NoiseHandshake(role: .initiator, staticKey: X25519.PrivateKey(), prologue: Array("kith/1".utf8))
        var r = NoiseHandshake(role: .responder, staticKey: X25519.PrivateKey(), prologue: Array("kith/1".utf8))
        let m1 = try i.writeMessage(payload: [])
        _ = try r.readMessage(m1)
        let m2 = try r.writeMessage(payload: Array("responder cert".utf8))
        #expect(try i.readMessage(m2) == Array("responder cert".utf8))
        let m3 = try i.writeMessage(payload: Array("initiator cert".utf8))
        #expect(try r.readMessage(m3) == Array("initiator cert".utf8))
        return (i.transport()!, r.transport()!, [m1, m2, m3])
    }

    @Test func roundTripRekeyAndLimits() throws {
        var (a, b, _) = try handshake()
        #expect(try b.open(a.seal(Array("hello".utf8))) == Array("hello".utf8))
        #expect(try a.open(b.seal([])) == [])
        let big = [UInt8](repeating: 7, count: Noise.maxMessageLength - Noise.tagLength)
        #expect(try b.open(a.seal(big)) == big)
        #expect(throws: Noise.Error.self) { _ = try a.seal(big + [1]) }
        a.send.rekey()
        b.receive.rekey()
        #expect(try b.open(a.seal([1, 2, 3])) == [1, 2, 3])
    }

    @Test func tamperedReplayedAndReorderedTransportMessagesFail() throws {
        var (a, b, _) = try handshake()
        let m1 = try a.seal(Array("one".utf8)), m2 = try a.seal(Array("two".utf8))
        var t = m1
        t[0] ^= 1
        #expect(throws: Noise.Error(code: .decryptFailed, detail: "")) { _ = try b.open(t) }
        #expect(try b.open(m1) == Array("one".utf8)) // a failed decrypt does not advance the nonce
        #expect(throws: Noise.Error.self) { _ = try b.open(m1) } // replay
        #expect(try b.open(m2) == Array("two".utf8))
        #expect(throws: Noise.Error(code: .truncated, detail: "")) { _ = try b.open([1, 2, 3]) }
    }

    @Test func handshakeAttacks() throws {
        let (_, _, msgs) = try handshake()
        // A replayed handshake: a fresh responder accepts message 1 (it is just a key), but the
        // recorded message 3 does not decrypt against the new responder's ephemeral key.
        var r = NoiseHandshake(role: .responder, staticKey: X25519.PrivateKey(), prologue: Array("kith/1".utf8))
        _ = try r.readMessage(msgs[0])
        _ = try r.writeMessage(payload: [])
        #expect(throws: Noise.Error(code: .decryptFailed, detail: "")) { _ = try r.readMessage(msgs[2]) }
        #expect(r.transport() == nil)
        #expect(throws: Noise.Error(code: .outOfTurn, detail: "")) { _ = try r.readMessage(msgs[2]) } // abandoned after failure

        // Tampered message 2, wrong prologue, out of turn, truncated, oversized, low-order key.
        var i = NoiseHandshake(role: .initiator, staticKey: X25519.PrivateKey(), prologue: Array("kith/1".utf8))
        #expect(throws: Noise.Error(code: .outOfTurn, detail: "")) { _ = try i.readMessage(msgs[1]) }
        var r2 = NoiseHandshake(role: .responder, staticKey: X25519.PrivateKey(), prologue: Array("other".utf8))
        let m1 = try i.writeMessage(payload: [])
        _ = try r2.readMessage(m1)
        let m2 = try r2.writeMessage(payload: [])
        #expect(throws: Noise.Error(code: .decryptFailed, detail: "")) { _ = try i.readMessage(m2) } // prologues differ

        var r3 = NoiseHandshake(role: .responder, staticKey: X25519.PrivateKey(), prologue: [])
        #expect(throws: Noise.Error(code: .truncated, detail: "")) { _ = try r3.readMessage([1, 2, 3]) }
        var r4 = NoiseHandshake(role: .responder, staticKey: X25519.PrivateKey(), prologue: [])
        #expect(throws: Noise.Error(code: .tooLong, detail: "")) { _ = try r4.readMessage([UInt8](repeating: 9, count: 65_536)) }
        var i5 = NoiseHandshake(role: .initiator, staticKey: X25519.PrivateKey(), prologue: [])
        var r5 = NoiseHandshake(role: .responder, staticKey: X25519.PrivateKey(), prologue: [])
        _ = try i5.writeMessage(payload: [])
        _ = try r5.readMessage([UInt8](repeating: 0, count: 32)) // an all-zero "ephemeral"
        #expect(throws: Noise.Error(code: .weakKey, detail: "")) { _ = try r5.writeMessage(payload: []) }
    }
}

extension NoiseTransport: Equatable {
    public static func == (a: NoiseTransport, b: NoiseTransport) -> Bool { a.handshakeHash == b.handshakeHash }
}
