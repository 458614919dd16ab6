import Foundation
import Testing

/// The first of `names` found on $PATH (or in the usual system directories).
func tool(_ name: String) -> String? {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/bin:/bin:/usr/sbin:/sbin"
    return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

let systemdAnalyze = tool("systemd-analyze")

/// `deploy/kithd.service` and `scripts/install`, checked the way an operator would use them.
@Suite("installing kithd", .serialized)
struct DaemonInstallTests {
    /// Runs `systemd-analyze verify` on a unit whose ExecStart names this build's kithd.
    func verify(_ unit: String, in tmp: TempDir) throws -> Binaries.Result {
        let file = tmp.path("kithd.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/kithd", with: Binaries.productsDirectory.appendingPathComponent("kithd").path)
            .write(toFile: file, atomically: true, encoding: .utf8)
        return try Binaries.runAny(systemdAnalyze!, ["verify", file])
    }

    @Test(.enabled(if: systemdAnalyze != nil, "systemd-analyze is not installed here, so the unit is not verified (apt-get install systemd)"))
    func theSystemdUnitVerifiesAndSaysWhatKithdDoes() throws {
        let tmp = try TempDir()
        let unit = try String(contentsOfFile: repositoryRoot + "/deploy/kithd.service", encoding: .utf8)
        let r = try verify(unit, in: tmp)
        #expect(r.status == 0 && r.stderr.isEmpty, "\(r.stderr)")
        for line in ["Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=", "RestartPreventExitStatus=2 64"] {
            #expect(unit.contains("\n" + line), "missing \(line)")
        }
        let families = try #require(unit.split(separator: "\n").first { $0.hasPrefix("RestrictAddressFamilies=") })
        #expect(families.contains("AF_NETLINK") && families.contains("AF_UNIX"), "kithd needs netlink to list interfaces, unix for sd_notify")
        // The check can fail: a misspelt type is refused.
        let broken = try verify(unit.replacingOccurrences(of: "Type=notify", with: "Type=notifyy"), in: tmp)
        #expect(broken.status != 0 || broken.stderr.contains("notifyy"), "systemd-analyze accepted a broken unit")
    }

    /// scripts/install into a temporary prefix (with the binaries this test run built, so it does
    /// not build release): binaries, man pages, completions and the unit, each usable.
    @Test func installPutsEverythingInPlace() throws {
        let tmp = try TempDir()
        let prefix = tmp.path("prefix")
        let r = try Binaries.runAny(repositoryRoot + "/scripts/install", ["--prefix", prefix, "--systemd", "--bin-dir", Binaries.productsDirectory.path])
        #expect(r.status == 0, "\(r.stderr)")
        let files = ["bin/kith", "bin/kithd", "share/man/man1/kith.1", "share/man/man1/kithd.1",
                     "share/bash-completion/completions/kith", "share/bash-completion/completions/kithd",
                     "share/zsh/site-functions/_kith", "share/zsh/site-functions/_kithd",
                     "share/fish/vendor_completions.d/kith.fish", "share/fish/vendor_completions.d/kithd.fish",
                     "lib/systemd/system/kithd.service"]
        for f in files { #expect(FileManager.default.fileExists(atPath: prefix + "/" + f), "missing \(f)") }
        #expect(try Binaries.runAny(prefix + "/bin/kithd", ["--version"]).status == 0)

        // The man pages come from the command definitions: every subcommand and option is there.
        let kithMan = try String(contentsOfFile: prefix + "/share/man/man1/kith.1", encoding: .utf8)
        #expect(kithMan.contains(".TH KITH 1") && kithMan.contains(".SS kith contact add") && kithMan.contains(".SS kith completions"))
        let kithdMan = try String(contentsOfFile: prefix + "/share/man/man1/kithd.1", encoding: .utf8)
        #expect(kithdMan.contains("\\-\\-log\\-format") && kithdMan.contains(".SS kithd hub run") && kithdMan.contains("SIGHUP"))
        if let groff = tool("groff") {
            let render = try Binaries.runAny(groff, ["-man", "-Tutf8", "-ww", "-z", prefix + "/share/man/man1/kithd.1"])
            #expect(render.status == 0 && !render.stderr.contains("error"), "\(render.stderr)")
        }

        // Completions: bash loads the script and completes subcommands.
        if let bash = tool("bash") {
            let script = prefix + "/share/bash-completion/completions/kith"
            let probe = try Binaries.runAny(bash, ["-c", "source \(script) && COMP_WORDS=(kith con) COMP_CWORD=1 COMP_LINE='kith con' COMP_POINT=8 && _kith && printf '%s\\n' \"${COMPREPLY[@]}\""],
                                            environment: ["PATH": prefix + "/bin:/usr/bin:/bin"])
            #expect(probe.stdout.contains("contact") && probe.stdout.contains("consent"), "\(probe.stdout) \(probe.stderr)")
        }
        #expect(try String(contentsOfFile: prefix + "/share/fish/vendor_completions.d/kith.fish", encoding: .utf8).contains("complete -c 'kith'"))

        // The unit names the installed kithd and verifies.
        let unit = try String(contentsOfFile: prefix + "/lib/systemd/system/kithd.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=\(prefix)/bin/kithd "))
        if let analyze = systemdAnalyze {
            let v = try Binaries.runAny(analyze, ["verify", prefix + "/lib/systemd/system/kithd.service"])
            #expect(v.status == 0, "\(v.stderr)")
        }

        let bad = try Binaries.runAny(repositoryRoot + "/scripts/install", ["--prefix", "relative/dir", "--bin-dir", Binaries.productsDirectory.path])
        #expect(bad.status == 64 && bad.stderr.contains("--prefix must be an absolute path"))
    }

    @Test func completionsForEveryShell() throws {
        for shell in ["bash", "zsh", "fish"] {
            let r = try Binaries.run("kith", ["completions", shell])
            #expect(r.status == 0 && r.stdout.contains("kith") && r.stdout.count > 1000, "\(shell): \(r.stderr)")
        }
        let wrong = try Binaries.run("kith", ["completions", "tcsh"])
        #expect(wrong.status == 64)
    }
}
