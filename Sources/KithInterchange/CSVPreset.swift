import KithCRDT

/// The CSV exports organizers bring, recognised by their header (README "Import"): each maps
/// its columns to Kith's fields, sets and labels, and says what it deliberately drops.
public struct CSVPreset: Sendable, Hashable {
    /// The `--format` name.
    public let name: String
    /// One line for `kith import --list-formats`.
    public let summary: String
    /// Normalized header → target; patterns below cover the numbered columns.
    let columns: [String: CSVInterchange.Target]
    /// Normalized headers that identify the export (all must be present, or one of `anyOf`).
    let requires: [String]
    let anyOf: [String]
    /// Rows of one person repeat (Mobilize: one row per signup): merged by email, then phone.
    let mergesRows: Bool
    /// How a phone column's label and a birthday read.
    let dates: DateOrder

    enum DateOrder: Sendable, Hashable { case iso, monthDayYear }

    public static func == (a: CSVPreset, b: CSVPreset) -> Bool { a.name == b.name }
    public func hash(into h: inout Hasher) { h.combine(name) }

    func matches(_ headers: Set<String>) -> Bool {
        requires.allSatisfy(headers.contains) && (anyOf.isEmpty || anyOf.contains(where: headers.contains))
    }

    /// The target of a header in this preset, numbered columns included ("Phone 2 - Value").
    func target(_ normalized: String) -> CSVInterchange.Target? {
        if let t = columns[normalized] { return t }
        guard self == .google else { return nil }
        // Google: "<Kind> <n> - <Part>", e.g. email1value, phone2type, address1city, website1label.
        for (kind, prefix) in [("email", "email"), ("phone", "phone"), ("website", "website"), ("address", "address"), ("organization", "organization")] {
            guard normalized.hasPrefix(prefix) else { continue }
            let rest = normalized.dropFirst(prefix.count)
            let digits = rest.prefix { $0.isNumber }
            guard !digits.isEmpty else { continue }
            let part = String(rest.dropFirst(digits.count))
            let group = kind + digits
            let first = digits == "1"
            switch (kind, part) {
            case ("email", "value"): return .email(group: group)
            case ("phone", "value"): return .phone(group: group)
            case ("website", "value"): return .url(group: group)
            case (_, "type"), (_, "label"): return kind == "address" || kind == "organization" ? .ignored : .label(group: group)
            case ("address", "street"): return first ? .field(.address) : .ignored
            case ("address", "city"): return first ? .field(.city) : .ignored
            case ("address", "region"): return first ? .field(.region) : .ignored
            case ("address", "postalcode"): return first ? .field(.postalCode) : .ignored
            case ("address", "country"): return first ? .field(.country) : .ignored
            case ("address", "pobox"), ("address", "extendedaddress"): return first ? .addressLine : .ignored
            case ("organization", "name"): return first ? .field(.organization) : .ignored
            case ("organization", "title"): return first ? .field(.title) : .ignored
            default: return .ignored
            }
        }
        return nil
    }

    // MARK: The presets

    public static let all: [CSVPreset] = [.google, .outlook, .actionNetwork, .van, .mobilize, .generic]

    public static func named(_ name: String) -> CSVPreset? {
        let n = name.lowercased()
        return all.first { $0.name == n } ?? (n == "csv" ? .generic : nil)
    }

    /// The preset whose header this is (the generic one when none is specific).
    public static func detect(_ normalizedHeaders: [String]) -> CSVPreset {
        let set = Set(normalizedHeaders)
        return all.first { $0 != .generic && $0.matches(set) } ?? .generic
    }

