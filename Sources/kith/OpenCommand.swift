import ArgumentParser
import Foundation
import KithNode

/// `kith open`: the web page's address with a one-time login link (made with the API key, so
/// the person at this computer needs no GUI password), opened in a browser when one is there.
struct OpenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "open",
        abstract: "Open Kith's web page in a browser (prints its address).",
        discussion: """
            Asks the running kithd for a one-time login link (valid for 2 minutes, usable once)
            and opens it with xdg-open when a desktop is there; otherwise prints it, so you can
            paste it into a browser on this computer. The plain address is printed too: from a
            phone on your network use the GUI address (kithd --gui-listen) and the GUI password.

            Examples:
              kith open
              kith open --print          only print the link
            """
    )
    @OptionGroup var data: DataDirOption
    @Flag(name: .customLong("print"), help: "Only print the link; do not start a browser.") var printOnly = false

    func run() throws {
        guard let api = try failing({ try APIClient(directory: data.directory) }) else {
            fail("kithd is not running for \(data.directory.path): start it first (kithd --data-dir \(data.directory.path))")
        }
        let answer: [String: Any]
        do { answer = try api.call("session-link") } catch is APIClient.Unreachable {
            fail("kithd is not running for \(data.directory.path): start it first")
        } catch let e as APIClient.Refused { fail(e.message) }
        guard let path = answer["path"] as? String else { fail("kithd sent an unreadable answer") }
        let link = api.base + path
        print("Kith's web page: \(api.base)/")
        print("Log in with this one-time link (valid for \(answer["expiresIn"] as? Int ?? 120) s): \(link)")
        let env = ProcessInfo.processInfo.environment
        guard !printOnly, env["DISPLAY"] != nil || env["WAYLAND_DISPLAY"] != nil,
              let opener = ["/usr/bin/xdg-open", "/usr/local/bin/xdg-open"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: opener)
        p.arguments = [link]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try? p.run()
    }
}
