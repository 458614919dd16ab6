import CSodium

/// Unpadded base64url (RFC 4648 §5), the text form of every Kith public key and id, through
/// libsodium's constant-time codec (`sodium_bin2base64` / `sodium_base642bin`).
public enum Base64URL {
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        Sodium.ensureInitialized()
        let input = Array(bytes)
        let variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING
        let size = sodium_base64_encoded_len(input.count, variant)
        var out = [CChar](repeating: 0, count: size)
        input.withUnsafeBufferPointer { inBuf in
            _ = sodium_bin2base64(&out, size, inBuf.baseAddress, input.count, variant)
        }
        return String(decoding: out.prefix(size - 1).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Decodes unpadded (or padded) base64url; nil when the text is not base64url.
    public static func decode(_ text: String) -> [UInt8]? {
        Sodium.ensureInitialized()
        var t = Array(text.utf8)
        while t.last == 0x3D { t.removeLast() } // accept padding
        if t.count % 4 == 1 { return nil }
        var out = [UInt8](repeating: 0, count: t.count * 3 / 4 + 1)
        var outLen = 0
        var end: UnsafePointer<CChar>?
        let rc = t.withUnsafeBufferPointer { inBuf in
            inBuf.withMemoryRebound(to: CChar.self) { chars in
                sodium_base642bin(&out, out.count, chars.baseAddress, t.count, nil, &outLen, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING)
            }
        }
        guard rc == 0 else { return nil }
        if let end, t.withUnsafeBufferPointer({ end != UnsafeRawPointer($0.baseAddress! + $0.count).assumingMemoryBound(to: CChar.self) }), !t.isEmpty {
            return nil // trailing characters that are not base64url
        }
        return Array(out.prefix(outLen))
    }
}

/// Lowercase hexadecimal, for logs, test vectors and golden files.
public enum Hex {
    public static func encode(_ bytes: some Collection<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xf)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
