import Foundation
import Mustache

/// Renders the web page's templates: a page's body over its data, inside the layout (or alone,
/// as the fragment the page's script asks for when it refreshes part of a page).
public struct WebPages: Sendable {
    let library: MustacheLibrary
    /// The strings table as templates see it (`{{t.key}}`).
    let strings: [String: String]

    public init(strings: [String: String] = WebStrings.english) {
        var library = MustacheLibrary()
        for (name, text) in WebTemplates.all {
            // The templates are part of the program: a parse error is a programming error,
            // caught by the first test that renders any page.
            do { try library.register(text, named: name) } catch { fatalError("web template '\(name)' does not parse: \(error)") }
        }
        self.library = library
        self.strings = strings
    }

    /// Who is looking: a logged-in session's CSRF token (nil on the login page).
    public struct Viewer: Sendable {
        public let csrf: String?
        public init(csrf: String?) { self.csrf = csrf }
    }

    /// The full HTML document of `template` over `data`; `nav` marks the current menu entry,
    /// `live` makes the page's script refresh `<main>` when the node reports changes.
    public func page(_ template: String, title: String, data: [String: Any], viewer: Viewer, nav: String? = nil, live: Bool = false) -> String {
        let body = fragment(template, data: data, viewer: viewer)
        var layout: [String: Any] = ["t": strings, "title": title, "body": body, "live": live]
        if let csrf = viewer.csrf { layout["csrf"] = csrf }
        if let nav { layout["nav"] = [nav: true] }
        return library.render(layout, withTemplate: "layout") ?? ""
    }

    /// Only the body of `template` (what `<main>` holds).
    public func fragment(_ template: String, data: [String: Any], viewer: Viewer) -> String {
        var context = data
        context["t"] = strings
        if let csrf = viewer.csrf { context["csrf"] = csrf }
        return library.render(context, withTemplate: template) ?? ""
    }

    /// A string of the table.
    public func text(_ key: String) -> String { strings[key] ?? key }
}
