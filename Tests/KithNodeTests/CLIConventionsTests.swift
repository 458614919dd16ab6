import Foundation
import KithChapter
import KithCRDT
import KithCrypto
import KithNode
import Testing

extension Binaries {
    /// Runs `tool` with a pseudo-terminal as its stdin, stdout and stderr (python's pty module, 24×80),
    /// typing `input` into it; returns everything the terminal showed (output and echoed input).
    static func runInTerminal(_ tool: String, _ args: [String], input: String = "", environment: [String: String] = [:]) throws -> Result {
        let script = """
            import fcntl, os, select, struct, subprocess, sys, termios
            master, slave = os.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            p = subprocess.Popen(sys.argv[2:], stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True)
            os.close(slave)
            os.write(master, sys.argv[1].encode())
            out = b""
            while True:
                ready, _, _ = select.select([master], [], [], 120)
                if not ready:
                    break
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            sys.stdout.write(out.decode("utf-8", "replace"))
            sys.exit(p.wait())
            """
        var env = environment
        env["TERM"] = env["TERM"] ?? "dumb"
        return try runAny("/usr/bin/env", ["python3", "-c", script, input, productsDirectory.appendingPathComponent(tool).path] + args, environment: env)
    }
}

/// A data directory holding three contacts with chosen ids (imported with vCard UIDs): two share
/// the base32 prefix `7aaaaa` (and the base64url prefix `-AAAA`), the third is Ada.
func nodeWithChosenIDs(_ tmp: TempDir) throws -> String {
    let d = tmp.path("node")
    #expect(try Binaries.run("kith", ["init", "--data-dir", d]).status == 0)
    let vcf = tmp.path("ids.vcf")
    try """
        BEGIN:VCARD\nVERSION:4.0\nUID:7aaaaaaaaaaaaaaaaaaaaaaaae\nFN:Dash One\nN:One;Dash;;;\nEND:VCARD
        BEGIN:VCARD\nVERSION:4.0\nUID:-AAAAAAAAAAAAAAAAAAAAg\nFN:Dash Two\nN:Two;Dash;;;\nEND:VCARD
        BEGIN:VCARD\nVERSION:4.0\nUID:aaisem2ekvthpcezvk54zxpo74\nFN:Ada Lovelace\nN:Lovelace;Ada;;;\nEND:VCARD

        """.write(toFile: vcf, atomically: true, encoding: .utf8)
    let imported = try Binaries.run("kith", ["import", vcf, "--data-dir", d])
    #expect(imported.status == 0, "\(imported.stderr)")
    return d
}

