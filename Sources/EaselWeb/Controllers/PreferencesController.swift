import EaselCore
import EaselStore
import Foundation
import Hummingbird

/// The footer's language and theme chooser for visitors: remembered in a cookie for a year.
/// Signed-in people keep theirs in their profile (/account/profile).
struct PreferencesController {
    let cookies: CookiePolicy
    /// "https://img.example.org": a Referer from anywhere else is not followed back.
    let publicOrigin: String
    let views: ViewRenderer

    func addRoutes(to router: Router<AppRequestContext>) {
        router.post("/preferences", use: self.save)
    }

    struct Form: Decodable {
        var language: String?
        var theme: String?
        /// The page the form was on; the Referer stands in when it is missing.
        var back: String?
    }

    @Sendable func save(_ request: Request, context: AppRequestContext) async throws -> Response {
        let form = try await URLEncodedFormDecoder().decode(Form.self, from: request, context: context)
        guard let language = Language(code: form.language), let theme = form.theme.flatMap(User.Theme.init(rawValue:)) else {
            throw WebError.badRequest(self.views.text("preferences.error", [:], context))
        }
        let back = AccountController.safeNext(form.back) ?? self.sameSitePath(request.headers[.referer]) ?? "/"
        var response = Response(status: .seeOther, headers: [.location: back])
        let preferences = VisitorPreferences(language: language, theme: theme, chosen: true)
        // Kept for a year only with consent to preference cookies (/cookies); otherwise until
        // the browser closes, which the choice they just made still needs.
        let lifetime = context.preferences.consent?.preferences == true ? VisitorPreferences.cookieLifetime : nil
        response.setCookie(self.cookies.cookie(VisitorPreferences.cookieName, value: preferences.cookieValue, maxAge: lifetime))
        return response
    }

    /// The path and query of a Referer on this site, or nil.
    func sameSitePath(_ referer: String?) -> String? {
        guard let referer, referer.hasPrefix(self.publicOrigin + "/") else { return nil }
        return AccountController.safeNext(String(referer.dropFirst(self.publicOrigin.count)))
    }
}
