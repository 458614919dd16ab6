import ArgumentParser
import Foundation

/// The options every command takes, before or after the subcommand: `kith --data-dir D contact
/// list` and `kith contact list --data-dir D` mean the same. ArgumentParser reads a command's
/// options only after its name, so `reorder` moves the ones given before it to just after the
/// subcommand path, before parsing.
enum GlobalOptions {
    static let flags: Set<String> = ["--json", "--quiet", "--no-pager"]
    static let valued: Set<String> = ["--data-dir"]

    /// `args` (without the program name) with global options that precede or sit inside the
    /// subcommand path moved after it; unchanged when no subcommand is named.
    static func reorder(_ args: [String], root: any ParsableCommand.Type = Kith.self) -> [String] {
        let (path, moved, rest) = split(args, root: root)
        guard !path.isEmpty, !moved.isEmpty else { return args }
        return path + moved + rest
    }

    /// The subcommand path (`["consent", "show"]`), the global options met on the way, and the rest.
    static func split(_ args: [String], root: any ParsableCommand.Type = Kith.self) -> (path: [String], moved: [String], rest: ArraySlice<String>) {
        var moved: [String] = []
        var path: [String] = []
        var command = root
        var i = 0
        while i < args.count {
            let a = args[i]
            if flags.contains(a) {
                moved.append(a)
                i += 1
            } else if valued.contains(a), i + 1 < args.count {
                moved += [a, args[i + 1]]
                i += 2
            } else if valued.contains(where: { a.hasPrefix($0 + "=") }) {
                moved.append(a)
                i += 1
            } else if let sub = command.configuration.subcommands.first(where: { $0.configuration.commandName == a }) {
                path.append(a)
                command = sub
                i += 1
            } else {
                break
            }
        }
        return (path, moved, args[i...])
    }

    /// The command being run, for messages: "kith consent show".
    static let commandName: String = (["kith"] + split(Array(CommandLine.arguments.dropFirst())).path).joined(separator: " ")

    /// The words before `--` (after it, everything is an argument).
    private static var optionWords: ArraySlice<String> { CommandLine.arguments.dropFirst().prefix { $0 != "--" } }

    /// `--quiet`: print data and errors only, no confirmations or hints.
    static let quiet: Bool = optionWords.contains("--quiet")

    /// `--no-pager`: never page, even on a terminal.
    static let noPager: Bool = optionWords.contains("--no-pager")
}

/// A confirmation or hint for a person ("deleted …", "valid for …"): on stdout, left out with --quiet.
func say(_ text: String) {
    if !GlobalOptions.quiet { print(text) }
}

/// A hint on stderr (it must not mix with data on stdout), left out with --quiet.
func note(_ text: String) {
    if !GlobalOptions.quiet { FileHandle.standardError.write(Data((text + "\n").utf8)) }
}
