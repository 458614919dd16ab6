import KithCrypto

/// Single-valued contact fields: last-writer-wins registers. Values are UTF-8 text; the empty
/// string clears a field. Typed fields have a grammar checked on decode (see data-model.md).
public enum Field: UInt8, CaseIterable, Sendable, Comparable, CustomStringConvertible {
    case givenName = 1
    case familyName = 2
    case displayName = 3
    case address = 4
    case city = 5
    case postalCode = 6
    case notes = 7
    /// How the owner knows them: family, friend, neighbour, coworker, congregation, other.
    case relationship = 8
    /// "1"..."5", or empty for unknown.
    case support = 9
    case voterFileID = 10
    /// The contact's own consent: `<level>;<yyyy-mm-dd>;<method>`.
    case consent = 11
    // Revision 2 (data-model.md §4.1): what organizers' exports carry.
    case organization = 12
    /// Job title.
    case title = 13
    /// `yyyy-mm-dd`, or `--mm-dd` when the year is unknown.
    case birthday = 14
    case nickname = 15
    /// The address's state, province or region (vCard ADR region).
    case region = 16
    /// The address's country, as written.
    case country = 17
    /// Email subscription status as the source reported it: see `Field.subscriptionStatuses`.
    case emailSubscription = 18
    /// SMS subscription status as the source reported it.
    case smsSubscription = 19

    public static func < (a: Field, b: Field) -> Bool { a.rawValue < b.rawValue }

    public var name: String {
        switch self {
        case .givenName: "given_name"
        case .familyName: "family_name"
        case .displayName: "display_name"
        case .address: "address"
        case .city: "city"
        case .postalCode: "postal_code"
        case .notes: "notes"
        case .relationship: "relationship"
        case .support: "support"
        case .voterFileID: "voter_file_id"
        case .consent: "consent"
        case .organization: "organization"
        case .title: "title"
        case .birthday: "birthday"
        case .nickname: "nickname"
        case .region: "region"
        case .country: "country"
        case .emailSubscription: "email_subscription"
        case .smsSubscription: "sms_subscription"
        }
    }

    public var description: String { name }

    /// Subscription statuses (email_subscription, sms_subscription).
    public static let subscriptionStatuses: [String] = ["subscribed", "unsubscribed", "bouncing", "complained", "unknown"]

    public init?(name: String) {
        guard let f = Field.allCases.first(where: { $0.name == name }) else { return nil }
        self = f
    }

    /// The largest value, in UTF-8 bytes.
    public var maxLength: Int { self == .notes ? 65_536 : 1_024 }

    public static let relationships: Set<String> = ["family", "friend", "neighbour", "coworker", "congregation", "other"]

    /// Checks a value against the field's grammar. Empty always passes (it clears the field).
    public func validate(_ value: String) throws(DecodeError) {
        if value.isEmpty { return }
        guard value.utf8.count <= maxLength else { throw DecodeError("\(name) is \(value.utf8.count) bytes, more than \(maxLength)") }
        switch self {
        case .relationship:
            guard Field.relationships.contains(value) else { throw DecodeError("relationship '\(value)' is not one of \(Field.relationships.sorted().joined(separator: ", "))") }
        case .support:
            guard value.utf8.count == 1, let d = value.utf8.first, (49...53).contains(d) else { throw DecodeError("support '\(value)' is not 1...5 or empty") }
        case .consent:
            // Checked without building the parts (every received contact carries one): the
            // same grammar `ContactConsent(encoded:)` parses, which gives the error's wording.
            if !ContactConsent.isEncoded(value) { _ = try ContactConsent(encoded: value) }
        case .birthday:
            guard ContactConsent.isDate(value.utf8) || ContactConsent.isYearlessDate(value.utf8) else {
                throw DecodeError("birthday '\(value)' is not yyyy-mm-dd or --mm-dd")
            }
        case .emailSubscription, .smsSubscription:
            guard Field.subscriptionStatuses.contains(value) else {
                throw DecodeError("\(name) '\(value)' is not one of \(Field.subscriptionStatuses.joined(separator: ", "))")
            }
        default:
            break
        }
    }
}

