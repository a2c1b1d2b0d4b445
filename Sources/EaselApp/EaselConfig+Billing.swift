import EaselCore
import Foundation

extension EaselConfig {
    /// Stripe: all of STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and EASEL_BILLING_CATALOG, or none.
    public struct Billing: Sendable {
        public var secretKey: String
        /// More than one (comma-separated) while rotating the endpoint's secret.
        public var webhookSecrets: [String]
        public var apiBase: URL
        public var catalog: BillingCatalog
        public var catalogPath: String
    }

    static func loadBilling(_ settings: SettingsReader) throws(ConfigError) -> Billing? {
        let secretKey = try settings.secret(Key.stripeSecretKey)
        let webhookSecret = try settings.secret(Key.stripeWebhookSecret)
        let catalogPath = settings.string(Key.billingCatalog)
        if secretKey == nil && webhookSecret == nil && catalogPath == nil { return nil }
        guard let secretKey else {
            throw ConfigError(key: Key.stripeSecretKey.env, problem: "is required for billing (with STRIPE_WEBHOOK_SECRET and EASEL_BILLING_CATALOG)")
        }
        guard let webhookSecret else {
            throw ConfigError(key: Key.stripeWebhookSecret.env, problem: "is required for billing: the whsec_… signing secret of the webhook endpoint")
        }
        guard let catalogPath else {
            throw ConfigError(key: Key.billingCatalog.env, problem: "is required for billing: the JSON file of plans and packs (see docs/billing.md)")
        }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: catalogPath))
        } catch {
            throw ConfigError(key: Key.billingCatalog.env, problem: "cannot be read (\(catalogPath)): \(error.localizedDescription)")
        }
        let catalog: BillingCatalog
        do {
            catalog = try BillingCatalog.load(data)
        } catch {
            throw ConfigError(key: Key.billingCatalog.env, problem: "\(error)")
        }
        let secrets = webhookSecret.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return Billing(
            secretKey: secretKey, webhookSecrets: secrets, apiBase: try settings.url(Key.stripeAPIBase, default: "https://api.stripe.com"),
            catalog: catalog, catalogPath: catalogPath
        )
    }

    func describeBilling() -> [String] {
        guard let billing = self.billing else { return ["STRIPE_SECRET_KEY=(not set: billing off)"] }
        return [
            "STRIPE_SECRET_KEY=********", "STRIPE_WEBHOOK_SECRET=********", "EASEL_STRIPE_API_BASE=\(billing.apiBase.absoluteString)",
            "EASEL_BILLING_CATALOG=\(billing.catalogPath) (\(billing.catalog.plans.count) plans, \(billing.catalog.packs.count) packs)",
        ]
    }
}