@Suite("kith command-line conventions (issue 16)")
struct CLIConventionsTests {
    @Test func contactIDsCannotLookLikeOptionsAndOldIDsStillWork() throws {
        let tmp = try TempDir()
        let d = try nodeWithChosenIDs(tmp)
        let list = try kithJSON(["contact", "list", "--data-dir", d]) as! [[String: Any]]
        let ids = Set(list.compactMap { $0["id"] as? String })
        // The one imported as base64url is shown in base32 like the others.
        #expect(ids == ["7aaaaaaaaaaaaaaaaaaaaaaaae", "7aaaaaaaaaaaaaaaaaaaaaaaai", "aaisem2ekvthpcezvk54zxpo74"])
        for _ in 0..<40 {
            let id = try Binaries.run("kith", ["contact", "add", "--given", "Someone", "--data-dir", d]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(id.count == 26 && !id.hasPrefix("-") && ContactID(text: id) != nil, "\(id)")
        }

        // Ambiguous prefix: exit 1, every candidate named with its id.
        let ambiguous = try Binaries.run("kith", ["contact", "show", "7aaaaa", "--data-dir", d])
        #expect(ambiguous.status == 1)
        #expect(ambiguous.stderr.contains("'7aaaaa' matches 2 contacts"), "\(ambiguous.stderr)")
        #expect(ambiguous.stderr.contains("7aaaaaaaaaaaaaaaaaaaaaaaae  Dash One") && ambiguous.stderr.contains("7aaaaaaaaaaaaaaaaaaaaaaaai  Dash Two"),
                "\(ambiguous.stderr)")
        // The same in the old form's prefix.
        let oldAmbiguous = try Binaries.run("kith", ["contact", "show", "--data-dir", d, "--", "-AAAA"])
        #expect(oldAmbiguous.status == 1 && oldAmbiguous.stderr.contains("Dash One") && oldAmbiguous.stderr.contains("Dash Two"), "\(oldAmbiguous.stderr)")

        // New form, its prefix, the old full form and an old prefix all name the contact.
        for ref in ["7aaaaaaaaaaaaaaaaaaaaaaaai", "7AAAAAAAAAAAAAAAAAAAAAAAAI", "aais", "ABEiM0RVZneImaq7zN3u_w", "ABEiM0"] {
            let show = try Binaries.run("kith", ["contact", "show", ref, "--json", "--data-dir", d])
            #expect(show.status == 0, "\(ref): \(show.stderr)")
        }
        let old = try Binaries.run("kith", ["contact", "show", "--data-dir", d, "--", "-AAAAAAAAAAAAAAAAAAAAg"])
        #expect(old.status == 0 && old.stdout.contains("id            7aaaaaaaaaaaaaaaaaaaaaaaai"), "\(old.stdout) \(old.stderr)")
        let edited = try Binaries.run("kith", ["contact", "edit", "ABEiM0", "--city", "London", "--data-dir", d])
        #expect(edited.status == 0 && edited.stdout == "updated aaisem2ekvthpcezvk54zxpo74\n", "\(edited.stdout) \(edited.stderr)")
        // Links name both forms and show base32.
        #expect(try Binaries.run("kith", ["link", "aais", "7aaaaaaaaaaaaaaaaaaaaaaaae", "--data-dir", d]).status == 0)
        let ada = try kithJSON(["contact", "show", "aais", "--data-dir", d]) as! [String: Any]
        #expect(ada["links"] as? [String] == ["7aaaaaaaaaaaaaaaaaaaaaaaae"])
        #expect(try Binaries.run("kith", ["unlink", "aais", "7aaaaaaaaaaaaaaaaaaaaaaaae", "--data-dir", d]).status == 0)
        #expect((try kithJSON(["contact", "show", "aais", "--data-dir", d]) as! [String: Any])["links"] as? [String] == [])
    }

    @Test func globalOptionsBeforeOrAfterTheSubcommand() throws {
        let tmp = try TempDir()
        let d = try nodeWithChosenIDs(tmp)
        let after = try Binaries.run("kith", ["contact", "list", "--json", "--data-dir", d])
        #expect(after.status == 0)
        for args in [["--data-dir", d, "--json", "contact", "list"], ["--json", "contact", "--data-dir=\(d)", "list"], ["--data-dir", d, "contact", "list", "--json"]] {
            let r = try Binaries.run("kith", args)
            #expect(r.status == 0 && r.stdout == after.stdout, "\(args): \(r.stderr)")
        }
        // --quiet leaves out confirmations, not data or errors.
        let loud = try Binaries.run("kith", ["--data-dir", d, "tag", "add", "aais", "gotv"])
        #expect(loud.stdout == "tagged aaisem2ekvthpcezvk54zxpo74\n")
        let quiet = try Binaries.run("kith", ["--quiet", "--data-dir", d, "tag", "add", "aais", "door"])
        #expect(quiet.status == 0 && quiet.stdout.isEmpty)
        #expect(try Binaries.run("kith", ["--quiet", "--data-dir", d, "contact", "show", "aais"]).stdout.contains("Ada"))
        let quietError = try Binaries.run("kith", ["--quiet", "--data-dir", d, "contact", "show", "zzzzzz"])
        #expect(quietError.status == 1 && quietError.stderr.contains("no contact"))
        // Not taken for a global option after `--`.
        let note = try Binaries.run("kith", ["--data-dir", d, "note", "aais", "--", "--json"])
        #expect(note.status == 0 && note.stdout.hasPrefix("noted"), "\(note.stderr)")
    }

