import CSV
import Foundation
import KithCRDT

/// CSV with a header row. The export's kind is recognised by its header (`CSVPreset`: Google,
/// Outlook, Action Network, NGP VAN, Mobilize) or forced with `--format`; in a generic CSV common
/// column names are recognised, and `--map "Column=field"` handles the rest.
public enum CSVInterchange {
    /// What a column can hold.
    public enum Target: Hashable, Sendable {
        case id
        case field(Field)
        /// Several phones, emails or tags in one cell (generic CSV).
        case phones, emails, tags
        /// A phone, email or URL column whose label comes from the `.label` column of the same
        /// group (Google) or is the group's own name (Outlook's "home", "work").
        case phone(group: String), email(group: String), url(group: String)
        case label(group: String)
        /// A part of one of several addresses (Outlook home / business): the first address
        /// with a part present is kept, the others counted as dropped.
        case addressPart(String, Field)
        /// PO box or extended address: appended to the street address.
        case addressLine
        case birthday
        case subscription(Field)
        /// An id in another system: stored as `<system>:<value>`.
        case externalID(String)
        /// A voter-file id: the field, and `voterfile:<STATE>:<id>` when the row has a state.
        case voterFileID
        case zip4
        /// NGP VAN's Support ID: 1 (strong support) … 5 (strong oppose) → Kith's 5 … 1.
        case vanSupport
        case eventID, eventTitle, eventDate, eventStatus, eventAttended
        /// A column the preset knows and deliberately does not keep (counted as dropped).
        case ignored
    }

    /// Header names of a generic CSV (lowercased, without spaces, dashes, underscores and dots) → target.
    static let known: [String: Target] = {
        var m: [String: Target] = [:]
        func add(_ names: [String], _ t: Target) { for n in names { m[n] = t } }
        add(["id", "uid", "kithid", "contactid"], .id)
        add(["givenname", "firstname", "first", "given", "forename", "prenom", "prénom"], .field(.givenName))
        add(["familyname", "lastname", "last", "surname", "family", "nom"], .field(.familyName))
        add(["displayname", "name", "fullname", "fn"], .field(.displayName))
        add(["phone", "phones", "phonenumber", "mobile", "mobilephone", "cell", "cellphone", "telephone", "tel", "homephone",
             "workphone", "primaryphone", "phone1value", "phone2value", "phone3value"], .phones)
        add(["email", "emails", "emailaddress", "mail", "email1value", "email2value", "email3value", "emailaddress1",
             "email2address", "e-mail", "primaryemail"], .emails)
        add(["address", "street", "streetaddress", "address1", "homestreet", "addressline1", "address1street"], .field(.address))
        add(["city", "town", "locality", "homecity", "address1city"], .field(.city))
        add(["postalcode", "postcode", "zip", "zipcode", "homepostalcode", "address1postalcode"], .field(.postalCode))
        add(["state", "province", "region", "address1region"], .field(.region))
        add(["country", "address1country"], .field(.country))
        add(["organization", "organisation", "company", "employer", "org"], .field(.organization))
        add(["title", "jobtitle", "occupation"], .field(.title))
        add(["birthday", "birthdate", "dateofbirth", "dob", "bday"], .birthday)
        add(["nickname"], .field(.nickname))
        add(["url", "urls", "website", "webpage", "homepage"], .url(group: ""))
        add(["externalid", "externalids"], .externalID(""))
        add(["emailsubscription"], .subscription(.emailSubscription))
        add(["smssubscription"], .subscription(.smsSubscription))
        add(["tags", "tag", "labels", "categories", "groups", "groupmembership"], .tags)
        add(["notes", "note", "comments", "comment"], .field(.notes))
        add(["relationship", "howknown", "howdoyouknowthem"], .field(.relationship))
        add(["support", "supportlevel"], .field(.support))
        add(["voterid", "voterfileid", "voter"], .field(.voterFileID))
        add(["consent"], .field(.consent))
        return m
    }()

    static func normalizeHeader(_ s: String) -> String {
        String(s.lowercased().filter { !" -_.\t".contains($0) })
    }

    /// The names `--map` accepts, for its error message.
    public static var targetNames: [String] {
        ["id", "phones", "emails", "tags", "urls", "external_id:<system>", "birthday"] + Field.allCases.filter { $0 != .birthday }.map(\.name)
    }

