import EaselCore
import Foundation

extension EaselConfig {
    /// Who runs this instance and which version of the Privacy Policy and Terms it shows.
    public struct Policy: Sendable {
        /// EASEL_OPERATOR_NAME; nil: the site name.
        public var operatorName: String?
        /// EASEL_PRIVACY_CONTACT: an email or web address; nil: "the administrator of this instance".
        public var contact: String?
        public var jurisdiction: String?
        /// Recorded at sign-up and when a person acknowledges a material change.
        public var version = Self.defaultVersion
        /// "Last updated", yyyy-MM-dd.
        public var updatedOn = Self.defaultVersion
        /// EASEL_POLICY_DIR: a folder with the operator's own policy templates; nil: the shipped ones.
        public var templateFolder: URL?

        /// The version of the policy texts that ship in templates/.
        public static let defaultVersion = PolicyFacts.shippedVersion

        public init() {}
    }

    static func loadPolicy(_ settings: SettingsReader) throws(ConfigError) -> Policy {
        var policy = Policy()
        policy.operatorName = settings.string(Key.operatorName)
        if let name = policy.operatorName, name.count > 120 {
            throw ConfigError(key: Key.operatorName.env, problem: "must be at most 120 characters")
        }
        if let contact = settings.string(Key.privacyContact) {
            let isAddress = !contact.contains("://") && contact.split(separator: "@").count == 2 && !contact.contains(" ")
            let isURL = (contact.hasPrefix("https://") || contact.hasPrefix("http://")) && URL(string: contact)?.host != nil
            guard isAddress || isURL else {
                throw ConfigError(key: Key.privacyContact.env, problem: "must be an email address like privacy@example.org or an https:// address (got \"\(contact)\")")
            }
            policy.contact = contact
        }
        policy.jurisdiction = settings.string(Key.jurisdiction)
        if let version = settings.string(Key.policyVersion) {
            guard (1...40).contains(version.count), version.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
                throw ConfigError(key: Key.policyVersion.env, problem: "must be 1 to 40 letters, digits, '.', '_' or '-', like 2026-12-01 (got \"\(version)\")")
            }
            policy.version = version
        }
        let updated = settings.string(Key.policyUpdated) ?? policy.version
        guard Self.isDay(updated) else {
            let problem = settings.string(Key.policyUpdated) == nil
                ? "is required when EASEL_POLICY_VERSION is not a date: the \"Last updated\" day as yyyy-MM-dd"
                : "must be a day as yyyy-MM-dd, like 2026-12-01 (got \"\(updated)\")"
            throw ConfigError(key: Key.policyUpdated.env, problem: problem)
        }
        policy.updatedOn = updated
        if let path = settings.string(Key.policyDir) {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else {
                throw ConfigError(key: Key.policyDir.env, problem: "must be a folder holding policy-privacy.mustache and/or policy-terms.mustache (cannot find \(path))")
            }
            policy.templateFolder = URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
        }
        return policy
    }

    static func isDay(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let month = Int(parts[1]), let day = Int(parts[2]), Int(parts[0]) != nil
        else { return false }
        return (1...12).contains(month) && (1...31).contains(day)
    }

    func describePolicy() -> [String] {
        [
            "EASEL_OPERATOR_NAME=\(self.policy.operatorName ?? "(the site name: \(self.siteName))")",
            "EASEL_PRIVACY_CONTACT=\(self.policy.contact ?? "(not set: the pages say to contact the administrator)")",
            "EASEL_JURISDICTION=\(self.policy.jurisdiction ?? "")",
            "EASEL_POLICY_VERSION=\(self.policy.version)",
            "EASEL_POLICY_UPDATED=\(self.policy.updatedOn)",
            "EASEL_POLICY_DIR=\(self.policy.templateFolder?.path ?? "")",
        ]
    }

    /// What the policy pages say about this instance: only the outside services this
    /// configuration actually uses, and the retention periods it sets.
    public func policyFacts() -> PolicyFacts {
        var services: [PolicyFacts.OutsideService] = []
        let imageData = "the prompt, the chosen model, size, quality and count, and any reference images you attach"
        switch self.generation.provider {
        case .demo:
            break
        case .openai:
            services.append(
                .init(name: "OpenAI", host: self.generation.openAIBaseURL.host, purpose: "generates the images you ask for", receives: imageData)
            )
        case .evolink:
            services.append(
                .init(
                    name: "Evolink", host: self.generation.evolinkBaseURL.host, purpose: "generates the images you ask for",
                    receives: imageData + " (as links it can fetch for a short time)"
                )
            )
        }
        if let s3 = self.s3, self.storage == .s3 {
            services.append(
                .init(
                    name: "S3-compatible object storage", host: s3.endpoint.host, purpose: "stores images, reference uploads, profile pictures, exports and database backups",
                    receives: "the files, encrypted under a key for each person that never leaves this site, under keys that contain no names or addresses; "
                        + "and, when backups are scheduled, copies of the database (accounts, prompts and records)"
                )
            )
        }
        switch self.mail {
        case .log:
            break
        case .smtp:
            if let smtp = self.smtp {
                services.append(
                    .init(
                        name: "SMTP mail server", host: smtp.host, purpose: "delivers the mails this site sends (sign-in codes, receipts, notices)",
                        receives: "your email address, your name and the text of each mail"
                    )
                )
            }
        case .resend:
            services.append(
                .init(
                    name: "Resend", host: self.resend?.baseURL.host, purpose: "delivers the mails this site sends (sign-in codes, receipts, notices)",
                    receives: "your email address, your name and the text of each mail"
                )
            )
        }
        if let billing = self.billing {
            services.append(
                .init(
                    name: "Stripe", host: billing.apiBase.host, purpose: "takes payments for plans and credit packs",
                    receives: "your email address, display name, an account number of this site, and what you buy; card details are entered on Stripe's own page and never reach this site, "
                        + "which keeps the payment reference, amount, billing country and the card's last four digits"
                )
            )
        }
        if let oidc = self.oidc {
            let host = oidc.issuer.host ?? oidc.issuer.absoluteString
            let name = host == "accounts.google.com" ? "Google (sign-in)" : "Sign-in provider"
            services.append(
                .init(
                    name: name, host: host, purpose: "lets you sign in with an account you already have, only if you choose to",
                    receives: "a sign-in request; it sends back your email address, name and profile picture after you agree"
                )
            )
        }
        return PolicyFacts(
            siteName: self.siteName, operatorName: self.policy.operatorName ?? self.siteName, contact: self.policy.contact,
            jurisdiction: self.policy.jurisdiction, publicURL: self.publicURL, version: self.policy.version, updatedOn: self.policy.updatedOn,
            services: services, offlineGeneration: self.generation.provider == .demo, billing: self.billing != nil,
            accountPurgeDays: self.accountPurgeDays, requestLogDays: self.analytics.logRetentionDays, analytics: self.analytics.enabled,
            analyticsDays: self.analytics.retentionDays, exportDays: self.exportRetentionDays,
            paymentYears: Int((MaintenanceJobs.paymentRetention / (365.25 * 86400)).rounded()),
            sessionMaxDays: Int(self.sessionMax.components.seconds / 86400), minimumAge: self.minimumAge
        )
    }
}
