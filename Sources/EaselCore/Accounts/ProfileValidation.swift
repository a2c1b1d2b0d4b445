import EaselStore
import Foundation

/// The rules for the profile fields a person edits themselves (display name, language, theme).
public enum ProfileValidation {
    public static let maximumDisplayNameLength = 80
    /// Interface languages on offer; nil means "follow the browser".
    public static let languages = ["en", "zh-Hans", "es"]

    public struct Problem: Error, Equatable, CustomStringConvertible {
        /// The field to fix, as API clients name it: "display_name", "language" or "theme".
        public var field: String
        public var message: String
        public var description: String { self.message }
    }

    /// The trimmed name, or a problem naming `display_name`.
    public static func displayName(_ raw: String) throws(Problem) -> String {
        let name = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard name.count <= Self.maximumDisplayNameLength else {
            throw Problem(field: "display_name", message: "display_name is too long: use at most \(Self.maximumDisplayNameLength) characters.")
        }
        guard !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw Problem(field: "display_name", message: "display_name cannot contain control characters such as line breaks.")
        }
        return name
    }

    public static func language(_ raw: String?) throws(Problem) -> String? {
        guard let raw else { return nil }
        guard Self.languages.contains(raw) else {
            throw Problem(
                field: "language",
                message: "language must be one of \(Self.languages.joined(separator: ", ")), or null to follow the browser."
            )
        }
        return raw
    }

    public static func theme(_ raw: String) throws(Problem) -> User.Theme {
        guard let theme = User.Theme(rawValue: raw) else {
            throw Problem(field: "theme", message: "theme must be one of \(User.Theme.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        return theme
    }
}