/// The contact's own consent, recorded by the member who asked them.
public struct ContactConsent: Hashable, Sendable {
    public enum Level: String, CaseIterable, Sendable, Comparable {
        /// No consent recorded.
        case none
        /// May be contacted by the chapter.
        case contact
        /// May be shared with the organization.
        case share
        public static func < (a: Level, b: Level) -> Bool {
            Level.allCases.firstIndex(of: a)! < Level.allCases.firstIndex(of: b)!
        }
    }

    public var level: Level
    /// yyyy-mm-dd
    public var date: String
    /// How it was given (free text: "verbal, at the door", "signed form", …).
    public var method: String

    public init(level: Level, date: String, method: String) {
        self.level = level
        self.date = date
        self.method = method
    }

    public var encoded: String { "\(level.rawValue);\(date);\(method)" }

    public init(encoded s: String) throws(DecodeError) {
        let parts = s.split(separator: ";", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let level = Level(rawValue: String(parts[0])) else {
            throw DecodeError("consent '\(s)' is not <none|contact|share>;<yyyy-mm-dd>;<method>")
        }
        guard ContactConsent.isDate(parts[1].utf8) else { throw DecodeError("consent date '\(parts[1])' is not yyyy-mm-dd") }
        self.init(level: level, date: String(parts[1]), method: String(parts[2]))
    }

    /// True when `s` is `<level>;<yyyy-mm-dd>;<method>` (what `init(encoded:)` accepts),
    /// checked on the UTF-8 bytes without allocating.
    static func isEncoded(_ s: String) -> Bool {
        let u = s.utf8
        guard let first = u.firstIndex(of: 59) else { return false }
        let level = u[u.startIndex..<first]
        guard Level.allCases.contains(where: { $0.rawValue.utf8.elementsEqual(level) }) else { return false }
        let dateStart = u.index(after: first)
        guard let second = u[dateStart...].firstIndex(of: 59) else { return false }
        return isDate(u[dateStart..<second])
    }

    /// True for `yyyy-mm-dd` (month 1...12, day 1...31).
    static func isDate<C: Collection<UInt8>>(_ s: C) -> Bool {
        guard s.count == 10, s.prefix(4).allSatisfy({ (48...57).contains($0) }) else { return false }
        return isMonthDay(s.dropFirst(4))
    }

    /// True for `--mm-dd` (a birthday without its year).
    static func isYearlessDate(_ s: String.UTF8View) -> Bool {
        s.count == 7 && s.first == 45 && isMonthDay(s.dropFirst())
    }

    /// True for `-mm-dd` (month 1...12, day 1...31).
    private static func isMonthDay<C: Collection<UInt8>>(_ s: C) -> Bool {
        guard s.count == 6 else { return false }
        var month = 0, day = 0
        for (i, b) in s.enumerated() {
            if i == 0 || i == 3 {
                guard b == 45 else { return false }
                continue
            }
            guard (48...57).contains(b) else { return false }
            if i < 3 { month = month * 10 + Int(b - 48) } else { day = day * 10 + Int(b - 48) }
        }
        return (1...12).contains(month) && (1...31).contains(day)
    }
}

/// Multi-valued parts of a contact: add-wins observed-remove maps from key to payload.
public enum SetKind: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    /// key: normalized phone (E.164 where possible); payload: the raw input when it differs.
    case phones = 1
    /// key: normalized email; payload: the raw input when it differs.
    case emails = 2
    /// key: the tag; payload: empty.
    case tags = 3
    /// key: a member's Ed25519 key (32 bytes); payload: strength, one byte 1...5.
    case knows = 4
    /// key: the other contact's id (16 bytes); payload: empty. "Same person" links.
    case links = 5
    /// key: a 16-byte blind match token (a chapter-keyed hash of a normalized phone or email,
    /// Protocol/chapters.md §7); payload: empty. Lets members find likely duplicates without
    /// revealing the phone or email itself.
    case matchTokens = 6
    // Revision 2 (data-model.md §4.2).
    /// key: a URL as written; payload: its label (home, work, …) or empty.
    case urls = 7
    /// key: `<system>:<id>` (`van:123456`, `actionnetwork:9f…`, `voterfile:OH:123`): the
    /// record's id in another system, which a re-import matches on; payload: empty.
    case externalIDs = 8
    /// key: an event the person attended or signed up for, `<source>:<event id>[@yyyy-mm-dd]`
    /// (`mobilize:41234@2026-10-03`); payload: the event's title.
    case events = 9
    /// key: `tel:<phone key>` or `email:<email key>`; payload: the label (home, work, mobile…).
    case labels = 10