    @Test func numbersDurationsAndExitCodes() throws {
        let tmp = try TempDir()
        let d = try nodeWithChosenIDs(tmp)
        let negative = try Binaries.run("kith", ["contact", "list", "--limit", "-5", "--data-dir", d])
        #expect(negative.status == 64 && negative.stderr.contains("--limit must be 0 (all) or more, not -5") && !negative.stderr.contains("Missing value"),
                "\(negative.stderr)")
        let strength = try Binaries.run("kith", ["chapter", "know", "aais", "--strength", "-1", "--data-dir", d])
        #expect(strength.status == 64 && strength.stderr.contains("--strength must be 1 (barely) to 5 (close), not -1"), "\(strength.stderr)")
        let uses = try Binaries.run("kith", ["chapter", "invite", "--uses", "0", "--data-dir", d])
        #expect(uses.status == 64 && uses.stderr.contains("--uses must be 1 or more"), "\(uses.stderr)")
        for (args, needle) in [(["chapter", "invite", "--expires", "3"], "--expires 3 needs a unit: 3s, 3m, 3h or 3d"),
                               (["device", "pair", "--expires", "ten"], "--expires 'ten' is not a duration")] {
            let r = try Binaries.run("kith", args + ["--data-dir", d])
            #expect(r.status == 64 && r.stderr.contains(needle), "\(args): \(r.stderr)")
        }
        let help = try Binaries.run("kith", ["--help"])
        #expect(help.stdout.contains("Exit codes") && help.stdout.contains("64  the command line is wrong"))
        #expect(help.stdout.contains("--data-dir DIR") && help.stdout.contains("--quiet"))
        // One name for "which chapter": --chapter everywhere; the old spellings still work but are not shown.
        for cmd in [["share"], ["unshare"], ["consent", "grant"], ["chapter", "map"]] {
            let h = try Binaries.run("kith", cmd + ["--help"]).stdout
            #expect(h.contains("--chapter <chapter>") && !h.contains("--with") && !(cmd == ["unshare"] && h.contains("--from")), "\(cmd): \(h)")
        }
        // Help paragraphs are wrapped by the parser (80 columns), not broken mid-sentence in the
        // source: a line followed by more of its paragraph is a full line.
        // An example too long for a line wraps into a short unindented fragment: refused too.
        for cmd in [[], ["device", "add"], ["device", "revoke"], ["contact", "add"], ["contact", "edit"], ["contact", "search"], ["contact", "rm"],
                    ["consent"], ["gui-password"], ["init"], ["chapter", "invite"], ["chapter", "remove"], ["name", "set"], ["device", "list"], ["status"]] {
            let text = try Binaries.run("kith", cmd + ["--help"]).stdout
            let lines = text.components(separatedBy: "USAGE:")[0].components(separatedBy: "\n")
            for (i, line) in lines.enumerated().dropFirst() where !line.isEmpty && !line.hasPrefix(" ") && !lines[i - 1].isEmpty {
                let previous = lines[i - 1]
                if previous.hasPrefix(" ") {
                    #expect(line.count >= 30, "kith \(cmd.joined(separator: " ")) --help: '\(line)' is a wrapped example's fragment")
                } else {
                    #expect(previous.count >= 50 || previous.hasSuffix(":"), "kith \(cmd.joined(separator: " ")) --help: orphan line break after '\(previous)'")
                }
            }
        }
    }

    @Test func commandsThatNeedTheDaemonSaySoAndHow() throws {
        let tmp = try TempDir()
        let d = try nodeWithChosenIDs(tmp)
        for cmd in [["peers"], ["audit"], ["consent", "show", "aais"], ["device", "pair"], ["chapter", "list"]] {
            let r = try Binaries.run("kith", cmd + ["--data-dir", d])
            #expect(r.status == 1, "\(cmd)")
            #expect(r.stderr.contains("`kith \(cmd.prefix(2).filter { $0 != "aais" }.joined(separator: " "))` needs kithd running for \(d)"), "\(cmd): \(r.stderr)")
            #expect(r.stderr.contains("start it with: kithd --data-dir \(d)"), "\(cmd): \(r.stderr)")
        }
    }

    @Test func destructiveActionsAskOnATerminalAndRefuseWithoutOne() throws {
        let tmp = try TempDir()
        let d = try nodeWithChosenIDs(tmp)
        // No terminal on stdin: refused with exit 64, nothing done.
        for cmd in [["contact", "rm", "--forget", "aais"], ["chapter", "remove", "abcd"], ["device", "revoke", "abcd"], ["consent", "revoke", "aais"]] {
            let r = try Binaries.run("kith", cmd + ["--data-dir", d])
            #expect(r.status == 64 && r.stderr.contains("standard input is not a terminal") && r.stderr.contains("add --yes"), "\(cmd): \(r.stderr)")
        }
        #expect(try Binaries.run("kith", ["contact", "show", "aais", "--data-dir", d]).status == 0)
        // A plain delete can be undone by a later edit: it does not ask.
        // On a terminal: "n" keeps the contact, "y" forgets it.
        let no = try Binaries.runInTerminal("kith", ["contact", "rm", "--forget", "aais", "--data-dir", d], input: "n\n")
        #expect(no.status == 1 && no.stdout.contains("Forget Ada Lovelace (aaisem2ekvthpcezvk54zxpo74)") && no.stdout.contains("[y/N]")
                && no.stdout.contains("cancelled"), "\(no.stdout)")
        #expect(try Binaries.run("kith", ["contact", "show", "aais", "--data-dir", d]).status == 0)
        let yes = try Binaries.runInTerminal("kith", ["contact", "rm", "--forget", "aais", "--data-dir", d], input: "y\n")
        #expect(yes.status == 0 && yes.stdout.contains("forgot aaisem2ekvthpcezvk54zxpo74"), "\(yes.stdout)")
        #expect(try Binaries.run("kith", ["contact", "show", "aaisem2ekvthpcezvk54zxpo74", "--data-dir", d]).status == 1)
        // --yes: no question.
        let forced = try Binaries.run("kith", ["contact", "rm", "--forget", "--yes", "7aaaaaaaaaaaaaaaaaaaaaaaae", "--data-dir", d])
        #expect(forced.status == 0 && forced.stdout.hasPrefix("forgot"), "\(forced.stderr)")
    }

    @Test func longListsGoThroughThePagerOnATerminal() throws {
        let tmp = try TempDir()
        let d = try nodeWithChosenIDs(tmp)
        let pager = ["PAGER": "sed s/^/paged:/"]
        let paged = try Binaries.runInTerminal("kith", ["contact", "list", "--data-dir", d], environment: pager)
        #expect(paged.status == 0 && paged.stdout.contains("paged:ID") && paged.stdout.contains("paged:aaisem2e  Ada Lovelace"), "\(paged.stdout)")
        let unpaged = try Binaries.runInTerminal("kith", ["--no-pager", "contact", "list", "--data-dir", d], environment: pager)
        #expect(unpaged.status == 0 && unpaged.stdout.contains("Ada Lovelace") && !unpaged.stdout.contains("paged:"), "\(unpaged.stdout)")
        // Not a terminal: never paged.
        let piped = try Binaries.run("kith", ["contact", "list", "--data-dir", d], environment: pager)
        #expect(piped.stdout.contains("Ada Lovelace") && !piped.stdout.contains("paged:"))
        // The default pager (less -FRX) prints a short list and exits.
        let less = try Binaries.runInTerminal("kith", ["contact", "search", "ada", "--data-dir", d], environment: ["PAGER": "less -FRX", "TERM": "xterm"])
        #expect(less.status == 0 && less.stdout.contains("Ada Lovelace"), "\(less.stdout)")
    }

    @Test func joiningOnesOwnChapterSaysSo() throws {
        let tmp = try TempDir()
        let a = tmp.path("a")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        let daemon = try Daemon(data: a, logName: "1")
        _ = try daemon.port
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 5", "--data-dir", a]).status == 0)
        let invite = try Binaries.run("kith", ["chapter", "invite", "--data-dir", a]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let members = try Binaries.run("kith", ["chapter", "members", "--data-dir", a]).stdout
        let fp = (try kithJSON(["whoami", "--data-dir", a]) as! [String: Any])["memberFingerprint"] as! String
        #expect(members.contains("admin  \(fp) (key ") && members.contains("(you)"), "\(members)")
        let join = try Binaries.run("kith", ["chapter", "join", invite, "--data-dir", a])
        #expect(join.status == 1 && join.stderr.contains("you are already a member of \"Ward 5\"") && join.stderr.contains("kith chapter list"),
                "\(join.stderr)")
        daemon.stop()
    }
}