    /// Parses a `--map` target name: a field name, `phones`/`phone`, `emails`/`email`, `tags`,
    /// `urls`, `external_id:<system>` (`external_id:van`), `id`.
    public static func target(named name: String) -> Target? {
        let n = name.lowercased()
        if n.hasPrefix("external_id:") || n.hasPrefix("externalid:") {
            let system = String(n[n.index(after: n.firstIndex(of: ":")!)...])
            return SetKind.isExternalID(system + ":x") ? .externalID(system) : nil
        }
        switch n {
        case "id", "uid": return .id
        case "phone", "phones": return .phones
        case "email", "emails": return .emails
        case "tag", "tags": return .tags
        case "url", "urls": return .url(group: "")
        case "birthday": return .birthday
        case "email_subscription": return .subscription(.emailSubscription)
        case "sms_subscription": return .subscription(.smsSubscription)
        default: return Field(name: n).map { .field($0) }
        }
    }

    /// Parses CSV text. `preset` forces a kind of export (default: recognised by the header);
    /// `mapping` overrides header recognition (header as written → target).
    public static func parse(_ data: [UInt8], preset: CSVPreset? = nil, mapping: [String: Target] = [:]) -> ImportBatch {
        var batch = ImportBatch()
        var bytes = data[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        let text: String
        if let t = String(validating: bytes, as: UTF8.self) {
            text = t
        } else if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) {
            batch.issues.append(ImportIssue(origin: "file", reason: "is UTF-16 (Excel's \"Unicode Text\"); save it as \"CSV UTF-8\""))
            return batch
        } else {
            // Outlook and Excel on Windows write the ANSI code page: Windows-1252.
            text = VCard.windows1252(Array(bytes))
            batch.notices.append("the file is not UTF-8: read as Windows-1252")
        }
        let reader: CSVReader
        do {
            reader = try CSVReader(string: text, hasHeaderRow: true)
        } catch {
            batch.issues.append(ImportIssue(origin: "file", reason: "cannot read CSV: \(error)"))
            return batch
        }
        guard let header = reader.headerRow, !header.isEmpty else {
            batch.issues.append(ImportIssue(origin: "file", reason: "has no header row"))
            return batch
        }
        let normalized = header.map(normalizeHeader)
        let preset = preset ?? CSVPreset.detect(normalized)
        if preset != .generic { batch.notices.append("recognised a \(preset.summary) (--format \(preset.name))") }
        batch.format = preset.name
        let lowerMapping = Dictionary(mapping.map { (normalizeHeader($0.key), $0.value) }, uniquingKeysWith: { a, _ in a })
        var targets: [Target?] = []
        var unmapped: [String] = []
        for (h, n) in zip(header, normalized) {
            if let t = lowerMapping[n] ?? preset.target(n) {
                targets.append(t)
            } else {
                targets.append(nil)
                if !h.isEmpty { unmapped.append(h) }
            }
        }
        for m in mapping.keys where !normalized.contains(normalizeHeader(m)) {
            batch.notices.append("--map names column '\(m)', which the header does not have")
        }
        if !unmapped.isEmpty {
            batch.notices.append("ignored columns: \(unmapped.joined(separator: ", ")) (use --map \"Column=field\" to import them)")
        }
        if !targets.contains(where: { $0 != nil && $0 != .ignored }) {
            batch.issues.append(ImportIssue(origin: "header", reason: "no column is recognised; use --map \"Column=field\" (fields: \(targetNames.joined(separator: ", ")))"))
            return batch
        }
        var row = 0
        var byKey: [String: Int] = [:]
        while let values = reader.next() {
            row += 1
            let origin = "row \(row) (line \(row + 1))"
            if values.allSatisfy({ $0.trimmingCharacters(in: .whitespaces).isEmpty }) { continue }
            guard values.count == header.count else {
                batch.issues.append(ImportIssue(origin: origin, reason: "has \(values.count) columns, the header has \(header.count)"))
                continue
            }
            var c = readRow(values, header: header, targets: targets, preset: preset, origin: origin, dropped: &batch.dropped)
            if preset.mergesRows {
                // One row per signup: the rows of one person (same email, else same phone) merge.
                let key = c.emails.first.map { "e:" + ($0.value.lowercased()) } ?? c.phones.first.map { "p:" + $0.value.filter(\.isNumber) }
                if let key, let i = byKey[key] {
                    batch.contacts[i].merge(c)
                    continue
                }
                if let key { byKey[key] = batch.contacts.count }
            }
            if c.fields.isEmpty, c.phones.isEmpty, c.emails.isEmpty, c.externalIDs.isEmpty {
                batch.issues.append(ImportIssue(origin: origin, reason: "has no value in a recognised column"))
                continue
            }
            c.origin = origin
            batch.contacts.append(c)
        }
        if let e = reader.error {
            batch.issues.append(ImportIssue(origin: "row \(row + 1)", reason: "CSV syntax error: \(e)"))
        }
        return batch
    }

