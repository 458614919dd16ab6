import KithCRDT
import KithCrypto

/// A phone, email, URL or event read from a file.
public struct ImportedValue: Sendable, Equatable {
    /// As written in the file (unescaped): normalized by `convert`.
    public var value: String
    /// What the person typed, when the file recorded it apart (X-RAW), else nil.
    public var raw: String?
    /// home, work, mobile… (for an event: its title).
    public var label: String?

    public init(_ value: String, raw: String? = nil, label: String? = nil) {
        self.value = value
        self.raw = raw
        self.label = label
    }
}

/// A contact read from a vCard or CSV file, before it becomes ops. Values are as written in the
/// file (unescaped); normalization happens in `convert(region:)`.
public struct ImportedContact: Sendable, Equatable {
    /// vCard UID or CSV id column.
    public var uid: String?
    public var fields: [Field: String] = [:]
    public var phones: [ImportedValue] = []
    public var emails: [ImportedValue] = []
    public var urls: [ImportedValue] = []
    /// `<system>:<id>` (`van:123456`).
    public var externalIDs: [String] = []
    /// value: `<source>:<event id>[@yyyy-mm-dd]`; label: the event's title.
    public var events: [ImportedValue] = []
    public var tags: [String] = []
    public var log: [ConversationEntry] = []
    /// Values the parser could not keep (a bad BDAY, an unknown CHARSET): the field is dropped,
    /// the rest of the record imported.
    public var warnings: [ImportIssue] = []
    /// Where it came from, for messages: "card 3 (line 17)" or "row 5 (line 6)".
    public var origin: String

    public init(origin: String) { self.origin = origin }

    /// True when it has something that identifies a person: a name, phone or email.
    public var isIdentifiable: Bool {
        fields[.givenName] != nil || fields[.familyName] != nil || fields[.displayName] != nil || !phones.isEmpty || !emails.isEmpty
    }

    /// The contact id: the UID itself when it is a Kith id (a round trip), else derived from the
    /// UID (so importing the same file twice updates, not duplicates), else random.
    public var contactID: ContactID { contactID(kithID: uid.flatMap { ContactID(text: $0) }) }

    /// `contactID`, the UID already read as a Kith id (nil when it is none).
    private func contactID(kithID: ContactID?) -> ContactID {
        guard let uid, !uid.isEmpty else { return ContactID.random() }
        if let id = kithID { return id }
        let h = BLAKE2b.hash(Array("kith/import/uid".utf8) + Array(uid.utf8))
        return try! ContactID(bytes: h.prefix(16))
    }

    /// The ops that write this contact, strictly: any value that breaks its grammar fails the
    /// whole record (`convert` drops only the value).
    public func edit(region: PhoneRegion?) throws(ImportIssue) -> ContactEdit {
        let c = try convert(region: region)
        if let first = c.warnings.first { throw first }
        return c.edit
    }

