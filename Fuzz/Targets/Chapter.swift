import KithChapter
import KithConsent
import KithCRDT
import KithCrypto

enum ChapterTargets {
    /// One membership op as received in a `membership` sync message.
    static func op(_ data: [UInt8]) {
        guard let op = try? MembershipOp(decoding: data) else { return }
        check(op.encoded == data, "a decoded op keeps its bytes")
        _ = op.action.needsAdmin
        if case .create = op.action { _ = try? MembershipLog(genesis: op) }
    }

    /// The header the harness puts before a fuzzed `tag ‖ body` and signs.
    static func signedOp(chapter: ChapterID, parents: [OpID], timestamp: UInt64, by who: Keys.Identity, tagAndBody: ArraySlice<UInt8>) -> [UInt8] {
        var w = ByteWriter(capacity: 512)
        w.u8(1)
        w.raw(chapter.bytes)
        let sorted = Set(parents).sorted()
        w.uvarint(sorted.count)
        for p in sorted { w.raw(p.bytes) }
        w.u64(timestamp)
        w.raw(who.certificate.encoded)
        w.raw(tagAndBody)
        return w.bytes + who.device.signature(for: Domain.membership + w.bytes)
    }

    /// The ops the harness signs from records (see `log`); records that do not decode are skipped.
    static func buildOps(_ records: [[UInt8]]) -> [MembershipOp] {
        var made: [MembershipOp] = []
        var chapter = ChapterID.zero
        var timestamp = Keys.nowMilliseconds
        for p in records {
            guard p.count >= 4 else { continue }
            let who = Keys.identities[Int(p[0]) % Keys.identities.count]
            let isCreate = p[3] == 0x01
            var parents: [OpID] = []
            if !isCreate {
                for bit in 0..<8 where p[1] & (1 << bit) != 0 && bit < made.count { parents.append(made[made.count - 1 - bit].id) }
                if parents.isEmpty, let last = made.last { parents = [last.id] }
            }
            // 255: a peer's op dated at the end of time.
            timestamp = p[2] == 255 ? .max : timestamp &+ UInt64(p[2]) * 1000
            let bytes = signedOp(chapter: isCreate ? .zero : chapter, parents: parents, timestamp: timestamp, by: who, tagAndBody: p[3...])
            guard let op = try? MembershipOp(decoding: bytes) else { continue }
            if isCreate, chapter == .zero { chapter = try! ChapterID(bytes: op.id.bytes.prefix(16)) }
            made.append(op)
        }
        return made
    }

    /// A membership log grown from ops the harness signs, so the fuzzer reaches the log's rules
    /// (ChapterState.evaluate) instead of stopping at signatures. Input: records
    /// `u16 length ‖ author u8 ‖ parent mask u8 ‖ seconds since the previous op u8 (255: the
    /// largest timestamp) ‖ tag ‖ body`:
    /// the author is one of `Keys.identities`; bit i of the mask makes the op cite the i-th latest
    /// op (none: the latest); a create op (tag 1) has no parents and a zero chapter.
    static func log(_ data: [UInt8]) {
        var cursor = Cursor(data)
        var records: [[UInt8]] = []
        while let p = cursor.chunk(), records.count < 32 { records.append(p) }
        let made = buildOps(records)
        guard let genesis = made.first, case .create = genesis.action, var log = try? MembershipLog(genesis: genesis) else { return }
        let receivedAll: Bool
        do {
            try log.receive(made)
            receivedAll = true
        } catch {
            receivedAll = false
        }
        exercise(log)
        // The state depends on the set of ops, not on their order of arrival.
        if receivedAll, log.pendingCount == 0 {
            guard let again = try? MembershipLog(chapter: log.chapter, ops: made.reversed().map(\.encoded)) else {
                check(false, "a log that accepted every op refuses them in reverse order")
                return
            }
            check(again.state == log.state, "the same ops in reverse order give the same chapter state")
            check(again.heads == log.heads, "the same ops in reverse order give the same heads")
        }
    }