    /// One row → a contact, after the preset's rules.
    static func readRow(_ values: [String], header: [String], targets: [Target?], preset: CSVPreset, origin: String,
                        dropped: inout [String: Int]) -> ImportedContact {
        var c = ImportedContact(origin: origin)
        var labels: [String: String] = [:]
        var grouped: [(group: String, kind: Int, value: String)] = []
        var addresses: [String: [Field: String]] = [:]
        var addressOrder: [String] = []
        var event = (id: "", title: "", date: "", status: "", attended: "")
        var voterID: String?
        var zip4: String?
        var extraAddress: [String] = []
        func warn(_ r: String) { c.warnings.append(ImportIssue(origin: origin, reason: r)) }
        for (i, v) in values.enumerated() {
            let value = v.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !value.isEmpty else { continue }
            guard let t = targets[i] else {
                // A column nothing reads: its values are dropped, and counted.
                if !header[i].isEmpty { dropped[header[i], default: 0] += 1 }
                continue
            }
            switch t {
            case .id: c.uid = value
            case let .field(f):
                if f == .notes, let prev = c.fields[.notes] { c.fields[.notes] = prev + "\n" + v } else { c.fields[f] = f == .notes ? v : value }
            case .phones: c.phones += splitMulti(value).map { ImportedValue($0) }
            case .emails: c.emails += splitMulti(value).map { ImportedValue($0) }
            case .tags:
                for tag in splitTags(value) {
                    if tag.hasPrefix("* ") || tag == "myContacts" || tag == "starred" { dropped["\(header[i]) (system group)", default: 0] += 1 } else { c.tags.append(tag) }
                }
            case let .phone(g): for p in splitMulti(value, semicolons: false) { grouped.append((g, 0, p)) }
            case let .email(g): for e in splitMulti(value, semicolons: false) { grouped.append((g, 1, e)) }
            case let .url(g): for u in splitMulti(value, semicolons: false) { grouped.append((g, 2, u)) }
            case let .label(g): labels[g] = value
            case let .addressPart(g, f):
                if addresses[g] == nil { addressOrder.append(g) }
                addresses[g, default: [:]][f] = value
            case .addressLine: extraAddress.append(value)
            case .birthday:
                if let b = birthday(value, order: preset.dates) { c.fields[.birthday] = b } else if !isEmptyDate(value) {
                    warn("\(header[i]) '\(value)' dropped: not a date")
                    dropped[header[i], default: 0] += 1
                }
            case let .subscription(f):
                if let s = subscription(value) { c.fields[f] = s } else {
                    warn("\(header[i]) '\(value)' dropped: not a subscription status (\(Field.subscriptionStatuses.joined(separator: ", ")))")
                    dropped[header[i], default: 0] += 1
                }
            case let .externalID(system):
                if system.isEmpty { c.externalIDs += splitMulti(value) } else { c.externalIDs.append(system + ":" + value) }
            case .voterFileID: voterID = value
            case .zip4: zip4 = value
            case .vanSupport:
                if let n = Int(value), (1...5).contains(n) { c.fields[.support] = String(6 - n) } else {
                    warn("\(header[i]) '\(value)' dropped: VAN support is 1 (strong support) … 5 (strong oppose)")
                    dropped[header[i], default: 0] += 1
                }
            case .eventID: event.id = value
            case .eventTitle: event.title = value
            case .eventDate: event.date = String(value.prefix(10))
            case .eventStatus: event.status = value.lowercased()
            case .eventAttended: event.attended = value.lowercased()
            case .ignored: dropped[header[i], default: 0] += 1
            }
        }
        for (g, kind, value) in grouped {
            let label = labels[g].map { l in l.components(separatedBy: ":::").first!.trimmingCharacters(in: .whitespaces) }
                .map { $0.hasPrefix("* ") ? String($0.dropFirst(2)) : $0 } ?? (labelWords.contains(g) ? g : nil)
            switch kind {
            case 0: c.phones.append(ImportedValue(value, label: label))
            case 1: c.emails.append(ImportedValue(value, label: label))
            default: c.urls.append(ImportedValue(value, label: label))
            }
        }
        if let g = addressOrder.first(where: { addresses[$0]?[.address] != nil }) ?? addressOrder.first {
            for (f, v) in addresses[g]! { c.fields[f] = v }
            for other in addressOrder where other != g { dropped["\(other) address", default: 0] += 1 }
        }
        if !extraAddress.isEmpty { c.fields[.address] = ([c.fields[.address]].compactMap { $0 } + extraAddress).joined(separator: ", ") }
        if let zip4, let zip = c.fields[.postalCode], !zip.contains("-") { c.fields[.postalCode] = zip + "-" + zip4 }
        if let voterID {
            c.fields[.voterFileID] = voterID
            if let state = c.fields[.region], state.count == 2 { c.externalIDs.append("voterfile:\(state.uppercased()):\(voterID)") }
        }
        if !event.id.isEmpty, !["cancelled", "canceled", "declined"].contains(event.status) {
            let source = preset == .mobilize ? "mobilize" : "event"
            let title = event.attended.isEmpty ? event.title : event.title + (["true", "yes", "1", "attended"].contains(event.attended) ? " (attended)" : "")
            c.events.append(ImportedValue(source + ":" + event.id + (event.date.isEmpty ? "" : "@" + event.date), label: title))
        }
        return c
    }