@Suite("kith status in plain words (issue 16)", .serialized)
struct StatusWordsTests {
    @Test func upToDateWithPeersAndWhenTheDaemonIsDown() throws {
        let tmp = try TempDir()
        let a = tmp.path("laptop"), b = tmp.path("phone")
        #expect(try Binaries.run("kith", ["init", "--data-dir", a]).status == 0)
        #expect(try Binaries.run("kith", ["device", "add", "--from", a, "--data-dir", b]).status == 0)
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Ada", "--data-dir", a]).status == 0)
        let da = try Daemon(data: a, logName: "1")
        let pa = try da.port
        let db = try Daemon(data: b, peers: [pa], logName: "1")
        _ = try db.port

        let text = try waitFor("the phone up to date with the laptop", seconds: 60) { () -> String? in
            let r = try Binaries.run("kith", ["status", "--data-dir", b])
            return r.stdout.contains("up to date with 1 of 1 connected peer;") ? r.stdout : nil
        }
        #expect(text.hasPrefix("kithd       running, up ") && text.contains("kithd \(KithVersion.release)"), "\(text)")
        #expect(text.contains("listening   127.0.0.1:") && text.contains("invites and pairing codes point to "), "\(text)")
        #expect(text.contains("your contacts (private)\n  1 contact, 1 change\n"), "\(text)")
        #expect(text.contains("last sync ") && text.contains(" s ago"), "\(text)")
        // Keys as fingerprints where a person compares them; full keys in JSON.
        let who = try kithJSON(["whoami", "--data-dir", b]) as! [String: Any]
        let memberFP = who["memberFingerprint"] as! String, member = who["member"] as! String
        #expect(memberFP.count == 19 && memberFP.split(separator: "-").count == 4)
        #expect(text.contains("member      \(memberFP) (key \(member.prefix(8)))"), "\(text)")
        #expect(try Binaries.run("kith", ["whoami", "--data-dir", b]).stdout.contains("member          \(memberFP)  key \(member)"))
        let peersText = try Binaries.run("kith", ["peers", "--data-dir", b]).stdout
        let laptopDevice = (try kithJSON(["whoami", "--data-dir", a]) as! [String: Any])["deviceFingerprint"] as! String
        #expect(peersText.contains("your device \(laptopDevice)"), "\(peersText)")
        let json = try kithJSON(["status", "--data-dir", b]) as! [String: Any]
        let scope = (json["scopes"] as? [[String: Any]])?.first
        #expect(json["running"] as? Bool == true && (json["uptime"] as? Int ?? -1) >= 0 && (json["listen"] as? String)?.hasPrefix("127.0.0.1:") == true)
        #expect(scope?["peers"] as? Int == 1 && scope?["peersCaughtUp"] as? Int == 1, "\(json)")

        // Down: what the store holds, and how to start kithd.
        db.stop()
        let down = try Binaries.run("kith", ["status", "--data-dir", b])
        #expect(down.status == 0 && down.stdout.hasPrefix("kithd       not running for \(b)"), "\(down.stdout) \(down.stderr)")
        #expect(down.stdout.contains("1 contact, 1 change") && down.stdout.contains("start it with: kithd --data-dir \(b)"), "\(down.stdout)")
        let downJSON = try kithJSON(["status", "--data-dir", b]) as! [String: Any]
        #expect(downJSON["running"] as? Bool == false && downJSON["contacts"] as? Int == 1)
        let none = try Binaries.run("kith", ["status", "--data-dir", tmp.path("nothing")])
        #expect(none.status == 1 && none.stderr.contains("run kith init --data-dir"))
        da.stop()
    }
}

