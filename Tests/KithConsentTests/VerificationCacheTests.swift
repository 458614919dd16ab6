@testable import KithConsent
import KithChapter
import KithCRDT
import KithCrypto
import Testing

/// The hub's cache of verified certificates and grants (issue 17): it saves signature checks,
/// never a decision. Whatever can change — a certificate's validity, a device's membership, a
/// grant's revocation or expiry — is refused even when the signature was cached.
@Suite("Hub verification cache: cached certificates and grants are refused once revoked or expired")
struct VerificationCacheTests {
    /// Prepares (with the ledger's cache, as the hub does) and answers a record.
    static func answer(_ w: inout World, _ r: [UInt8], at t: UInt64) -> HubAnswer {
        w.hub.answer(prepared: HubLedger.prepare(r, keys: party, now: t, cache: w.hub.verified), chapter: w.log.state, nowMilliseconds: t)
    }

    /// A record of a new grant signed by `m`'s device under `certificate`.
    static func record(_ w: World, _ m: Member, certificate: DeviceCertificate, expiresAt: UInt64? = nil, version: UInt64 = 1, grant: Grant? = nil) -> (Grant, [UInt8]) {
        let g = grant ?? Grant.make(chapter: w.log.chapter, organization: party.signing.publicKey, contact: ContactID(high: 1, low: 2), fields: ["name"],
                                    purpose: "GOTV calls", createdAt: now, expiresAt: expiresAt, certificate: certificate, device: m.device)
        return (g, UpwardRecord.encode(grant: g, version: version, values: [("name", "Rosa Diaz"), ("consent", "share;2026-11-01;in person")],
                                       to: party.agreement.publicKey, certificate: certificate, device: m.device))
    }

    @Test func anExpiredCertificateIsRefusedEvenWhenCached() throws {
        var w = try World()
        let expires = now / 1000 + 60
        let cert = DeviceCertificate.issue(member: w.bob.member, deviceSigningKey: w.bob.device.publicKey, deviceAgreementKey: w.bob.agreement.publicKey,
                                           createdAt: 1_700_000_000, expiresAt: expires)
        #expect(Self.answer(&w, Self.record(w, w.bob, certificate: cert).1, at: now).kind == .stored)
        let missesBefore = w.hub.verified.misses
        // Within its period the certificate comes from the cache (no new miss for it)…
        #expect(Self.answer(&w, Self.record(w, w.bob, certificate: cert).1, at: now + 1_000).kind == .stored)
        #expect(w.hub.verified.misses == missesBefore + 1) // the new grant only
        // …and past its expiry it is refused all the same, with the certificate's own reason.
        let late = Self.answer(&w, Self.record(w, w.bob, certificate: cert).1, at: (expires + 1) * 1000)
        #expect(late.kind == .refused && late.code == .badSignature && late.reason.contains("expired"))
    }

    @Test func aRevokedDeviceIsRefusedEvenWhenItsCertificateIsCached() throws {
        var w = try World()
        #expect(Self.answer(&w, Self.record(w, w.bob, certificate: w.bob.certificate).1, at: now).kind == .stored)
        try w.log.append(.revokeDevice(w.bob.device.publicKey), certificate: w.alice.certificate, device: w.alice.device, now: now + 1)
        let hits = w.hub.verified.hits
        let after = Self.answer(&w, Self.record(w, w.bob, certificate: w.bob.certificate).1, at: now + 2)
        #expect(w.hub.verified.hits > hits) // the certificate was cached…
        #expect(after.kind == .refused && after.code == .notMember) // …and the device is refused
    }

