import ArgumentParser
import Foundation
import KithChapter
import KithCRDT
import KithCrypto
import KithNetwork
import KithStore
import Logging

/// A chapter at scale: real node stacks (SyncNode, PeerNetwork, SQLite stores, Noise over
/// loopback TCP) in one process, joined by invite, kept connected by the overlay (sync.md §9).
struct ChapterBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chapter",
        abstract: "N members join one chapter by invite over loopback; time for one edit to reach all (median, p99), bytes, connections and RSS per member; --churn takes a third offline and back."
    )

    @Option(help: "Members of the chapter (the admin included).") var members = 50
    @Option(help: "Edits to time.") var trials = 20
    @Option(help: "Joins in flight at once (a new one starts whenever one finishes).") var joinConcurrency = 8
    @Option(help: "Seconds between overlay rounds.") var overlayInterval = 0.5
    @Option(help: "Overlay connections each node dials.") var target = 3
    @Option(help: "Most overlay connections per node.") var maxConnections = 8
    @Flag(help: "Then take a third of the members offline, edit, bring them back and time convergence.") var churn = false

    /// One member's node stack and the tasks that make it reachable.
    final class Member: @unchecked Sendable {
        // @unchecked: the tasks are only touched by the benchmark's one driving task.
        let node: SyncNode
        let network: PeerNetwork
        var tasks: [Task<Void, Never>] = []
        init(node: SyncNode, network: PeerNetwork) {
            self.node = node
            self.network = network
        }

        /// Listens on a fresh loopback port, announces it and runs the overlay.
        func goOnline(interval: Double) async throws -> Int {
            let (port, serve) = try await network.listen(host: "127.0.0.1", port: 0)
            await node.setAdvertisedAddress("127.0.0.1:\(port)")
            let network = self.network
            tasks = [Task { await serve() }, Task { await network.maintainOverlay(interval: interval) }]
            return port
        }

        func goOffline() async {
            for t in tasks { t.cancel() }
            for t in tasks { await t.value }
            tasks = []
        }
    }

    static func makeMember(_ dir: String, logger: Logger, settings: OverlaySettings) async throws -> Member {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let member = Ed25519.PrivateKey(), device = Ed25519.PrivateKey(), agreement = X25519.PrivateKey()
        let cert = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey, deviceAgreementKey: agreement.publicKey,
                                           createdAt: UInt64(Date().timeIntervalSince1970) - 60)
        let node = try SyncNode(directory: dir, identity: .init(certificate: cert, agreementKey: agreement, deviceKey: device, memberKey: member),
                                storageKey: SymmetricKey(), logger: logger, maxInboundPerAddress: SyncNode.maxInboundConnections)
        await node.setOverlaySettings(settings)
        return Member(node: node, network: PeerNetwork(node: node, logger: logger, now: ContactStore.systemClock))
    }

    func run() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("kith-chapter-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        let settings = OverlaySettings(target: target, maxConnections: maxConnections)
        let rssBefore = memory().rss
        let cpuStart = cpuSeconds()

        var all: [Member] = []
        for i in 0..<members { all.append(try await Self.makeMember(root + "/m\(i)", logger: logger, settings: settings)) }
        let admin = all[0]
        let adminPort = try await admin.goOnline(interval: overlayInterval)
        let summary = try await admin.node.createChapter(name: "Bench chapter")
        let chapter = ChapterID(text: summary.id)!
        let scope = chapter.contentScope
        let text = try await admin.node.openInvite(chapter: nil, expiresIn: 3600, uses: members, hint: "127.0.0.1:\(adminPort)")
        let invite = try ChapterInvite(text: text, now: UInt64(Date().timeIntervalSince1970))
        note("\(members) node stacks ready; joining…")

        // Joins: each member listens, then presents the invite to an admin's daemon. At most
        // `joinConcurrency` joins are in flight; the next starts as soon as one finishes (people
        // join independently of each other, not in lockstep batches).
        let joinStart = seconds(), joinCPUStart = cpuSeconds()
        let interval = overlayInterval
        var joinLatencies: [Double] = []
        try await withThrowingTaskGroup(of: Double.self) { group in
            var next = 1
            func start(_ m: Member) {
                group.addTask {
                    let t = seconds()
                    _ = try await m.goOnline(interval: interval)
                    _ = try await m.network.join(invite)
                    return (seconds() - t) * 1000
                }
            }
            while next < members && next <= joinConcurrency {
                start(all[next])
                next += 1
            }
            while let ms = try await group.next() {
                joinLatencies.append(ms)
                if next < members {
                    start(all[next])
                    next += 1
                }
            }
        }
        joinLatencies.sort()
        let joinSeconds = seconds() - joinStart
        // Every node's log lists every member, and every node has an overlay connection.
        let settleStart = seconds()
        for m in all {
            while seconds() - settleStart < 120 {
                let s = try await m.node.members(chapter: chapter.description).1.count
                if s == members, await m.node.overlayInfo(chapter: chapter).connections > 0 { break }
                try await Task.sleep(nanoseconds: 20_000_000)
            }
        }
        let allJoinedSeconds = seconds() - joinStart, joinCPU = cpuSeconds() - joinCPUStart
        // Let the overlay settle (trims of the admin's bootstrap connections, address gossip).
        try await Task.sleep(nanoseconds: UInt64(max(4, settings.graceSeconds + 2 * overlayInterval) * 1e9))
        note(String(format: "%d joins in %.1f s (%.1f/s); all logs complete after %.1f s", members - 1, joinSeconds,
                    Double(members - 1) / joinSeconds, allJoinedSeconds))
        let idleRSS = memory().rss

        /// Whole-log re-evaluations (ops out of order or concurrent), summed over the nodes.
        func fullEvaluations() async -> Double {
            var total = 0
            for m in all { total += await m.node.chapterLog(chapter)?.fullEvaluations ?? 0 }
            return Double(total)
        }
        func counts() async -> [Int] {
            var out: [Int] = []
            for m in all { out.append(await m.node.replica(for: scope)?.changeCount ?? 0) }
            return out
        }
        func wire() async -> Int {
            var total = 0
            for m in all { total += await m.node.wireBytesIn + m.node.wireBytesOut }
            return total
        }
        func connections(_ nodes: [Member]) async -> [Int] {
            var out: [Int] = []
            for m in nodes { out.append(await m.node.overlayInfo(chapter: chapter).connections) }
            return out
        }
        /// Waits until every node in `nodes` holds at least `target` changes; seconds, or nil after `limit`.
        func reach(_ nodes: [Member], _ target: Int, limit: Double) async throws -> Double? {
            let start = seconds()
            var waiting = nodes
            while !waiting.isEmpty {
                var still: [Member] = []
                for m in waiting where (await m.node.replica(for: scope)?.changeCount ?? 0) < target { still.append(m) }
                waiting = still
                if waiting.isEmpty { break }
                if seconds() - start > limit { return nil }
                try await Task.sleep(nanoseconds: 500_000)
            }
            return seconds() - start
        }
        /// One edit on `origin`: a contact shared into the chapter; its time to reach every node.
        func edit(_ t: Int, origin: Member, reach nodes: [Member]) async throws -> Double? {
            let contact = ContactID.random()
            _ = try await origin.node.commit(batches: [[ContactEdit(contact: contact, ops: [.setField(.givenName, "Edit \(t)")])]])
            let target = (await origin.node.replica(for: scope)?.changeCount ?? 0) + 1
            let start = seconds()
            _ = try await origin.node.share(contacts: [contact], chapter: chapter.description, fields: [.name])
            guard try await reach(nodes, target, limit: 30) != nil else { return nil }
            return (seconds() - start) * 1000
        }

        let conns = await connections(all)
        let wireBefore = await wire()
        var latencies: [Double] = []
        var lost = 0
        for t in 0..<trials {
            if let ms = try await edit(t, origin: all[(t * 7 + 1) % members], reach: all) { latencies.append(ms) } else { lost += 1 }
        }
        let wireEdits = await wire() - wireBefore
        latencies.sort()
        func pct(_ p: Double) -> Double { latencies.isEmpty ? -1 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        note(String(format: "one edit reaches all %d members: median %.1f ms, p99 %.1f ms (%d of %d reached)", members, pct(0.5), pct(0.99),
                    latencies.count, trials))
        note("connections per member: mean \(String(format: "%.1f", Double(conns.reduce(0, +)) / Double(members))), max \(conns.max() ?? 0)")

        var result: [String: Any] = [
            "benchmark": "chapter",
            "commit": gitCommit(),
            "machine": machine(),
            "workload": ["members": members, "trials": trials, "joinConcurrency": joinConcurrency, "overlayIntervalSeconds": overlayInterval,
                         "target": target, "maxConnections": maxConnections,
                         "topology": "in-process node stacks (SyncNode, SQLite stores, Noise), loopback TCP, overlay of sync.md §9",
                         "inboundPerAddressLimit": "raised to 256: every member dials from 127.0.0.1 here, unlike members on their own machines"],
            "joinSeconds": joinSeconds,
            "joinsPerSecond": Double(members - 1) / joinSeconds,
            "joinMillisecondsMedian": joinLatencies.isEmpty ? -1 : joinLatencies[joinLatencies.count / 2],
            "joinMillisecondsP90": joinLatencies.isEmpty ? -1 : joinLatencies[min(joinLatencies.count - 1, joinLatencies.count * 9 / 10)],
            "fullLogEvaluationsPerMember": await fullEvaluations() / Double(members),
            "allLogsCompleteSeconds": allJoinedSeconds,
            "joinCpuSeconds": joinCPU,
            "editReachedAllMillisecondsMedian": pct(0.5),
            "editReachedAllMillisecondsP99": pct(0.99),
            "editsNotReachedAllIn30s": lost,
            "connectionsPerMemberMean": Double(conns.reduce(0, +)) / Double(members),
            "connectionsPerMemberMax": conns.max() ?? 0,
            "wireBytesPerMemberPerEdit": Double(wireEdits) / Double(max(trials, 1)) / Double(members),
            "wireBytesPerMemberTotal": Double(await wire()) / Double(members),
            "rssBytesPerIdleMember": Double(idleRSS - rssBefore) / Double(members),
            "rssBytesProcess": idleRSS,
        ]

        if churn {
            // A third of the members (never the admin) go offline; the rest edit; they come back
            // on new ports and announce them; time until every node holds every change.
            let offline = Array(all[1...].shuffled().prefix(members / 3))
            let offlineIDs = Set(offline.map { ObjectIdentifier($0) })
            let online = all.filter { !offlineIDs.contains(ObjectIdentifier($0)) }
            for m in offline { await m.goOffline() }
            note("\(offline.count) members offline")
            var churnLatencies: [Double] = []
            for t in 0..<max(1, trials / 2) {
                if let ms = try await edit(1000 + t, origin: online[(t * 5 + 1) % online.count], reach: online) { churnLatencies.append(ms) }
            }
            churnLatencies.sort()
            let want = (await counts()).max() ?? 0
            let back = seconds()
            for m in offline { _ = try await m.goOnline(interval: overlayInterval) }
            let converged = try await reach(all, want, limit: 60)
            let afterConns = await connections(all)
            note(String(format: "churn: edits reach the %d online members in %.1f ms median; the %d returning converge in %@ s", online.count,
                        churnLatencies.isEmpty ? -1 : churnLatencies[churnLatencies.count / 2], offline.count,
                        converged.map { String(format: "%.2f", $0) } ?? "(not within 60)"))
            result["churn"] = [
                "offlineMembers": offline.count,
                "editsWhileOfflineReachedOnlineMillisecondsMedian": churnLatencies.isEmpty ? -1 : churnLatencies[churnLatencies.count / 2],
                "convergedAfterReturnSeconds": converged ?? -1,
                "connectionsPerMemberMaxAfter": afterConns.max() ?? 0,
                "backSeconds": seconds() - back,
            ]
        }
        let cpu = cpuSeconds() - cpuStart
        result["cpuSeconds"] = cpu
        result["loadAverage"] = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3).joined(separator: " ") ?? ""
        emit(result)
        Foundation.exit(0)
    }
}