    static let labelWords: Set<String> = ["home", "work", "mobile", "main", "other", "fax", "pager", "preferred"]

    static func isEmptyDate(_ s: String) -> Bool { s == "0/0/00" || s == "0/0/0000" || s == "00/00/0000" }

    /// `yyyy-mm-dd`, `--mm-dd` (Google), `m/d/yyyy` (Outlook, VAN) → the birthday field's form.
    static func birthday(_ s: String, order: CSVPreset.DateOrder) -> String? {
        var candidate = s
        if s.contains("/") {
            let p = s.split(separator: "/").map(String.init)
            guard p.count == 3, let a = Int(p[0]), let b = Int(p[1]), let y = Int(p[2]), y > 1800 else { return nil }
            let (m, d) = order == .monthDayYear ? (a, b) : (b, a)
            func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
            candidate = "\(y)-\(two(m))-\(two(d))"
        } else if s.count > 10 {
            candidate = String(s.prefix(10))
        }
        return (try? Field.birthday.validate(candidate)) != nil ? candidate : nil
    }

    /// A source's subscription wording → Kith's status.
    static func subscription(_ s: String) -> String? {
        switch s.lowercased().trimmingCharacters(in: .whitespaces) {
        case "subscribed", "subscriber", "opted in", "opt-in", "optin", "yes", "true": "subscribed"
        case "unsubscribed", "not subscribed", "opted out", "opt-out", "optout", "no", "false", "never subscribed": "unsubscribed"
        case "bouncing", "bounced", "bounce": "bouncing"
        case "spam complaint", "complaint", "complained": "complained"
        case "unknown", "": "unknown"
        default: nil
        }
    }

