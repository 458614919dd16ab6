import KithChapter
import KithCRDT
import KithCrypto
import KithStore
import KithSync

extension SyncNode {
    /// All revocations of this member, for another device of the member right after the hello.
    func revocationMessage() -> SyncMessage? {
        revocations.isEmpty ? nil : .revocations(revocations.map(\.encoded))
    }

    /// Revocations another device of this member sent: verified against the member key, kept,
    /// and acted on.
    func receiveRevocations(_ list: [[UInt8]], from peer: Int) {
        guard let p = peers[peer], p.identity.member == identity.member else { return }
        var fresh: [DeviceRevocation] = []
        for bytes in list {
            guard let r = try? DeviceRevocation(encoded: bytes), r.member == identity.member, !revokedDevices.contains(r.device) else { continue }
            fresh.append(r)
        }
        guard !fresh.isEmpty else { return }
        do { try apply(fresh, except: peer) } catch {
            logger.error("could not apply device revocations", metadata: ["reason": "\(error)"])
        }
    }

    /// `kith device revoke`: signs a revocation with the member key (primary device only).
    public func revokeDevice(_ reference: String) throws(ChapterCommandError) -> String {
        guard let memberKey = identity.memberKey else {
            throw ChapterCommandError("only the device holding the member key (the one `kith init` ran on) can revoke devices")
        }
        let known = ownDevicesKnown()
        let target: Ed25519.PublicKey
        if let k = try? Ed25519.PublicKey(bytes: Base64URL.decode(reference) ?? []) {
            target = k
        } else {
            let matches = known.filter { KeyFingerprint.names($0, reference) }
            guard matches.count == 1 else {
                throw ChapterCommandError(matches.isEmpty ? "no known device '\(reference)'; give the full device key (kith whoami on that device)" : "'\(reference)' matches several devices")
            }
            target = matches.first!
        }
        guard target != identity.device else { throw ChapterCommandError("this is the device you are using; revoke it from another one… or keep it") }
        guard !revokedDevices.contains(target) else { throw ChapterCommandError("device \(target) is already revoked") }
        let r = DeviceRevocation.make(member: memberKey, device: target, atMilliseconds: clock())
        do { try apply([r], except: nil) } catch { throw ChapterCommandError("\(error)") }
        return target.description
    }

    /// Records revocations, tells the member's other devices, revokes the devices in every
    /// chapter (with a new epoch) and drops their connections.
    private func apply(_ list: [DeviceRevocation], except peer: Int?) throws {
        try store.putRecords(.deviceRevocation, list.map { ($0.device.bytes, $0.encoded) })
        for r in list {
            revocations.append(r)
            revokedDevices.insert(r.device)
            logger.notice("device revoked", metadata: ["device": "\(r.device)"])
        }
        for (pid, p) in peers where pid != peer && p.identity.member == identity.member && !revokedDevices.contains(p.identity.device) {
            p.events.yield(.revocations(list.map(\.encoded)))
        }
        // In every chapter the member is in, listed there or not (a revoked device can never be
        // listed in it afterwards), with the member-key-signed statement; one chapter's refusal
        // does not stop the others.
        for ch in chapters.values.sorted(by: { $0.id < $1.id }) where !ch.relayOnly {
            guard var log = ch.log, log.state.isMember(identity.member) else { continue }
            var made: [MembershipOp] = []
            for r in list where (log.state.member(ofDevice: r.device) ?? identity.member) == identity.member && !log.state.revoked.contains(r.device) {
                do {
                    made.append(try log.append(.revokeDeviceByMember(r), certificate: identity.certificate, device: identity.deviceKey, now: clock()))
                } catch {
                    logger.info("could not record a device revocation in a chapter", metadata: ["chapter": "\(ch.id)", "reason": "\(error.detail)"])
                }
            }
            guard !made.isEmpty else { continue }
            if log.state.needsNewEpoch {
                do {
                    made.append(try log.startEpoch(certificate: identity.certificate, device: identity.deviceKey, now: clock()))
                } catch {
                    logger.warning("revoked a device but could not start a new chapter key", metadata: ["chapter": "\(ch.id)", "reason": "\(error.detail)"])
                }
            }
            ch.log = log
            do { try logChanged(ch, new: made) } catch {
                logger.error("could not store a chapter's device revocation", metadata: ["chapter": "\(ch.id)", "reason": "\(error)"])
            }
        }
        for (pid, p) in peers where revokedDevices.contains(p.identity.device) {
            p.events.yield(.close(reason: "device revoked"))
            unregister(pid)
        }
    }
}

extension SyncNode {
    /// `kith device pair`: opens a one-time pairing (primary device only).
    public func openPairing(expiresIn seconds: UInt64, hint: String) throws(ChapterCommandError) -> String {
        guard identity.memberKey != nil else {
            throw ChapterCommandError("only the device holding the member key (the one `kith init` ran on) can pair new devices")
        }
        let token = SecureRandom.bytes(16)
        let expires = clock() / 1000 + seconds
        pairings.append((token, expires * 1000, false))
        return PairingCode(member: identity.member, token: token, expiresAt: expires, hint: hint).text
    }

    /// Completes a pairing a new device proved on this connection: certifies its keys.
    func completePairing(proof: [UInt8], handshakeHash: [UInt8], temporary: DeviceCertificate) throws(ChapterCommandError) -> DeviceCertificate {
        guard let memberKey = identity.memberKey else { throw ChapterCommandError("this device cannot certify devices") }
        let now = clock()
        pairings.removeAll { $0.expiresAt <= now }
        guard let i = pairings.firstIndex(where: {
            ConstantTime.equals(PairingCode.proof(token: $0.token, handshakeHash: handshakeHash, certificate: temporary), proof)
        }) else {
            throw ChapterCommandError("the pairing proof matches no open pairing code (expired or mistyped)")
        }
        guard !pairings[i].used else { throw ChapterCommandError("this pairing code has already been used; make a new one with kith device pair") }
        pairings[i].used = true
        guard !revokedDevices.contains(temporary.deviceSigningKey) else { throw ChapterCommandError("that device was revoked") }
        logger.notice("paired a new device", metadata: ["device": "\(temporary.deviceSigningKey)"])
        return DeviceCertificate.issue(member: memberKey, deviceSigningKey: temporary.deviceSigningKey,
                                       deviceAgreementKey: temporary.deviceAgreementKey, createdAt: now / 1000)
    }
}
