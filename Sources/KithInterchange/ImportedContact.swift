import KithCRDT
import KithCrypto

/// A contact read from a vCard or CSV file, before it becomes ops. Values are as written in the
/// file (unescaped); normalization happens in `edit(defaultCallingCode:)`.
public struct ImportedContact: Sendable, Equatable {
    /// vCard UID or CSV id column.
    public var uid: String?
    public var fields: [Field: String] = [:]
    /// (value, raw) — raw is what the person typed when the file recorded it (X-RAW), else nil.
    public var phones: [(value: String, raw: String?)] = []
    public var emails: [(value: String, raw: String?)] = []
    public var tags: [String] = []
    public var log: [ConversationEntry] = []
    /// Where it came from, for messages: "card 3 (line 17)" or "row 5 (line 6)".
    public var origin: String

    public init(origin: String) { self.origin = origin }

    public static func == (a: ImportedContact, b: ImportedContact) -> Bool {
        a.uid == b.uid && a.fields == b.fields && a.tags == b.tags && a.log == b.log
            && a.phones.map { "\($0.value)|\($0.raw ?? "")" } == b.phones.map { "\($0.value)|\($0.raw ?? "")" }
            && a.emails.map { "\($0.value)|\($0.raw ?? "")" } == b.emails.map { "\($0.value)|\($0.raw ?? "")" }
    }

    /// The contact id: the UID itself when it is a Kith id (a round trip), else derived from the
    /// UID (so importing the same file twice updates, not duplicates), else random.
    public var contactID: ContactID {
        guard let uid, !uid.isEmpty else { return ContactID.random() }
        if let id = ContactID(text: uid) { return id }
        let h = BLAKE2b.hash(Array("kith/import/uid".utf8) + Array(uid.utf8))
        return try! ContactID(bytes: h.prefix(16))
    }

    /// The ops that write this contact, after normalizing phones, emails and tags and checking
    /// every field's grammar. Throws `ImportIssue` naming the origin and the problem.
    public func edit(defaultCallingCode: String?) throws(ImportIssue) -> ContactEdit {
        var ops: [Operation] = []
        for f in Field.allCases {
            guard let v = fields[f], !v.isEmpty else { continue }
            do { try f.validate(v) } catch { throw ImportIssue(origin: origin, reason: "\(f.name): \(error.reason)") }
            ops.append(.setField(f, v))
        }
        for p in phones {
            guard let key = Normalization.phone(p.value, defaultCallingCode: defaultCallingCode) else {
                throw ImportIssue(origin: origin, reason: "phone '\(p.value)' has no digits")
            }
            let raw = p.raw ?? p.value
            ops.append(.add(.phones, key, payload: raw == key ? "" : raw))
        }
        for e in emails {
            guard let key = Normalization.email(e.value) else { throw ImportIssue(origin: origin, reason: "email '\(e.value)' is not an address") }
            let raw = e.raw ?? e.value
            ops.append(.add(.emails, key, payload: raw == key ? "" : raw))
        }
        for t in tags {
            if let tag = Normalization.tag(t) { ops.append(.add(.tags, tag)) }
        }
        for l in log { ops.append(.logConversation(l)) }
        guard !ops.isEmpty else { throw ImportIssue(origin: origin, reason: "no name, phone, email or other field") }
        if fields[.givenName] == nil, fields[.familyName] == nil, fields[.displayName] == nil, phones.isEmpty, emails.isEmpty {
            throw ImportIssue(origin: origin, reason: "has no name, phone or email")
        }
        let edit = ContactEdit(contact: contactID, ops: ops)
        // Every check a change makes (set key and payload limits too): a record that breaks one
        // is skipped here, instead of its change failing the whole import (found by Fuzz/
        // target vcard: a 335-byte email).
        do { _ = try ContactEdit(decoding: edit.encoded) } catch { throw ImportIssue(origin: origin, reason: error.reason) }
        return edit
    }
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