    /// Google Contacts (both the older "Given Name … E-mail 1 - Type" and the current "First Name
    /// … E-mail 1 - Label" layouts): multi-values joined by " ::: ", labels in "- Type"/"- Label".
    public static let google = CSVPreset(
        name: "google-csv", summary: "Google Contacts export (Google CSV; both layouts)",
        columns: [
            "name": .field(.displayName), "givenname": .field(.givenName), "firstname": .field(.givenName),
            "familyname": .field(.familyName), "lastname": .field(.familyName), "nickname": .field(.nickname),
            "birthday": .birthday, "notes": .field(.notes), "groupmembership": .tags, "labels": .tags,
            "organizationname": .field(.organization), "organizationtitle": .field(.title),
            "additionalname": .ignored, "middlename": .ignored, "nameprefix": .ignored, "namesuffix": .ignored,
            "initials": .ignored, "shortname": .ignored, "maidenname": .ignored, "yominame": .ignored, "givennameyomi": .ignored,
            "additionalnameyomi": .ignored, "familynameyomi": .ignored, "phoneticfirstname": .ignored, "phoneticmiddlename": .ignored,
            "phoneticlastname": .ignored, "fileas": .ignored, "organizationdepartment": .ignored, "photo": .ignored,
        ],
        requires: [], anyOf: ["email1value", "phone1value"], mergesRows: false, dates: .iso)

    /// Outlook (and Outlook.com) "Comma Separated Values": fixed columns per phone kind; "Title"
    /// is the honorific (Mr., Dr.), "Job Title" the job.
    public static let outlook = CSVPreset(
        name: "outlook-csv", summary: "Microsoft Outlook / Outlook.com export",
        columns: [
            "firstname": .field(.givenName), "lastname": .field(.familyName), "nickname": .field(.nickname),
            "emailaddress": .email(group: "work"), "email2address": .email(group: "home"), "email3address": .email(group: "other"),
            "primaryphone": .phone(group: "main"), "homephone": .phone(group: "home"), "homephone2": .phone(group: "home"),
            "mobilephone": .phone(group: "mobile"), "businessphone": .phone(group: "work"), "businessphone2": .phone(group: "work"),
            "companymainphone": .phone(group: "main"), "otherphone": .phone(group: "other"), "businessfax": .phone(group: "fax"),
            "homefax": .phone(group: "fax"), "pager": .phone(group: "pager"),
            "homestreet": .addressPart("home", .address), "homecity": .addressPart("home", .city), "homestate": .addressPart("home", .region),
            "homepostalcode": .addressPart("home", .postalCode), "homecountry/region": .addressPart("home", .country),
            "homecountry": .addressPart("home", .country),
            "businessstreet": .addressPart("work", .address), "businesscity": .addressPart("work", .city),
            "businessstate": .addressPart("work", .region), "businesspostalcode": .addressPart("work", .postalCode),
            "businesscountry/region": .addressPart("work", .country), "businesscountry": .addressPart("work", .country),
            "company": .field(.organization), "jobtitle": .field(.title), "birthday": .birthday, "notes": .field(.notes),
            "categories": .tags, "webpage": .url(group: ""),
            "title": .ignored, "middlename": .ignored, "suffix": .ignored, "department": .ignored, "emaildisplayname": .ignored,
            "email2displayname": .ignored, "email3displayname": .ignored, "emailtype": .ignored, "email2type": .ignored, "email3type": .ignored,
        ],
        requires: ["firstname", "lastname"], anyOf: ["businessphone", "homestreet", "emaildisplayname", "jobtitle"], mergesRows: false,
        dates: .monthDayYear)

    /// Action Network's people export (can2_… columns).
    public static let actionNetwork = CSVPreset(
        name: "actionnetwork-csv", summary: "Action Network people export (and its upload format)",
        columns: [
            "uuid": .externalID("actionnetwork"), "actionnetworkid": .externalID("actionnetwork"),
            "firstname": .field(.givenName), "lastname": .field(.familyName), "email": .email(group: ""),
            "zipcode": .field(.postalCode), "zip": .field(.postalCode), "can2country": .field(.country), "country": .field(.country),
            "can2stateabbreviated": .field(.region), "state": .field(.region), "can2useraddress": .field(.address), "address": .field(.address),
            "can2usercity": .field(.city), "city": .field(.city), "can2phone": .phone(group: "mobile"), "phone": .phone(group: "mobile"),
            "can2phonenumber": .phone(group: "mobile"), "mobilephone": .phone(group: "mobile"),
            "can2subscriptionstatus": .subscription(.emailSubscription), "emailsubscriptionstatus": .subscription(.emailSubscription),
            "can2smsstatus": .subscription(.smsSubscription), "smssubscriptionstatus": .subscription(.smsSubscription),
            "can2usertags": .tags, "tags": .tags, "can2county": .ignored, "can2createdat": .ignored, "createdat": .ignored,
        ],
        requires: ["email"], anyOf: ["can2phone", "can2country", "can2stateabbreviated", "can2subscriptionstatus", "can2smsstatus", "can2useraddress"],
        mergesRows: false, dates: .iso)

