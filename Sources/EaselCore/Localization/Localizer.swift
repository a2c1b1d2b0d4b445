import EaselAssets
import Foundation

/// The message catalogs of `locales/` (one flat JSON object per language, keys like
/// "signin.title", named placeholders like "{email}"). Loaded once at start: embedded in the
/// binary, or from disk when EASEL_DEV_ASSETS is on.
public struct Localizer: Sendable {
    public enum LoadError: Error, CustomStringConvertible {
        case missing(String)
        case unreadable(String)

        public var description: String {
            switch self {
            case .missing(let file): "The message catalog \(file) is missing from this build."
            case .unreadable(let file): "The message catalog \(file) is not a JSON object of strings."
            }
        }
    }

    /// Each language's catalog as written (no fallbacks filled in).
    public let catalogs: [Language: [String: String]]

    public init(catalogs: [Language: [String: String]]) {
        self.catalogs = catalogs
    }

    /// Parses files named "en.json", "zh-Hans.json", "es.json". English is required; the other
    /// languages fall back to it key by key.
    public init(files: [String: Data]) throws {
        var catalogs: [Language: [String: String]] = [:]
        for language in Language.allCases {
            let file = "\(language.rawValue).json"
            guard let data = files[file] else {
                if language == .english { throw LoadError.missing(file) }
                continue
            }
            guard let catalog = try? JSONDecoder().decode([String: String].self, from: data) else { throw LoadError.unreadable(file) }
            catalogs[language] = catalog
        }
        self.init(catalogs: catalogs)
    }

    /// The catalogs compiled into this binary.
    public static func embedded() throws -> Localizer {
        try Localizer(files: Self.embeddedFiles())
    }

    static func embeddedFiles() -> [String: Data] {
        var files: [String: Data] = [:]
        for (name, data) in EmbeddedAssets.load() where name.hasPrefix("locales/") {
            files[String(name.dropFirst("locales/".count))] = data
        }
        return files
    }

    /// The catalogs in `root/locales`, read now (EASEL_DEV_ASSETS; restart to see edits). A
    /// language file missing there comes from the binary, so a folder of only templates works.
    public static func disk(root: URL) throws -> Localizer {
        let folder = root.appending(path: "locales")
        var files = Self.embeddedFiles()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasSuffix(".json") {
            files[name] = FileManager.default.contents(atPath: folder.appending(path: name).path)
        }
        return try Localizer(files: files)
    }

    /// The text for `key` in `language`, else in English, else the key itself (so a missing
    /// string shows up in review instead of leaving a hole), with `{name}` placeholders filled.
    public func text(_ key: String, _ arguments: [String: String] = [:], language: Language) -> String {
        let raw = self.catalogs[language]?[key] ?? self.catalogs[.english]?[key] ?? key
        return Self.fill(raw, arguments)
    }

    /// Every string for `language`, English where it has none.
    public func strings(for language: Language) -> [String: String] {
        (self.catalogs[.english] ?? [:]).merging(self.catalogs[language] ?? [:]) { _, translated in translated }
    }

    /// Replaces `{name}` with `arguments["name"]`; unknown names stay as written.
    public static func fill(_ text: String, _ arguments: [String: String]) -> String {
        guard !arguments.isEmpty, text.contains("{") else { return text }
        var result = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{") {
            result += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else {
                rest = rest[open...]
                break
            }
            let name = String(rest[rest.index(after: open)..<close])
            if let value = arguments[name] {
                result += value
            } else {
                result += rest[open...close]
            }
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    /// The placeholder names in a text: "{email}" gives "email".
    public static func placeholders(in text: String) -> Set<String> {
        Set(text.matches(of: /\{([A-Za-z][A-Za-z0-9_]*)\}/).map { String($0.1) })
    }
}