    public var description: String {
        switch self {
        case .phones: "phones"
        case .emails: "emails"
        case .tags: "tags"
        case .knows: "knows"
        case .links: "links"
        case .matchTokens: "match_tokens"
        case .urls: "urls"
        case .externalIDs: "external_ids"
        case .events: "events"
        case .labels: "labels"
        }
    }

    /// A payload the set accepts, to check a remove's key alone (a remove carries no payload).
    var removePayloadStandIn: ArraySlice<UInt8> {
        switch self {
        case .knows: [1]
        case .labels: [0x78]
        default: []
        }
    }

    /// True for sets whose keys and payloads are UTF-8 text.
    public var isText: Bool { self != .knows && self != .links && self != .matchTokens }

    /// A valid external id: `<system>:<id>`, system 1–32 of `a-z 0-9 . _ -`, id non-empty.
    public static func isExternalID(_ key: String) -> Bool {
        guard let colon = key.firstIndex(of: ":") else { return false }
        let system = key[..<colon]
        return (1...32).contains(system.utf8.count) && key.index(after: colon) < key.endIndex
            && system.utf8.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 46 || $0 == 95 || $0 == 45 }
    }

    func validate(key: ArraySlice<UInt8>, payload: ArraySlice<UInt8>) throws(DecodeError) {
        switch self {
        case .phones, .emails, .tags:
            guard !key.isEmpty, key.count <= 320 else { throw DecodeError("\(self) key must be 1...320 bytes, got \(key.count)") }
            guard payload.count <= 1_024 else { throw DecodeError("\(self) payload is \(payload.count) bytes, more than 1024") }
            try ByteReader.checkUTF8(key)
            try ByteReader.checkUTF8(payload)
            if self == .tags, !payload.isEmpty { throw DecodeError("a tag has no payload") }
        case .urls, .events:
            guard !key.isEmpty else { throw DecodeError("\(self) key must not be empty") }
            try ByteReader.checkUTF8(key)
            try ByteReader.checkUTF8(payload)
        case .externalIDs:
            guard !key.isEmpty, key.count <= 320 else { throw DecodeError("an external id must be 1...320 bytes, got \(key.count)") }
            guard SetKind.isExternalID(try ByteReader.utf8(key)) else {
                throw DecodeError("external id '\(String(decoding: key, as: UTF8.self))' is not <system>:<id> (system: a-z 0-9 . _ -)")
            }
            guard payload.isEmpty else { throw DecodeError("an external id has no payload") }
        case .labels:
            let k = try ByteReader.utf8(key)
            guard key.count <= 330, (k.hasPrefix("tel:") && k.utf8.count > 4) || (k.hasPrefix("email:") && k.utf8.count > 6) else {
                throw DecodeError("a label's key is tel:<phone> or email:<address>")
            }
            guard (1...64).contains(payload.count) else { throw DecodeError("a label is 1...64 bytes") }
            try ByteReader.checkUTF8(payload)
        case .knows:
            guard key.count == 32 else { throw DecodeError("a knows key is a 32-byte member key, got \(key.count)") }
            guard payload.count == 1, (1...5).contains(payload.first!) else { throw DecodeError("knows strength must be one byte 1...5") }
        case .links:
            guard key.count == 16 else { throw DecodeError("a link key is a 16-byte contact id, got \(key.count)") }
            guard payload.isEmpty else { throw DecodeError("a link has no payload") }
        case .matchTokens:
            guard key.count == 16 else { throw DecodeError("a match token is 16 bytes, got \(key.count)") }
            guard payload.isEmpty else { throw DecodeError("a match token has no payload") }
        }
    }
}

