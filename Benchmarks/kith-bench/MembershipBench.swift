import ArgumentParser
import Foundation
import KithChapter
import KithCrypto
import KithSampleData

/// Evaluation cost of a chapter's membership log: a long-lived chapter's log of N ops (joins,
/// key shares, invites opened and closed, admin changes, removals with new epochs, concurrent
/// admin actions), then a full evaluation, a rebuild from bytes, appends, and a flood of
/// concurrent ops from one member.
struct MembershipBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "membership",
        abstract: "Evaluate a chapter membership log of N ops: full evaluation, rebuild, appends and a flood of concurrent ops."
    )

    @Option(help: "Ops in the log.") var ops = 10_000
    @Option(help: "Concurrent ops one member floods the log with.") var flood = 1_000
    @Option(help: "Seed.") var seed: UInt64 = 7
    @Option(help: "Full evaluations to time (the median is reported).") var evaluations = 5
    @Option(help: "Keep the generated log in this file and reuse it on later runs (generation takes a while).") var cache: String?

    struct Member {
        let member: Ed25519.PrivateKey
        let device: Ed25519.PrivateKey
        let agreement: X25519.PrivateKey
        let certificate: DeviceCertificate
        init(_ rng: inout SplitMix64) {
            func seed32() -> [UInt8] { (0..<4).flatMap { _ in withUnsafeBytes(of: rng.next()) { Array($0) } } }
            member = try! Ed25519.PrivateKey(seed: seed32())
            device = try! Ed25519.PrivateKey(seed: seed32())
            agreement = try! X25519.PrivateKey(bytes: seed32())
            certificate = DeviceCertificate.issue(member: member, deviceSigningKey: device.publicKey,
                                                  deviceAgreementKey: agreement.publicKey, createdAt: 1_700_000_000)
        }
    }

    func run() throws {
        var rng = SplitMix64(seed: seed)
        let admin = Member(&rng), second = Member(&rng)
        var t: UInt64 = 1_800_000_000_000
        var log = try MembershipLog.create(name: "Bench", certificate: admin.certificate, device: admin.device, now: t)
        func add(_ m: Member) throws {
            t += 1
            try log.append(.addMember(m.certificate, admin: false, invite: nil), certificate: admin.certificate, device: admin.device, now: t)
            _ = try log.shareMissingKeys(certificate: admin.certificate, device: admin.device, agreement: admin.agreement, now: t)
        }
        try add(second)
        t += 1
        try log.append(.setAdmin(second.certificate.memberKey, true), certificate: admin.certificate, device: admin.device, now: t)
        var members: [Member] = []
        for _ in 0..<200 {
            let m = Member(&rng)
            try add(m)
            members.append(m)
        }
        if let cache, let data = FileManager.default.contents(atPath: cache) {
            var ops: [[UInt8]] = []
            var i = data.startIndex
            while i < data.endIndex {
                let n = data[i..<i + 4].reduce(0) { $0 << 8 | Int($1) }
                ops.append(Array(data[i + 4..<i + 4 + n]))
                i += 4 + n
            }
            let root = try MembershipOp(decoding: ops[0])
            log = try MembershipLog(chapter: try ChapterID(bytes: root.id.bytes.prefix(16)), ops: ops)
            note("loaded \(log.count) ops from \(cache)")
        }
        note("generating a \(ops)-op log…")
        let g0 = seconds()
        while log.count < ops {
            t += 1
            switch rng.next() % 20 {
            case 0..<7:
                let (op, _) = try log.openInvite(expiresAt: t / 1000 + 3600, uses: 1, hint: "", certificate: admin.certificate, device: admin.device, now: t / 1000)
                t += 1
                try log.append(.closeInvite(op.id), certificate: admin.certificate, device: admin.device, now: t)
            case 7..<13:
                let m = Member(&rng)
                try add(m)
                members.append(m)
            case 13..<18:
                let m = members[Int(rng.next() % UInt64(members.count))]
                try log.append(.setAdmin(m.certificate.memberKey, rng.next() % 2 == 0), certificate: admin.certificate, device: admin.device, now: t)
            case 18:
                let i = Int(rng.next() % UInt64(members.count))
                try log.append(.removeMember(members.remove(at: i).certificate.memberKey), certificate: admin.certificate, device: admin.device, now: t)
                try log.startEpoch(certificate: admin.certificate, device: admin.device, now: t)
            default:
                // Two admins act on the same heads: the log branches and merges.
                var other = log
                let a = members[Int(rng.next() % UInt64(members.count))], b = members[Int(rng.next() % UInt64(members.count))]
                try log.append(.setAdmin(a.certificate.memberKey, true), certificate: admin.certificate, device: admin.device, now: t)
                let op = try other.append(.setAdmin(b.certificate.memberKey, false), certificate: second.certificate, device: second.device, now: t)
                try log.receive([op])
            }
        }
        note("generated \(log.count) ops in \(String(format: "%.1f", seconds() - g0)) s; \(log.state.members.count) members")
        if let cache, !FileManager.default.fileExists(atPath: cache) {
            var out = Data()
            for op in log.allOps {
                let n = op.encoded.count
                out += [UInt8(n >> 24 & 255), UInt8(n >> 16 & 255), UInt8(n >> 8 & 255), UInt8(n & 255)] + op.encoded
            }
            _ = FileManager.default.createFile(atPath: cache, contents: out)
        }

        let all = log.ops
        var times: [Double] = []
        for _ in 0..<evaluations {
            let s = seconds()
            let state = ChapterState.evaluate(all)
            times.append(seconds() - s)
            precondition(state == log.state)
        }
        let encoded = log.allOps.map(\.encoded)
        let r0 = seconds()
        let rebuilt = try MembershipLog(chapter: log.chapter, ops: encoded.reversed())
        let rebuildSeconds = seconds() - r0
        precondition(rebuilt.state == log.state)

        var appends: [Double] = []
        for _ in 0..<100 {
            t += 1
            let s = seconds()
            try log.append(.setAdmin(members[0].certificate.memberKey, appends.count % 2 == 0), certificate: admin.certificate, device: admin.device, now: t)
            appends.append(seconds() - s)
        }

        // A member floods ops concurrent with everything (each names only the create op as parent).
        let flooder = members[1]
        var floodOps: [MembershipOp] = []
        for i in 0..<flood {
            floodOps.append(MembershipOp.make(chapter: log.chapter, parents: [log.genesis.id], timestamp: t + UInt64(i), certificate: flooder.certificate,
                                              device: flooder.device, action: .setAdmin(flooder.certificate.memberKey, true)))
        }
        var batch = log
        let b0 = seconds()
        try batch.receive(floodOps)
        let floodBatchSeconds = seconds() - b0
        var single = log
        let one = min(flood, 50)
        let s0 = seconds()
        for op in floodOps.prefix(one) { try single.receive([op]) }
        let floodEachSeconds = (seconds() - s0) / Double(one)

        let median = { (xs: [Double]) in xs.sorted()[xs.count / 2] }
        let result: [String: Any] = [
            "benchmark": "membership",
            "ops": log.count, "members": log.state.members.count, "epochs": log.state.epochs.count,
            "evaluateMedianMs": median(times) * 1000,
            "rebuildFromBytesMs": rebuildSeconds * 1000,
            "appendMedianMs": median(appends) * 1000,
            "floodOps": flood, "floodOneBatchMs": floodBatchSeconds * 1000, "floodPerSeparateArrivalMs": floodEachSeconds * 1000,
            "commit": gitCommit(), "machine": machine(),
        ]
        emit(result)
        note(String(format: "evaluate %d ops: %.1f ms (median of %d); rebuild from bytes %.0f ms; append %.2f ms; flood of %d in one batch %.0f ms, %.1f ms per separate arrival",
                    log.count, median(times) * 1000, self.evaluations, rebuildSeconds * 1000, median(appends) * 1000, flood, floodBatchSeconds * 1000, floodEachSeconds * 1000))
    }
}
