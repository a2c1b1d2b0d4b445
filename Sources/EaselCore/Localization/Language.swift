import EaselStore
import Foundation

/// A language the site and its mails are written in. The raw value is what profiles and the
/// preferences cookie store, and what `<html lang>` says.
public enum Language: String, CaseIterable, Sendable {
    case english = "en"
    case simplifiedChinese = "zh-Hans"
    case spanish = "es"

    /// How the language calls itself, for choosers (never translated).
    public var nativeName: String {
        switch self {
        case .english: "English"
        case .simplifiedChinese: "简体中文"
        case .spanish: "Español"
        }
    }

    /// A stored code ("en", "zh-Hans", "es", any case); nil for anything else, so a stale or
    /// forged value falls through to the next preference.
    public init?(code: String?) {
        guard let code, let match = Self.allCases.first(where: { $0.rawValue.lowercased() == code.lowercased() }) else { return nil }
        self = match
    }

    /// The supported language for one BCP 47 tag: "es-MX" is Spanish, "zh-CN" and "zh-SG" are
    /// Simplified Chinese. Traditional Chinese ("zh-TW", "zh-HK", "zh-Hant") is not offered,
    /// and Simplified text would be the wrong script for those readers, so it gives nil.
    public init?(tag: String) {
        let parts = tag.trimmingCharacters(in: .whitespaces).lowercased().split(separator: "-").map(String.init)
        switch parts.first {
        case "en": self = .english
        case "es": self = .spanish
        case "zh":
            let subtags = Set(parts.dropFirst())
            if subtags.contains("hans") {
                self = .simplifiedChinese
            } else if !subtags.isDisjoint(with: ["hant", "tw", "hk", "mo"]) {
                return nil
            } else {
                self = .simplifiedChinese
            }
        default: return nil
        }
    }

    /// The best supported language of an Accept-Language header (RFC 9110 §12.5.4): higher
    /// q-values first, equal ones in header order; `q=0` and `*` never choose. Nil when nothing
    /// matches, so the caller decides the default.
    public static func negotiate(acceptLanguage header: String) -> Language? {
        var ranges: [(tag: String, quality: Double, position: Int)] = []
        for (position, item) in header.split(separator: ",").enumerated() {
            let fields = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let tag = fields.first, !tag.isEmpty, tag != "*" else { continue }
            var quality = 1.0
            for parameter in fields.dropFirst() where parameter.lowercased().hasPrefix("q=") {
                quality = Double(parameter.dropFirst(2)) ?? 0
            }
            guard quality > 0 else { continue }
            ranges.append((tag, min(quality, 1), position))
        }
        ranges.sort { $0.quality != $1.quality ? $0.quality > $1.quality : $0.position < $1.position }
        return ranges.lazy.compactMap { Language(tag: $0.tag) }.first
    }
}

extension User {
    /// The language of the person's profile, for their pages and the mails they receive.
    public var preferredLanguage: Language { Language(code: self.language) ?? .english }
}

extension Language {
    /// The locale dates and times are written in. The region is fixed, so a page reads the same
    /// whatever the server's own locale: English as in Britain (day month year, 24-hour clock).
    public var localeIdentifier: String {
        switch self {
        case .english: "en_GB"
        case .simplifiedChinese: "zh_Hans_CN"
        case .spanish: "es_ES"
        }
    }

    /// The same locale as a BCP 47 tag ("en-GB"), for the browser's `Intl.DateTimeFormat`.
    public var localeTag: String { self.localeIdentifier.replacingOccurrences(of: "_", with: "-") }

    /// A moment as people read it in this language, in UTC and labelled so: "12 Mar 2025 at 14:05
    /// UTC", "2025年3月12日 14:05 UTC", "12 mar 2025, 14:05 UTC" (medium date, short time).
    /// Machines get ISO 8601 instead (`datetime=` attributes, JSON).
    public func dateTime(_ date: Date) -> String {
        let style = Date.FormatStyle(
            date: .abbreviated, time: .shortened, locale: Locale(identifier: self.localeIdentifier), calendar: Calendar(identifier: .gregorian),
            timeZone: TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0)!
        )
        return date.formatted(style) + " UTC"
    }
}
