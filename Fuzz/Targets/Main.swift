// One libFuzzer binary holding every Kith fuzz target; KITH_FUZZ_TARGET picks one.
// Built by scripts/fuzz (not by `swift build`): see Fuzz/README.md.
#if canImport(Glibc)
import Glibc
#endif

/// A fuzz target: the function libFuzzer calls with each input, and the seed inputs written
/// to `Fuzz/corpus/<name>/` (valid encodings, so mutation starts from the interesting paths).
struct FuzzTarget: Sendable {
    let name: String
    let summary: String
    let run: @Sendable ([UInt8]) -> Void
    let seeds: @Sendable () -> [[UInt8]]
}

let allTargets: [FuzzTarget] = [
    FuzzTarget(name: "change", summary: "Change(decoding:), verify, block decoding, erasure",
               run: CRDTTargets.change, seeds: Seeds.change),
    FuzzTarget(name: "change-run", summary: "ChangeRun.decode (compact runs on the wire)",
               run: CRDTTargets.run, seeds: Seeds.run),
    FuzzTarget(name: "edit", summary: "ContactEdit(decoding:) (control-socket edits)",
               run: CRDTTargets.edit, seeds: Seeds.edit),
    FuzzTarget(name: "replica", summary: "changes from kithd's control socket applied unsigned to a Replica (DaemonBackend.reload)",
               run: CRDTTargets.replica, seeds: Seeds.replica),
    FuzzTarget(name: "sync-message", summary: "SyncMessage(decoding:) and its re-encoding",
               run: SyncTargets.message, seeds: Seeds.syncMessage),
    FuzzTarget(name: "sync-session", summary: "SyncSession fed decoded messages, against a replica holding changes",
               run: SyncTargets.session, seeds: Seeds.syncSession),
    FuzzTarget(name: "framing", summary: "LengthPrefixedReader, Reassembler, Fragmenter",
               run: SyncTargets.framing, seeds: Seeds.framing),
    FuzzTarget(name: "noise", summary: "Noise XX initiator and responder driven by a script of reads, writes and tampering",
               run: SyncTargets.noise, seeds: Seeds.noise),
    FuzzTarget(name: "lan", summary: "LANAnnouncement.verify (UDP discovery datagrams)",
               run: SyncTargets.lan, seeds: Seeds.lan),
    FuzzTarget(name: "membership-op", summary: "MembershipOp(decoding:)",
               run: ChapterTargets.op, seeds: Seeds.membershipOp),
    FuzzTarget(name: "membership-log", summary: "ops signed by the harness, evaluated by MembershipLog / ChapterState",
               run: ChapterTargets.log, seeds: Seeds.membershipLog),
    FuzzTarget(name: "pasted", summary: "ChapterInvite, PairingCode and OrganizationCard text",
               run: ChapterTargets.pasted, seeds: Seeds.pasted),
    FuzzTarget(name: "certificates", summary: "DeviceCertificate and DeviceRevocation (raw and harness-signed)",
               run: ChapterTargets.certificates, seeds: Seeds.certificates),
    FuzzTarget(name: "consent", summary: "Grant, UpwardRecord, GrantRevocation, Receipt, HubLedger (raw and harness-signed)",
               run: ConsentTargets.consent, seeds: Seeds.consent),
    FuzzTarget(name: "keyring", summary: "KeyRing(encoded:) (key ring files)",
               run: CryptoTargets.keyring, seeds: Seeds.keyring),
    FuzzTarget(name: "control", summary: "control-socket request lines (ControlRequest)",
               run: ControlTargets.control, seeds: Seeds.control),
    FuzzTarget(name: "vcard", summary: "VCard.parse, the edits it yields, export and re-import",
               run: InterchangeTargets.vcard, seeds: Seeds.vcard),
    FuzzTarget(name: "csv", summary: "CSVInterchange.parse, the edits it yields, export and re-import",
               run: InterchangeTargets.csv, seeds: Seeds.csv),
]

nonisolated(unsafe) var selectedTarget: (@Sendable ([UInt8]) -> Void)?

func environment(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}

/// Writes to standard error, unbuffered.
func printError(_ text: String) {
    var t = text
    t.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Fails the run: libFuzzer reports the input as a crash.
func check(_ condition: @autoclosure () -> Bool, _ what: @autoclosure () -> String) {
    if !condition() {
        printError("kith-fuzz: property violated: \(what())\n")
        abort()
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(
    _ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> Int32 {
    let name = environment("KITH_FUZZ_TARGET") ?? ""
    if name == "list" {
        for t in allTargets { print("\(t.name)\t\(t.summary)") }
        exit(0)
    }
    if let dir = environment("KITH_FUZZ_WRITE_SEEDS") {
        Seeds.write(allTargets.filter { name.isEmpty || $0.name == name }, to: dir)
        exit(0)
    }
    guard let target = allTargets.first(where: { $0.name == name }) else {
        printError("kith-fuzz: set KITH_FUZZ_TARGET to one of: \(allTargets.map(\.name).joined(separator: ", ")) (or list)\n")
        exit(2)
    }
    selectedTarget = target.run
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    selectedTarget?(bytes)
    return 0
}