    static func exercise(_ log: MembershipLog) {
        let s = log.state
        _ = log.allOps
        for who in Keys.identities {
            _ = s.isMember(who.member.publicKey)
            _ = log.keys(device: who.device.publicKey, agreement: who.agreement)
            _ = log.matchKey(device: who.device.publicKey, agreement: who.agreement)
            for e in s.epochs { _ = s.devicesLackingKey(e) }
            _ = try? log.verifyJoin(joiner: who.certificate, proof: [UInt8](repeating: 7, count: 64), handshakeHash: [1, 2, 3],
                                    nowMilliseconds: Keys.nowMilliseconds)
        }
        _ = s.allDevices
        // What an honest device does next with the log it received: author an op on top of it.
        let admin = Keys.identities[0]
        var copy = log
        _ = try? copy.startEpoch(certificate: admin.certificate, device: admin.device, now: Keys.nowMilliseconds)
    }

    /// Text people paste: invites, pairing codes, organization cards.
    static func pasted(_ data: [UInt8]) {
        let text = String(decoding: data, as: UTF8.self)
        let now = Keys.nowSeconds
        if let i = try? ChapterInvite(text: text, now: now) {
            check((try? ChapterInvite(text: i.text, now: now)) == i, "an invite re-encodes to itself")
            _ = i.key
        }
        if let p = try? PairingCode(text: text, now: now) {
            check((try? PairingCode(text: p.text, now: now)) == p, "a pairing code re-encodes to itself")
        }
        if let o = try? OrganizationCard(text: text) {
            check((try? OrganizationCard(text: o.text)) == o, "an organization card re-encodes to itself")
        }
    }

    /// Device certificates and device revocations: first byte picks raw bytes or fields the
    /// harness signs (so the checks after the signature are reached).
    static func certificates(_ data: [UInt8]) {
        guard let mode = data.first else { return }
        let body = Array(data.dropFirst())
        switch mode % 4 {
        case 0:
            guard let c = try? DeviceCertificate(encoded: body) else { return }
            check(c.encoded == body, "a certificate re-encodes to its bytes")
            _ = try? c.verify(now: Keys.nowSeconds)
            _ = try? c.verify(now: Keys.nowSeconds, expectedMember: Keys.identities[0].member.publicKey)
        case 1:
            if let r = try? DeviceRevocation(encoded: body) { check(r.encoded == body, "a revocation keeps its bytes") }
        case 2:
            // version ‖ (member: the signer's key) ‖ device ‖ at_ms, signed by the harness.
            guard body.count >= 42 else { return }
            let who = Keys.identities[Int(body[0]) % Keys.identities.count]
            var b = [body[1]] + who.member.publicKey.bytes + body[2..<34] + body[34..<42]
            b += who.member.signature(for: Domain.deviceRevoke + b)
            let r = try? DeviceRevocation(encoded: b)
            check((r != nil) == (body[1] == 1), "a signed revocation is accepted exactly when its version is 1")
        default:
            // Fields of a certificate the harness issues: created u64 ‖ expires u64 ‖ device keys.
            var c = Cursor(body)
            let created = UInt64(bigEndianBytes: c.take(8) + [UInt8](repeating: 0, count: 8 - min(8, body.count)))
            let expiresRaw = c.take(8)
            let expires = expiresRaw.count == 8 ? UInt64(bigEndianBytes: expiresRaw) : 0
            let who = Keys.identities[Int(c.byte() ?? 0) % Keys.identities.count]
            let cert = DeviceCertificate.issue(member: who.member, deviceSigningKey: who.device.publicKey,
                                               deviceAgreementKey: who.agreement.publicKey, createdAt: created,
                                               expiresAt: expires == 0 ? nil : expires)
            guard let back = try? DeviceCertificate(encoded: cert.encoded) else { check(false, "an issued certificate does not parse"); return }
            check(back == cert, "an issued certificate round-trips")
            let valid = (try? back.verify(now: Keys.nowSeconds)) != nil
            let expected = created <= Keys.nowSeconds &+ 300 && (expires == 0 || Keys.nowSeconds < expires)
            check(valid == expected, "a certificate is valid exactly inside its window")
        }
    }
}
