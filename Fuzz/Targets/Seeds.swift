#if canImport(Glibc)
import Glibc
#endif
import KithChapter
import KithConsent
import KithCRDT
import KithCrypto
import KithSync

/// The seed corpora, built from the real encoders with the fixed keys (deterministic: Ed25519
/// signatures are, and nothing here seals with fresh randomness). `scripts/fuzz --seeds`
/// rewrites `Fuzz/corpus/` from them.
enum Seeds {
    static func write(_ targets: [FuzzTarget], to dir: String) {
        mkdir(dir, 0o755)
        for t in targets {
            let sub = dir + "/" + t.name
            mkdir(sub, 0o755)
            for (i, seed) in t.seeds().enumerated() {
                let path = sub + "/seed-" + (i < 10 ? "0" : "") + String(i)
                guard let f = fopen(path, "wb") else { printError("kith-fuzz: cannot write \(path)\n"); exit(1) }
                _ = seed.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count, f) }
                fclose(f)
            }
        }
    }

    // MARK: Contacts and changes

    static let device = Keys.identities[0].device
    static let other = Keys.identities[1].device
    static let contactA = ContactID(high: 0x0102_0304_0506_0708, low: 0x1112_1314_1516_1718)
    static let contactB = ContactID(high: 0x2122_2324_2526_2728, low: 0x3132_3334_3536_3738)
    static let t0 = HybridTimestamp(milliseconds: Keys.nowMilliseconds)

    static var edits: [ContactEdit] {
        [
            ContactEdit(contact: contactA, ops: [
                .setField(.givenName, "Ada"), .setField(.familyName, "Lovelace"), .setField(.support, "4"),
                .setField(.relationship, "friend"), .setField(.consent, "share;2024-05-01;at the door"),
            ]),
            ContactEdit(contact: contactB, ops: [
                .setField(.displayName, "Grace H."), .add(.phones, "+442079460018", payload: "020 7946 0018"),
                .add(.emails, "grace@example.org"), .add(.tags, "volunteer"),
                .add(.matchTokens, key: ArraySlice([UInt8](repeating: 0xAB, count: 16)), payload: []),
            ]),
            ContactEdit(contact: contactA, ops: [
                .knows(member: Keys.identities[0].member.publicKey, strength: 3), .link(to: contactB),
                .remove(.tags, "volunteer", observed: [OpRef(device: device.publicKey, seq: 1, block: 1, op: 3),
                                                       OpRef(device: other.publicKey, seq: 2, block: 0, op: 0)]),
                .logConversation(ConversationEntry(day: 19_800, channel: .door, outcome: "supportive", note: "wants a yard sign")),
                .setField(.notes, "line one\nline two"),
            ]),
            ContactEdit(contact: contactB, ops: [.delete]),
            ContactEdit(contact: contactA, ops: [.forget]),
        ]
    }

    /// Four changes of one device: a hash chain, timestamps with and without counters.
    static let chain: [Change] = {
        let e = edits
        let plan: [([ContactEdit], HybridTimestamp)] = [
            ([e[0], e[1]], t0),
            ([e[2]], HybridTimestamp(milliseconds: Keys.nowMilliseconds + 5, counter: 2)),
            ([e[3]], HybridTimestamp(milliseconds: Keys.nowMilliseconds + 5, counter: 3)),
            ([e[4]], HybridTimestamp(milliseconds: Keys.nowMilliseconds + 900)),
        ]
        var out: [Change] = []
        for (i, (edits, ts)) in plan.enumerated() {
            out.append(try! Change.make(scope: CRDTTargets.scope, signer: device, seq: UInt64(i + 1),
                                        previous: out.last?.id ?? .zero, timestamp: ts, edits: edits))
        }
        return out
    }()

    static func change() -> [[UInt8]] {
        chain.map(\.encoded) + [chain[1].erasing([contactA]).encoded]
    }

    /// A run whose first seq is 2^64-1 (it trapped `seq += 1` in ChangeRun.decode).
    static var runWithMaximalSeq: [UInt8] {
        var w = ByteWriter()
        w.raw(device.publicKey.bytes)
        w.uvarint(UInt64.max)
        w.raw([UInt8](repeating: 0, count: 32))
        w.u64(t0.rawValue)
        w.uvarint(1) // one change
        w.uvarint(0) // ms delta
        w.uvarint(0) // one block, no counter
        w.uvarint(17 << 1)
        w.raw(contactA.bytes + [0x50] /* delete */)
        w.raw([UInt8](repeating: 0, count: 64))
        return w.bytes
    }

    static func run() -> [[UInt8]] {
        [ChangeRun.encode(chain[0..<3]), ChangeRun.encode(chain[1..<2]), ChangeRun.encode(chain[...]), runWithMaximalSeq]
    }

    static func edit() -> [[UInt8]] { edits.map(\.encoded) }

    static func framed(_ changes: [Change]) -> [UInt8] {
        var w = ByteWriter()
        for c in changes { w.lengthPrefixed(c.encoded) }
        return w.bytes
    }

    static func replica() -> [[UInt8]] {
        let otherChain = try! Change.make(scope: CRDTTargets.scope, signer: other, seq: 1, previous: .zero, timestamp: t0,
                                          edits: [ContactEdit(contact: contactB, ops: [.add(.tags, "donor")])])
        return [framed(Array(chain.prefix(3))), framed([chain[3], chain[2], otherChain, chain[0], chain[1].erasing([contactA])])]
    }

    // MARK: Sync

    static func syncMessage() -> [[UInt8]] {
        var vv = VersionVector()
        vv[device.publicKey] = 3
        vv[other.publicKey] = 1
        let chapter = [UInt8](repeating: 0xC1, count: 16)
        let grant = Domain.deviceSigned(Domain.grant, grantBody(), by: ConsentTargets.sender)
        let messages: [SyncMessage] = [
            .hello(version: SyncMessage.protocolVersion, scopes: [CRDTTargets.scope, ScopeID(name: "other")]),
            .vector(scope: CRDTTargets.scope, vv),
            .changes(scope: CRDTTargets.scope, [chain[3]]),
            .run(scope: CRDTTargets.scope, Array(chain[2..<4])),
            .caughtUp(scope: CRDTTargets.scope),
            .membership(chapter: ConsentTargets.hubLog.chapter.bytes, ops: ConsentTargets.hubLog.allOps.prefix(1).map(\.encoded)),
            .join(chapter: chapter, proof: [UInt8](repeating: 0x50, count: 64)),
            .joinRefused(reason: "the invite has expired"),
            .revocations([revocation().encoded]),
            .pair(proof: [UInt8](repeating: 0x33, count: 32)),
            .paired(certificate: Keys.identities[2].certificate.encoded),
            .joinHeld(reason: "an admin must approve"),
            .upward(record: grant),
            .revokeGrant(revocation: [1, 2, 3]),
            .hubAnswer([UInt8](repeating: 0x44, count: 40)),
            .notDelivered(reason: "the hub is unreachable"),
            .forwardUpward(id: 7, chapter: chapter, message: SyncMessage.upward(record: [9, 9]).encoded),
            .forwardAnswer(id: 7, message: SyncMessage.notDelivered(reason: "no").encoded),
        ]
        return messages.map(\.encoded)
    }

    static func syncSession() -> [[UInt8]] {
        var vv = VersionVector()
        vv[device.publicKey] = 1
        let fresh = try! Change.make(scope: CRDTTargets.scope, signer: other, seq: 1, previous: .zero, timestamp: t0,
                                     edits: [ContactEdit(contact: contactB, ops: [.add(.tags, "donor")])])
        func script(_ messages: [SyncMessage]) -> [UInt8] { messages.flatMap { Cursor.chunk($0.encoded) } }
        let hello = SyncMessage.hello(version: SyncMessage.protocolVersion, scopes: [CRDTTargets.scope])
        // A vector claiming a seq above Int.max for a device the replica holds (it trapped
        // Replica.changes(missingFrom:)).
        var huge = VersionVector()
        huge[device.publicKey] = .max
        return [
            script([hello, .changes(scope: CRDTTargets.scope, [fresh]), .caughtUp(scope: CRDTTargets.scope), .vector(scope: CRDTTargets.scope, vv)]),
            script([hello, .run(scope: CRDTTargets.scope, [fresh]), .membership(chapter: [UInt8](repeating: 1, count: 16), ops: [[1, 2]]),
                    .revocations([[3]]), .unknown(type: 0x7F), .vector(scope: CRDTTargets.scope, VersionVector())]),
            script([.vector(scope: CRDTTargets.scope, vv), hello, hello]),
            script([hello, .vector(scope: CRDTTargets.scope, huge)]),
        ]
    }

    static func framing() -> [[UInt8]] {
        let hello = SyncMessage.hello(version: 1, scopes: [CRDTTargets.scope]).encoded
        let big = SyncMessage.changes(scope: CRDTTargets.scope, chain).encoded
        let half = big.count / 2
        return [
            LengthPrefixedReader.frame([0] + hello),
            LengthPrefixedReader.frame([1] + big[..<half]) + LengthPrefixedReader.frame([0] + big[half...]),
            LengthPrefixedReader.frame([0] + hello) + [0x00],
        ]
    }

    static func step(_ action: UInt8, _ data: [UInt8] = []) -> [UInt8] { [action, UInt8(data.count)] + data }

    static func noise() -> [[UInt8]] {
        let certA = Keys.identities[0].certificate.encoded, certB = Keys.identities[1].certificate.encoded
        let honest = step(0) + step(2) + step(1, certB) + step(3) + step(0, certA) + step(2)
            + step(6, Array("hello".utf8)) + step(7, Array("bye".utf8)) + step(8, [UInt8](repeating: 1, count: 20))
        return [
            honest,
            step(0) + step(2) + step(1) + step(3, [40, 1]) + step(0) + step(2),
            step(0) + step(2) + step(1) + step(3) + step(0) + step(2, [60, 0x80]),
            step(5, [UInt8](repeating: 0, count: 32)) + step(1) + step(3),
            step(1) + step(3) + step(0) + step(0) + step(4, [UInt8](repeating: 9, count: 48)),
        ]
    }

    static func lan() -> [[UInt8]] {
        [LANAnnouncement(key: SyncTargets.lanKey, port: 7400, instance: [1, 2, 3, 4, 5, 6, 7, 8], nowSeconds: Keys.nowSeconds).encoded,
         LANAnnouncement(key: SyncTargets.lanKey, port: 9, instance: [8, 7, 6, 5, 4, 3, 2, 1], nowSeconds: Keys.nowSeconds - 300).encoded]
    }

    // MARK: Chapters

    static let envelope = [UInt8](repeating: 0xE0, count: KeyEnvelope.sealedLength)

    static func op(_ action: MembershipAction, by who: Keys.Identity = Keys.identities[0], parents: [OpID], chapter: ChapterID,
                   at timestamp: UInt64 = Keys.nowMilliseconds) -> MembershipOp {
        MembershipOp.make(chapter: chapter, parents: parents, timestamp: timestamp, certificate: who.certificate,
                          device: who.device, action: action)
    }

    static func membershipOp() -> [[UInt8]] {
        let log = ConsentTargets.hubLog
        let p = [log.allOps.last!.id], c = log.chapter
        let i1 = Keys.identities[1]
        let ops: [MembershipAction] = [
            .addDevice(Keys.identities[4].certificate),
            .removeMember(i1.member.publicKey),
            .revokeDevice(Keys.identities[4].device.publicKey),
            .setAdmin(i1.member.publicKey, true),
            .epoch(check: [UInt8](repeating: 0xCC, count: 16), envelopes: [KeyEnvelope(device: i1.device.publicKey, sealed: envelope)]),
            .shareKey(epoch: p[0], envelopes: [KeyEnvelope(device: i1.device.publicKey, sealed: envelope)]),
            .invite(key: Keys.ed(0x70).publicKey, expiresAt: Keys.nowMilliseconds + 86_400_000, uses: 3, approval: true),
            .leave,
        ]
        // The log's create and affiliate ops, and the other actions (the log's add-member op is
        // left out: the add-device op covers a certificate in the body).
        return log.allOps.prefix(2).map(\.encoded) + ops.map { op($0, parents: p, chapter: c).encoded }
    }

    /// `tag ‖ body` of an op (what a membership-log record carries).
    static func tagAndBody(_ op: MembershipOp) -> [UInt8] {
        let start = 1 + 16 + 1 + 32 * op.parents.count + 8 + DeviceCertificate.encodedLength
        return Array(op.encoded[start..<(op.encoded.count - 64)])
    }

    static func record(_ author: UInt8, _ mask: UInt8, _ action: MembershipAction) -> [UInt8] {
        let log = ConsentTargets.hubLog
        // Only `tag ‖ body` is kept: sign it at a time every identity's certificate covers (the
        // certificate of identity 3 expires a day after issue).
        let at = Keys.created * 1000 + 1000
        let made: MembershipOp
        if case .create = action {
            made = op(action, parents: [], chapter: .zero, at: at)
        } else {
            made = op(action, parents: [log.genesis.id], chapter: log.chapter, at: at)
        }
        return [author, mask, 1] + tagAndBody(made)
    }

    static func script(_ records: [[UInt8]]) -> [UInt8] { records.flatMap { Cursor.chunk($0) } }

    static func membershipLog() -> [[UInt8]] {
        let ids = Keys.identities
        let org = Keys.organization.card
        var base: [[UInt8]] = [
            record(0, 0, .create(name: "Fuzz chapter", nonce: [UInt8](repeating: 1, count: 16))),
            record(0, 0, .addMember(ids[1].certificate, admin: false, invite: nil)),
            record(0, 0, .addDevice(ids[4].certificate)),
            record(0, 0, .invite(key: Keys.ed(0x71).publicKey, expiresAt: Keys.nowMilliseconds + 86_400_000, uses: 1, approval: false)),
        ]
        let inviteID = ChapterTargets.buildOps(base).last!.id
        base += [
            record(1, 0, .addMember(ids[2].certificate, admin: false, invite: inviteID)),
            record(0, 0, .epoch(check: [UInt8](repeating: 0xCC, count: 16), envelopes: [
                KeyEnvelope(device: ids[0].device.publicKey, sealed: envelope), KeyEnvelope(device: ids[1].device.publicKey, sealed: envelope),
            ])),
        ]
        let epochID = ChapterTargets.buildOps(base).last!.id
        base.append(record(0, 0, .shareKey(epoch: epochID, envelopes: [KeyEnvelope(device: ids[4].device.publicKey, sealed: envelope)])))
        let concurrent = base + [
            record(0, 0, .setAdmin(ids[1].member.publicKey, true)),
            record(1, 0, .addMember(ids[3].certificate, admin: true, invite: nil)),
            record(0, 2, .removeMember(ids[1].member.publicKey)), // concurrent with the add above
            record(2, 0, .leave),
            record(0, 0, .revokeDevice(ids[4].device.publicKey)),
            record(0, 0, .affiliate(Affiliation(signingKey: org.signingKey, agreementKey: org.agreementKey, name: org.name,
                                                hub: "hub.example:7500", allowsWithoutContactConsent: true))),
        ]
        // An op dated at the end of time as the head (it trapped `latest + 1` in MembershipLog.append).
        var late = Array(base.prefix(3))
        late[2][2] = 255
        return [script(Array(base.prefix(3))), script(concurrent), script(late)]
    }

    static func pasted() -> [[UInt8]] {
        let invite = ChapterInvite(chapter: ConsentTargets.hubLog.chapter, seed: [UInt8](repeating: 0x5E, count: 32),
                                   admin: Keys.identities[0].device.publicKey, expiresAt: Keys.nowSeconds + 86_400, hint: "192.0.2.7:7400")
        let pairing = PairingCode(member: Keys.identities[0].member.publicKey, token: [UInt8](repeating: 0x70, count: 16),
                                  expiresAt: Keys.nowSeconds + 600, hint: "[2001:db8::1]:7400")
        return [Array(invite.text.utf8), Array(("  " + pairing.text + "\n").utf8), Array(Keys.organization.card.text.utf8)]
    }

    static func revocation() -> DeviceRevocation {
        DeviceRevocation.make(member: Keys.identities[0].member, device: Keys.identities[4].device.publicKey,
                              atMilliseconds: Keys.nowMilliseconds)
    }

    static func certificates() -> [[UInt8]] {
        var fields: [UInt8] = []
        fields.appendBigEndian(Keys.created)
        fields.appendBigEndian(Keys.nowSeconds + 10)
        var revoke: [UInt8] = [0, 1] + Keys.identities[4].device.publicKey.bytes
        revoke.appendBigEndian(Keys.nowMilliseconds)
        return [[0] + Keys.identities[0].certificate.encoded, [0] + Keys.identities[3].certificate.encoded,
                [1] + revocation().encoded, [2] + revoke, [3] + fields + [2]]
    }

    // MARK: Consent

    static func grantBody(fields: String = "name,emails,consent", expires: UInt64 = 0) -> [UInt8] {
        var w = ByteWriter()
        w.u8(1)
        w.raw([UInt8](repeating: 0x6A, count: 16))
        w.raw(ConsentTargets.hubLog.chapter.bytes)
        w.raw(Keys.organization.signing.publicKey.bytes)
        w.raw(contactA.bytes)
        w.text(fields)
        w.text("GOTV calls")
        w.u64(Keys.nowMilliseconds - 1000)
        w.u64(expires)
        return w.bytes
    }

    static func fieldValues(_ pairs: [(String, String)]) -> [UInt8] {
        var w = ByteWriter()
        w.uvarint(pairs.count)
        for (k, v) in pairs {
            w.text(k)
            w.text(v)
        }
        return w.bytes
    }

    static func consent() -> [[UInt8]] {
        let grant = grantBody()
        var revoke: [UInt8] = [1] + [UInt8](repeating: 0x6A, count: 16) + Keys.organization.signing.publicKey.bytes
        revoke.appendBigEndian(Keys.nowMilliseconds)
        var receipt = ByteWriter()
        receipt.u8(1)
        receipt.u8(1)
        receipt.raw([UInt8](repeating: 0x6A, count: 16))
        receipt.uvarint(3)
        receipt.raw([UInt8](repeating: 0x55, count: 32))
        receipt.u8(1)
        receipt.u64(Keys.nowMilliseconds)
        var junkSealed = ByteWriter()
        junkSealed.uvarint(2)
        junkSealed.lengthPrefixed([UInt8](repeating: 0x99, count: 60))
        let share = fieldValues([("name", "Ada Lovelace"), ("emails", "ada@example.org"), ("consent", "share;2024-05-01;door")])
        let contactOnly = fieldValues([("name", "Ada"), ("consent", "contact;2024-05-01;door")])
        return [
            [1] + grant,
            [1] + grantBody(fields: "name", expires: Keys.nowMilliseconds + 5000),
            [2] + revoke,
            [3] + receipt.bytes,
            [4] + Cursor.chunk(grant) + junkSealed.bytes,
            [5] + Cursor.chunk(grant) + [2] + share,
            [5] + Cursor.chunk(grantBody(fields: "name")) + [1] + contactOnly,
            [0] + ConsentTargets.signedGrant(grant),
            [0] + ConsentTargets.signedRecord(version: 1, grant: ConsentTargets.signedGrant(grant), rest: junkSealed.bytes),
        ]
    }

    static func keyring() -> [[UInt8]] {
        let storage = try! SymmetricKey(bytes: [UInt8](repeating: 4, count: 32))
        let full = KeyRing(memberKey: Keys.ed(1), deviceSigningKey: Keys.ed(2), deviceAgreementKey: Keys.x(3), storageKey: storage)
        let secondary = KeyRing(memberKey: nil, deviceSigningKey: Keys.ed(2), deviceAgreementKey: Keys.x(3), storageKey: storage)
        var protected = KeyRing.magic + [KeyRing.version, 1]
        protected.appendBigEndian(UInt64(2))
        protected.appendBigEndian(UInt64(67_108_864))
        protected += [UInt8](repeating: 0x5A, count: 16 + 24 + 40)
        return [try! full.encoded(), try! secondary.encoded(), protected]
    }

    // MARK: Control socket and interchange

    static func control() -> [[UInt8]] {
        let e = edits.map { Base64URL.encode($0.encoded) }
        let lines = [
            "{\"op\":\"commit\",\"batches\":[[\"\(e[0])\",\"\(e[1])\"],[\"\(e[2])\"]]}",
            "{\"op\":\"status\"}",
            "{\"op\":\"chapter-edit\",\"chapter\":\"\(ConsentTargets.hubLog.chapter)\",\"contact\":\"\(contactA)\",\"edit\":\"\(e[2])\",\"knows\":3}",
            "{\"op\":\"consent-grant\",\"contacts\":[\"\(contactA)\"],\"fields\":\"name,emails\",\"purpose\":\"GOTV\",\"expires\":7776000}",
            "{\"op\":\"device-pair\",\"expires\":600,\"hint\":\"192.0.2.1:7400\",\"nested\":{\"a\":[1,2.5,null,true,\"\\u00e9\"]}}",
        ]
        return lines.map { Array(($0 + "\n").utf8) }
    }

    static func vcard() -> [[UInt8]] {
        let cards = [
            """
            BEGIN:VCARD\r
            VERSION:4.0\r
            UID:urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1\r
            FN:Ada Lovelace\r
            N:Lovelace;Ada;;;\r
            TEL;TYPE=cell;VALUE=uri:tel:+44-20-7946-0018\r
            EMAIL;TYPE=work:ada@example.org\r
            ADR;TYPE=home:;;12 St James's Square;London;;SW1Y 4JH;UK\r
            CATEGORIES:volunteer,donor\r
            NOTE:Met at the library\\, wants a yard sign\\nCall back in May\r
            X-KITH-SUPPORT:4\r
            X-KITH-CONVERSATION:2024-05-01;door;supportive;wants a yard sign\r
            X-KITH-CONSENT:share;2024-05-01;at the door\r
            END:VCARD\r

            """,
            """
            BEGIN:VCARD
            VERSION:3.0
            FN:Grace
              Hopper
            N:Hopper;Grace;;;
            item1.TEL;type=HOME:(415) 555-0132 ext. 12
            EMAIL;TYPE=INTERNET,pref:grace@example.org
            END:VCARD
            BEGIN:VCARD
            VERSION:3.0
            N:;;;;
            END:VCARD

            """,
            """
            BEGIN:VCARD
            VERSION:2.1
            N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=BCrgen;;;
            FN;QUOTED-PRINTABLE:J=C3=BCrgen M=C3=BC=
            ller
            TEL;HOME;VOICE:02 1234 5678
            END:VCARD

            """,
        ]
        return cards.map { Array($0.utf8) }
    }

    static func csv() -> [[UInt8]] {
        [
            "First Name,Last Name,E-mail Address,Mobile Phone,Categories,Notes\nAda,Lovelace,ada@example.org,+44 20 7946 0018,volunteer;donor,\"Met at the library, wants a sign\"\n",
            "\u{FEFF}Name,Phone 1 - Value,E-mail 1 - Value,Group Membership\n\"Hopper, Grace\",(415) 555-0132 ::: 415-555-0199,grace@example.org,* myContacts ::: Friends\n,,,\n",
            "id,given_name,family_name,support,relationship,consent\nAAECAwQFBgcIERITFBUWFw,Ada,Lovelace,4,friend,share;2024-05-01;door\nx,\"multi\nline\",\"quote \"\"q\"\"\",9,enemy,\n",
        ].map { Array($0.utf8) }
    }
}
