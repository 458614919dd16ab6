import KithCRDT
import KithCrypto

/// The shape shared by invites and pairing codes, strings people paste into a message:
/// `prefix ‖ base64url(version(1) ‖ head ‖ expires u32 seconds ‖ text hint)`, where `head`
/// is the code's fixed-length fields and `expires` is absolute Unix time in seconds. Parsing trims whitespace and names what was wrong in
/// words the holder can act on (`renew` says how to get a new one).
enum PastedCode {
    static func encode(prefix: String, version: UInt8 = 1, head: [UInt8], expiresAt: UInt64, hint: String) -> String {
        var w = ByteWriter(capacity: 128)
        w.u8(version)
        w.raw(head)
        var e: [UInt8] = []
        e.appendBigEndian(UInt32(clamping: expiresAt))
        w.raw(e)
        w.text(hint)
        return prefix + Base64URL.encode(w.bytes)
    }

    static func decode(_ raw: String, prefix: String, version: UInt8 = 1, headLength: Int, what: String, renew: String,
                       now: UInt64) throws(MembershipError) -> (head: [UInt8], expiresAt: UInt64, hint: String) {
        let text = raw.trimmingWhitespace
        guard text.hasPrefix(prefix), let b = Base64URL.decode(String(text.dropFirst(prefix.count))) else {
            throw MembershipError(.badInvite, "this is not a Kith \(what) (it starts with \"\(prefix)\" followed by letters, digits, - and _)")
        }
        var r = ByteReader(b)
        let decoded: (head: [UInt8], expiresAt: UInt64, hint: String)
        do throws(DecodeError) {
            let v = try r.u8()
            guard v == version else {
                throw DecodeError(v < version ? "it was made by an older version of Kith" : "version \(v) is newer than this build reads (\(version))")
            }
            let head = Array(try r.raw(headLength))
            let expiresAt = UInt64(UInt32(bigEndianBytes: try r.raw(4)))
            let hint = try r.text(max: 255)
            guard r.isAtEnd else { throw DecodeError("trailing bytes") }
            decoded = (head, expiresAt, hint)
        } catch {
            throw MembershipError(.badInvite, "the \(what) is damaged (\(error.reason)); \(renew)")
        }
        guard now < decoded.expiresAt else {
            throw MembershipError(.badInvite, "the \(what) expired \(ago(now - decoded.expiresAt)) ago; \(renew)")
        }
        return decoded
    }

    static func ago(_ seconds: UInt64) -> String {
        if seconds < 120 { return "\(seconds) seconds" }
        if seconds < 7200 { return "\(seconds / 60) minutes" }
        if seconds < 172_800 { return "\(seconds / 3600) hours" }
        return "\(seconds / 86400) days"
    }
}

extension String {
    /// Without leading and trailing whitespace and newlines (KithChapter stays free of Foundation).
    public var trimmingWhitespace: String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s.removeFirst() }
        while s.last?.isWhitespace == true { s.removeLast() }
        return String(s)
    }
}
