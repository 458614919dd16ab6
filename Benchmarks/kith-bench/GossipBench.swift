import ArgumentParser
import Foundation
import KithCRDT
import KithCrypto
import KithNetwork
import KithNode
import KithSampleData
import KithStore
import KithSync
import Logging

/// Edit propagation across a ring of nodes, and the size of concurrent-edit deltas.
struct GossipBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gossip",
        abstract: "Median time for one edit to reach every node of a ring of N nodes on loopback TCP; bytes of 1,000 concurrent edits each way."
    )

    @Option(help: "Nodes in the ring.") var nodes = 10
    @Option(help: "Edits to time.") var trials = 20
    @Option(help: "Concurrent edits on each side for the delta measurement.") var edits = 1_000
    @Option(help: "Contacts both replicas hold before the concurrent edits (the merge target's size).") var replicaContacts = 100_000

    func run() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("kith-gossip-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let first = DataDirectory(path: root + "/n0")
        let (ring0, id0) = try NodeIdentity.initialize(in: first, passphrase: nil, limits: .interactive)
        let scope = ScopeID.privateScope(of: id0.memberKey)
        var syncNodes: [SyncNode] = []
        var networks: [PeerNetwork] = []
        for i in 0..<nodes {
            let dir = i == 0 ? first : DataDirectory(path: root + "/n\(i)")
            let (ring, id) = i == 0 ? (ring0, id0) : try NodeIdentity.addDevice(in: dir, member: ring0.memberKey!, passphrase: nil, limits: .interactive)
            let node = try SyncNode(directory: dir.path, identity: .init(certificate: id.certificate, agreementKey: ring.deviceAgreementKey, deviceKey: ring.deviceSigningKey),
                                    storageKey: ring.storageKey, logger: logger)
            syncNodes.append(node)
            networks.append(PeerNetwork(node: node, logger: logger, now: ContactStore.systemClock))
        }
        let result: [String: Any] = try await withThrowingTaskGroup(of: Void.self) { group in
            var ports: [Int] = []
            for n in networks {
                let (port, serve) = try await n.listen(host: "127.0.0.1", port: 0)
                ports.append(port)
                group.addTask { await serve() }
            }
            for i in 0..<nodes {
                let next = ports[(i + 1) % nodes]
                let net = networks[i]
                group.addTask { await net.dial(host: "127.0.0.1", port: next) }
            }
            // Wait for the ring to be connected (each node has two peers).
            let t0 = seconds()
            for n in syncNodes { while await n.connectedPeers < 2, seconds() - t0 < 30 { try await Task.sleep(nanoseconds: 5_000_000) } }
            var latencies: [Double] = []
            for t in 0..<trials {
                let origin = syncNodes[t % nodes]
                let target = await origin.replica().changeCount + 1
                let start = seconds()
                _ = try await origin.commit(batches: [[ContactEdit(contact: ContactID(high: 5, low: UInt64(t)), ops: [.setField(.city, "Edit \(t)")])]])
                for n in syncNodes { while await n.replica().changeCount < target { try await Task.sleep(nanoseconds: 100_000) } }
                latencies.append((seconds() - start) * 1000)
            }
            group.cancelAll()
            latencies.sort()
            return [
                "benchmark": "gossip-ring",
                "commit": gitCommit(),
                "machine": machine(),
                "workload": ["nodes": nodes, "trials": trials, "topology": "ring of static peers, in-process nodes, loopback TCP"],
                "allNodesReachedMillisecondsMedian": latencies[latencies.count / 2],
                "allNodesReachedMillisecondsMax": latencies.last!,
            ]
        }
        // Concurrent edits: two replicas of the same `replicaContacts` contacts each edit the
        // first `edits` of them while apart, then exchange what the other lacks (as pycrdt_bench.py
        // does with Yrs: the merge time covers both directions, into replicas already built).
        let gen = SyntheticContacts(seed: 42)
        var base = Replica(scope: scope)
        var author0 = ChangeAuthor(signer: Ed25519.PrivateKey())
        var batch: [ContactEdit] = [], batchOps = 0
        for i in 0..<max(replicaContacts, edits) {
            let e = gen.contact(i).edit
            if batchOps + e.ops.count > 1_000, !batch.isEmpty {
                _ = try author0.commit(batch, to: &base, wallMilliseconds: 1_790_000_000_000)
                batch.removeAll(keepingCapacity: true)
                batchOps = 0
            }
            batch.append(e)
            batchOps += e.ops.count
        }
        if !batch.isEmpty { _ = try author0.commit(batch, to: &base, wallMilliseconds: 1_790_000_000_000) }
        /// Bytes on the wire for `changes` as a session sends them: its messages, fragmented,
        /// each fragment with its 2-byte length prefix and 16-byte Noise tag.
        func wireBytes(_ changes: [Change]) -> Int {
            SyncSession.messages(for: changes, scope: scope).reduce(0) { total, m in
                total + Fragmenter.fragments(of: m.encoded).reduce(0) { $0 + $1.count + Noise.tagLength + 2 }
            }
        }
        var sides: [String: Any] = [:]
        var mergeSeconds = 0.0, mergeCPUSeconds = 0.0
        for (label, perChange) in [("oneChangePerEdit", true), ("editsBatchedInOneChange", false)] {
            var bytesEachWay: [Int] = []
            var replicas: [Replica] = []
            var deltas: [[[UInt8]]] = [] // per side: the encoded messages of its edits
            for k in 0..<2 {
                var r = base
                var a = ChangeAuthor(signer: Ed25519.PrivateKey())
                let before = r.versionVector()
                let editsList = (0..<edits).map { ContactEdit(contact: gen.contact($0).id, ops: [.setField(.city, k == 0 ? "North \($0)" : "South \($0)")]) }
                if perChange {
                    for (i, e) in editsList.enumerated() { _ = try a.commit([e], to: &r, wallMilliseconds: 1_790_000_001_000 + UInt64(i)) }
                } else {
                    _ = try a.commit(editsList, to: &r, wallMilliseconds: 1_790_000_001_000)
                }
                let delta = r.changes(missingFrom: before)
                bytesEachWay.append(wireBytes(delta))
                replicas.append(r) // its own copy of the base's storage (written by the commits)
                deltas.append(SyncSession.messages(for: delta, scope: scope).map(\.encoded))
            }
            if perChange {
                // Merge: each side decodes the other's run messages and applies them as a node
                // does (one batch per message).
                let messagesFor = [deltas[1], deltas[0]]
                let t = seconds(), cpu = cpuSeconds()
                for k in 0..<2 {
                    for m in messagesFor[k] {
                        if case let .run(_, cs) = try SyncMessage(decoding: m) {
                            for case let .failure(e) in replicas[k].receive(cs, nowMilliseconds: 1_790_000_100_000) { throw e }
                        }
                    }
                }
                mergeSeconds = seconds() - t
                mergeCPUSeconds = cpuSeconds() - cpu
                let id = gen.contact(0).id
                precondition(replicas[0].contact(id)?[.city] == replicas[1].contact(id)?[.city], "the two sides converged")
            }
            sides[label] = bytesEachWay
        }
        var out = result
        out["concurrentEdits"] = edits
        out["deltaWireBytesEachWay"] = sides
        out["mergeSeconds"] = mergeSeconds
        out["mergeCPUSeconds"] = mergeCPUSeconds
        out["mergeReplicaContacts"] = max(replicaContacts, edits)
        emit(out)
        note(String(format: "ring of %d: one edit reaches every node in %.1f ms median (max %.1f)", nodes,
                    result["allNodesReachedMillisecondsMedian"] as! Double, result["allNodesReachedMillisecondsMax"] as! Double))
        note("\(edits) concurrent edits, bytes each way: one change per edit \(sides["oneChangePerEdit"]!), batched \(sides["editsBatchedInOneChange"]!)")
        Foundation.exit(0)
    }
}