    /// NGP VAN / EveryAction export: VANID, Zip5, PreferredEmail, and the Support ID (VAN's scale,
    /// 1 = strong support … 5 = strong oppose, stored as Kith's 5 … 1).
    public static let van = CSVPreset(
        name: "van-csv", summary: "NGP VAN / EveryAction export (VANID, Support ID)",
        columns: [
            "vanid": .externalID("van"), "voterfilevanid": .externalID("van"), "myvoters": .externalID("van"),
            "statefileid": .voterFileID, "lastname": .field(.familyName), "firstname": .field(.givenName), "nickname": .field(.nickname),
            "address": .field(.address), "city": .field(.city), "state": .field(.region), "zip5": .field(.postalCode), "zip": .field(.postalCode),
            "zip4": .zip4, "homephone": .phone(group: "home"), "cellphone": .phone(group: "mobile"), "workphone": .phone(group: "work"),
            "phone": .phone(group: ""), "preferredphone": .phone(group: ""), "preferredemail": .email(group: "preferred"),
            "email": .email(group: ""), "personalemail": .email(group: "home"), "workemail": .email(group: "work"),
            "employer": .field(.organization), "occupation": .field(.title), "dob": .birthday, "dateofbirth": .birthday,
            "supportid": .vanSupport, "supportid1": .vanSupport, "notes": .field(.notes), "activistcodes": .tags,
            "middlename": .ignored, "suffix": .ignored, "sex": .ignored, "age": .ignored, "party": .ignored, "precinctname": .ignored,
            "countyname": .ignored, "congressionaldistrict": .ignored,
        ],
        requires: ["vanid"], anyOf: [], mergesRows: false, dates: .monthDayYear)

    /// Mobilize's event attendee export: one row per signup; a person's rows become one contact
    /// with every event in its events set.
    public static let mobilize = CSVPreset(
        name: "mobilize-csv", summary: "Mobilize event attendee export (one row per signup → one person)",
        columns: [
            "userid": .externalID("mobilize"), "personid": .externalID("mobilize"), "attendeeid": .ignored,
            "firstname": .field(.givenName), "givenname": .field(.givenName), "lastname": .field(.familyName), "familyname": .field(.familyName),
            "email": .email(group: ""), "emailaddress": .email(group: ""), "phone": .phone(group: "mobile"), "phonenumber": .phone(group: "mobile"),
            "zip": .field(.postalCode), "zipcode": .field(.postalCode), "postalcode": .field(.postalCode),
            "eventid": .eventID, "eventname": .eventTitle, "eventtitle": .eventTitle, "timeslotstart": .eventDate,
            "timeslotstartdate": .eventDate, "starttime": .eventDate, "status": .eventStatus, "attended": .eventAttended,
            "timeslotid": .ignored, "timeslotend": .ignored, "signupdate": .ignored, "createdat": .ignored, "referrer": .ignored,
            "eventtype": .ignored, "organizationname": .ignored,
        ],
        requires: ["eventid"], anyOf: ["email", "emailaddress"], mergesRows: true, dates: .iso)

    /// Any CSV with a header: common column names in English and French, `--map` for the rest.
    public static let generic = CSVPreset(
        name: "csv", summary: "any CSV with a header row (common column names; --map for others)",
        columns: CSVInterchange.known, requires: [], anyOf: [], mergesRows: false, dates: .iso)
}
