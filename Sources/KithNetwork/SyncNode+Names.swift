import KithChapter
import KithCrypto

/// Display names (the membership log's `set name` ops, Protocol/chapters.md §2) and this
/// member's devices, as `kith name`, `kith device list` and every list of members show them.
extension SyncNode {
    /// One of this member's devices, as `kith device list` shows it.
    public struct DeviceInfo: Sendable, Codable {
        public let device: String
        public let fingerprint: String
        public let name: String?
        /// The device this daemon runs on.
        public let current: Bool
        public let connected: Bool
        public let revoked: Bool
        /// Chapters whose membership log lists it.
        public let chapters: Int
    }

    /// This member's other devices known here: connected ones and those chapters list.
    func ownDevicesKnown() -> Set<Ed25519.PublicKey> {
        var known = Set(peers.values.filter { $0.identity.member == identity.member }.map(\.identity.device))
        for ch in chapters.values {
            known.formUnion(ch.log?.state.members[identity.member]?.devices.keys.map { $0 } ?? [])
        }
        return known
    }

    /// The name a member or device gave itself, from the first chapter (by id) whose log has one.
    public func displayName(of key: Ed25519.PublicKey) -> String? {
        for ch in chapters.values.sorted(by: { $0.id < $1.id }) {
            if let n = ch.log?.state.names[key] { return n }
        }
        return nil
    }

    /// Every name in a chapter's log, by key text.
    func names(in ch: Chapter) -> [String: String] {
        Dictionary(uniqueKeysWithValues: (ch.log?.state.names ?? [:]).map { ($0.key.description, $0.value) })
    }

    public func deviceList() -> [DeviceInfo] {
        let connected = Set(peers.values.filter { $0.identity.member == identity.member }.map(\.identity.device))
        let all = ownDevicesKnown().union([identity.device]).union(revokedDevices)
        return all.sorted { ($0 == identity.device ? 0 : 1, $0) < ($1 == identity.device ? 0 : 1, $1) }.map { d in
            DeviceInfo(device: d.description, fingerprint: KeyFingerprint.of(d), name: displayName(of: d), current: d == identity.device,
                       connected: connected.contains(d), revoked: revokedDevices.contains(d),
                       chapters: chapters.values.filter { $0.log?.state.members[identity.member]?.devices[d] != nil }.count)
        }
    }

    /// `kith name set`: names this member (`device` nil) or one of its devices (key, prefix of 4+
    /// characters or fingerprint) in the log of every chapter the member is in. Returns the
    /// named key and how many chapters carry the name.
    public func setName(_ name: String, device reference: String?) throws(ChapterCommandError) -> (subject: String, chapters: Int) {
        if let problem = MembershipAction.problem(withName: name) { throw ChapterCommandError(problem) }
        let subject: Ed25519.PublicKey
        if let reference {
            let candidates = ownDevicesKnown().union([identity.device])
            let matches = candidates.filter { KeyFingerprint.names($0, reference) }
            guard matches.count == 1, let only = matches.first else {
                throw ChapterCommandError(matches.isEmpty
                    ? "no device of yours '\(reference)' is known here (see kith device list); you can name only your own devices"
                    : "'\(reference)' matches \(matches.count) of your devices; give more characters")
            }
            subject = only
        } else {
            subject = identity.member
        }
        let mine = chapters.values.filter { !$0.relayOnly && $0.log?.state.isMember(identity.member) == true }.sorted { $0.id < $1.id }
        guard !mine.isEmpty else {
            throw ChapterCommandError("names travel in the membership logs of your chapters, and you are in none yet (kith chapter create or join first)")
        }
        let id = identity, now = clock()
        for ch in mine {
            guard var log = ch.log, log.state.names[subject] != (name.isEmpty ? nil : name) else { continue }
            let op = try wrap { try log.append(.setName(subject: subject, name: name), certificate: id.certificate, device: id.deviceKey, now: now) }
            ch.log = log
            try wrap { try logChanged(ch, new: [op]) }
        }
        return (subject.description, mine.count)
    }
}