    /// The ops that write this contact, after normalizing phones, emails and tags and checking
    /// every value's grammar. A bad value (support "9", an email without `@`) is dropped with a
    /// warning naming the origin; the record fails only when nothing identifies a person.
    public func convert(region: PhoneRegion?) throws(ImportIssue) -> ConvertedContact {
        var ops: [Operation] = []
        var warnings = self.warnings
        var keys = MatchKeys()
        func warn(_ reason: String) { warnings.append(ImportIssue(origin: origin, reason: reason)) }
        for f in Field.allCases {
            guard let v = fields[f], !v.isEmpty else { continue }
            do { try f.validate(v) } catch {
                warn("\(f.name) dropped: \(error.reason)")
                continue
            }
            ops.append(.setField(f, v))
        }
        var named = fields[.givenName] != nil || fields[.familyName] != nil || fields[.displayName] != nil
        for p in phones {
            guard let key = Normalization.phone(p.value, region: region) else {
                warn("phone '\(p.value)' dropped: it has no digits")
                continue
            }
            let raw = p.raw ?? p.value
            ops.append(.add(.phones, key, payload: raw == key ? "" : raw))
            if let l = Self.label(p.label) { ops.append(.add(.labels, "tel:" + key, payload: l)) }
            keys.phones.append(key)
            named = true
        }
        for e in emails {
            guard let key = Normalization.email(e.value) else {
                warn("email '\(e.value)' dropped: it is not an address")
                continue
            }
            let raw = e.raw ?? e.value
            ops.append(.add(.emails, key, payload: raw == key ? "" : raw))
            if let l = Self.label(e.label) { ops.append(.add(.labels, "email:" + key, payload: l)) }
            keys.emails.append(key)
            named = true
        }
        for u in urls where !u.value.isEmpty {
            ops.append(.add(.urls, u.value, payload: Self.label(u.label) ?? ""))
        }
        for x in externalIDs {
            guard SetKind.isExternalID(x) else {
                warn("external id '\(x)' dropped: not <system>:<id>")
                continue
            }
            ops.append(.add(.externalIDs, x))
            keys.externalIDs.append(x)
        }
        for e in events where !e.value.isEmpty { ops.append(.add(.events, e.value, payload: e.label ?? "")) }
        for t in tags {
            if let tag = Self.tag(t) { ops.append(.add(.tags, tag)) }
        }
        for l in log { ops.append(.logConversation(l)) }
        guard named, !ops.isEmpty else {
            throw ImportIssue(origin: origin, reason: warnings.isEmpty ? "has no name, phone or email" : "has no name, phone or email left (\(warnings.map(\.reason).joined(separator: "; ")))")
        }
        keys.postalCode = fields[.postalCode]
        keys.name = [fields[.givenName], fields[.familyName]].compactMap { $0 }.joined(separator: " ")
        if keys.name.isEmpty { keys.name = fields[.displayName] ?? "" }
        let kithID = uid.flatMap { ContactID(text: $0) }
        var edit = ContactEdit(contact: contactID(kithID: kithID), ops: ops)
        // Every check a change makes (set key and payload limits too): a record that breaks one
        // is skipped here, instead of its change failing the whole import (found by Fuzz/
        // target vcard: a 335-byte email). Each op is tried alone so one bad value drops alone.
        if (try? ContactEdit(decoding: edit.encoded)) == nil {
            edit.ops = edit.ops.filter { op in
                do throws(DecodeError) {
                    _ = try ContactEdit(decoding: ContactEdit(contact: edit.contact, ops: [op]).encoded)
                    return true
                } catch {
                    warn("a value dropped: \(error.reason)")
                    return false
                }
            }
            guard !edit.ops.isEmpty else { throw ImportIssue(origin: origin, reason: "no value left to import") }
        }
        return ConvertedContact(edit: edit, keys: keys, hasUID: uid.map { !$0.isEmpty } ?? false,
                                isKithID: kithID != nil, warnings: warnings, origin: origin)
    }

    /// `Normalization.tag`, without building Characters for a tag of printable ASCII and no
    /// space (almost every tag): it has no whitespace to trim or collapse, so it is its own form.
    static func tag(_ t: String) -> String? {
        if !t.isEmpty, t.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) { return t }
        return Normalization.tag(t)
    }

    /// Adds another record of the same person (a second Mobilize signup): fields already set
    /// stay, sets and events grow.
    public mutating func merge(_ other: ImportedContact) {
        for (f, v) in other.fields where fields[f] == nil { fields[f] = v }
        for p in other.phones where !phones.contains(where: { $0.value == p.value }) { phones.append(p) }
        for e in other.emails where !emails.contains(where: { $0.value.lowercased() == e.value.lowercased() }) { emails.append(e) }
        for u in other.urls where !urls.contains(u) { urls.append(u) }
        for x in other.externalIDs where !externalIDs.contains(x) { externalIDs.append(x) }
        for e in other.events where !events.contains(where: { $0.value == e.value }) { events.append(e) }
        for t in other.tags where !tags.contains(t) { tags.append(t) }
        log += other.log
        warnings += other.warnings
    }

    /// A label as stored: lowercased, trimmed; nil when empty or too long.
    static func label(_ s: String?) -> String? {
        guard let s else { return nil }
        let l = s.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        return l.isEmpty || l.utf8.count > 64 ? nil : l
    }
}

