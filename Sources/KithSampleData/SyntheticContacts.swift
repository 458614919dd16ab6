import KithCRDT

/// Seeded synthetic contacts shaped like what organizers record, shared by the benchmarks, the
/// demo and tests. The same seed always gives the same contacts, byte for byte.
public struct SyntheticContacts: Sendable {
    public struct Contact: Sendable, Hashable {
        public var id: ContactID
        public var givenName: String
        public var familyName: String
        public var phone: String
        public var phoneRaw: String
        public var email: String
        public var address: String
        public var city: String
        public var postalCode: String
        public var tags: [String]
        public var notes: String
        public var relationship: String
        public var support: String
        public var consent: String

        /// The ops that create this contact (about ten).
        public var ops: [Operation] {
            var o: [Operation] = [
                .setField(.givenName, givenName),
                .setField(.familyName, familyName),
                .add(.phones, phone, payload: phoneRaw == phone ? "" : phoneRaw),
                .add(.emails, email),
                .setField(.address, address),
                .setField(.city, city),
                .setField(.postalCode, postalCode),
            ]
            for t in tags { o.append(.add(.tags, t)) }
            if !notes.isEmpty { o.append(.setField(.notes, notes)) }
            o.append(.setField(.relationship, relationship))
            if !support.isEmpty { o.append(.setField(.support, support)) }
            if !consent.isEmpty { o.append(.setField(.consent, consent)) }
            return o
        }

        public var edit: ContactEdit { ContactEdit(contact: id, ops: ops) }
    }

    static let given = ["Ada", "Grace", "Amaru", "Zoë", "José", "Siobhán", "Mei", "Kwame", "Fatima", "Lars", "Priya", "Olu",
                        "Chloé", "Dmitri", "Aroha", "Yusuf", "Ingrid", "Thandiwe", "Mateo", "Noor", "Ana", "Björn", "Hana", "Emeka",
                        "Лена", "Ζωή", "陈", "Sun-hee", "Tomás", "Aaliyah", "Jonas", "Marta"]
    static let family = ["Lovelace", "Hopper", "Quispe", "Müller", "García", "Ní Bhriain", "Chen", "Mensah", "Haddad", "Eriksen",
                         "Patel", "Adeyemi", "Lefèvre", "Ivanov", "Ngata", "Yilmaz", "Solberg", "Dlamini", "Rossi", "Rahman",
                         "Silva", "Lindqvist", "Tanaka", "Okafor", "Смирнова", "Παπαδοπούλου", "王", "Kim", "O'Connor", "Williams",
                         "Novak", "Kowalska"]
    static let streets = ["Elm St", "Rue des Lilas", "Hauptstraße", "Calle Mayor", "Station Rd", "Maple Ave", "Quay Lane", "Market St"]
    static let cities = ["Springfield", "Lyon", "Leipzig", "Sevilla", "Cork", "Oakland", "Dunedin", "Turku"]
    static let tagWords = ["door-knock", "gotv", "yard-sign", "volunteer", "donor", "tenant-union", "phonebank", "rideshare", "ward-5", "spanish"]
    static let relationships = ["family", "friend", "neighbour", "coworker", "congregation", "other"]
    static let noteWords = ["met", "at", "the", "market", "cares", "about", "transit", "and", "schools", "call", "after", "six",
                            "has", "two", "kids", "works", "nights", "likes", "the", "newsletter"]

    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// Contact number `i` of this seed's sequence (random access, no state).
    public func contact(_ i: Int) -> Contact {
        var rng = SplitMix64(seed: seed ^ (UInt64(i) &* 0x9E37_79B9_7F4A_7C15))
        let id = ContactID(high: rng.next(), low: rng.next())
        let g = Self.given[Int(rng.next() % UInt64(Self.given.count))]
        let f = Self.family[Int(rng.next() % UInt64(Self.family.count))]
        let national = 2_000_000_000 + rng.next() % 7_999_999_999
        let phone = "+1\(national)"
        let s = String(national)
        let raw: String
        switch rng.next() % 3 {
        case 0: raw = phone
        case 1: raw = "(\(s.prefix(3))) \(s.dropFirst(3).prefix(3))-\(s.suffix(4))"
        default: raw = "\(s.prefix(3)).\(s.dropFirst(3).prefix(3)).\(s.suffix(4))"
        }
        let asciiFamily = f.unicodeScalars.filter { $0.isASCII && $0.properties.isAlphabetic }.map(String.init).joined().lowercased()
        let asciiGiven = g.unicodeScalars.filter { $0.isASCII && $0.properties.isAlphabetic }.map(String.init).joined().lowercased()
        let email = "\(asciiGiven.isEmpty ? "member" : asciiGiven).\(asciiFamily.isEmpty ? "x" : asciiFamily)\(rng.next() % 1000)@example.org"
        let address = "\(1 + rng.next() % 400) \(Self.streets[Int(rng.next() % UInt64(Self.streets.count))])"
        let city = Self.cities[Int(rng.next() % UInt64(Self.cities.count))]
        let postal = String(10_000 + rng.next() % 89_999)
        var tags: [String] = []
        for _ in 0..<(1 + rng.next() % 2) {
            let t = Self.tagWords[Int(rng.next() % UInt64(Self.tagWords.count))]
            if !tags.contains(t) { tags.append(t) }
        }
        var notes = ""
        if rng.next() % 2 == 0 {
            notes = (0..<(3 + rng.next() % 5)).map { _ in Self.noteWords[Int(rng.next() % UInt64(Self.noteWords.count))] }.joined(separator: " ")
        }
        let rel = Self.relationships[Int(rng.next() % UInt64(Self.relationships.count))]
        let support = rng.next() % 4 == 0 ? "" : String(1 + rng.next() % 5)
        let consent: String
        switch rng.next() % 4 {
        case 0: consent = "share;2026-0\(1 + rng.next() % 9)-1\(rng.next() % 10);verbal at the door"
        case 1: consent = "contact;2026-10-0\(1 + rng.next() % 9);phone call"
        default: consent = ""
        }
        return Contact(id: id, givenName: g, familyName: f, phone: phone, phoneRaw: raw, email: email, address: address, city: city,
                       postalCode: postal, tags: tags, notes: notes, relationship: rel, support: support, consent: consent)
    }

