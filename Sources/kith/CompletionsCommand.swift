import ArgumentParser

/// `kith completions bash|zsh|fish`: the shell completion script swift-argument-parser derives
/// from kith's own command definitions (so it never drifts from the commands).
struct CompletionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "completions",
        abstract: "Print the shell completion script for bash, zsh or fish.",
        discussion: """
            scripts/install puts these in place. By hand:
              kith completions bash > ~/.local/share/bash-completion/completions/kith
              kith completions zsh > "${fpath[1]}/_kith"
              kith completions fish > ~/.config/fish/completions/kith.fish
            """
    )

    enum Shell: String, ExpressibleByArgument, CaseIterable {
        case bash, zsh, fish

        var completionShell: CompletionShell {
            switch self {
            case .bash: .bash
            case .zsh: .zsh
            case .fish: .fish
            }
        }
    }

    @Argument(help: "bash, zsh or fish.") var shell: Shell

    func run() throws {
        print(Kith.completionScript(for: shell.completionShell))
    }
}
