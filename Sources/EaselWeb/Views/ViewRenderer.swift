import EaselCore
import EaselStore
import Foundation
import Hummingbird
import Mustache
import NIOCore

/// What a page needs from the request it answers.
protocol PageContext {
    var cspNonce: String { get }
    var csrfToken: String { get }
    var signedInUser: User? { get }
    var preferences: VisitorPreferences { get }
    /// Set when the page view is counted for someone who accepted analytics (the beacon's key).
    var beaconToken: String? { get }
}

extension PageContext {
    /// Pages made outside a request's context (mails, fixed pages) count nothing.
    var beaconToken: String? { nil }

    /// The profile's language, else the visitor's (cookie, then Accept-Language), else English.
    var language: Language { Language(code: self.signedInUser?.language) ?? self.preferences.language }
}

extension AppRequestContext: PageContext {
    var signedInUser: User? { self.identity?.user }
}

extension SignedInContext: PageContext {
    var signedInUser: User? { self.identity.user }
}

/// What every page's layout needs.
struct LayoutData: Sendable {
    var siteName: String
    var title: String
    var cspNonce: String
    var csrfToken: String
    var stylesheetURL: String
    var scriptURL: String
    var iconURL: String
    var year: Int
    var signedIn: Bool
    var userName: String
    /// The signed-in person's picture, or nil: then `initials` stand in.
    var avatarURL: String?
    var initials: String
    var isAdmin: Bool
    /// The studio pages (Create, Activity, Gallery, Credits) exist: image generation is set up.
    var studio: Bool
    /// Stripe billing is set up: Pricing and Billing pages exist.
    var billing: Bool
    /// "Sign in with Google" when an OpenID Connect provider is configured.
    var externalSignIn: String?
    /// light, dark or system (follow the device).
    var theme: String
    /// The page's language, for `<html lang>`.
    var lang: String
    /// The locale dates are written in ("en-GB"), so the script writes them as the server does.
    var locale: String
    /// The page's words: `{{layout.t.signin.title}}`.
    var t: TemplateStrings
    /// The footer's choosers, for visitors (signed-in people use their profile).
    var languages: [Choice]
    var themes: [Choice]
    /// Analytics are on and this visitor has not made their cookie choices yet.
    var consentBanner: Bool
    /// For the beacon script: present only when this page view is counted with consent.
    var beaconToken: String?
}

/// An option of a `<select>`.
struct Choice: Sendable {
    var value: String
    var label: String
    var selected: Bool
}

/// Renders typed view models with the mustache templates (HTML-escaped by default).
public struct ViewRenderer: Sendable {
    let assets: AssetCatalog
    let siteName: String
    let externalSignInLabel: String?
    let localizer: Localizer
    let strings: [Language: TemplateStrings]
    /// Whether the studio pages are served, for the navigation.
    let studio: Bool
    /// Whether billing pages are served, for the navigation.
    let billing: Bool
    /// Whether page views are counted (EASEL_ANALYTICS): the cookie banner shows only then.
    let analytics: Bool

    public init(
        assets: AssetCatalog, siteName: String, localizer: Localizer, externalSignInLabel: String? = nil, studio: Bool = false, billing: Bool = false,
        analytics: Bool = false
    ) {
        self.assets = assets
        self.analytics = analytics
        self.studio = studio
        self.billing = billing
        self.siteName = siteName
        self.externalSignInLabel = externalSignInLabel
        self.localizer = localizer
        var strings: [Language: TemplateStrings] = [:]
        for language in Language.allCases {
            strings[language] = TemplateStrings(localizer: localizer, language: language, siteName: siteName)
        }
        self.strings = strings
    }

    /// A catalog text in the page's language, with `{site}` and `arguments` filled in.
    func text(_ key: String, _ arguments: [String: String] = [:], _ context: some PageContext) -> String {
        self.localizer.text(key, arguments.merging(["site": self.siteName]) { given, _ in given }, language: context.language)
    }