@Suite("Names instead of keys (issue 16)", .serialized)
struct NamesTests {
    @Test func membersAndDevicesAreShownByTheNamesTheyGaveThemselves() throws {
        let tmp = try TempDir()
        let a = tmp.path("alice"), b = tmp.path("bob")
        for d in [a, b] { #expect(try Binaries.run("kith", ["init", "--data-dir", d]).status == 0) }
        #expect(try Binaries.run("kith", ["contact", "add", "--given", "Rosa", "--tag", "canvass", "--data-dir", a]).status == 0)
        let da = try Daemon(data: a, logName: "1"), db = try Daemon(data: b, logName: "1")
        _ = try da.port
        _ = try db.port
        #expect(try Binaries.run("kith", ["chapter", "create", "Ward 5", "--data-dir", a]).status == 0)
        let invite = try Binaries.run("kith", ["chapter", "invite", "--data-dir", a]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let join = try Binaries.run("kith", ["chapter", "join", invite, "--data-dir", b])
        #expect(join.status == 0, "\(join.stderr)")
        #expect(try Binaries.run("kith", ["share", "--tag", "canvass", "--data-dir", a]).status == 0)

        let bob = try kithJSON(["whoami", "--data-dir", b]) as! [String: Any]
        let set = try Binaries.run("kith", ["name", "set", "Bob Marley", "--data-dir", b])
        #expect(set.status == 0 && set.stdout.contains("is now \"Bob Marley\" in 1 chapter"), "\(set.stdout) \(set.stderr)")
        let device = try Binaries.run("kith", ["name", "set", "Bob's laptop", "--device", bob["deviceFingerprint"] as! String, "--data-dir", b])
        #expect(device.status == 0, "\(device.stderr)")
        // Nobody names someone else: Alice's daemon does not even find Bob's device among hers.
        let other = try Binaries.run("kith", ["name", "set", "Bozo", "--device", bob["deviceSigning"] as! String, "--data-dir", a])
        #expect(other.status == 1 && other.stderr.contains("you can name only your own devices"), "\(other.stderr)")
        let bad = try Binaries.run("kith", ["name", "set", "tab\there", "--data-dir", b])
        #expect(bad.status == 1 && bad.stderr.contains("no control characters"), "\(bad.stderr)")

        // Bob knows Rosa; Alice sees his name in the members, the map and her peers.
        let rosa = try waitFor("the shared contact on Bob's side", seconds: 60) { () -> String? in
            ((try kithJSON(["chapter", "map", "--data-dir", b]) as! [String: Any])["contacts"] as? [[String: Any]])?.first?["id"] as? String
        }
        #expect(try Binaries.run("kith", ["chapter", "know", rosa, "--strength", "2", "--data-dir", b]).status == 0)
        let members = try waitFor("Bob's name at Alice's", seconds: 60) { () -> String? in
            let text = try Binaries.run("kith", ["chapter", "members", "--data-dir", a]).stdout
            return text.contains("Bob Marley") ? text : nil
        }
        #expect(members.contains("member Bob Marley  \(KeyFingerprintText.of(bob["member"] as! String))"), "\(members)")
        let map = try waitFor("the map known by Bob", seconds: 60) { () -> String? in
            let text = try Binaries.run("kith", ["chapter", "map", "--data-dir", a]).stdout
            return text.contains("known by") && text.contains("Bob Marley") ? text : nil
        }
        #expect(map.contains("Rosa  known by ") && map.contains("Bob Marley"), "\(map)")
        let peers = try Binaries.run("kith", ["peers", "--data-dir", a]).stdout
        #expect(peers.contains("member \"Bob Marley\" "), "\(peers)")
        let devices = try Binaries.run("kith", ["device", "list", "--data-dir", b]).stdout
        #expect(devices.contains("\(bob["deviceFingerprint"] as! String) (key ") && devices.contains("\"Bob's laptop\"  this device"), "\(devices)")
        let devicesJSON = try kithJSON(["device", "list", "--data-dir", b]) as! [[String: Any]]
        #expect(devicesJSON.first?["device"] as? String == bob["deviceSigning"] as? String)
        da.stop()
        db.stop()
    }
}

/// The CLI's fingerprint text of a base64url key: "lkm5-63uj-zcah-zn2h (key AAAAAAAA)".
enum KeyFingerprintText {
    static func of(_ key: String) -> String {
        "\(KeyFingerprint.of(Base64URL.decode(key)!)) (key \(key.prefix(8)))"
    }
}
