import EaselStore
import Foundation

/// What analytics keep about a visitor's device, read from the User-Agent: a device class,
/// the operating system and the browser family. Robots are recognised so they are not counted.
public struct VisitorTraits: Sendable, Equatable {
    public var device: PageViewEntry.Device
    public var os: String?
    public var browser: String?
    /// Crawlers, uptime checkers, command-line clients and empty User-Agents.
    public var isRobot: Bool

    public init(userAgent ua: String) {
        let lower = ua.lowercased()
        let robotWords = [
            "bot", "crawl", "spider", "slurp", "curl", "wget", "python", "httpclient", "headless", "monitor", "preview", "scanner", "java/",
            "go-http", "okhttp",
        ]
        self.isRobot = ua.trimmingCharacters(in: .whitespaces).isEmpty || robotWords.contains { lower.contains($0) }
        let name = DeviceName(userAgent: ua)
        self.os = name.system
        if case .product(let product) = name.browser { self.browser = product } else { self.browser = nil }
        if ua.contains("iPad") || lower.contains("tablet") || (ua.contains("Android") && !ua.contains("Mobile")) {
            self.device = .tablet
        } else if ua.contains("Mobi") || ua.contains("iPhone") || ua.contains("iPod") {
            self.device = .mobile
        } else {
            self.device = .desktop
        }
    }
}

/// The browser privacy signals analytics obey: Global Privacy Control (`Sec-GPC: 1`) and
/// Do Not Track (`DNT: 1`).
public enum PrivacySignals {
    public static func optOut(gpc: String?, dnt: String?) -> Bool {
        gpc?.trimmingCharacters(in: .whitespaces) == "1" || dnt?.trimmingCharacters(in: .whitespaces) == "1"
    }
}

/// Referrers are kept as a host only ("news.example.com"), never the full URL, and not at all
/// when they are this site itself (moving between pages is not a referral).
public enum ReferrerHost {
    public static func from(_ referer: String?, ownHost: String?) -> String? {
        guard let referer, let url = URL(string: referer), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            var host = url.host?.lowercased(), !host.isEmpty
        else { return nil }
        if host.hasSuffix(".") { host.removeLast() }
        guard host != ownHost?.lowercased(), host.count <= 253 else { return nil }
        return host
    }
}

/// Screen widths in CSS pixels, as a few buckets: precise sizes would help fingerprinting.
public enum ScreenBucket {
    public static func bucket(width: Int) -> String? {
        switch width {
        case 1..<576: "< 576 px"
        case 576..<992: "576–991 px"
        case 992..<1440: "992–1439 px"
        case 1440...20000: "≥ 1440 px"
        default: nil
        }
    }
}