    static func splitTags(_ s: String) -> [String] {
        s.components(separatedBy: ":::").flatMap { $0.split(whereSeparator: { $0 == ";" || $0 == "," }) }
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// Several phones or emails in one cell, separated by " ::: " (Google's export) or, unless
    /// told otherwise, ";".
    static func splitMulti(_ s: String, semicolons: Bool = true) -> [String] {
        s.components(separatedBy: ":::").flatMap { semicolons ? $0.split(separator: ";").map(String.init) : [$0] }
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    public static let exportColumns = ["id", "given_name", "family_name", "display_name", "phones", "emails", "address", "city",
                                       "postal_code", "tags", "notes", "relationship", "support", "voter_file_id", "consent",
                                       "organization", "title", "birthday", "nickname", "region", "country", "email_subscription",
                                       "sms_subscription", "urls", "external_ids"]

    /// CSV with Kith's own header; phones and emails as typed (raw input when recorded), joined by "; ".
    public static func write(_ contacts: [ContactView]) -> String {
        var rows = [exportColumns]
        for c in contacts {
            let phones = c.values(.phones).map { $0.payload.isEmpty ? $0.key : $0.payload }.joined(separator: "; ")
            let emails = c.values(.emails).map { $0.payload.isEmpty ? $0.key : $0.payload }.joined(separator: "; ")
            var row = [c.id.description, c[.givenName] ?? "", c[.familyName] ?? "", c[.displayName] ?? "", phones, emails,
                       c[.address] ?? "", c[.city] ?? "", c[.postalCode] ?? "", c.tags.joined(separator: "; "), c[.notes] ?? "",
                       c[.relationship] ?? "", c[.support] ?? "", c[.voterFileID] ?? "", c[.consent] ?? ""]
            row += [Field.organization, .title, .birthday, .nickname, .region, .country, .emailSubscription, .smsSubscription].map { c[$0] ?? "" }
            row += [c.values(.urls).map(\.key).joined(separator: " ::: "), c.values(.externalIDs).map(\.key).joined(separator: "; ")]
            rows.append(row)
        }
        return csvText(rows)
    }

    /// Google Contacts' import layout ("First Name", "E-mail 1 - Label", " ::: " for several
    /// values under one label): as many numbered columns as the contact with the most needs.
    public static func writeGoogle(_ contacts: [ContactView]) -> String {
        func labels(_ c: ContactView) -> [String: String] { Dictionary(c.values(.labels).map { ($0.key, $0.payload) }, uniquingKeysWith: { a, _ in a }) }
        let maxEmails = contacts.map { $0.values(.emails).count }.max() ?? 0
        let maxPhones = contacts.map { $0.values(.phones).count }.max() ?? 0
        let maxURLs = contacts.map { $0.values(.urls).count }.max() ?? 0
        var header = ["First Name", "Last Name", "Nickname", "Birthday", "Notes", "Labels", "Organization Name", "Organization Title"]
        for i in 0..<maxEmails { header += ["E-mail \(i + 1) - Label", "E-mail \(i + 1) - Value"] }
        for i in 0..<maxPhones { header += ["Phone \(i + 1) - Label", "Phone \(i + 1) - Value"] }
        header += ["Address 1 - Street", "Address 1 - City", "Address 1 - Region", "Address 1 - Postal Code", "Address 1 - Country"]
        for i in 0..<maxURLs { header += ["Website \(i + 1) - Label", "Website \(i + 1) - Value"] }
        var rows = [header]
        for c in contacts {
            let l = labels(c)
            let given = c[.givenName] ?? (c[.familyName] == nil ? c[.displayName] ?? "" : "")
            var row = [given, c[.familyName] ?? "", c[.nickname] ?? "", c[.birthday] ?? "", c[.notes] ?? "",
                       c.tags.joined(separator: " ::: "), c[.organization] ?? "", c[.title] ?? ""]
            let emails = c.values(.emails), phones = c.values(.phones), urls = c.values(.urls)
            for i in 0..<maxEmails { row += i < emails.count ? [googleLabel(l["email:" + emails[i].key]), emails[i].key] : ["", ""] }
            for i in 0..<maxPhones { row += i < phones.count ? [googleLabel(l["tel:" + phones[i].key]), phones[i].payload.isEmpty ? phones[i].key : phones[i].payload] : ["", ""] }
            row += [c[.address] ?? "", c[.city] ?? "", c[.region] ?? "", c[.postalCode] ?? "", c[.country] ?? ""]
            for i in 0..<maxURLs { row += i < urls.count ? [googleLabel(urls[i].payload), urls[i].key] : ["", ""] }
            rows.append(row)
        }
        return csvText(rows)
    }

    static func googleLabel(_ l: String?) -> String {
        guard let l, !l.isEmpty else { return "" }
        return ["home", "work", "other"].contains(l) ? "* " + l.prefix(1).uppercased() + l.dropFirst() : l.prefix(1).uppercased() + l.dropFirst()
    }

    /// Action Network's upload layout: one email per person (its key there), the first phone,
    /// the address, subscription statuses and tags.
    public static func writeActionNetwork(_ contacts: [ContactView]) -> String {
        var rows = [["first_name", "last_name", "email", "can2_phone", "can2_user_address", "can2_user_city", "can2_state_abbreviated",
                     "zip_code", "can2_country", "can2_subscription_status", "can2_sms_status", "can2_user_tags"]]
        for c in contacts {
            let phone = c.values(.phones).first.map { $0.payload.isEmpty ? $0.key : $0.payload } ?? ""
            rows.append([c[.givenName] ?? "", c[.familyName] ?? "", c.emails.first ?? "", phone, c[.address] ?? "", c[.city] ?? "",
                         c[.region] ?? "", c[.postalCode] ?? "", c[.country] ?? "", c[.emailSubscription] ?? "", c[.smsSubscription] ?? "",
                         c.tags.joined(separator: ", ")])
        }
        return csvText(rows)
    }

    /// RFC 4180 text of `rows`.
    static func csvText(_ rows: [[String]]) -> String {
        let stream = OutputStream(toMemory: ())
        let writer = try! CSVWriter(stream: stream)
        for row in rows {
            // Bytes, not Characters: "," followed by a combining mark is one Character, and was
            // written unquoted (found by Fuzz/ target csv: the export re-imported with an extra column).
            try! writer.write(row: row, quotedAtIndex: { i in row[i].utf8.contains(where: { $0 == 0x2C || $0 == 0x22 || $0 == 0x0A || $0 == 0x0D }) })
        }
        writer.stream.close()
        let data = stream.property(forKey: .dataWrittenToMemoryStreamKey) as? Data ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
