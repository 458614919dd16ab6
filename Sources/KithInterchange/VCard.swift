import KithCRDT

/// vCard reading (RFC 6350 version 4.0, and 3.0 / 2.1 as phones and address books still write
/// them: folded lines, quoted-printable, CHARSET, bare TYPE params) and writing (4.0).
public enum VCard {
    // MARK: Reading

    struct ContentLine {
        var line: Int
        var group: String?
        var name: String
        var params: [(name: String, values: [String])]
        var rawValue: ArraySlice<UInt8>

        func param(_ n: String) -> [String] {
            params.filter { $0.name == n }.flatMap(\.values)
        }

        /// TYPE values, upper-cased; a quoted list (`TYPE="work,voice"`) counts as its items.
        var types: [String] { param("TYPE").flatMap { $0.split(separator: ",").map { $0.uppercased() } } }
    }

    /// Parses every card in `data`. Bad cards are reported with their number and first line;
    /// the rest are returned.
    /// `lineOffset` and `cardOffset` number lines and cards after those of earlier chunks
    /// (`VCardStream`).
    public static func parse(_ data: [UInt8], lineOffset: Int = 0, cardOffset: Int = 0) -> ImportBatch {
        var batch = ImportBatch()
        var bytes = data[...]
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        let logical = logicalLines(bytes)

        var current: ImportedContact?
        var card = CardState()
        var currentBroken: String?
        var cardNumber = cardOffset
        var cardLine = 0
        for (physicalLine, raw) in logical {
            let lineNo = physicalLine + lineOffset
            if raw.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            guard let cl = parseContentLine(raw, line: lineNo) else {
                if current != nil {
                    currentBroken = currentBroken ?? "line \(lineNo) is not a vCard property (no ':')"
                } else {
                    batch.issues.append(ImportIssue(origin: "line \(lineNo)", reason: "text outside a card"))
                }
                continue
            }
            if cl.name == "BEGIN", Self.isVCARD(cl.rawValue) {
                if let c = current {
                    batch.issues.append(ImportIssue(origin: c.origin, reason: "no END:VCARD before the next BEGIN:VCARD"))
                }
                cardNumber += 1
                cardLine = lineNo
                current = ImportedContact(origin: "card \(cardNumber) (line \(cardLine))")
                current!.fields.reserveCapacity(12) // the fields a card usually has: no regrowth
                card = CardState()
                currentBroken = nil
                continue
            }
            // `c` alone holds the card while the line is applied (moved out of `current`):
            // otherwise each line's change copied its dictionary and arrays (copy on write).
            guard var c = current.take() else {
                batch.issues.append(ImportIssue(origin: "line \(lineNo)", reason: "\(cl.name) outside a card"))
                continue
            }
            if cl.name == "END", Self.isVCARD(cl.rawValue) {
                card.resolveGroupLabels(&c)
                if let broken = currentBroken {
                    batch.issues.append(ImportIssue(origin: c.origin, reason: broken))
                } else if card.isGroup {
                    batch.skipped.append(ImportIssue(origin: c.origin, reason: "is a contact group (KIND:group), not a person: skipped"))
                } else if c.fields[.givenName] == nil, c.fields[.familyName] == nil, c.fields[.displayName] == nil, c.phones.isEmpty, c.emails.isEmpty {
                    batch.issues.append(ImportIssue(origin: c.origin, reason: "has no name (FN or N), phone or email"))
                } else {
                    // FN that is just "given family" is derived, not a display name of its own.
                    let composed = [c.fields[.givenName], c.fields[.familyName]].compactMap { $0 }.joined(separator: " ")
                    if c.fields[.displayName] == composed { c.fields[.displayName] = nil }
                    batch.contacts.append(c)
                }
                current = nil
                continue
            }
            do {
                try apply(cl, to: &c, card: &card, dropped: &batch.dropped)
            } catch {
                // One bad property drops that value, not the person.
                c.warnings.append(ImportIssue(origin: c.origin, reason: "line \(lineNo): \(cl.name) dropped: \(error.reason)"))
                batch.dropped[cl.name, default: 0] += 1
            }
            current = c
        }
        if let c = current {
            batch.issues.append(ImportIssue(origin: c.origin, reason: "file ends before END:VCARD"))
        }
        batch.cards = cardNumber - cardOffset
        return batch
    }