/// How a conversation happened.
public enum Channel: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case door = 1, phone = 2, text = 3, inPerson = 4, other = 5

    public var description: String {
        switch self {
        case .door: "door"
        case .phone: "phone"
        case .text: "text"
        case .inPerson: "in-person"
        case .other: "other"
        }
    }

    public init?(name: String) {
        guard let c = Channel.allCases.first(where: { $0.description == name }) else { return nil }
        self = c
    }
}

/// One entry of a contact's conversation log (grow-only).
public struct ConversationEntry: Hashable, Sendable {
    /// Days since 1970-01-01 (UTC).
    public var day: UInt32
    public var channel: Channel
    public var outcome: String
    public var note: String

    public init(day: UInt32, channel: Channel, outcome: String, note: String) {
        self.day = day
        self.channel = channel
        self.outcome = outcome
        self.note = note
    }
}

/// A reference to one operation: the change (author device, seq) and the op's position in it.
public struct OpRef: Hashable, Sendable {
    public var device: DeviceKey
    public var seq: UInt64
    public var block: UInt32
    public var op: UInt32

    public init(device: DeviceKey, seq: UInt64, block: UInt32, op: UInt32) {
        self.device = device
        self.seq = seq
        self.block = block
        self.op = op
    }
}

/// One operation on one contact. Operations travel in blocks (all ops of a change about one
/// contact), blocks in changes.
public enum Operation: Hashable, Sendable {
    /// Set (or, with "", clear) a last-writer-wins field.
    case setField(Field, String)
    /// Add `key` (with `payload`) to an add-wins set.
    case add(SetKind, key: ArraySlice<UInt8>, payload: ArraySlice<UInt8>)
    /// Remove the adds of `key` that the author had observed.
    case remove(SetKind, key: ArraySlice<UInt8>, observed: [OpRef])
    /// Append to the conversation log.
    case logConversation(ConversationEntry)
    /// Tombstone the contact (see data-model.md for concurrent edits).
    case delete
    /// Erase every payload about the contact on every replica, for good.
    case forget

    /// Opcode bytes (data-model.md §Operations).
    static let setFieldBase: UInt8 = 0x10
    static let addBase: UInt8 = 0x20
    static let removeBase: UInt8 = 0x30
    static let logOpcode: UInt8 = 0x40
    static let deleteOpcode: UInt8 = 0x50
    static let forgetOpcode: UInt8 = 0x51
    /// Set a field whose code is 16 or more (revision 2): `0x60 ‖ u8 field ‖ text value`.
    static let setExtendedFieldOpcode: UInt8 = 0x60
    static let maxObserved = 4_096

    func encode(into w: inout ByteWriter, author: DeviceKey) {
        switch self {
        case let .setField(f, v):
            if f.rawValue < 16 {
                w.u8(Self.setFieldBase | f.rawValue)
            } else {
                w.u8(Self.setExtendedFieldOpcode)
                w.u8(f.rawValue)
            }
            w.text(v)
        case let .add(s, key, payload):
            w.u8(Self.addBase | s.rawValue)
            w.lengthPrefixed(key)
            w.lengthPrefixed(payload)
        case let .remove(s, key, observed):
            w.u8(Self.removeBase | s.rawValue)
            w.lengthPrefixed(key)
            w.uvarint(observed.count)
            for r in observed {
                if r.device == author {
                    w.u8(0)
                } else {
                    w.u8(1)
                    w.raw(r.device.bytes)
                }
                w.uvarint(r.seq)
                w.uvarint(UInt64(r.block))
                w.uvarint(UInt64(r.op))
            }
        case let .logConversation(e):
            w.u8(Self.logOpcode)
            w.uvarint(UInt64(e.day))
            w.u8(e.channel.rawValue)
            w.text(e.outcome)
            w.text(e.note)
        case .delete:
            w.u8(Self.deleteOpcode)
        case .forget:
            w.u8(Self.forgetOpcode)
        }
    }

