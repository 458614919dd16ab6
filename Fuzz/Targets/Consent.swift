import KithChapter
import KithConsent
import KithCRDT
import KithCrypto

enum ConsentTargets {
    /// A chapter affiliated with `Keys.organization`, created by identity 0, with identity 1 as
    /// a member: what the hub checks records against.
    static let hubLog: MembershipLog = {
        let admin = Keys.identities[0]
        let create = MembershipOp.make(chapter: .zero, parents: [], timestamp: Keys.created * 1000, certificate: admin.certificate,
                                       device: admin.device, action: .create(name: "Fuzz chapter", nonce: [UInt8](repeating: 9, count: 16)))
        var log = try! MembershipLog(genesis: create)
        let org = Keys.organization.card
        try! log.append(.affiliate(Affiliation(signingKey: org.signingKey, agreementKey: org.agreementKey, name: org.name,
                                               hub: "hub.example:7500", allowsWithoutContactConsent: false)),
                        certificate: admin.certificate, device: admin.device, now: Keys.created * 1000 + 1)
        try! log.append(.addMember(Keys.identities[1].certificate, admin: false, invite: nil),
                        certificate: admin.certificate, device: admin.device, now: Keys.created * 1000 + 2)
        return log
    }()

    static let sender = Keys.identities[1]

    /// A hub that has approved `hubLog`'s chapter, so records reach its acceptance rules.
    static func approvedHub() -> HubLedger {
        var hub = HubLedger(keys: Keys.organization)
        _ = try! hub.decide(hubLog.chapter, state: hubLog.state, approve: true, nowMilliseconds: Keys.nowMilliseconds)
        return hub
    }

    static func signedGrant(_ body: [UInt8]) -> [UInt8] { Domain.deviceSigned(Domain.grant, body, by: sender) }

    /// Upward record `version ‖ bytes grant ‖ rest` signed by the sender.
    static func signedRecord(version: UInt8, grant: [UInt8], rest: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.u8(version)
        w.lengthPrefixed(grant)
        w.raw(rest)
        return Domain.deviceSigned(Domain.upward, w.bytes, by: sender)
    }

    /// First byte picks: 0 raw bytes into every decoder and the hub; 1 a grant body, 2 a grant
    /// revocation body, 3 a hub answer body, signed by the harness; 4 `u16 length ‖ grant body ‖
    /// record rest` (rest = `uvarint version ‖ bytes sealed`), both signed; 5 `u16 length ‖ grant
    /// body ‖ uvarint version ‖ sealed plaintext`, sealed to the organization and signed.
    static func consent(_ data: [UInt8]) {
        var cursor = Cursor(data)
        guard let mode = cursor.byte() else { return }
        let now = Keys.nowSeconds
        let org = Keys.organization
        var hub = approvedHub()
        switch mode % 6 {
        case 0:
            let raw = cursor.rest()
            _ = try? Grant(encoded: raw, nowSeconds: now)
            _ = try? UpwardRecord(encoded: raw, nowSeconds: now)
            _ = try? GrantRevocation(encoded: raw, nowSeconds: now)
            _ = try? HubAnswer(encoded: raw, organization: org.signing.publicKey)
            _ = try? hub.accept(raw, chapter: hubLog.state, nowMilliseconds: Keys.nowMilliseconds)
            _ = try? hub.revoke(raw, nowMilliseconds: Keys.nowMilliseconds)
        case 1:
            let bytes = signedGrant(cursor.rest())
            if let g = try? Grant(encoded: bytes, nowSeconds: now) {
                check(g.encoded == bytes && g.member == sender.member.publicKey, "a grant keeps its bytes and signer")
                _ = g.isExpired(nowMilliseconds: Keys.nowMilliseconds)
            }
        case 2:
            let bytes = Domain.deviceSigned(Domain.revokeGrant, cursor.rest(), by: sender)
            if (try? GrantRevocation(encoded: bytes, nowSeconds: now)) != nil {
                _ = try? hub.revoke(bytes, nowMilliseconds: Keys.nowMilliseconds)
            }
        case 3:
            let body = cursor.rest()
            let bytes = body + org.signing.signature(for: Domain.hubAnswer + body)
            if let r = try? HubAnswer(encoded: bytes, organization: org.signing.publicKey) {
                check(r.encoded == bytes, "a hub answer keeps its bytes")
            }
        case 4:
            let grant = signedGrant(cursor.chunk() ?? [])
            let bytes = signedRecord(version: 1, grant: grant, rest: cursor.rest())
            record(bytes, &hub)
        default:
            let grant = signedGrant(cursor.chunk() ?? [])
            var rest = ByteWriter()
            rest.uvarint(UInt64(cursor.byte() ?? 1))
            rest.lengthPrefixed(SealedBox.seal(cursor.rest(), to: org.agreement.publicKey))
            record(signedRecord(version: 1, grant: grant, rest: rest.bytes), &hub)
        }
    }

    static func record(_ bytes: [UInt8], _ hub: inout HubLedger) {
        guard let r = try? UpwardRecord(encoded: bytes, nowSeconds: Keys.nowSeconds) else { return }
        check(r.encoded == bytes, "a record keeps its bytes")
        _ = try? r.open(with: Keys.organization.agreement)
        guard let receipt = try? hub.accept(bytes, chapter: hubLog.state, nowMilliseconds: Keys.nowMilliseconds) else { return }
        check((try? HubAnswer(encoded: receipt.encoded, organization: Keys.organization.signing.publicKey)) == receipt,
              "the hub's receipt verifies")
        // The same record again is a retry (same receipt); a revocation then deletes it.
        check((try? hub.accept(bytes, chapter: hubLog.state, nowMilliseconds: Keys.nowMilliseconds)) == receipt, "a retry gets the same receipt")
        var w = ByteWriter()
        w.u8(1)
        w.raw(r.grant.id)
        w.raw(r.grant.organization.bytes)
        w.u64(Keys.nowMilliseconds)
        let revocation = Domain.deviceSigned(Domain.revokeGrant, w.bytes, by: sender)
        check((try? hub.revoke(revocation, nowMilliseconds: Keys.nowMilliseconds)) != nil, "the grant's member can revoke it")
        check(hub.held[GrantKey(member: r.grant.member, grant: r.grant.id)] == nil, "a revoked grant's record is deleted")
        check((try? hub.accept(bytes, chapter: hubLog.state, nowMilliseconds: Keys.nowMilliseconds)) == nil, "a revoked grant's record is refused")
        _ = hub.expire(nowMilliseconds: .max)
    }
}
