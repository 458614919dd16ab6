import KithCrypto

/// The XX handshake (§7.5):
/// ```
/// -> e
/// <- e, ee, s, es
/// -> s, se
/// ```
/// A value type driven by the caller: `writeMessage` when it is our turn, `readMessage` when it
/// is theirs. Out-of-turn calls, oversized or truncated messages and failed decryption throw;
/// after any throw the handshake must be abandoned (the connection closed). When `isComplete`,
/// `transport()` gives the two cipher states.
public struct NoiseHandshake: Sendable {
    public enum Role: Sendable { case initiator, responder }

    public let role: Role
    private var symmetric: Noise.SymmetricState
    private let localStatic: X25519.PrivateKey
    private var localEphemeral: X25519.PrivateKey?
    private let fixedEphemeral: X25519.PrivateKey?
    public private(set) var remoteStatic: X25519.PublicKey?
    private var remoteEphemeral: X25519.PublicKey?
    /// Messages of the handshake done so far (0…3).
    public private(set) var step = 0
    private var failed = false

    /// - Parameters:
    ///   - prologue: bytes both sides must agree on (mixed into the hash even when empty).
    ///   - ephemeral: only for test vectors; normally a fresh key is generated.
    public init(role: Role, staticKey: X25519.PrivateKey, prologue: [UInt8], ephemeral: X25519.PrivateKey? = nil) {
        self.role = role
        localStatic = staticKey
        fixedEphemeral = ephemeral
        symmetric = Noise.SymmetricState(protocolName: Noise.protocolName)
        symmetric.mixHash(prologue)
    }

    public var isComplete: Bool { step == 3 }
    /// The handshake hash `h` (channel binding), final once complete.
    public var handshakeHash: [UInt8] { symmetric.h }

    private var isOurTurn: Bool { (step % 2 == 0) == (role == .initiator) }

    private func dh(_ k: X25519.PrivateKey, _ p: X25519.PublicKey) throws(Noise.Error) -> [UInt8] {
        do {
            return try k.sharedSecret(with: p).unsafeCopy()
        } catch {
            throw Noise.Error(code: .weakKey, detail: "peer sent a low-order X25519 key")
        }
    }

    /// Produces the next handshake message carrying `payload` (encrypted from message 2 on).
    public mutating func writeMessage(payload: [UInt8]) throws(Noise.Error) -> [UInt8] {
        guard !failed, !isComplete, isOurTurn else {
            throw Noise.Error(code: .outOfTurn, detail: "handshake message \(step + 1) is not ours to write")
        }
        var out: [UInt8] = []
        do {
            switch step {
            case 0: // -> e
                let e = fixedEphemeral ?? X25519.PrivateKey()
                localEphemeral = e
                out += e.publicKey.bytes
                symmetric.mixHash(e.publicKey.bytes)
            case 1: // <- e, ee, s, es
                let e = fixedEphemeral ?? X25519.PrivateKey()
                localEphemeral = e
                out += e.publicKey.bytes
                symmetric.mixHash(e.publicKey.bytes)
                symmetric.mixKey(try dh(e, remoteEphemeral!))
                out += try symmetric.encryptAndHash(localStatic.publicKey.bytes)
                symmetric.mixKey(try dh(localStatic, remoteEphemeral!))
            default: // -> s, se
                out += try symmetric.encryptAndHash(localStatic.publicKey.bytes)
                symmetric.mixKey(try dh(localStatic, remoteEphemeral!))
            }
            out += try symmetric.encryptAndHash(payload)
        } catch {
            failed = true
            throw error
        }
        guard out.count <= Noise.maxMessageLength else {
            failed = true
            throw Noise.Error(code: .tooLong, detail: "handshake message would be \(out.count) bytes, over \(Noise.maxMessageLength)")
        }
        step += 1
        return out
    }

    /// Consumes the peer's next handshake message and returns its payload.
    public mutating func readMessage(_ message: [UInt8]) throws(Noise.Error) -> [UInt8] {
        guard !failed, !isComplete, !isOurTurn else {
            throw Noise.Error(code: .outOfTurn, detail: "handshake message \(step + 1) is not the peer's to send")
        }
        do {
            guard message.count <= Noise.maxMessageLength else {
                throw Noise.Error(code: .tooLong, detail: "handshake message of \(message.count) bytes, over \(Noise.maxMessageLength)")
            }
            var rest = message[...]
            func take(_ n: Int) throws(Noise.Error) -> [UInt8] {
                guard rest.count >= n else { throw Noise.Error(code: .truncated, detail: "handshake message \(step + 1) is truncated") }
                defer { rest = rest.dropFirst(n) }
                return Array(rest.prefix(n))
            }
            switch step {
            case 0: // -> e
                let re = try X25519.PublicKey(bytes: take(32))
                remoteEphemeral = re
                symmetric.mixHash(re.bytes)
            case 1: // <- e, ee, s, es
                let re = try X25519.PublicKey(bytes: take(32))
                remoteEphemeral = re
                symmetric.mixHash(re.bytes)
                symmetric.mixKey(try dh(localEphemeral!, re))
                let rs = try X25519.PublicKey(bytes: symmetric.decryptAndHash(take(32 + Noise.tagLength)))
                remoteStatic = rs
                symmetric.mixKey(try dh(localEphemeral!, rs))
            default: // -> s, se
                let rs = try X25519.PublicKey(bytes: symmetric.decryptAndHash(take(32 + Noise.tagLength)))
                remoteStatic = rs
                symmetric.mixKey(try dh(localEphemeral!, rs))
            }
            let payload = try symmetric.decryptAndHash(Array(rest))
            step += 1
            return payload
        } catch let e as Noise.Error {
            failed = true
            throw e
        } catch {
            failed = true
            throw Noise.Error(code: .truncated, detail: "malformed handshake message: \(error)")
        }
    }

    /// The transport once the handshake is complete: (send, receive) for this side.
    public func transport() -> NoiseTransport? {
        guard isComplete, let remoteStatic else { return nil }
        let (c1, c2) = symmetric.split()
        return role == .initiator
            ? NoiseTransport(send: c1, receive: c2, handshakeHash: symmetric.h, remoteStatic: remoteStatic)
            : NoiseTransport(send: c2, receive: c1, handshakeHash: symmetric.h, remoteStatic: remoteStatic)
    }
}

/// The two directions of an established Noise session.
public struct NoiseTransport: Sendable {
    public var send: Noise.CipherState
    public var receive: Noise.CipherState
    public let handshakeHash: [UInt8]
    public let remoteStatic: X25519.PublicKey

    /// Encrypts one transport message (at most 65,535 bytes with its 16-byte tag).
    public mutating func seal(_ plaintext: [UInt8]) throws(Noise.Error) -> [UInt8] {
        guard plaintext.count <= Noise.maxMessageLength - Noise.tagLength else {
            throw Noise.Error(code: .tooLong, detail: "transport plaintext of \(plaintext.count) bytes, over \(Noise.maxMessageLength - Noise.tagLength)")
        }
        return try send.encrypt(plaintext)
    }

    public mutating func open(_ message: [UInt8]) throws(Noise.Error) -> [UInt8] {
        guard message.count <= Noise.maxMessageLength else {
            throw Noise.Error(code: .tooLong, detail: "transport message of \(message.count) bytes, over \(Noise.maxMessageLength)")
        }
        guard message.count >= Noise.tagLength else { throw Noise.Error(code: .truncated, detail: "transport message shorter than its tag") }
        return try receive.decrypt(message)
    }
}
