/// "Firefox on Linux" from a User-Agent header: enough for a person to recognise a device.
public enum DeviceName {
    public static func describe(userAgent: String) -> String {
        let ua = userAgent
        let browser: String =
            if ua.contains("Edg/") { "Edge" } else if ua.contains("OPR/") { "Opera" } else if ua.contains("Firefox/") {
                "Firefox"
            } else if ua.contains("Chrome/") || ua.contains("Chromium/") { "Chrome" } else if ua.contains("Safari/") {
                "Safari"
            } else if ua.lowercased().contains("curl") { "curl" } else if ua.isEmpty { "Unknown browser" } else { "Another program" }
        let system: String? =
            if ua.contains("iPhone") || ua.contains("iPad") { "iOS" } else if ua.contains("Android") { "Android" } else if ua.contains("Mac OS X") {
                "macOS"
            } else if ua.contains("Windows") { "Windows" } else if ua.contains("CrOS") { "ChromeOS" } else if ua.contains("Linux") { "Linux" } else { nil }
        return system.map { "\(browser) on \($0)" } ?? browser
    }
}
