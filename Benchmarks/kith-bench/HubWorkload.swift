import KithChapter
import KithConsent
import KithCRDT
import KithCrypto

/// The records both hub benchmarks make (`kith-bench hub` sends them to a hub, `kith-bench
/// hub-export` writes them straight into a store): contact `i`'s grant of a few fields to the
/// organization, and the upward record carrying its values sealed to the organization.
enum HubWorkload {
    static let fields = ["name", "emails", "phones"]
    static let purpose = "GOTV calls"

    /// Contact `i`'s values: distinct per contact, shaped like real ones, with contact consent.
    static func values(_ i: Int) -> [(String, String)] {
        [("name", "Person \(i) Benchmark"), ("emails", "person\(i)@example.org"), ("phones", "+44 7700 9\(String(format: "%05d", i % 100_000))"),
         ("consent", "share;2026-11-01;form")]
    }

    /// Contact `i`'s grant (made at `createdAt`, never expiring) and its record, version 1.
    static func record(_ i: Int, chapter: ChapterID, organization org: OrganizationKeys, certificate: DeviceCertificate, device: Ed25519.PrivateKey,
                       createdAt: UInt64) -> (grant: Grant, record: UpwardRecord) {
        let g = Grant.make(chapter: chapter, organization: org.signing.publicKey, contact: ContactID(high: 1, low: UInt64(i)), fields: fields,
                           purpose: purpose, createdAt: createdAt, expiresAt: nil, certificate: certificate, device: device)
        // The grant was just made for this organization and these values: making the record cannot fail.
        let record = try! UpwardRecord.make(grant: g, version: 1, values: values(i), to: org.agreement.publicKey, certificate: certificate, device: device)
        return (g, record)
    }
}
