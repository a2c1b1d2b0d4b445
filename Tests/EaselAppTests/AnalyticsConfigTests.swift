import Configuration
import Foundation
import Testing

@testable import EaselApp

@Suite("Analytics configuration")
struct AnalyticsConfigTests {
    func load(_ environment: [String: String]) async throws -> EaselConfig {
        let reader = try await EaselConfig.reader(arguments: [], environment: environment, dotEnvPath: nil)
        return try EaselConfig.load(from: reader)
    }

    @Test("By default nothing is counted, logs and analytics are kept 90 days, and the country comes from CF-IPCountry")
    func defaults() async throws {
        let analytics = try await self.load([:]).analytics
        #expect(!analytics.enabled)
        #expect(analytics.retentionDays == 90)
        #expect(analytics.logRetentionDays == 90)
        #expect(analytics.countryHeader == "CF-IPCountry")
        #expect(analytics.regionHeader == nil)
    }

    @Test("Settings are read, and off turns a header off")
    func settings() async throws {
        let analytics = try await self.load([
            "EASEL_ANALYTICS": "on", "EASEL_ANALYTICS_RETENTION_DAYS": "30", "EASEL_LOG_RETENTION_DAYS": "0", "EASEL_COUNTRY_HEADER": "off",
            "EASEL_REGION_HEADER": "cf-region",
        ]).analytics
        #expect(analytics.enabled)
        #expect(analytics.retentionDays == 30)
        #expect(analytics.logRetentionDays == 0)
        #expect(analytics.countryHeader == nil)
        #expect(analytics.regionHeader == "cf-region")
    }

    @Test(
        "Bad values name their variable; a MaxMind database that is missing is refused, not silently ignored",
        arguments: [
            (["EASEL_ANALYTICS": "maybe"], "EASEL_ANALYTICS"),
            (["EASEL_ANALYTICS_RETENTION_DAYS": "0"], "EASEL_ANALYTICS_RETENTION_DAYS"),
            (["EASEL_LOG_RETENTION_DAYS": "-1"], "EASEL_LOG_RETENTION_DAYS"),
            (["EASEL_COUNTRY_HEADER": "CF IPCountry"], "EASEL_COUNTRY_HEADER"),
            (["EASEL_REGION_HEADER": "x:y"], "EASEL_REGION_HEADER"),
            (["EASEL_GEOIP_DB": "/var/lib/GeoLite2-Country.mmdb"], "EASEL_GEOIP_DB"),
        ])
    func refused(environment: [String: String], key: String) async throws {
        do {
            _ = try await self.load(environment)
            Issue.record("\(environment) was accepted")
        } catch let error as ConfigError {
            #expect(error.key == key)
        }
    }
}
