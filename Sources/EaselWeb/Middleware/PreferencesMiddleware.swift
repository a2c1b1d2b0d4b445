import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// A visitor's language and theme: chosen in the footer (the `easel_prefs` cookie), else the
/// language from Accept-Language, else English and the device's theme. A signed-in person's
/// profile overrides both (see `PageContext.language`).
public struct VisitorPreferences: Sendable, Equatable {
    public var language: Language = .english
    public var theme: User.Theme = .system
    /// True when the language came from the cookie rather than the browser.
    public var chosen = false
    /// The cookie choices (`easel_consent`); nil until the visitor makes them.
    public var consent: ConsentChoice?

    public init(language: Language = .english, theme: User.Theme = .system, chosen: Bool = false) {
        self.language = language
        self.theme = theme
        self.chosen = chosen
    }

    static let cookieName = "easel_prefs"
    static let cookieLifetime = 365 * 86400

    /// "lang=es&theme=dark": readable, and only characters a cookie value may hold.
    var cookieValue: String { "lang=\(self.language.rawValue)&theme=\(self.theme.rawValue)" }

    /// The cookie first, then Accept-Language; unknown values are ignored one by one.
    static func resolve(cookie: String?, acceptLanguage: String?) -> VisitorPreferences {
        var preferences = VisitorPreferences()
        var fields: [String: String] = [:]
        for pair in (cookie ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
        }
        if let language = Language(code: fields["lang"]) {
            preferences.language = language
            preferences.chosen = true
        } else if let header = acceptLanguage, let language = Language.negotiate(acceptLanguage: header) {
            preferences.language = language
        }
        if let theme = fields["theme"].flatMap(User.Theme.init(rawValue:)) { preferences.theme = theme }
        return preferences
    }
}

/// Puts the visitor's preferences in the context. It runs outside the error middleware, so
/// error pages are in the visitor's language too.
struct PreferencesMiddleware: RouterMiddleware {
    typealias Context = AppRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if !request.uri.path.hasPrefix("/static/") {
            context.preferences = VisitorPreferences.resolve(
                cookie: request.cookies[VisitorPreferences.cookieName]?.value, acceptLanguage: request.headers[.acceptLanguage]
            )
            context.preferences.consent = ConsentChoice(cookie: request.cookies[ConsentChoice.cookieName]?.value)
        }
        return try await next(request, context)
    }
}
