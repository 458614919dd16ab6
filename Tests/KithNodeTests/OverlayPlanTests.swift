import KithChapter
import KithCrypto
@testable import KithNetwork
import Testing

/// The overlay's decisions (sync.md §9.3) on made-up connection sets: which connections a round
/// closes, how many members it dials, and which of two connections of one device both ends keep.
@Suite("Overlay plan")
struct OverlayPlanTests {
    let settings = OverlaySettings(target: 3, maxConnections: 8, graceSeconds: 3)
    let old: UInt64 = 60_000

    func links(_ member: Ed25519.PublicKey, _ n: Int, from id: Int, ownDial: Bool = false, age: UInt64? = nil) -> [OverlayPlan.Link] {
        (0..<n).map { OverlayPlan.Link(id: id + $0, member: member, ownDial: ownDial, ageMs: age ?? old) }
    }

    /// A hostile member with many devices connected in: the surplus is all theirs, the honest
    /// members' connections (dialled or inbound) stay, and the node still dials.
    @Test func surplusTrimsTheMostRepresentedMemberFirst() {
        let mallory = Ed25519.PrivateKey().publicKey
        let honest = (0..<4).map { _ in Ed25519.PrivateKey().publicKey }
        var all = links(mallory, 12, from: 100, age: 10) // young, but not their member's only connection
        all += links(honest[0], 1, from: 1, ownDial: true) + links(honest[1], 1, from: 2, ownDial: true) + links(honest[2], 1, from: 3, ownDial: true)
        all += links(honest[3], 1, from: 4)
        let closed = OverlayPlan.surplus(all, settings: settings)
        #expect(closed.count == all.count - settings.maxConnections)
        #expect(closed.allSatisfy { $0 >= 100 }, "closed an honest member's connection: \(closed)")
        // Among the hostile member's, the newest go first.
        let newest = links(mallory, 2, from: 200, age: 5)
        let mixed = links(mallory, 7, from: 100) + newest + links(honest[0], 1, from: 1, ownDial: true)
        #expect(Set(OverlayPlan.surplus(mixed, settings: settings)) == [200, 201])
    }

    @Test func surplusNeverClosesOwnDialsBelowTargetNorAJoinersOnlyConnection() {
        let members = (0..<12).map { _ in Ed25519.PrivateKey().publicKey }
        // Three own dials and nine inbound connections, one member each; two inbound are young joiners.
        var all = (0..<3).map { OverlayPlan.Link(id: $0, member: members[$0], ownDial: true, ageMs: old) }
        all += (3..<10).map { OverlayPlan.Link(id: $0, member: members[$0], ownDial: false, ageMs: old) }
        all += (10..<12).map { OverlayPlan.Link(id: $0, member: members[$0], ownDial: false, ageMs: 100) }
        let closed = OverlayPlan.surplus(all, settings: settings)
        #expect(closed.count == 4)
        #expect(closed.allSatisfy { (3..<10).contains($0) }, "\(closed)")
        // Nothing closable: own dials at target and young joiners only.
        let protected = (0..<3).map { OverlayPlan.Link(id: $0, member: members[$0], ownDial: true, ageMs: old) }
            + (3..<12).map { OverlayPlan.Link(id: $0, member: members[$0], ownDial: false, ageMs: 100) }
        #expect(OverlayPlan.surplus(protected, settings: settings).isEmpty)
    }

    @Test func roomCountsDistinctMembersAndDialsInFlight() {
        let mallory = Ed25519.PrivateKey().publicKey, bob = Ed25519.PrivateKey().publicKey
        // Eight connections of one member: still two members to dial.
        #expect(OverlayPlan.room(links(mallory, 8, from: 0), inFlight: 0, round: 1, settings: settings) == 2)
        #expect(OverlayPlan.room(links(mallory, 8, from: 0), inFlight: 1, round: 1, settings: settings) == 1)
        #expect(OverlayPlan.room(links(mallory, 1, from: 0) + links(bob, 1, from: 1), inFlight: 0, round: 1, settings: settings) == 1)
        let three = (0..<3).flatMap { links(Ed25519.PrivateKey().publicKey, 1, from: $0) }
        #expect(OverlayPlan.room(three, inFlight: 0, round: 1, settings: settings) == 0)
        #expect(OverlayPlan.room(three, inFlight: 0, round: 60, settings: settings) == 1) // the rewiring dial
        #expect(OverlayPlan.room(links(mallory, 8, from: 0), inFlight: 0, round: 60, settings: settings) == 2) // full: no extra
    }