    /// A vCard file read chunk by chunk, so an import can commit while it reads: `feed` returns
    /// the cards complete so far (up to the last `END:VCARD` line), `finish` the rest.
    public struct Stream: Sendable {
        private var pending: [UInt8] = []
        private var lines = 0
        private var cards = 0

        public init() {}

        public mutating func feed(_ bytes: some Collection<UInt8>) -> ImportBatch {
            pending.append(contentsOf: bytes)
            // The end of the last complete END:VCARD line.
            var cut: Int?
            var i = pending.count - 1
            while i >= 0 {
                if pending[i] == 0x0A, i + 1 < pending.count {
                    let rest = pending[(i + 1)...]
                    if rest.count >= 9, VCard.isVCARD(rest.dropFirst(4).prefix(5)), rest.prefix(4).elementsEqual("END:".utf8, by: { $0 & 0xDF == $1 & 0xDF }),
                       let lf = rest.firstIndex(of: 0x0A) {
                        cut = lf + 1
                        break
                    }
                }
                i -= 1
            }
            guard let cut else { return ImportBatch() }
            return parse(upTo: cut)
        }

        public mutating func finish() -> ImportBatch {
            parse(upTo: pending.count)
        }

        private mutating func parse(upTo cut: Int) -> ImportBatch {
            let chunk = Array(pending[..<cut])
            pending.removeFirst(cut)
            guard !chunk.isEmpty else { return ImportBatch() }
            let b = VCard.parse(chunk, lineOffset: lines, cardOffset: cards)
            lines += chunk.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            cards += b.cards
            return b
        }
    }

    static func isVCARD(_ v: ArraySlice<UInt8>) -> Bool {
        v.count == 5 && v.elementsEqual("VCARD".utf8, by: { a, b in a & 0xDF == b })
    }