    /// A date and time in the page's language ("12 mar 2025, 14:05 UTC" in Spanish).
    func date(_ date: Date, _ context: some PageContext) -> String {
        context.language.dateTime(date)
    }

    /// The device a User-Agent names, in the page's language ("Chrome en Linux").
    func device(_ userAgent: String, _ context: some PageContext) -> String {
        DeviceName(userAgent: userAgent).text(self.localizer, language: context.language)
    }

    /// "3 seconds", "2 minutes" in the page's language, rounded up to whole minutes past one.
    func duration(seconds: Int, _ context: some PageContext) -> String {
        if seconds < 60 {
            return self.text(seconds == 1 ? "duration.seconds_one" : "duration.seconds_other", ["count": String(seconds)], context)
        }
        let minutes = (seconds + 59) / 60
        return self.text(minutes == 1 ? "duration.minutes_one" : "duration.minutes_other", ["count": String(minutes)], context)
    }

    /// The theme choices in the page's language, with `selected` marked.
    func themeChoices(selected: User.Theme, _ context: some PageContext) -> [Choice] {
        [User.Theme.system, .light, .dark].map { Choice(value: $0.rawValue, label: self.text("theme.\($0.rawValue)", [:], context), selected: $0 == selected) }
    }

    func layout(title: String, context: some PageContext) -> LayoutData {
        let user = context.signedInUser
        let language = context.language
        let theme = user?.theme ?? context.preferences.theme
        return LayoutData(
            siteName: self.siteName,
            title: title == self.siteName ? title : "\(title) · \(self.siteName)",
            cspNonce: context.cspNonce,
            csrfToken: context.csrfToken,
            stylesheetURL: self.assets.url("app.css"),
            scriptURL: self.assets.url("app.js"),
            iconURL: self.assets.url("icon.svg"),
            year: Calendar(identifier: .gregorian).component(.year, from: Date()),
            signedIn: user != nil,
            userName: user.map { $0.displayName.isEmpty ? $0.email : $0.displayName } ?? "",
            avatarURL: user.flatMap(Self.avatarURL),
            initials: user.map(Self.initials) ?? "",
            isAdmin: user?.role == .admin,
            studio: self.studio,
            billing: self.billing,
            externalSignIn: self.externalSignInLabel,
            theme: theme.rawValue,
            lang: language.rawValue,
            locale: language.localeTag,
            t: self.strings[language] ?? TemplateStrings(localizer: self.localizer, language: language, siteName: self.siteName),
            languages: Language.allCases.map { Choice(value: $0.rawValue, label: $0.nativeName, selected: $0 == language) },
            themes: self.themeChoices(selected: theme, context),
            consentBanner: self.analytics && context.preferences.consent == nil,
            beaconToken: context.beaconToken
        )
    }

    /// Changes with the picture, so browsers may keep it cached.
    static func avatarURL(_ user: User) -> String? {
        guard let id = user.id, let key = user.avatarKey else { return nil }
        return "/avatars/\(id)?v=\(AvatarService.version(of: key))"
    }

    /// One letter for the avatar's place: from the name, else the email.
    static func initials(_ user: User) -> String {
        let source = user.displayName.trimmingCharacters(in: .whitespaces).isEmpty ? user.email : user.displayName
        return source.trimmingCharacters(in: .whitespaces).first.map { String($0).uppercased() } ?? "?"
    }

    func render(_ view: some Sendable, template: String, status: HTTPResponse.Status = .ok) throws -> Response {
        let library = try self.assets.templates()
        guard let html = library.render(view, withTemplate: template) else {
            throw WebError(.internalServerError, code: "template_missing", message: "The page template \"\(template)\" is missing from this build.")
        }
        return Response(
            status: status,
            headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: html))
        )
    }
}

struct ErrorPage: Sendable {
    var layout: LayoutData
    var status: Int
    var heading: String
    var message: String
    var requestID: String
}
