import CSodium

/// Anonymous public-key encryption to an X25519 key (libsodium `crypto_box_seal`): used for
/// records sent upward to an organization. The sender is not authenticated by the box itself.
public enum SealedBox {
    public static var overhead: Int { Sodium.ensureInitialized(); return Int(crypto_box_sealbytes()) }

    public static func seal(_ plaintext: some ContiguousBytesView, to recipient: X25519.PublicKey) -> [UInt8] {
        Sodium.ensureInitialized()
        return plaintext.withBytes { pt in
            var out = [UInt8](repeating: 0, count: pt.count + overhead)
            out.withUnsafeMutableBufferPointer { o in
                recipient.bytes.withUnsafeBytes { pk in
                    _ = crypto_box_seal(
                        o.baseAddress!,
                        pt.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(o.baseAddress!), UInt64(pt.count),
                        pk.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    )
                }
            }
            return out
        }
    }

    public static func open(_ sealed: some ContiguousBytesView, with recipient: X25519.PrivateKey) throws -> [UInt8] {
        Sodium.ensureInitialized()
        return try sealed.withBytes { ct in
            guard ct.count >= overhead else {
                throw CryptoError(.malformed, "sealed box is \(ct.count) bytes, shorter than its \(overhead)-byte overhead")
            }
            var out = [UInt8](repeating: 0, count: max(ct.count - overhead, 1))
            let rc = out.withUnsafeMutableBufferPointer { o in
                recipient.secret.withBytes { sk in
                    recipient.publicKey.bytes.withUnsafeBytes { pk in
                        crypto_box_seal_open(
                            o.baseAddress!,
                            ct.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(ct.count),
                            pk.baseAddress!.assumingMemoryBound(to: UInt8.self),
                            sk.baseAddress!.assumingMemoryBound(to: UInt8.self)
                        )
                    }
                }
            }
            guard rc == 0 else {
                throw CryptoError(.authenticationFailed, "sealed box did not open: not sealed to this key, or tampered")
            }
            if ct.count == overhead { return [] }
            return out
        }
    }
}
