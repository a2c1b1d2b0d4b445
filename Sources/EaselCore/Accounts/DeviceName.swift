/// "Firefox on Linux" from a User-Agent header: enough for a person to recognise a device.
/// Product names (Firefox, Android) are the same in every language; the words around them
/// come from the message catalogs.
public struct DeviceName: Sendable, Equatable {
    public enum Browser: Sendable, Equatable {
        /// A product people know by name: "Firefox", "curl".
        case product(String)
        /// No User-Agent at all.
        case unknown
        /// A User-Agent that names no browser known here.
        case otherProgram
    }

    public var browser: Browser
    /// "Linux", "iOS"; nil when the User-Agent does not say.
    public var system: String?

    public init(browser: Browser, system: String?) {
        self.browser = browser
        self.system = system
    }

    public init(userAgent ua: String) {
        self.browser =
            if ua.contains("Edg/") { .product("Edge") } else if ua.contains("OPR/") { .product("Opera") } else if ua.contains("Firefox/") {
                .product("Firefox")
            } else if ua.contains("Chrome/") || ua.contains("Chromium/") { .product("Chrome") } else if ua.contains("Safari/") {
                .product("Safari")
            } else if ua.lowercased().contains("curl") { .product("curl") } else if ua.isEmpty { .unknown } else { .otherProgram }
        self.system =
            if ua.contains("iPhone") || ua.contains("iPad") { "iOS" } else if ua.contains("Android") { "Android" } else if ua.contains("Mac OS X") {
                "macOS"
            } else if ua.contains("Windows") { "Windows" } else if ua.contains("CrOS") { "ChromeOS" } else if ua.contains("Linux") { "Linux" } else { nil }
    }

    /// The name in `language`: "Chrome on Linux", "Chrome en Linux", "Linux 上的 Chrome".
    public func text(_ localizer: Localizer, language: Language) -> String {
        let browser =
            switch self.browser {
            case .product(let name): name
            case .unknown: localizer.text("device.unknown_browser", language: language)
            case .otherProgram: localizer.text("device.other_program", language: language)
            }
        guard let system = self.system else { return browser }
        return localizer.text("device.on_system", ["browser": browser, "system": system], language: language)
    }

    /// The English name, whatever the reader's language: what the new-device check remembers
    /// (hashed), so a device stays known when its owner changes language, and what the JSON API
    /// answers (data for programs, like its ISO 8601 times).
    public var english: String {
        let browser =
            switch self.browser {
            case .product(let name): name
            case .unknown: "Unknown browser"
            case .otherProgram: "Another program"
            }
        return self.system.map { "\(browser) on \($0)" } ?? browser
    }
}
