import CPhone

/// The region national phone numbers are read in: an ISO 3166-1 alpha-2 code libphonenumber
/// knows ("GB", "US", "FR"). Authors choose it (`--region`, `KITH_REGION`); it never travels.
public struct PhoneRegion: Hashable, Sendable, CustomStringConvertible {
    /// Upper-case ISO code.
    public let code: String

    /// Nil unless `code` (any case) is a region libphonenumber supports.
    public init?(code: String) {
        let upper = code.trimmingCharacters(in: .whitespacesAndNewlines).uppercased()
        guard upper.utf8.count == 2, upper.utf8.allSatisfy({ (65...90).contains($0) }), cphone_is_supported_region(upper) == 1 else { return nil }
        self.code = upper
    }

    /// The main region of an international calling code ("44" → GB, "+1" → US): what the
    /// deprecated `--default-country` calling code stands for.
    public init?(callingCode: String) {
        let digits = callingCode.hasPrefix("+") ? String(callingCode.dropFirst()) : callingCode
        guard let cc = Int32(digits), (1...999).contains(cc) else { return nil }
        var buf = [CChar](repeating: 0, count: 8)
        guard cphone_region_for_calling_code(cc, &buf, buf.count) == 1 else { return nil }
        self.init(code: String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    public var description: String { code }

    /// Every ISO code the error messages can suggest is checked by `init(code:)`; this reads
    /// `raw` with libphonenumber, or nil when it cannot place the number.
    static func libphonenumber(_ raw: String, region: PhoneRegion?) -> ParsedPhone? {
        var e164 = [CChar](repeating: 0, count: 40)
        var ext = [CChar](repeating: 0, count: 48)
        var national = [CChar](repeating: 0, count: 40)
        let status = cphone_normalize(raw, region?.code ?? "", &e164, e164.count, &ext, ext.count, &national, national.count)
        guard status == CPHONE_POSSIBLE else { return nil }
        func text(_ b: [CChar]) -> String { String(decoding: b.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        let number = text(e164), x = text(ext)
        return ParsedPhone(key: x.isEmpty ? number : number + ";ext=" + x, e164: number, extension: x,
                           nationalNumber: text(national))
    }
}
