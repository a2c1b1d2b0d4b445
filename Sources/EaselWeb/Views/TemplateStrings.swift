import EaselCore
import Foundation
import Mustache

/// One language's catalog as templates see it: `{{layout.t.signin.title}}` finds the key
/// "signin.title", so a key reads the same in a template as in locales/*.json. Values are
/// escaped like any other; keys ending in `_html` hold trusted markup for `{{{…}}}`.
struct TemplateStrings: MustacheParent, Sendable {
    final class Table: Sendable {
        let strings: [String: String]
        /// "signin" for "signin.title": the names that lead further down.
        let prefixes: Set<String>

        init(strings: [String: String]) {
            self.strings = strings
            var prefixes: Set<String> = []
            for key in strings.keys {
                var parts = key.split(separator: ".").dropLast()
                while !parts.isEmpty {
                    prefixes.insert(parts.joined(separator: "."))
                    parts = parts.dropLast()
                }
            }
            self.prefixes = prefixes
        }
    }

    let table: Table
    let path: String

    /// `strings` with `{site}` filled in: the only placeholder a template cannot fill itself.
    init(localizer: Localizer, language: Language, siteName: String) {
        self.table = Table(strings: localizer.strings(for: language).mapValues { Localizer.fill($0, ["site": siteName]) })
        self.path = ""
    }

    init(table: Table, path: String) {
        self.table = table
        self.path = path
    }

    func child(named name: String) -> Any? {
        let key = self.path.isEmpty ? name : "\(self.path).\(name)"
        if let text = self.table.strings[key] { return text }
        if self.table.prefixes.contains(key) { return TemplateStrings(table: self.table, path: key) }
        return nil
    }
}
