import EaselApp
import EaselCore
import EaselStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Localization: the page's language and the visitor's preferences")
struct WebLocalizationTests {
    static let templates = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appending(path: "templates")

    static func acceptLanguage(_ value: String) -> HTTPFields { [.acceptLanguage: value] }

    /// Signs up and confirms `email` (sign-up in the language `headers` ask for), then signs in.
    func signedIn(_ services: AppServices, _ browser: Browser, email: String, headers: HTTPFields = [:]) async throws {
        try await browser.get("/signup", headers: headers)
        let signUp = try await browser.post(
            "/signup", ["email": email, "password": "correct horse battery", "name": "Ada", "age": "on", "terms": "on"], headers: headers
        )
        #expect(signUp.status == .seeOther)
        try await services.mailer.sendDue()
        let mail = try #require(try await services.database.recentMails().first { $0.toEmail == email && $0.kind == "verify_email" })
        let link = try #require(mail.textBody.split(whereSeparator: \.isWhitespace).first { $0.contains("/verify?token=") })
        try await browser.get(String(link.dropFirst("http://localhost:8080".count)))
        let signIn = try await browser.post("/signin", ["email": email, "password": "correct horse battery"])
        #expect(signIn.status == .seeOther)
    }

    @Test("Every {{layout.t.…}} in a template names a key the English catalog has")
    func templateKeysExist() throws {
        let english = try Localizer.embedded().catalogs[.english] ?? [:]
        var checked = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: Self.templates.path) where name.hasSuffix(".mustache") {
            let text = try String(contentsOf: Self.templates.appending(path: name), encoding: .utf8)
            for match in text.matches(of: /layout\.t\.([a-z0-9_.]+)/) {
                checked += 1
                #expect(english[String(match.1)] != nil, "\(name) uses \(match.1), which locales/en.json lacks")
            }
        }
        #expect(checked > 50, "the templates use the catalogs")
    }

    @Test("Without preferences a page is English with lang=\"en\"")
    func englishByDefault() async throws {
        try await withTestApp { _, client in
            let page = try await Browser(client).get("/signin")
            #expect(page.text.contains("<html lang=\"en\""))
            #expect(page.text.contains("Forgot your password?"))
        }
    }

    @Test("A visitor whose browser asks for Spanish gets the Spanish sign-in page")
    func acceptLanguageSpanish() async throws {
        try await withTestApp { _, client in
            let page = try await Browser(client).get("/signin", headers: Self.acceptLanguage("es-MX,es;q=0.9,en;q=0.5"))
            #expect(page.status == .ok)
            #expect(page.text.contains("<html lang=\"es\""))
            #expect(page.text.contains("¿Olvidaste tu contraseña?"))
            #expect(page.text.contains("<title>Iniciar sesión · Easel</title>"))
            #expect(!page.text.contains("Forgot your password?"))
        }
    }

    @Test("Simplified Chinese for zh-CN; Traditional Chinese readers get English")
    func chinese() async throws {
        try await withTestApp { _, client in
            let simplified = try await Browser(client).get("/signin", headers: Self.acceptLanguage("zh-CN,zh;q=0.9"))
            #expect(simplified.text.contains("<html lang=\"zh-Hans\""))
            #expect(simplified.text.contains("忘记密码？"))
            let traditional = try await Browser(client).get("/signin", headers: Self.acceptLanguage("zh-TW"))
            #expect(traditional.text.contains("<html lang=\"en\""))
        }
    }

    @Test("With consent to preference cookies, the footer's choice is kept in a cookie for a year and wins over Accept-Language")
    func preferencesCookie() async throws {
        try await withTestApp { _, client in
            let browser = Browser(client)
            let home = try await browser.get("/", headers: Self.acceptLanguage("es"))
            #expect(home.text.contains("action=\"/preferences\""))
            _ = try await browser.post("/cookies", ["choice": "save", "preferences": "on"])
            let saved = try await browser.post(
                "/preferences", ["language": "zh-Hans", "theme": "dark"], headers: [.referer: "http://localhost:8080/signin?next=/account"]
            )
            #expect(saved.status == .seeOther)
            #expect(saved.headers[.location] == "/signin?next=/account", "back to the page the form was on")
            let cookie = try #require(saved.headers[values: .setCookie].first { $0.hasPrefix("easel_prefs=") })
            for attribute in ["Max-Age=31536000", "SameSite=Lax", "Path=/", "HttpOnly"] {
                #expect(cookie.contains(attribute), "preferences cookie lacks \(attribute)")
            }
            let page = try await browser.get("/signin", headers: Self.acceptLanguage("es"))
            #expect(page.text.contains("<html lang=\"zh-Hans\" data-theme=\"dark\""))
            #expect(page.text.contains("忘记密码？"))
        }
    }

    @Test("Preferences never redirect off the site, and refuse unknown values and missing CSRF tokens")
    func preferencesSafety() async throws {
        try await withTestApp { _, client in
            let browser = Browser(client)
            try await browser.get("/")
            let offsite = try await browser.post("/preferences", ["language": "es", "theme": "light", "back": "//evil.example"], headers: [.referer: "https://evil.example/x"])
            #expect(offsite.status == .seeOther)
            #expect(offsite.headers[.location] == "/")
            let unknown = try await browser.post("/preferences", ["language": "fr", "theme": "light"])
            #expect(unknown.status == .badRequest)
            let forged = try await browser.post("/preferences", ["language": "es", "theme": "light"], csrf: "wrong")
            #expect(forged.status == .forbidden)
        }
    }

    @Test("A signed-in person's profile language wins over the cookie and Accept-Language")
    func profileWins() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            try await browser.get("/")
            _ = try await browser.post("/preferences", ["language": "es", "theme": "system"])
            try await self.signedIn(services, browser, email: "ada@example.org")
            let user = try #require(try await services.database.user(email: "ada@example.org"))
            try await services.database.updateProfile(userID: user.id!, displayName: "Ada", language: "zh-Hans", theme: .light)
            let page = try await browser.get("/account", headers: Self.acceptLanguage("es"))
            #expect(page.status == .ok)
            #expect(page.text.contains("<html lang=\"zh-Hans\" data-theme=\"light\""))
            #expect(page.text.contains("退出登录"))
        }
    }

    @Test("Someone who signs up in Spanish keeps Spanish in their profile and gets a Spanish verification mail")
    func spanishSignUpMail() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            try await browser.get("/signup", headers: Self.acceptLanguage("es"))
            let signUp = try await browser.post(
                "/signup", ["email": "lucia@example.org", "password": "correct horse battery", "name": "Lucía", "age": "on", "terms": "on"],
                headers: Self.acceptLanguage("es")
            )
            #expect(signUp.status == .seeOther)
            #expect(try await services.database.user(email: "lucia@example.org")?.language == "es")
            try await services.mailer.sendDue()
            let mail = try #require(try await services.database.recentMails().first { $0.toEmail == "lucia@example.org" })
            #expect(mail.kind == "verify_email")
            #expect(mail.subject == "Confirma tu correo en Easel")
            #expect(mail.textBody.contains("Tu código de confirmación es"))
            #expect(mail.textBody.contains("http://localhost:8080/verify?token="))
        }
    }

    @Test("Error messages built in Swift follow the page's language")
    func spanishErrors() async throws {
        try await withTestApp { _, client in
            let browser = Browser(client)
            try await browser.get("/signin", headers: Self.acceptLanguage("es"))
            let failed = try await browser.post("/signin", ["email": "nobody@example.org", "password": "wrong password"], headers: Self.acceptLanguage("es"))
            #expect(failed.status == .unauthorized)
            #expect(failed.text.contains("Correo o contraseña incorrectos."))
            let missing = try await browser.get("/no-such-page", headers: Self.acceptLanguage("es"))
            #expect(missing.status == .notFound)
            #expect(missing.text.contains("Página no encontrada"))
        }
    }

    @Test("A signed-in person whose profile language is Spanish sees their account page in Spanish")
    func spanishAccountPage() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            try await self.signedIn(services, browser, email: "ada@example.org", headers: Self.acceptLanguage("es"))
            let user = try #require(try await services.database.user(email: "ada@example.org"))
            #expect(user.language == "es")
            // No Accept-Language now: the profile decides.
            let page = try await browser.get("/account")
            #expect(page.status == .ok)
            #expect(page.text.contains("<html lang=\"es\""))
            #expect(page.text.contains("<h1>Tu cuenta</h1>"))
            #expect(page.text.contains("Dónde tienes la sesión iniciada"))
            #expect(page.text.contains("Administrador"))
            #expect(!page.text.contains("Your account"))
            let keys = try await browser.get("/account/keys")
            #expect(keys.text.contains("No tienes claves de API."))
            // Error pages follow the profile too, with no Accept-Language sent.
            let missing = try await browser.get("/no-such-page")
            #expect(missing.status == .notFound)
            #expect(missing.text.contains("Página no encontrada"))
        }
    }

    @Test("Admin pages follow the page's language, messages built in Swift included")
    func adminPagesFollowLanguage() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            try await self.signedIn(services, browser, email: "ada@example.org", headers: Self.acceptLanguage("es"))
            let users = try await browser.get("/admin/users")
            #expect(users.status == .ok)
            #expect(users.text.contains("<h1>Usuarios</h1>"))
            #expect(users.text.contains("placeholder=\"Buscar por correo electrónico o nombre\""))
            #expect(!users.text.contains("Search by email or name"))
            let invitations = try await browser.get("/admin/invitations")
            #expect(invitations.text.contains("<h1>Invitaciones</h1>"))
            let admin = try #require(try await services.database.user(email: "ada@example.org"))
            let csrf = try #require(try await services.database.sessions(userID: admin.id!).first?.csrfToken)
            let refused = try await browser.post("/admin/invitations", ["email": "not an address", "role": "member"], csrf: csrf)
            #expect(refused.status == .unprocessableContent)
            #expect(refused.text.contains("<h1>Invitaciones</h1>"))
            #expect(refused.text.contains("Escribe una dirección de correo como nombre@example.org."))
            // Error pages follow the profile (no Accept-Language sent).
            let missing = try await browser.get("/admin/users/999999")
            #expect(missing.status == .notFound)
            #expect(missing.text.contains("No hay ninguna cuenta con ese número."))
            try await services.database.updateProfile(userID: admin.id!, displayName: "Ada", language: "zh-Hans", theme: .system)
            let chinese = try await browser.get("/admin/users")
            #expect(chinese.text.contains("<html lang=\"zh-Hans\""))
            #expect(chinese.text.contains("<h1>用户</h1>"))
            #expect(chinese.text.contains("按邮箱或名字搜索"))
        }
    }

    static let chromeOnLinux = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
    /// "12 mar 2025, 14:05 UTC" (Spanish months are lower case, some with a dot).
    static var spanishDate: Regex<Substring> { /\d{1,2} [a-z]{3,5}\.? \d{4}, \d{2}:\d{2} UTC/ }
    /// "2025年3月12日 14:05 UTC".
    static var chineseDate: Regex<Substring> { /\d{4}年\d{1,2}月\d{1,2}日 \d{2}:\d{2} UTC/ }
    /// The fixed format pages used before they followed the language: "2025-03-12 14:05 UTC".
    static var isoDate: Regex<Substring> { /\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC/ }

    @Test("The Sessions page and the new-device mail write dates and devices in the person's language")
    func datesAndDevices() async throws {
        try await withTestApp { services, client in
            try await self.signedIn(services, Browser(client), email: "ada@example.org", headers: Self.acceptLanguage("es"))
            let user = try #require(try await services.database.user(email: "ada@example.org"))
            #expect(user.language == "es")

            // A second device, with no Accept-Language: the profile decides.
            let phone = Browser(client)
            let chrome: HTTPFields = [.userAgent: Self.chromeOnLinux]
            try await phone.get("/signin", headers: chrome)
            let signIn = try await phone.post("/signin", ["email": "ada@example.org", "password": "correct horse battery"], headers: chrome)
            #expect(signIn.status == .seeOther)
            let mail = try #require(try await services.database.recentMails().first { $0.kind == "new_device" })
            #expect(mail.subject == "Nuevo inicio de sesión en tu cuenta de Easel")
            #expect(mail.textBody.contains("Chrome en Linux, desde "))
            #expect(mail.textBody.contains(Self.spanishDate), "\(mail.textBody)")
            #expect(!mail.textBody.contains(Self.isoDate))

            let spanish = try await phone.get("/account", headers: chrome)
            #expect(spanish.status == .ok)
            #expect(spanish.text.contains("<html lang=\"es\" data-theme=\"system\" data-locale=\"es-ES\">"))
            #expect(spanish.text.contains("<td>Chrome en Linux"))
            #expect(spanish.text.contains("<td>Navegador desconocido"), "the first session had no User-Agent")
            #expect(spanish.text.contains("<td>\(Language.spanish.dateTime(user.createdAt))</td>"), "member since")
            #expect(spanish.text.contains(Self.spanishDate))
            #expect(!spanish.text.contains(Self.isoDate))
            #expect(!spanish.text.contains("Chrome on Linux"))

            try await services.database.updateProfile(userID: user.id!, displayName: "Ada", language: "zh-Hans", theme: .system)
            let chinese = try await phone.get("/account", headers: chrome)
            #expect(chinese.text.contains("<html lang=\"zh-Hans\" data-theme=\"system\" data-locale=\"zh-Hans-CN\">"))
            #expect(chinese.text.contains("<td>Linux 上的 Chrome"))
            #expect(chinese.text.contains("<td>\(Language.simplifiedChinese.dateTime(user.createdAt))</td>"))
            #expect(chinese.text.contains(Self.chineseDate))
            #expect(!chinese.text.contains(Self.isoDate))

            // Admin pages too: the users list's "joined" column.
            let users = try await phone.get("/admin/users", headers: chrome)
            #expect(users.text.contains("<td>\(Language.simplifiedChinese.dateTime(user.createdAt))</td>"))
        }
    }

    @Test("Signing up with email keeps the visitor's theme from the preferences cookie")
    func signUpKeepsTheme() async throws {
        try await withTestApp { services, client in
            let browser = Browser(client)
            browser.cookies["easel_prefs"] = "lang=zh-Hans&theme=dark"
            try await self.signedIn(services, browser, email: "ada@example.org", headers: Self.acceptLanguage("es"))
            let user = try #require(try await services.database.user(email: "ada@example.org"))
            #expect(user.language == "zh-Hans", "the footer's choice wins over Accept-Language")
            #expect(user.theme == .dark)
        }
    }
}
