import ArgumentParser
import Foundation
import KithCRDT
import KithCrypto
import KithNetwork
import KithNode
import KithSampleData
import KithStore
import Logging

struct SyncBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Initial sync of N contacts from one node to an empty one over loopback TCP (handshake, transfer, verify, durable store), then single-edit propagation."
    )

    @Option(help: "Number of contacts.") var contacts = 100_000
    @Option(help: "Seed of the synthetic generator.") var seed: UInt64 = 42

    func run() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("kith-syncbench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let dirA = DataDirectory(path: root + "/a"), dirB = DataDirectory(path: root + "/b")
        let (ringA, idA) = try NodeIdentity.initialize(in: dirA, passphrase: nil, limits: .interactive)
        let (ringB, idB) = try NodeIdentity.addDevice(in: dirB, member: ringA.memberKey!, passphrase: nil, limits: .interactive)
        let scope = ScopeID.privateScope(of: idA.memberKey)
        note("writing \(contacts) contacts into node A…")
        let gen = SyntheticContacts(seed: seed)
        var encodedBytes = 0, changeCount = 0
        do {
            let store = try ContactStore(directory: dirA.path, scope: scope, deviceKey: ringA.deviceSigningKey, storageKey: ringA.storageKey)
            var batch: [ContactEdit] = [], ops = 0, batches: [[ContactEdit]] = []
            for i in 0..<contacts {
                let e = gen.contact(i).edit
                if ops + e.ops.count > 1_000 { batches.append(batch); batch = []; ops = 0 }
                batch.append(e)
                ops += e.ops.count
                if batches.count == 20 { try store.commit(batches: batches); batches = [] }
            }
            batches.append(batch)
            try store.commit(batches: batches)
            encodedBytes = store.replica.encodedSize
            changeCount = store.replica.changeCount
        }
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let nodeA = try SyncNode(directory: dirA.path, identity: .init(certificate: idA.certificate, agreementKey: ringA.deviceAgreementKey, deviceKey: ringA.deviceSigningKey),
                                 storageKey: ringA.storageKey, logger: logger)
        let nodeB = try SyncNode(directory: dirB.path, identity: .init(certificate: idB.certificate, agreementKey: ringB.deviceAgreementKey, deviceKey: ringB.deviceSigningKey),
                                 storageKey: ringB.storageKey, logger: logger)
        let netA = PeerNetwork(node: nodeA, logger: logger, now: ContactStore.systemClock)
        let netB = PeerNetwork(node: nodeB, logger: logger, now: ContactStore.systemClock)
        let (portA, serveA) = try await netA.listen(host: "127.0.0.1", port: 0)
        let rssBefore = memory().rss
        note("syncing to the empty node B over 127.0.0.1:\(portA)…")
        let result: [String: Any] = try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await serveA() }
            let t0 = seconds(), cpu0 = cpuSeconds()
            group.addTask { await netB.dial(host: "127.0.0.1", port: portA) }
            // Polled through the actor (a replica copy per poll would copy on B's next write).
            while await nodeB.replicaChangeCount < changeCount {
                try await Task.sleep(nanoseconds: 2_000_000)
                if seconds() - t0 > 120 { throw ValidationError("initial sync did not finish in 120 s") }
            }
            let initial = seconds() - t0
            let initialCPU = cpuSeconds() - cpu0
            let wire = await nodeA.wireBytesOut
            // Propagation of one small edit A → B, and its bytes.
            var latencies: [Double] = []
            var editBytes: [Int] = []
            for i in 0..<20 {
                let before = await nodeA.wireBytesOut
                let t = seconds()
                // Polled as a count: a replica copy held here while B applies makes B copy its
                // whole replica (copy-on-write), which the edit's time would then include.
                let target = await nodeB.replicaChangeCount + 1
                _ = try await nodeA.commit(batches: [[ContactEdit(contact: gen.contact(i).id, ops: [.setField(.city, "Edit \(i)")])]])
                while await nodeB.replicaChangeCount < target { try await Task.sleep(nanoseconds: 200_000) }
                latencies.append((seconds() - t) * 1000)
                editBytes.append(await nodeA.wireBytesOut - before)
            }
            group.cancelAll()
            latencies.sort()
            return [
                "benchmark": "sync-initial-and-edit",
                "commit": gitCommit(),
                "machine": machine(),
                "workload": ["contacts": contacts, "changes": changeCount, "seed": seed, "transport": "in-process nodes, loopback TCP"],
                "initialSyncSeconds": initial,
                "initialSyncCPUSeconds": initialCPU,
                "encodedChangeSetBytes": encodedBytes,
                "wireBytes": wire,
                "wireToEncodedRatio": Double(wire) / Double(encodedBytes),
                "editPropagationMillisecondsMedian": latencies[latencies.count / 2],
                "editWireBytesMedian": editBytes.sorted()[editBytes.count / 2],
                "receiverRSSGrowthBytes": memory().rss - rssBefore,
            ]
        }
        emit(result)
        note(String(format: "initial sync CPU (both nodes, user + system): %.2f s", result["initialSyncCPUSeconds"] as! Double))
        note(String(format: "initial sync of %d contacts: %.2f s; wire %.1f MB for %.1f MB of changes; one edit: %.2f ms median, %d bytes",
                    contacts, result["initialSyncSeconds"] as! Double, Double(result["wireBytes"] as! Int) / 1e6, Double(encodedBytes) / 1e6,
                    result["editPropagationMillisecondsMedian"] as! Double, result["editWireBytesMedian"] as! Int))
        Foundation.exit(0)
    }
}