    @Test func rewiringClosesOwnDialsOnlyAboveTargetOrWithManyDistinctMembers() {
        let m = (0..<7).map { _ in Ed25519.PrivateKey().publicKey }
        let own3 = (0..<3).map { OverlayPlan.Link(id: $0, member: m[$0], ownDial: true, ageMs: old) }
        let inbound2 = (3..<5).map { OverlayPlan.Link(id: $0, member: m[$0], ownDial: false, ageMs: old) }
        #expect(OverlayPlan.rewire(own3 + inbound2, round: 30, settings: settings) == nil)
        // A fourth own dial: one of the own dials closes.
        let own4 = own3 + [OverlayPlan.Link(id: 9, member: m[5], ownDial: true, ageMs: old)]
        #expect(OverlayPlan.rewire(own4 + inbound2, round: 1, settings: settings).map { [0, 1, 2, 9].contains($0) } == true)
        // Six distinct members: once every 60 rounds an own dial closes, five remain.
        let inbound3 = inbound2 + [OverlayPlan.Link(id: 5, member: m[5], ownDial: false, ageMs: old)]
        #expect(OverlayPlan.rewire(own3 + inbound3, round: 90, settings: settings).map { [0, 1, 2].contains($0) } == true)
        #expect(OverlayPlan.rewire(own3 + inbound3, round: 91, settings: settings) == nil)
        // One hostile member's many devices dialling in count once: the own dials stay.
        let flood = (10..<30).map { OverlayPlan.Link(id: $0, member: m[6], ownDial: false, ageMs: old) }
        #expect(OverlayPlan.rewire(own3 + inbound2.prefix(1) + flood, round: 30, settings: settings) == nil)
        // Never an inbound connection.
        #expect(OverlayPlan.rewire(inbound3 + flood, round: 30, settings: settings) == nil)
    }

    @Test func candidatesAreOnePerMemberAndSkipBusyMembers() {
        let mallory = Ed25519.PrivateKey().publicKey, bob = Ed25519.PrivateKey().publicKey, carol = Ed25519.PrivateKey().publicKey
        let malloryDevices = (0..<30).map { _ in Ed25519.PrivateKey().publicKey }
        let bobDevice = Ed25519.PrivateKey().publicKey, carolDevice = Ed25519.PrivateKey().publicKey
        let entries = malloryDevices.map { (device: $0, member: mallory) } + [(bobDevice, bob), (carolDevice, carol)]
        let chosen = OverlayPlan.candidates(entries, excludingMembers: [carol])
        #expect(chosen.count == 2)
        #expect(chosen.contains(bobDevice) && !chosen.contains(carolDevice))
        #expect(chosen.filter { malloryDevices.contains($0) }.count == 1)
    }

    /// Both ends of two connections between the same devices keep the same one, whatever the
    /// order they registered them in.
    @Test func bothEndsKeepTheSameConnectionOfADevice() {
        for _ in 0..<50 {
            let a = Ed25519.PrivateKey().publicKey, b = Ed25519.PrivateKey().publicKey
            let h1 = SecureRandom.bytes(32), h2 = SecureRandom.bytes(32)
            // c1 dialled by a, c2 dialled by b. On a: c1 outbound, c2 inbound; on b the reverse.
            let aKeepsC1 = SyncNode.prefers((true, h1), over: (false, h2), own: a, peer: b)
            let bKeepsC1 = SyncNode.prefers((false, h1), over: (true, h2), own: b, peer: a)
            #expect(aKeepsC1 == bKeepsC1)
            #expect(aKeepsC1 == (a < b))
            // Both dialled by a: on a both outbound, on b both inbound.
            let aKeeps = SyncNode.prefers((true, h1), over: (true, h2), own: a, peer: b)
            let bKeeps = SyncNode.prefers((false, h1), over: (false, h2), own: b, peer: a)
            #expect(aKeeps == bKeeps)
            // The order of registration does not matter: exactly one of the two is preferred.
            #expect(aKeeps != SyncNode.prefers((true, h2), over: (true, h1), own: a, peer: b))
        }
    }

    /// Review 2: one address has one spelling; every other form is refused (sync.md §9.1).
    @Test func hostPortIsStrict() {
        #expect(HostPort.parse("127.0.0.1:7434")! == ("127.0.0.1", 7434))
        #expect(HostPort.parse("[2001:db8::1]:7434")! == ("2001:db8::1", 7434))
        #expect(HostPort.parse("[::ffff:192.0.2.1]:1")! == ("::ffff:192.0.2.1", 1))
        #expect(HostPort.parse("example.org:65535")! == ("example.org", 65535))
        #expect(HostPort.parse("0.0.0.0:0", allowAnyPort: true)! == ("0.0.0.0", 0))
        for bad in ["1.2.3.4:07434", "1.2.3.4:+7434", "1.2.3.4:-1", "[1.2.3.4]:7434", "1.2.3.4:65536", "1.2.3.4:123456",
                    "1.2.3.4:0", "1.2.3.4:", ":7434", "1.2.3.4", "2001:db8::1:7434", "[2001:db8::1:7434", "2001:db8::1]:7434",
                    "[[::1]]:7434", "[]:7434", "[::1]x:7434", "a b:7434", "1.2.3.4: 7434", "1.2.3.4:7434 ", "1.2.3.4:\u{0663}",
                    "1.2.3.4:\u{FF17}434", "host\u{7F}:7434", "[::1%eth0]:7434"] {
            #expect(HostPort.parse(bad) == nil, "\(bad)")
        }
    }

