import Foundation

/// What the Privacy Policy and Terms say about this instance, derived from its live
/// configuration in the composition root, so the pages are true for each deployment: an
/// outside service is named only when this instance is set up to use it.
public struct PolicyFacts: Sendable, Equatable {
    /// The version of the policy texts shipped in templates/: the default of EASEL_POLICY_VERSION,
    /// and of the terms version recorded at sign-up.
    public static let shippedVersion = "2026-11-25"

    /// A company outside this instance that receives personal data.
    public struct OutsideService: Sendable, Equatable {
        public var name: String
        /// The address Easel talks to (api.openai.com, the S3 endpoint, the SMTP host).
        public var host: String?
        /// Why, and what it receives, in English (the policy text is English; see docs/privacy.md).
        public var purpose: String
        public var receives: String

        public init(name: String, host: String?, purpose: String, receives: String) {
            self.name = name
            self.host = host
            self.purpose = purpose
            self.receives = receives
        }
    }

    public var siteName: String
    /// Who runs this instance (EASEL_OPERATOR_NAME, else the site name).
    public var operatorName: String
    /// An email address or a web address for privacy questions; nil: the administrator.
    public var contact: String?
    public var jurisdiction: String?
    public var publicURL: URL
    /// The current version (EASEL_POLICY_VERSION): recorded at sign-up and on acknowledgement.
    public var version: String
    /// "Last updated" (EASEL_POLICY_UPDATED), yyyy-MM-dd.
    public var updatedOn: String
    public var services: [OutsideService]
    /// Whether the image provider is the built-in demo (prompts never leave the instance).
    public var offlineGeneration: Bool
    public var billing: Bool
    public var accountPurgeDays: Int
    /// 0: no request log is kept.
    public var requestLogDays: Int
    public var analytics: Bool
    public var analyticsDays: Int
    public var exportDays: Int
    public var paymentYears: Int
    public var sentMailDays: Int
    public var sessionMaxDays: Int
    public var minimumAge: Int

    public init(
        siteName: String, operatorName: String, contact: String?, jurisdiction: String?, publicURL: URL, version: String, updatedOn: String,
        services: [OutsideService], offlineGeneration: Bool, billing: Bool, accountPurgeDays: Int, requestLogDays: Int, analytics: Bool,
        analyticsDays: Int, exportDays: Int, paymentYears: Int = 7, sentMailDays: Int = 30, sessionMaxDays: Int, minimumAge: Int
    ) {
        self.siteName = siteName
        self.operatorName = operatorName
        self.contact = contact
        self.jurisdiction = jurisdiction
        self.publicURL = publicURL
        self.version = version
        self.updatedOn = updatedOn
        self.services = services
        self.offlineGeneration = offlineGeneration
        self.billing = billing
        self.accountPurgeDays = accountPurgeDays
        self.requestLogDays = requestLogDays
        self.analytics = analytics
        self.analyticsDays = analyticsDays
        self.exportDays = exportDays
        self.paymentYears = paymentYears
        self.sentMailDays = sentMailDays
        self.sessionMaxDays = sessionMaxDays
        self.minimumAge = minimumAge
    }

    /// The contact as a link target: mailto: for an address, else the web address itself.
    public var contactHref: String? {
        guard let contact else { return nil }
        return contact.contains("@") && !contact.contains("://") ? "mailto:\(contact)" : contact
    }
}