    static func decode(_ r: inout ByteReader, author: DeviceKey) throws(DecodeError) -> Operation {
        let code = try r.u8()
        switch code {
        case 0x11...0x1F:
            let f = Field(rawValue: code & 0x0f)!
            let v = try r.text(max: f.maxLength)
            try f.validate(v)
            return .setField(f, v)
        case setExtendedFieldOpcode:
            let n = try r.u8()
            guard n >= 16, let f = Field(rawValue: n) else { throw DecodeError("unknown extended field \(n)") }
            let v = try r.text(max: f.maxLength)
            try f.validate(v)
            return .setField(f, v)
        case 0x21...0x2A:
            let s = SetKind(rawValue: code & 0x0f)!
            let key = try r.lengthPrefixed(max: 1_024)
            let payload = try r.lengthPrefixed(max: 1_024)
            try s.validate(key: key, payload: payload)
            return .add(s, key: key, payload: payload)
        case 0x31...0x3A:
            let s = SetKind(rawValue: code & 0x0f)!
            let key = try r.lengthPrefixed(max: 1_024)
            try s.validate(key: key, payload: s.removePayloadStandIn)
            let n = try r.count(max: maxObserved, "observed op count")
            var refs: [OpRef] = []
            refs.reserveCapacity(n)
            for _ in 0..<n {
                let flag = try r.u8()
                let device: DeviceKey
                switch flag {
                case 0: device = author
                case 1:
                    do { device = try DeviceKey(bytes: try r.raw(32)) } catch { throw DecodeError("bad device key in op reference") }
                default: throw DecodeError("op reference device flag \(flag) is not 0 or 1")
                }
                let seq = try r.uvarint()
                guard seq >= 1, seq <= UInt64(UInt32.max) else { throw DecodeError("op reference seq \(seq) is outside 1...2^32-1") }
                let block = try r.count(max: Int(UInt32.max), "op reference block")
                let op = try r.count(max: Int(UInt32.max), "op reference op")
                refs.append(OpRef(device: device, seq: seq, block: UInt32(block), op: UInt32(op)))
            }
            return .remove(s, key: key, observed: refs)
        case logOpcode:
            let day = try r.count(max: Int(UInt32.max), "conversation day")
            let ch = try r.u8()
            guard let channel = Channel(rawValue: ch) else { throw DecodeError("unknown conversation channel \(ch)") }
            let outcome = try r.text(max: 1_024)
            let note = try r.text(max: 65_536)
            return .logConversation(ConversationEntry(day: UInt32(day), channel: channel, outcome: outcome, note: note))
        case deleteOpcode:
            return .delete
        case forgetOpcode:
            return .forget
        default:
            throw DecodeError("unknown opcode 0x\(String(code, radix: 16))")
        }
    }
}

extension Operation {
    /// Convenience constructors with arrays and strings.
    public static func add(_ s: SetKind, _ key: String, payload: String = "") -> Operation {
        .add(s, key: ArraySlice(key.utf8), payload: ArraySlice(payload.utf8))
    }

    public static func remove(_ s: SetKind, _ key: String, observed: [OpRef]) -> Operation {
        .remove(s, key: ArraySlice(key.utf8), observed: observed)
    }

    public static func knows(member: Ed25519.PublicKey, strength: UInt8) -> Operation {
        .add(.knows, key: ArraySlice(member.bytes), payload: [strength])
    }

    public static func link(to other: ContactID) -> Operation {
        .add(.links, key: ArraySlice(other.bytes), payload: [])
    }

    public static func unlink(from other: ContactID, observed: [OpRef]) -> Operation {
        .remove(.links, key: ArraySlice(other.bytes), observed: observed)
    }
}