    // MARK: The overlay's bookkeeping (OverlayState), with time passed in

    let chapter = ChapterID.zero

    func dial(_ device: Ed25519.PublicKey? = Ed25519.PrivateKey().publicKey, port: Int = 7434) -> OverlayDial {
        OverlayDial(address: "127.0.0.1:\(port)", device: device)
    }

    /// Review 3, hints eclipse: a member whose many devices each connect gets one remembered
    /// hint, not all sixteen; honest members' hints stay while fewer than the cap remain.
    @Test func aMemberHoldsOneRememberedHintHoweverManyDevicesConnect() {
        let mallory = Ed25519.PrivateKey().publicKey
        let honest = (0..<3).map { _ in Ed25519.PrivateKey().publicKey }
        var hints: [(id: [UInt8], member: Ed25519.PublicKey?)] = honest.enumerated().map { ([UInt8($0.offset)], $0.element) }
        for i in 0..<16 {
            let drop = OverlayPlan.hintsToDrop(hints, adding: mallory, max: 16)
            hints.removeAll { h in drop.contains(h.id) }
            hints.append(([100 + UInt8(i)], mallory))
        }
        #expect(hints.filter { $0.member == mallory }.count == 1)
        #expect(Set(hints.compactMap(\.member)) == Set(honest + [mallory]))
        // At the cap, one other hint goes (at random) to make room; none of the new member's are kept twice.
        let full: [(id: [UInt8], member: Ed25519.PublicKey?)] = (0..<16).map { i in ([UInt8(i)], Ed25519.PrivateKey().publicKey) }
        #expect(OverlayPlan.hintsToDrop(full, adding: mallory, max: 16).count == 1)
        // A stale hint (device no longer listed: no member) counts toward the cap, never as the member's.
        #expect(OverlayPlan.hintsToDrop([([1], nil)], adding: mallory, max: 16).isEmpty)
    }

    /// Review 3: a dial is remembered only once its connection stayed up `hintAfterSeconds`
    /// after authenticating; one a member connects and drops is never remembered.
    @Test func onlyADialThatStayedUpBecomesAHint() {
        var state = OverlayState()
        state.settings = OverlaySettings(hintAfterSeconds: 60)
        let member = Ed25519.PrivateKey().publicKey
        let brief = dial(), lasting = dial(port: 7435), unauthenticated = dial(port: 7436)
        for d in [brief, lasting, unauthenticated] { state.dialStarted(d, chapter: chapter) }
        state.dialAuthenticated(brief, member: member, now: 100)
        state.dialAuthenticated(lasting, member: member, now: 100)
        let early = state.dueHints(now: 159)
        #expect(early.isEmpty)
        state.dialEnded(brief, now: 130)
        let due = state.dueHints(now: 160)
        #expect(due.map(\.dial) == [lasting] && due.first?.member == member)
        let again = state.dueHints(now: 500)
        #expect(again.isEmpty, "a dial is remembered once")
    }

    /// Review 3: after a restart with no overlay link, the invite hint is always dialled, even
    /// when one member's remembered hints would fill the room.
    @Test func bootstrapAlwaysDialsTheInviteHint() {
        let invite = OverlayDial(address: "127.0.0.1:1", device: nil)
        let remembered = (0..<16).map { dial(port: 2000 + $0) }
        for _ in 0..<20 {
            let chosen = OverlayPlan.bootstrap(remembered + [invite], room: 3)
            #expect(chosen.contains(invite))
            #expect(chosen.count == 4)
        }
        #expect(OverlayPlan.bootstrap([invite], room: 0) == [invite])
    }

