import EaselStore
import Foundation
import Testing

@testable import EaselCore

@Suite("Localization: catalogs, placeholders and language negotiation")
struct LocalizationTests {
    /// The package's top-level folder, found from this file: the catalogs are checked as written.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// locales/*.json as written, without the binary's copies standing in for a missing file.
    static func catalogs() throws -> [Language: [String: String]] {
        let folder = Self.root.appending(path: "locales")
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where name.hasSuffix(".json") {
            files[name] = try Data(contentsOf: folder.appending(path: name))
        }
        return try Localizer(files: files).catalogs
    }

    @Test("Every language has exactly the keys English has", arguments: Language.allCases.filter { $0 != .english })
    func sameKeys(language: Language) throws {
        let catalogs = try Self.catalogs()
        let english = Set(try #require(catalogs[.english]).keys)
        let translated = Set(try #require(catalogs[language], "locales/\(language.rawValue).json is missing").keys)
        #expect(english.subtracting(translated).sorted() == [], "missing in \(language.rawValue)")
        #expect(translated.subtracting(english).sorted() == [], "not in English, so never used")
    }

    @Test("A translation uses the same placeholders as English", arguments: Language.allCases.filter { $0 != .english })
    func samePlaceholders(language: Language) throws {
        let catalogs = try Self.catalogs()
        let english = try #require(catalogs[.english])
        let translated = try #require(catalogs[language])
        for (key, text) in english.sorted(by: { $0.key < $1.key }) {
            guard let other = translated[key] else { continue }
            #expect(Localizer.placeholders(in: other) == Localizer.placeholders(in: text), "\(language.rawValue): \(key)")
        }
    }

    @Test("Catalog texts are not empty; only _html keys hold markup; no key is also a group of keys")
    func wellFormed() throws {
        for (language, catalog) in try Self.catalogs() {
            for (key, text) in catalog {
                #expect(!text.trimmingCharacters(in: .whitespaces).isEmpty, "\(language.rawValue): \(key) is empty")
                if !key.hasSuffix("_html") {
                    #expect(!text.contains("<"), "\(language.rawValue): \(key) has markup but its name does not end in _html")
                }
                #expect(!catalog.keys.contains { $0.hasPrefix(key + ".") }, "\(key) is both a text and a group")
            }
        }
    }

    @Test("A catalog with a missing, extra or mismatched key is caught by the same checks")
    func checksCanFail() {
        let english = ["a.one": "Hello {name}", "a.two": "Bye"]
        let spanish = ["a.one": "Hola {nombre}", "a.three": "Sobra"]
        #expect(Set(english.keys).subtracting(spanish.keys) == ["a.two"])
        #expect(Set(spanish.keys).subtracting(english.keys) == ["a.three"])
        #expect(Localizer.placeholders(in: english["a.one"]!) != Localizer.placeholders(in: spanish["a.one"]!))
    }

    @Test("text() fills placeholders, falls back to English, then to the key")
    func fallbacks() {
        let localizer = Localizer(catalogs: [.english: ["greet": "Hello {name}", "only.en": "English"], .spanish: ["greet": "Hola {name}"]])
        #expect(localizer.text("greet", ["name": "Ada"], language: .spanish) == "Hola Ada")
        #expect(localizer.text("only.en", language: .spanish) == "English")
        #expect(localizer.text("no.such.key", language: .simplifiedChinese) == "no.such.key")
        #expect(Localizer.fill("{a} and {b} and {", ["a": "1"]) == "1 and {b} and {")
    }

    @Test("Accept-Language picks the best supported language", arguments: [
        ("es", Language.spanish),
        ("es-MX,es;q=0.9,en;q=0.8", .spanish),
        ("zh-CN,zh;q=0.9", .simplifiedChinese),
        ("zh-SG", .simplifiedChinese),
        ("zh-Hans-HK", .simplifiedChinese),
        ("en-US,en;q=0.9", .english),
        ("fr-FR, es;q=0.5, en;q=0.4", .spanish),
        ("en;q=0.3, zh-CN;q=0.8", .simplifiedChinese),
        ("de, zh-TW;q=0.9, es;q=0.1", .spanish),
        ("ES-mx", .spanish),
    ])
    func negotiation(header: String, expected: Language) {
        #expect(Language.negotiate(acceptLanguage: header) == expected)
    }

    @Test("Traditional Chinese, q=0, wildcards and unknown languages choose nothing", arguments: [
        "zh-TW", "zh-HK", "zh-Hant", "zh-Hant-CN", "es;q=0", "*", "fr, de;q=0.5", "", "es;q=abc",
    ])
    func noMatch(header: String) {
        #expect(Language.negotiate(acceptLanguage: header) == nil)
    }

    @Test("Stored codes are matched exactly; anything else is nil")
    func codes() {
        #expect(Language(code: "zh-hans") == .simplifiedChinese)
        #expect(Language(code: "es") == .spanish)
        #expect(Language(code: "zh") == nil)
        #expect(Language(code: "fr") == nil)
        #expect(Language(code: nil) == nil)
    }

    @Test("Mails are written in the recipient's language, with the same link and code")
    func mails() throws {
        let mails = AccountMails(siteName: "Easel", publicURL: URL(string: "http://localhost:8080")!, localizer: try Localizer.embedded())
        let english = mails.verification(to: "ada@example.org", name: nil, token: "tok", code: "123456", language: .english)
        let spanish = mails.verification(to: "ada@example.org", name: nil, token: "tok", code: "123456", language: .spanish)
        let chinese = mails.verification(to: "ada@example.org", name: nil, token: "tok", code: "123456", language: .simplifiedChinese)
        #expect(english.subject == "Confirm your email for Easel")
        #expect(spanish.subject == "Confirma tu correo en Easel")
        #expect(chinese.subject == "确认你在 Easel 的邮箱")
        for mail in [english, spanish, chinese] {
            #expect(mail.text.contains("123456"))
            #expect(mail.text.contains("http://localhost:8080/verify?token=tok"))
        }
        #expect(spanish.html?.contains("<html lang=\"es\">") == true)
        #expect(spanish.html?.contains("O pega esta dirección en tu navegador") == true)
    }

    /// 12 March 2025, 14:05:00 UTC.
    static let moment = Date(timeIntervalSince1970: 1_741_788_300)

    @Test("Dates and times are written as people of each language read them, in UTC and labelled so")
    func dates() {
        #expect(Language.spanish.dateTime(Self.moment) == "12 mar 2025, 14:05 UTC")
        #expect(Language.simplifiedChinese.dateTime(Self.moment) == "2025年3月12日 14:05 UTC")
        let english = Language.english.dateTime(Self.moment)
        #expect(english.hasPrefix("12 Mar 2025"), "day, month, year: \(english)")
        #expect(english.hasSuffix("14:05 UTC"), "24-hour clock: \(english)")
        // Not the server's time zone: a moment just before midnight UTC stays on its day.
        let lateEvening = Date(timeIntervalSince1970: 1_741_823_940)
        #expect(Language.spanish.dateTime(lateEvening) == "12 mar 2025, 23:59 UTC")
        #expect(Language.allCases.map(\.localeTag) == ["en-GB", "zh-Hans-CN", "es-ES"])
    }

    static let chromeOnLinux = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"

    @Test("Device names use the catalog's words around product names, which stay as they are")
    func deviceNames() throws {
        let localizer = try Localizer.embedded()
        let chrome = DeviceName(userAgent: Self.chromeOnLinux)
        #expect(chrome == DeviceName(browser: .product("Chrome"), system: "Linux"))
        #expect(chrome.text(localizer, language: .english) == "Chrome on Linux")
        #expect(chrome.text(localizer, language: .spanish) == "Chrome en Linux")
        #expect(chrome.text(localizer, language: .simplifiedChinese) == "Linux 上的 Chrome")
        #expect(DeviceName(userAgent: "").text(localizer, language: .spanish) == "Navegador desconocido")
        #expect(DeviceName(userAgent: "Lynx/2.9").text(localizer, language: .simplifiedChinese) == "其他程序")
        #expect(DeviceName(userAgent: "curl/8.5.0").text(localizer, language: .spanish) == "curl")
        // What the new-device check remembers does not change with the reader's language.
        #expect(chrome.english == "Chrome on Linux")
        #expect(DeviceName(userAgent: "").english == "Unknown browser")
    }

    @Test("The new-device mail names the device and the time in the recipient's language")
    func newDeviceMail() throws {
        let mails = AccountMails(siteName: "Easel", publicURL: URL(string: "http://localhost:8080")!, localizer: try Localizer.embedded())
        let device = DeviceName(userAgent: Self.chromeOnLinux)
        let spanish = mails.newDevice(to: "ada@example.org", name: nil, device: device, ip: "203.0.113.9", at: Self.moment, language: .spanish)
        #expect(spanish.text.contains("Chrome en Linux, desde 203.0.113.9, el 12 mar 2025, 14:05 UTC."))
        let chinese = mails.newDevice(to: "ada@example.org", name: nil, device: device, ip: "", at: Self.moment, language: .simplifiedChinese)
        #expect(chinese.text.contains("Linux 上的 Chrome，来自 未知地址，时间 2025年3月12日 14:05 UTC。"))
    }
}
