import Foundation
import KithConsent
import KithCrypto
import KithNetwork

/// CSV files for staff to upload by hand (Protocol/consent.md §4.5): new and updated records go
/// into a new file in `directory` each round, in Action Network's upload format or VAN's bulk
/// upload format; every record's file is a place in its trail. When a grant is revoked or
/// expires, its rows are written to a deletion list (`<prefix>deletions-<time>.csv`: file,
/// kith_id, asked_at — no personal data) and stay "awaiting staff confirmation" until staff run
/// `kithd hub confirm-deletion <file>`.
public struct FileExportConnector: HubConnector {
    public enum Format: String, Sendable, CaseIterable {
        /// Action Network's list upload: a header row of its field names (email, first_name,
        /// last_name, zip_code, phone) plus custom columns (kith_id, purpose, chapter).
        case actionNetwork = "action-network-csv"
        /// VAN's bulk upload: FirstName, LastName, Email, Phone, Zip5 plus KithID, Purpose, Chapter.
        case van = "van-csv"

        var prefix: String { self == .actionNetwork ? "action-network-" : "van-" }
        var header: [String] {
            switch self {
            case .actionNetwork: ["email", "first_name", "last_name", "zip_code", "phone", "kith_id", "purpose", "chapter"]
            case .van: ["FirstName", "LastName", "Email", "Phone", "Zip5", "KithID", "Purpose", "Chapter"]
            }
        }
    }

    public let name: String
    public let format: Format
    public let directory: String
    private let clock: @Sendable () -> UInt64

    public init(name: String, format: Format, directory: String, clock: @escaping @Sendable () -> UInt64) {
        self.name = name
        self.format = format
        self.directory = directory
        self.clock = clock
    }

    public func owns(_ place: RecordPlace) -> Bool {
        place.kind == .file && place.name.hasPrefix(format.prefix) && !place.name.hasPrefix(format.prefix + "deletions-")
    }

    /// "Ada Lovelace King" → ("Ada Lovelace", "King"); one word is a first name.
    static func split(_ name: String) -> (String, String) {
        let parts = name.split(separator: " ")
        guard parts.count > 1 else { return (name, "") }
        return (parts.dropLast().joined(separator: " "), String(parts.last!))
    }

    /// The first of a joined set value ("a@x.org, b@x.org" → "a@x.org").
    static func first(_ v: String?) -> String { v.map { String($0.split(separator: ",").first ?? "").trimmingCharacters(in: .whitespaces) } ?? "" }

    func row(_ d: HubDelivery) -> [String] {
        let (given, family) = Self.split(d.value("name") ?? "")
        let email = Self.first(d.value("emails")), phone = Self.first(d.value("phones")), zip = Self.first(d.value("postalCode") ?? d.value("zip"))
        switch format {
        case .actionNetwork: return [email, given, family, zip, phone, d.kithID, d.grant.purpose, d.chapterName]
        case .van: return [given, family, email, phone, zip, d.kithID, d.grant.purpose, d.chapterName]
        }
    }

    static func stamp(_ ms: UInt64) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000)) + String(format: "-%03d", ms % 1000)
    }

    static func csv(_ rows: [[String]]) -> String { rows.map { $0.map(HubExport.csvCell).joined(separator: ",") }.joined(separator: "\r\n") + "\r\n" }

    /// Writes `text` as a new file (0600) atomically: staff never pick up half a file.
    func write(_ file: String, _ text: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = directory + "/" + file, temporary = directory + "/." + file + ".part"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw RetractionFailure("cannot write \(temporary)")
        }
        let fd = open(temporary, O_RDONLY)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw RetractionFailure("cannot rename \(temporary) to \(path): errno \(errno)")
        }
    }

    public func deliver(_ records: [HubDelivery]) async -> [Result<Delivered, RetractionFailure>] {
        let file = format.prefix + Self.stamp(clock()) + ".csv"
        do {
            try write(file, Self.csv([format.header] + records.map(row)))
        } catch {
            let f = error as? RetractionFailure ?? RetractionFailure("cannot write \(file): \(error)")
            return records.map { _ in .failure(f) }
        }
        return records.map { _ in .success(Delivered(place: .file(file), externalID: "")) }
    }

    public func retract(_ items: [HubRetractionItem]) async -> [Result<Retracted, RetractionFailure>] {
        let list = format.prefix + "deletions-" + Self.stamp(clock()) + ".csv"
        let rows = items.map { [$0.entry.place.name, $0.kithID, Self.stamp($0.requestedAt)] }
        do {
            try write(list, Self.csv([["file", "kith_id", "asked_at"]] + rows))
        } catch {
            let f = error as? RetractionFailure ?? RetractionFailure("cannot write \(list): \(error)")
            return items.map { _ in .failure(f) }
        }
        return items.map { _ in .success(Retracted(.awaitingStaff, reference: list)) }
    }
}