    @Test func aRevokedGrantIsRefusedAndForgottenEvenWhenCached() throws {
        var w = try World()
        let (g, v1) = Self.record(w, w.alice, certificate: w.alice.certificate)
        #expect(Self.answer(&w, v1, at: now).kind == .stored)
        let grantKey = VerificationCache.key(domain: Grant.domain, g.encoded)
        #expect(w.hub.verified.contains(grantKey))
        let revocation = GrantRevocation.make(grant: g, at: now + 1, certificate: w.alice.certificate, device: w.alice.device).encoded
        let parsed = HubLedger.parseRevocation(revocation, now: now + 1, cache: w.hub.verified)
        #expect(w.hub.answer(revocation: revocation, parsed: parsed, nowMilliseconds: now + 1).kind == .deleted)
        #expect(!w.hub.verified.contains(grantKey)) // forgotten on revocation
        // A newer version of the revoked grant (its signature cached again on the way) is refused.
        let v2 = Self.record(w, w.alice, certificate: w.alice.certificate, version: 2, grant: g).1
        #expect(Self.answer(&w, v2, at: now + 2).code == .replayed)
        #expect(Self.answer(&w, v2, at: now + 3).code == .replayed)
        #expect(w.hub.held.isEmpty)
    }

    @Test func anExpiredGrantIsRefusedEvenWhenCached() throws {
        var w = try World()
        let (g, v1) = Self.record(w, w.alice, certificate: w.alice.certificate, expiresAt: now + 10_000)
        #expect(Self.answer(&w, v1, at: now).kind == .stored)
        let v2 = Self.record(w, w.alice, certificate: w.alice.certificate, version: 2, grant: g).1
        #expect(Self.answer(&w, v2, at: now + 20_000).code == .expired)
        #expect(w.hub.expire(nowMilliseconds: now + 20_000).count == 1)
        #expect(!w.hub.verified.contains(VerificationCache.key(domain: Grant.domain, g.encoded)))
        #expect(Self.answer(&w, v2, at: now + 20_001).code == .replayed)
    }

    @Test func aForgedRecordOrGrantUnderACachedCertificateIsRefused() throws {
        var w = try World()
        let (g, r) = Self.record(w, w.alice, certificate: w.alice.certificate)
        #expect(Self.answer(&w, r, at: now).kind == .stored)
        // The record's own signature is never skipped: a flipped byte in its body is refused.
        var forged = Self.record(w, w.alice, certificate: w.alice.certificate, version: 2, grant: g).1
        forged[forged.count - DeviceCertificate.encodedLength - 64 - 3] ^= 1
        let a = Self.answer(&w, forged, at: now + 1)
        #expect(a.kind == .refused && a.code == .badSignature)
        // Mallory (not a member) reuses Alice's cached certificate on a grant she signed herself.
        let mallorysGrant = HubAttackTests.grant(w.mallory, id: SecureRandom.bytes(16), chapter: w.log.chapter)
        var w2 = w
        let spoofed = UpwardRecord.encode(grant: mallorysGrant, version: 1, values: [("name", "X"), ("consent", "share;2026-11-01;x")],
                                          to: party.agreement.publicKey, certificate: w.mallory.certificate, device: w.mallory.device)
        // Swap in Alice's certificate: the device signature no longer matches it.
        var swapped = spoofed
        let at = swapped.count - DeviceCertificate.encodedLength - 64
        swapped.replaceSubrange(at..<(at + DeviceCertificate.encodedLength), with: w.alice.certificate.encoded)
        let b = Self.answer(&w2, swapped, at: now + 2)
        #expect(b.kind == .refused && b.code == .badSignature)
        #expect(w2.hub.held.count == 1)
    }

    @Test func theCacheIsBounded() {
        let cache = VerificationCache(capacity: 8)
        let keys = (0..<100).map { VerificationCache.key(domain: [1], [UInt8(truncatingIfNeeded: $0)]) }
        for k in keys { cache.insert(k) }
        #expect(cache.count <= 8)
        #expect(cache.contains(keys[99]) && !cache.contains(keys[0]))
        // A recently used entry survives generation changes; an unused one goes.
        for k in [0, 10, 11, 12, 13] { cache.insert(keys[k]) } // young: 13; old: 0, 10, 11, 12
        #expect(cache.contains(keys[0])) // promoted
        for k in [14, 15, 16] { cache.insert(keys[k]) } // young: 16; old: 13, 0, 14, 15
        #expect(cache.contains(keys[0]) && !cache.contains(keys[10]))
    }
}