    /// Splits into physical lines (LF or CRLF), unfolds continuation lines (leading space or
    /// tab) and quoted-printable soft breaks. Returns (first physical line number, bytes); an
    /// unfolded line is a slice of the input, a folded one a slice of a new buffer.
    static func logicalLines(_ bytes: ArraySlice<UInt8>) -> [(Int, ArraySlice<UInt8>)] {
        var out: [(Int, ArraySlice<UInt8>)] = []
        var lineNo = 0
        var start = bytes.startIndex
        var physical: [(Int, ArraySlice<UInt8>)] = []
        physical.reserveCapacity(bytes.count / 24)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            if bytes[i] == 0x0A {
                var end = i
                if end > start, bytes[end - 1] == 0x0D { end -= 1 }
                lineNo += 1
                physical.append((lineNo, bytes[start..<end]))
                start = i + 1
            }
            i += 1
        }
        if start < bytes.endIndex {
            var end = bytes.endIndex
            if bytes[end - 1] == 0x0D { end -= 1 }
            physical.append((lineNo + 1, bytes[start..<end]))
        }
        out.reserveCapacity(physical.count)
        var k = 0
        while k < physical.count {
            let (n, first) = physical[k]
            k += 1
            let continues = k < physical.count && (physical[k].1.first == 0x20 || physical[k].1.first == 0x09)
            if !continues && (first.last != 0x3D || !isQuotedPrintable(first)) {
                out.append((n, first))
                continue
            }
            var line = Array(first)
            while true {
                if k < physical.count, let f = physical[k].1.first, f == 0x20 || f == 0x09 {
                    line += physical[k].1.dropFirst()
                    k += 1
                } else if k < physical.count, line.last == 0x3D /* = */, isQuotedPrintable(line) {
                    line.removeLast()
                    line += physical[k].1
                    k += 1
                } else {
                    break
                }
            }
            out.append((n, line[...]))
        }
        return out
    }

    static func isQuotedPrintable(_ line: some Collection<UInt8>) -> Bool {
        guard let colon = line.firstIndex(of: 0x3A) else { return false }
        let head = String(decoding: line[..<colon], as: UTF8.self).uppercased()
        return head.contains("QUOTED-PRINTABLE")
    }

    static func parseContentLine(_ line: ArraySlice<UInt8>, line lineNo: Int) -> ContentLine? {
        var inQuotes = false
        var colon: Int?
        var firstSemicolon: Int?
        var i = line.startIndex
        while i < line.endIndex {
            let b = line[i]
            if b == 0x22 { inQuotes.toggle() }
            if !inQuotes {
                if b == 0x3A { colon = i; break }
                if b == 0x3B, firstSemicolon == nil { firstSemicolon = i }
            }
            i += 1
        }
        guard let colon else { return nil }
        let nameEnd = firstSemicolon ?? colon
        var nameBytes = line[line.startIndex..<nameEnd]
        var group: String?
        if let dot = nameBytes.firstIndex(of: 0x2E) {
            group = String(decoding: nameBytes[..<dot], as: UTF8.self)
            nameBytes = nameBytes[(dot + 1)...]
        }
        guard !nameBytes.isEmpty else { return nil }
        let name = String(decoding: nameBytes.map { (97...122).contains($0) ? $0 - 32 : $0 }, as: UTF8.self)
        var params: [(String, [String])] = []
        if let semi = firstSemicolon {
            let head = String(decoding: line[(semi + 1)..<colon], as: UTF8.self)
            for p in splitUnquoted(head, on: ";") where !p.isEmpty {
                if let eq = p.firstIndex(of: "=") {
                    let key = p[..<eq].uppercased()
                    let values = splitUnquoted(String(p[p.index(after: eq)...]), on: ",").map { v in
                        v.hasPrefix("\"") && v.hasSuffix("\"") && v.count >= 2 ? String(v.dropFirst().dropLast()) : v
                    }
                    params.append((key, values))
                } else {
                    // vCard 2.1 shorthand: ";HOME;CELL" or ";QUOTED-PRINTABLE".
                    let v = p.uppercased()
                    if v == "QUOTED-PRINTABLE" || v == "BASE64" || v == "8BIT" { params.append(("ENCODING", [v])) } else { params.append(("TYPE", [v])) }
                }
            }
        }
        return ContentLine(line: lineNo, group: group, name: name, params: params, rawValue: line[(colon + 1)...])
    }

    static func splitUnquoted(_ s: String, on sep: Character) -> [String] {
        var out: [String] = []
        var cur = ""
        var q = false
        for ch in s {
            if ch == "\"" { q.toggle() }
            if ch == sep, !q {
                out.append(cur)
                cur = ""
            } else {
                cur.append(ch)
            }
        }
        out.append(cur)
        return out
    }

    /// The property's value as text: quoted-printable and charset decoded, not yet unescaped.
    static func text(_ cl: ContentLine) throws(ImportIssue) -> String {
        if cl.params.isEmpty {
            return String(validating: cl.rawValue, as: UTF8.self) ?? windows1252(Array(cl.rawValue))
        }
        var bytes = Array(cl.rawValue)
        let encoding = cl.param("ENCODING").first?.uppercased()
        if encoding == "QUOTED-PRINTABLE" {
            guard let d = decodeQuotedPrintable(bytes) else { throw ImportIssue(origin: "", reason: "\(cl.name) has invalid quoted-printable") }
            bytes = d
        } else if encoding == "B" || encoding == "BASE64" {
            return ""
        }
        let charset = cl.param("CHARSET").first?.uppercased() ?? "UTF-8"
        switch charset {
        case "UTF-8", "UTF8", "US-ASCII", "ASCII":
            if let s = String(validating: bytes, as: UTF8.self) { return s }
            // No (or a wrong) CHARSET on a non-UTF-8 value: what Outlook and older phones write is
            // Windows-1252, a superset of Latin-1 for every printable byte.
            return windows1252(bytes)
        case "ISO-8859-1", "LATIN1", "LATIN-1", "ISO8859-1", "WINDOWS-1252", "CP1252", "CP-1252":
            return windows1252(bytes)
        default:
            throw ImportIssue(origin: "", reason: "CHARSET=\(charset) is not supported (UTF-8, Windows-1252 and ISO-8859-1 are)")
        }
    }

    /// Windows-1252 → text: 0x80–0x9F are its printable characters (€ ‚ ƒ „ … ’ “ ” – —), not
    /// the C1 controls Latin-1 puts there; every other byte is the Latin-1 code point.
    static func windows1252(_ bytes: [UInt8]) -> String {
        var out = String.UnicodeScalarView()
        for b in bytes {
            if (0x80...0x9F).contains(b), let u = Unicode.Scalar(cp1252High[Int(b - 0x80)]), cp1252High[Int(b - 0x80)] != 0 {
                out.append(u)
            } else {
                out.append(Unicode.Scalar(b))
            }
        }
        return String(out)
    }

    /// Windows-1252 bytes 0x80…0x9F (0 where the code page leaves the byte undefined: kept as is).
    static let cp1252High: [UInt32] = [
        0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017D, 0,
        0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
    ]

    static func decodeQuotedPrintable(_ b: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var i = 0
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 65...70: c - 55
            case 97...102: c - 87
            default: nil
            }
        }
        while i < b.count {
            if b[i] == 0x3D {
                if i == b.count - 1 { break } // trailing soft line break
                guard i + 2 < b.count, let h = hex(b[i + 1]), let l = hex(b[i + 2]) else { return nil }
                out.append(h << 4 | l)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return out
    }

    /// Splits on unescaped `sep` and unescapes each part (`\n`, `\,`, `\;`, `\\`).
    static func components(_ s: String, _ sep: Character) -> [String] {
        if let ascii = sep.asciiValue, let fast = asciiComponents(s, ascii) { return fast }
        return characterComponents(s, sep)
    }

    /// `components` Character by Character: any text.
    static func characterComponents(_ s: String, _ sep: Character) -> [String] {
        var out: [String] = []
        var cur = ""
        var escaped = false
        for ch in s {
            if escaped {
                switch ch {
                case "n", "N": cur.append("\n")
                default: cur.append(ch)
                }
                escaped = false
            } else if ch == "\\" {
                escaped = true
            } else if ch == sep {
                out.append(cur)
                cur = ""
            } else {
                cur.append(ch)
            }
        }
        if escaped { cur.append("\\") }
        out.append(cur)
        return out
    }

    /// `components` of an ASCII value, byte by byte (nil for any other value): every ASCII byte
    /// is a Character but CR LF, which behaves as its two bytes here (neither is an escape, a
    /// separator or `n`), so the result is the Character path's, without building Characters.
    static func asciiComponents(_ s: String, _ sep: UInt8) -> [String]? {
        var s = s
        return s.withUTF8 { bytes -> [String]? in
            var out: [String] = []
            var start = 0
            var cur: [UInt8]? // only once an escape is met: the part's unescaped bytes
            var i = 0
            while i < bytes.count {
                let b = bytes[i]
                guard b < 0x80 else { return nil }
                if b == 0x5C {
                    if cur == nil { cur = Array(bytes[start..<i]) }
                    if i + 1 < bytes.count {
                        let n = bytes[i + 1]
                        guard n < 0x80 else { return nil }
                        cur!.append(n == 0x6E || n == 0x4E ? 0x0A : n)
                        i += 2
                    } else {
                        cur!.append(0x5C)
                        i += 1
                    }
                    continue
                }
                if b == sep {
                    out.append(cur.map { String(decoding: $0, as: UTF8.self) } ?? String(decoding: bytes[start..<i], as: UTF8.self))
                    cur = nil
                    start = i + 1
                } else if cur != nil {
                    cur!.append(b)
                }
                i += 1
            }
            out.append(cur.map { String(decoding: $0, as: UTF8.self) } ?? String(decoding: bytes[start..<bytes.count], as: UTF8.self))
            return out
        }
    }

    static func unescape(_ s: String) -> String {
        guard s.utf8.contains(0x5C) else { return s }
        return components(s, "\u{0}").joined()
    }

    static func trimmed(_ s: String) -> String {
        // Most values start and end with a printable ASCII byte: no Character to build.
        if let f = s.utf8.first, let l = s.utf8.last, (0x21...0x7E).contains(f), (0x21...0x7E).contains(l) { return s }
        guard let f = s.first, let l = s.last, f.isWhitespace || l.isWhitespace else { return s }
        return String(s.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }

    /// What one card's grouped properties (`item1.EMAIL` + `item1.X-ABLabel`, as Apple and
    /// Google write labels) and kind need across its lines.
    struct CardState {
        var isGroup = false
        var groupLabels: [String: String] = [:]
        /// group → (0 phone, 1 email, 2 url; index in the contact's list)
        var groupItems: [(group: String, kind: Int, index: Int)] = []

        func resolveGroupLabels(_ c: inout ImportedContact) {
            for item in groupItems {
                guard let label = groupLabels[item.group] else { continue }
                switch item.kind {
                case 0: c.phones[item.index].label = label
                case 1: c.emails[item.index].label = label
                default: c.urls[item.index].label = label
                }
            }
        }
    }

    /// The label a TYPE parameter gives (`WORK` → work, `CELL` → mobile); nil for the types
    /// that are not labels (VOICE, PREF, INTERNET…).
    static func label(types: [String]) -> String? {
        for t in types {
            switch t {
            case "HOME": return "home"
            case "WORK": return "work"
            case "CELL", "MOBILE", "IPHONE": return "mobile"
            case "FAX": return "fax"
            case "PAGER": return "pager"
            case "MAIN": return "main"
            case "OTHER": return "other"
            default: continue
            }
        }
        return nil
    }

    /// An Apple label: `_$!<Mobile>!$_` → mobile; custom text as written.
    static func abLabel(_ s: String) -> String {
        var v = trimmed(s)
        if v.hasPrefix("_$!<"), v.hasSuffix(">!$_") { v = String(v.dropFirst(4).dropLast(4)) }
        return v.lowercased()
    }

    /// vCard BDAY forms (`1985-12-10`, `19851210`, `--1210`, `--12-10`, with a time after
    /// `T`) → `yyyy-mm-dd` or `--mm-dd`.
    static func birthday(_ raw: String) throws(ImportIssue) -> String {
        let v = raw.split(separator: "T").first.map(String.init) ?? raw
        let digits = v.filter(\.isNumber)
        if v.hasPrefix("--"), digits.count == 4 {
            let r = "--" + digits.prefix(2) + "-" + digits.suffix(2)
            if (try? Field.birthday.validate(r)) != nil { return r }
        } else if digits.count == 8, v.count == 8 || v.count == 10 {
            let r = digits.prefix(4) + "-" + digits.dropFirst(4).prefix(2) + "-" + digits.suffix(2)
            if (try? Field.birthday.validate(String(r))) != nil { return String(r) }
        }
        throw ImportIssue(origin: "", reason: "'\(raw)' is not a date (yyyy-mm-dd or --mm-dd)")
    }

    /// Properties read for their content elsewhere or carrying nothing to keep.
    static let structural: Set<String> = ["VERSION", "PRODID", "REV", "X-ABUID", "X-ABLABEL", "CLIENTPIDMAP", "SOURCE", "NAME", "PROFILE", "X-ADDRESSBOOKSERVER-KIND"]

    static func apply(_ cl: ContentLine, to c: inout ImportedContact, card: inout CardState, dropped: inout [String: Int]) throws(ImportIssue) {
        // The structural names are none of the cases below: they are looked up (a hash of the
        // name) only for the lines that are none of those.
        switch cl.name {
        case "KIND":
            if trimmed(try text(cl)).lowercased() == "group" { card.isGroup = true }
        case "UID":
            c.uid = trimmed(unescape(try text(cl)))
        case "FN":
            let v = trimmed(unescape(try text(cl)))
            if !v.isEmpty { c.fields[.displayName] = v }
        case "N":
            let parts = components(try text(cl), ";").map(trimmed)
            if let f = parts.first, !f.isEmpty { c.fields[.familyName] = f }
            if parts.count > 1, !parts[1].isEmpty { c.fields[.givenName] = parts[1] }
        case "TEL":
            var v = trimmed(unescape(try text(cl)))
            if v.lowercased().hasPrefix("tel:") { v = String(v.dropFirst(4)) }
            guard !v.isEmpty else { return }
            if let g = cl.group { card.groupItems.append((g, 0, c.phones.count)) }
            c.phones.append(ImportedValue(v, raw: cl.param("X-RAW").first, label: cl.param("X-KITH-LABEL").first ?? label(types: cl.types)))
        case "EMAIL":
            let v = trimmed(unescape(try text(cl)))
            guard !v.isEmpty else { return }
            if let g = cl.group { card.groupItems.append((g, 1, c.emails.count)) }
            c.emails.append(ImportedValue(v, raw: cl.param("X-RAW").first, label: cl.param("X-KITH-LABEL").first ?? label(types: cl.types)))
        case "URL":
            let v = trimmed(unescape(try text(cl)))
            guard !v.isEmpty else { return }
            if let g = cl.group { card.groupItems.append((g, 2, c.urls.count)) }
            c.urls.append(ImportedValue(v, label: cl.param("X-KITH-LABEL").first ?? label(types: cl.types)))
        case "ADR":
            guard c.fields[.address] == nil, c.fields[.city] == nil, c.fields[.postalCode] == nil else {
                dropped["ADR (second address)", default: 0] += 1
                return
            }
            let p = components(try text(cl), ";").map(trimmed)
            func at(_ i: Int) -> String { i < p.count ? p[i] : "" }
            let street = [at(0), at(1), at(2)].filter { !$0.isEmpty }.joined(separator: ", ")
            if !street.isEmpty { c.fields[.address] = street }
            if !at(3).isEmpty { c.fields[.city] = at(3) }
            if !at(4).isEmpty { c.fields[.region] = at(4) }
            if !at(5).isEmpty { c.fields[.postalCode] = at(5) }
            if !at(6).isEmpty { c.fields[.country] = at(6) }
        case "ORG":
            let v = components(try text(cl), ";").map(trimmed).filter { !$0.isEmpty }.joined(separator: ", ")
            if !v.isEmpty { c.fields[.organization] = v }
        case "TITLE":
            let v = trimmed(unescape(try text(cl)))
            if !v.isEmpty { c.fields[.title] = v }
        case "NICKNAME":
            let v = components(try text(cl), ",").map(trimmed).filter { !$0.isEmpty }.joined(separator: ", ")
            if !v.isEmpty { c.fields[.nickname] = v }
        case "BDAY":
            let v = trimmed(unescape(try text(cl)))
            if !v.isEmpty { c.fields[.birthday] = try birthday(v) }
        case "NOTE":
            let v = unescape(try text(cl)).replacingOccurrences("\r\n", "\n")
            if !v.isEmpty { c.fields[.notes] = c.fields[.notes].map { $0 + "\n" + v } ?? v }
        case "CATEGORIES":
            for t in components(try text(cl), ",") where !trimmed(t).isEmpty { c.tags.append(trimmed(t)) }
        case "X-KITH-SUPPORT": c.fields[.support] = trimmed(unescape(try text(cl)))
        case "X-KITH-RELATIONSHIP": c.fields[.relationship] = trimmed(unescape(try text(cl)))
        case "X-KITH-CONSENT": c.fields[.consent] = unescape(try text(cl))
        case "X-KITH-VOTER-ID": c.fields[.voterFileID] = trimmed(unescape(try text(cl)))
        case "X-KITH-EMAIL-SUBSCRIPTION": c.fields[.emailSubscription] = trimmed(unescape(try text(cl)))
        case "X-KITH-SMS-SUBSCRIPTION": c.fields[.smsSubscription] = trimmed(unescape(try text(cl)))
        case "X-KITH-EXTERNAL-ID": c.externalIDs.append(trimmed(unescape(try text(cl))))
        case "X-KITH-EVENT":
            let p = components(try text(cl), ";")
            if let k = p.first.map(trimmed), !k.isEmpty { c.events.append(ImportedValue(k, label: p.count > 1 ? p[1] : "")) }
        case "X-KITH-CONVERSATION":
            let p = components(try text(cl), ";")
            guard p.count == 4, let day = Day.parse(p[0]), let ch = Channel(name: p[1]) else {
                throw ImportIssue(origin: "", reason: "X-KITH-CONVERSATION must be yyyy-mm-dd;channel;outcome;note")
            }
            c.log.append(ConversationEntry(day: day, channel: ch, outcome: p[2], note: p[3]))
        case _ where structural.contains(cl.name):
            if cl.name == "X-ABLABEL", let g = cl.group { card.groupLabels[g] = abLabel(unescape(try text(cl))) }
            if cl.name == "X-ADDRESSBOOKSERVER-KIND", trimmed(try text(cl)).lowercased() == "group" { card.isGroup = true }
        default:
            // PHOTO, LOGO, SOUND, KEY, GEO, IMPP, X-SOCIALPROFILE, …: not modelled, counted for
            // the summary (a PHOTO's base64 is never decoded).
            dropped[cl.name, default: 0] += 1
        }
    }

    // MARK: Writing

    /// vCard 4.0 for the contacts, CRLF line endings, lines folded at 75 octets.
    public static func write(_ contacts: [ContactView]) -> String {
        var out = ""
        out.reserveCapacity(contacts.count * 300)
        for c in contacts {
            out += "BEGIN:VCARD\r\nVERSION:4.0\r\n"
            line(&out, "UID:\(c.id)")
            let given = c[.givenName] ?? "", family = c[.familyName] ?? ""
            let fn = c[.displayName] ?? [given, family].filter { !$0.isEmpty }.joined(separator: " ")
            line(&out, "FN:" + escape(fn))
            if !given.isEmpty || !family.isEmpty { line(&out, "N:\(escape(family));\(escape(given));;;") }
            let labels = Dictionary(c.values(.labels).map { ($0.key, $0.payload) }, uniquingKeysWith: { a, _ in a })
            for p in c.values(.phones) {
                line(&out, "TEL" + labelParam(labels["tel:" + p.key]) + (p.payload.isEmpty ? "" : ";X-RAW=\(paramValue(p.payload))") + ":" + escape(p.key))
            }
            for e in c.values(.emails) {
                line(&out, "EMAIL" + labelParam(labels["email:" + e.key]) + (e.payload.isEmpty ? "" : ";X-RAW=\(paramValue(e.payload))") + ":" + escape(e.key))
            }
            for u in c.values(.urls) { line(&out, "URL" + labelParam(u.payload.isEmpty ? nil : u.payload) + ":" + escape(u.key)) }
            let addr = c[.address] ?? "", city = c[.city] ?? "", pc = c[.postalCode] ?? "", region = c[.region] ?? "", country = c[.country] ?? ""
            if !(addr + city + pc + region + country).isEmpty {
                line(&out, "ADR:;;\(escape(addr));\(escape(city));\(escape(region));\(escape(pc));\(escape(country))")
            }
            if let v = c[.organization] { line(&out, "ORG:" + escape(v)) }
            if let v = c[.title] { line(&out, "TITLE:" + escape(v)) }
            if let v = c[.nickname] { line(&out, "NICKNAME:" + escape(v)) }
            // RFC 6350 §4.3.1 basic format: 19851210, or --1210 without the year.
            if let v = c[.birthday] { line(&out, "BDAY:" + (v.hasPrefix("--") ? "--" + v.dropFirst(2).filter { $0 != "-" } : v.filter { $0 != "-" })) }
            if !c.tags.isEmpty { line(&out, "CATEGORIES:" + c.tags.map(escape).joined(separator: ",")) }
            if let n = c[.notes] { line(&out, "NOTE:" + escape(n)) }
            if let v = c[.support] { line(&out, "X-KITH-SUPPORT:" + escape(v)) }
            if let v = c[.relationship] { line(&out, "X-KITH-RELATIONSHIP:" + escape(v)) }
            if let v = c[.consent] { line(&out, "X-KITH-CONSENT:" + escape(v)) }
            if let v = c[.voterFileID] { line(&out, "X-KITH-VOTER-ID:" + escape(v)) }
            if let v = c[.emailSubscription] { line(&out, "X-KITH-EMAIL-SUBSCRIPTION:" + v) }
            if let v = c[.smsSubscription] { line(&out, "X-KITH-SMS-SUBSCRIPTION:" + v) }
            for x in c.values(.externalIDs) { line(&out, "X-KITH-EXTERNAL-ID:" + escape(x.key)) }
            for e in c.values(.events) { line(&out, "X-KITH-EVENT:\(escape(e.key));\(escape(e.payload))") }
            for e in c.log {
                line(&out, "X-KITH-CONVERSATION:\(Day.format(e.day));\(e.channel);\(escape(e.outcome));\(escape(e.note))")
            }
            out += "END:VCARD\r\n"
        }
        return out
    }

    /// `;TYPE=work` for the labels vCard names, `;X-KITH-LABEL="…"` for others, "" for none.
    static func labelParam(_ label: String?) -> String {
        guard let label, !label.isEmpty else { return "" }
        switch label {
        case "home", "work", "fax", "pager", "main", "other": return ";TYPE=\(label)"
        case "mobile": return ";TYPE=cell"
        default: return ";X-KITH-LABEL=\"\(paramValue(label).filter { $0 != "\"" })\""
        }
    }

    static func escape(_ s: String) -> String {
        var o = ""
        o.reserveCapacity(s.utf8.count)
        for ch in s {
            switch ch {
            case "\\": o += "\\\\"
            case ",": o += "\\,"
            case ";": o += "\\;"
            case "\n": o += "\\n"
            case "\r\n": o += "\\n"
            case "\r": break
            default: o.append(ch)
            }
        }
        return o
    }

    /// A parameter value, quoted when it holds `:`, `;` or `,` (RFC 6350 §3.3; DQUOTE dropped).
    static func paramValue(_ s: String) -> String {
        // "\r\n" is one Character: without it, a CR LF in a raw phone or email broke the exported
        // line (found by Fuzz/ target vcard: export, then re-import, failed).
        let clean = s.filter { $0 != "\"" && $0 != "\n" && $0 != "\r" && $0 != "\r\n" }
        return clean.contains(where: { $0 == ":" || $0 == ";" || $0 == "," }) ? "\"\(clean)\"" : clean
    }

    /// Appends one content line, folded so no physical line exceeds 75 octets, never splitting
    /// a UTF-8 sequence.
    static func line(_ out: inout String, _ content: String) {
        let utf8 = Array(content.utf8)
        if utf8.count <= 75 {
            out += content + "\r\n"
            return
        }
        var start = 0
        var limit = 75
        while start < utf8.count {
            var end = min(start + limit, utf8.count)
            while end < utf8.count, end > start, utf8[end] & 0xC0 == 0x80 { end -= 1 }
            if start > 0 { out += " " }
            out += String(decoding: utf8[start..<end], as: UTF8.self) + "\r\n"
            start = end
            limit = 74
        }
    }
}

extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        guard contains(a) else { return self }
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: a) {
            out += rest[..<r.lowerBound]
            out += b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
