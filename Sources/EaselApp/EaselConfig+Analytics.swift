import EaselCore
import Foundation

extension EaselConfig {
    /// First-party analytics (off unless EASEL_ANALYTICS=on) and the request log (on, kept
    /// EASEL_LOG_RETENTION_DAYS; 0 turns it off).
    public struct Analytics: Sendable {
        /// Count page views; shows the cookie banner.
        public var enabled = false
        /// Days page views are kept before they are rolled up into daily totals.
        public var retentionDays = 90
        /// Days request-log rows are kept before the same; 0 keeps no request log.
        public var logRetentionDays = 90
        /// Headers a trusted proxy (EASEL_TRUSTED_PROXIES) puts the country and region in.
        public var countryHeader: String? = "CF-IPCountry"
        public var regionHeader: String?
        /// A MaxMind DB (EASEL_GEOIP_DB), opened at start, for clients no trusted header placed.
        public var geoIP: GeoIPDatabase?
        public var geoIPPath: String?

        public init() {}
    }

    static func loadAnalytics(_ settings: SettingsReader) throws(ConfigError) -> Analytics {
        var analytics = Analytics()
        analytics.enabled = try settings.bool(Key.analytics, default: false)
        analytics.retentionDays = try settings.int(Key.analyticsRetentionDays, default: 90, range: 1...3650)
        analytics.logRetentionDays = try settings.int(Key.logRetentionDays, default: 90, range: 0...3650)
        func header(_ key: SettingKey, default value: String?) throws(ConfigError) -> String? {
            guard let raw = settings.string(key) else { return value }
            if raw.lowercased() == "off" { return nil }
            // An HTTP field name: letters, digits and a few marks (RFC 9110 token).
            guard raw.count <= 64, raw.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) }) else {
                throw ConfigError(key: key.env, problem: "must be an HTTP header name like CF-IPCountry, or off (got \"\(raw)\")")
            }
            return raw
        }
        analytics.countryHeader = try header(Key.countryHeader, default: "CF-IPCountry")
        analytics.regionHeader = try header(Key.regionHeader, default: nil)
        if let path = settings.string(Key.geoIPDatabase) {
            // Opened now, so a missing or damaged file stops the start instead of silently giving no countries.
            do throws(GeoIPDatabase.InvalidDatabase) {
                analytics.geoIP = try GeoIPDatabase(contentsOf: URL(fileURLWithPath: path))
                analytics.geoIPPath = path
            } catch {
                throw ConfigError(
                    key: Key.geoIPDatabase.env,
                    problem: "\"\(path)\" \(error.reason); point it at a MaxMind .mmdb file such as GeoLite2-Country.mmdb, or unset it"
                )
            }
        }
        return analytics
    }

    func describeAnalytics() -> [String] {
        [
            "EASEL_ANALYTICS=\(self.analytics.enabled ? "on" : "off")",
            "EASEL_ANALYTICS_RETENTION_DAYS=\(self.analytics.retentionDays)",
            "EASEL_LOG_RETENTION_DAYS=\(self.analytics.logRetentionDays)",
            "EASEL_COUNTRY_HEADER=\(self.analytics.countryHeader ?? "off")",
            "EASEL_REGION_HEADER=\(self.analytics.regionHeader ?? "off")",
            "EASEL_GEOIP_DB=\(self.analytics.geoIPPath ?? "")",
        ]
    }
}