    /// A node closed as surplus by a crowded member is not redialled the next second: a dial the
    /// other end closed soon after authenticating backs its member off (2 s, doubling); one this
    /// node closed itself, or one that stayed up, does not.
    @Test func aQuickCloseByTheOtherEndBacksItsMemberOff() {
        var state = OverlayState()
        state.settings = OverlaySettings(quickCloseSeconds: 10)
        let crowded = Ed25519.PrivateKey().publicKey, device = Ed25519.PrivateKey().publicKey
        let d = dial(device)
        var now = 1000.0
        for (round, delay) in [2.0, 4, 8, 16, 32, 60, 60].enumerated() {
            #expect(state.mayDial(d, member: crowded, chapter: chapter, now: now), "round \(round)")
            state.dialStarted(d, chapter: chapter)
            state.dialAuthenticated(d, member: crowded, now: now + 0.1)
            state.dialEnded(d, now: now + 3) // closed as surplus past the other end's grace period
            #expect(!state.mayDial(d, member: crowded, chapter: chapter, now: now + 3 + delay - 0.5), "round \(round)")
            // Another device of the same member is backed off too.
            #expect(!state.mayDial(dial(), member: crowded, chapter: chapter, now: now + 3 + delay - 0.5))
            now += 3 + delay
        }
        // One that stayed up clears it.
        state.dialStarted(d, chapter: chapter)
        state.dialAuthenticated(d, member: crowded, now: now)
        state.dialEnded(d, now: now + 11)
        #expect(state.mayDial(d, member: crowded, chapter: chapter, now: now + 11))
        // One this node closed itself (surplus, rewiring) does not count.
        let other = Ed25519.PrivateKey().publicKey
        state.dialStarted(d, chapter: chapter)
        state.dialAuthenticated(d, member: other, now: now)
        state.closingHere(d)
        state.dialEnded(d, now: now + 1)
        #expect(state.mayDial(d, member: other, chapter: chapter, now: now + 1))
        // An unauthenticated dial still backs off the device, not the member.
        state.dialStarted(d, chapter: chapter)
        state.dialEnded(d, now: now + 2)
        #expect(!state.mayDial(d, member: other, chapter: chapter, now: now + 3))
        #expect(state.mayDial(dial(), member: other, chapter: chapter, now: now + 3))
    }

    /// A chapter whose epoch needs renewing gets one after the random delay, not at once, and
    /// not once it no longer needs one (another member started it first); never when disabled.
    @Test func epochRenewalWaitsItsRandomDelay() {
        var state = OverlayState()
        state.settings = OverlaySettings(epochRenewalDelay: 5...30)
        func due(_ needed: Bool, _ now: Double) -> Bool { state.epochRenewalDue(chapter, needed: needed, now: now) }
        #expect(!due(true, 100))
        #expect(!due(true, 104.9))
        #expect(due(true, 130))
        // Someone else renewed it meanwhile: the schedule is dropped.
        #expect(!due(true, 200))
        #expect(!due(false, 300))
        #expect(!due(true, 301))
        #expect(!due(true, 305.9))
        state.settings.epochRenewalDelay = nil
        #expect(!due(true, 1000))
        #expect(!due(true, 2000))
    }

    /// A round's dials in one chapter: a member backed off for closing quickly is skipped for
    /// its other devices too; a restarted node with an empty table dials the invite hint and
    /// remembered hints, none of a member already connected.
    @Test func startDialsSkipsBackedOffAndConnectedMembersAndBootstrapsFromHints() throws {
        var state = OverlayState()
        state.settings = OverlaySettings(target: 3, maxConnections: 8)
        state.rounds = 1
        let me = (device: Ed25519.PrivateKey().publicKey, member: Ed25519.PrivateKey().publicKey)
        let crowded = Ed25519.PrivateKey().publicKey, connected = Ed25519.PrivateKey().publicKey
        let crowdedDevices = (0..<3).map { _ in Ed25519.PrivateKey().publicKey }
        let connectedDevice = Ed25519.PrivateKey().publicKey
        var members: [Ed25519.PublicKey: Ed25519.PublicKey] = [connectedDevice: connected]
        for d in crowdedDevices { members[d] = crowded }
        let memberOf: (Ed25519.PublicKey) -> Ed25519.PublicKey? = { members[$0] }
        let invite = OverlayDial(address: "127.0.0.1:1", device: nil)
        let hints = crowdedDevices.enumerated().map { OverlayDial(address: "127.0.0.1:\(2000 + $0.offset)", device: $0.element) }
            + [OverlayDial(address: "127.0.0.1:3000", device: connectedDevice), invite]
        // No links, empty table: bootstrap, the connected member's hint left out, the invite hint always in.
        var boot = state
        let chosen = boot.startDials(chapter: chapter, links: [], connectedMembers: [connected], hints: { hints }, memberOf: memberOf, own: me, now: 10)
        #expect(chosen.contains(invite))
        #expect(!chosen.contains { $0.device == connectedDevice })
        #expect(chosen.count == 4) // the invite hint + room (3) of the crowded member's
        // The crowded member closed a dial quickly: backed off, none of its devices is dialled.
        let first = try #require(hints.first)
        state.dialStarted(first, chapter: chapter)
        state.dialAuthenticated(first, member: crowded, now: 10)
        state.dialEnded(first, now: 11)
        let later = state.startDials(chapter: chapter, links: [], connectedMembers: [connected], hints: { hints }, memberOf: memberOf, own: me, now: 11.5)
        #expect(later == [invite])
    }
}