/// What matching compares (README "Import"): normalized keys of one record.
public struct MatchKeys: Sendable, Equatable {
    public var externalIDs: [String] = []
    public var emails: [String] = []
    public var phones: [String] = []
    /// Only ever a suggestion: "given family" (or the display name) with the postal code.
    public var name = ""
    public var postalCode: String?
    public init() {}
}

/// A record ready to commit: its ops, what it matches on, and the values dropped from it.
public struct ConvertedContact: Sendable {
    public var edit: ContactEdit
    public var keys: MatchKeys
    /// True when the id came from the file (a UID or id column), so it matches by itself.
    public var hasUID: Bool
    /// True when that UID is a Kith contact id (a Kith export): the record is that contact and
    /// no other, however many emails or phones it shares with others.
    public var isKithID: Bool
    public var warnings: [ImportIssue]
    public var origin: String
}

/// One record that could not be imported, and why. The rest of the file is imported.
public struct ImportIssue: Error, Equatable, Sendable, CustomStringConvertible {
    public let origin: String
    public let reason: String
    public init(origin: String, reason: String) {
        self.origin = origin
        self.reason = reason
    }
    public var description: String { "\(origin): \(reason)" }
}

/// What a parser produced: good records and the bad ones with reasons.
public struct ImportBatch: Sendable {
    public var contacts: [ImportedContact] = []
    public var issues: [ImportIssue] = []
    /// Notices about the file as a whole (unmapped columns…).
    public var notices: [String] = []
    /// What the file held and the import did not keep, by property or column name
    /// (`PHOTO` → 120): the "dropped" summary.
    public var dropped: [String: Int] = [:]
    /// Records skipped on purpose (a `KIND:group` card), with why.
    public var skipped: [ImportIssue] = []
    /// The format read: vcard, jcard, or a CSV preset's name.
    public var format = ""
    /// vCard: the cards read (BEGIN:VCARD lines).
    public var cards = 0

    /// The batch's summary parts (issues, notices, dropped, skipped), without its records.
    public init(withoutContacts b: ImportBatch) {
        self = b
        contacts = []
    }

    /// Adds the next chunk's results (`VCard.Stream`).
    public mutating func append(_ other: ImportBatch) {
        contacts += other.contacts
        issues += other.issues
        notices += other.notices
        skipped += other.skipped
        for (k, v) in other.dropped { dropped[k, default: 0] += v }
        cards += other.cards
    }
    public init() {}
}

/// Conversation days ↔ yyyy-mm-dd (proleptic Gregorian, UTC), without Foundation.
public enum Day {
    public static func from(year y: Int, month m: Int, day d: Int) -> UInt32 {
        // Howard Hinnant's days_from_civil.
        let y = m <= 2 ? y - 1 : y
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (m + 9) % 12
        let doy = (153 * mp + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return UInt32(clamping: max(0, era * 146_097 + doe - 719_468))
    }

    /// yyyy-mm-dd, years 1970...9999 (a larger year overflowed `from` and trapped the vCard
    /// importer: found by Fuzz/ target vcard).
    public static func parse(_ s: String) -> UInt32? {
        let p = s.split(separator: "-")
        guard p.count == 3, let y = Int(p[0]), let m = Int(p[1]), let d = Int(p[2]), (1...12).contains(m), (1...31).contains(d),
              (1970...9999).contains(y) else { return nil }
        return from(year: y, month: m, day: d)
    }

    public static func format(_ day: UInt32) -> String {
        let z = Int(day) + 719_468
        let era = z / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func pad(_ n: Int, _ w: Int) -> String { String(repeating: "0", count: max(0, w - String(n).count)) + String(n) }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))"
    }
}