    public func contacts(_ count: Int) -> [Contact] { (0..<count).map(contact) }

    /// Contacts `0..<count` as a vCard 4.0 file, UIDs being their Kith ids (so importing it
    /// twice updates rather than duplicates).
    public func vCard(count: Int) -> String { vCard(range: 0..<count) }

    /// Contacts `range` as vCard 4.0 (a large file written slice by slice).
    public func vCard(range: Range<Int>) -> String {
        var out = ""
        out.reserveCapacity(range.count * 280)
        for i in range {
            let c = contact(i)
            out += "BEGIN:VCARD\r\nVERSION:4.0\r\nUID:\(c.id)\r\nN:\(c.familyName);\(c.givenName);;;\r\nFN:\(c.givenName) \(c.familyName)\r\n"
            out += "TEL:\(c.phoneRaw)\r\nEMAIL:\(c.email)\r\nADR:;;\(c.address);\(c.city);;\(c.postalCode);\r\n"
            out += "CATEGORIES:\(c.tags.joined(separator: ","))\r\n"
            if !c.notes.isEmpty { out += "NOTE:\(c.notes)\r\n" }
            out += "X-KITH-RELATIONSHIP:\(c.relationship)\r\n"
            if !c.support.isEmpty { out += "X-KITH-SUPPORT:\(c.support)\r\n" }
            if !c.consent.isEmpty { out += "X-KITH-CONSENT:\(c.consent)\r\n" }
            out += "END:VCARD\r\n"
        }
        return out
    }

    /// Contacts written as CSV with a header row (RFC 4180 quoting), the size baseline for the
    /// encoded change set. Multi-valued columns join with ";".
    public static func csv(_ contacts: [Contact]) -> String {
        var out = "id,given_name,family_name,phone,email,address,city,postal_code,tags,notes,relationship,support,consent\n"
        func q(_ s: String) -> String {
            s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) ? "\"" + s.replacingOccurrences("\"", "\"\"") + "\"" : s
        }
        for c in contacts {
            let phone = c.phoneRaw == c.phone ? c.phone : c.phoneRaw
            let row = [c.id.description, c.givenName, c.familyName, phone, c.email, c.address, c.city, c.postalCode,
                       c.tags.joined(separator: ";"), c.notes, c.relationship, c.support, c.consent].map(q)
            out += row.joined(separator: ",") + "\n"
        }
        return out
    }
}

/// SplitMix64: tiny, fast, and the same on every platform.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}
