import ArgumentParser
import Foundation

/// What `kith` does differently on a terminal: it asks before destructive actions, and pages
/// long output through `$PAGER` (default `less -FRX`).
enum Terminal {
    /// Exit status of a command line kith cannot act on as given (EX_USAGE): unknown options,
    /// missing values, a destructive action without --yes when kith cannot ask.
    static let usage = ExitCode(64)

    /// Asks "`question`? [y/N]" on the terminal; continues on y/yes. `--yes` skips the question;
    /// without a terminal on stdin nobody can answer, so kith refuses (exit 64) and says to add --yes.
    static func confirm(_ question: String, yes: Bool) {
        if yes { return }
        guard isatty(STDIN_FILENO) == 1 else {
            FileHandle.standardError.write(Data("kith: not done: \(question)? needs confirmation, and standard input is not a terminal, so kith cannot ask; add --yes to confirm\n".utf8))
            Kith.exit(withError: usage)
        }
        FileHandle.standardError.write(Data("\(question)? [y/N] ".utf8))
        let answer = (readLine() ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        guard answer == "y" || answer == "yes" else { fail("cancelled; nothing was changed") }
    }

    /// The pager command: `$PAGER`, else `less -FRX`; nil when paging is off (`--no-pager`,
    /// `PAGER` empty or `cat`, or stdout not a terminal).
    static var pager: String? {
        guard !GlobalOptions.noPager, isatty(STDOUT_FILENO) == 1 else { return nil }
        let p = ProcessInfo.processInfo.environment["PAGER"] ?? "less -FRX"
        return p.trimmingCharacters(in: .whitespaces).isEmpty || p == "cat" ? nil : p
    }

    /// Prints `text` (lines ending in newlines), through the pager when there is one. A pager that
    /// cannot start prints the text directly; one quit early just stops the output.
    static func page(_ text: String) {
        guard let pager else { return print(text, terminator: "") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", pager]
        var env = ProcessInfo.processInfo.environment
        if env["LESS"] == nil { env["LESS"] = "FRX" }
        process.environment = env
        let input = Pipe()
        process.standardInput = input
        do { try process.run() } catch { return print(text, terminator: "") }
        signal(SIGPIPE, SIG_IGN)
        try? input.fileHandleForWriting.write(contentsOf: Data(text.utf8))
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }
}

/// `--yes`: the flag of every destructive command.
struct ConfirmOption: ParsableArguments {
    @Flag(name: [.customLong("yes"), .customShort("y")], help: "Do it without asking (needed when standard input is not a terminal).")
    var yes = false
}
