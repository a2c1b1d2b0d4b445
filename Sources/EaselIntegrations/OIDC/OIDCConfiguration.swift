import Foundation

/// Where the OpenID Connect provider is and how Easel is registered with it.
///
/// Google is the default issuer; any provider that publishes a discovery document works.
public struct OIDCConfiguration: Sendable, Equatable, CustomStringConvertible {
    /// Google's issuer.
    public static let googleIssuer = URL(string: "https://accounts.google.com")!

    /// The provider's issuer identifier, exactly as its discovery document spells it
    /// (some providers, e.g. Auth0, end theirs with a slash).
    public var issuer: URL
    public var clientID: String
    public var clientSecret: String
    /// Sent verbatim; it must match one registered with the provider character for character.
    public var redirectURI: URL
    public var scopes: [String]
    /// Allows plain http for an issuer (and the endpoints it names) on 127.0.0.1, ::1 or
    /// localhost, for tests and local development. Any other host always needs https.
    public var allowInsecureLoopback: Bool
    /// Deadline for each request to the provider, body included.
    public var requestTimeout: Duration
    /// How far the provider's clock may be off from ours when checking `exp`, `iat` and `nbf`.
    public var clockSkew: Duration
    /// How long the discovery document is kept before it is fetched again.
    public var discoveryLifetime: Duration
    /// How long the key set is kept when its response has no Cache-Control max-age.
    public var defaultKeySetLifetime: Duration
    /// A token naming an unknown key makes the key set be fetched again early (the provider
    /// may have rotated its keys), but at most once per this interval, so forged tokens
    /// cannot make us hammer the provider.
    public var minimumKeyRefreshInterval: Duration

    public init(
        issuer: URL = OIDCConfiguration.googleIssuer,
        clientID: String,
        clientSecret: String,
        redirectURI: URL,
        scopes: [String] = ["openid", "email", "profile"],
        allowInsecureLoopback: Bool = false,
        requestTimeout: Duration = .seconds(10),
        clockSkew: Duration = .seconds(60),
        discoveryLifetime: Duration = .seconds(3600),
        defaultKeySetLifetime: Duration = .seconds(3600),
        minimumKeyRefreshInterval: Duration = .seconds(60)
    ) {
        self.issuer = issuer
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.redirectURI = redirectURI
        self.scopes = scopes
        self.allowInsecureLoopback = allowInsecureLoopback
        self.requestTimeout = requestTimeout
        self.clockSkew = clockSkew
        self.discoveryLifetime = discoveryLifetime
        self.defaultKeySetLifetime = defaultKeySetLifetime
        self.minimumKeyRefreshInterval = minimumKeyRefreshInterval
    }

    /// Never shows the client secret, so logging a configuration is safe.
    public var description: String {
        "OIDCConfiguration(issuer: \(self.issuer.absoluteString), clientID: \(self.clientID), clientSecret: <redacted>, "
            + "redirectURI: \(self.redirectURI.absoluteString), scopes: \(self.scopes.joined(separator: " ")))"
    }

    /// Throws `OIDCError.invalidConfiguration` naming what is wrong; makes no request.
    public func validate() throws(OIDCError) {
        try self.checkTransport(of: self.issuer, named: "the OIDC issuer")
        guard self.issuer.query == nil, self.issuer.fragment == nil else {
            throw .invalidConfiguration("the OIDC issuer \(self.issuer.absoluteString) must not have a query or fragment")
        }
        guard !self.clientID.isEmpty else {
            throw .invalidConfiguration("no OIDC client id is set: copy it from the provider's console")
        }
        guard !self.clientSecret.isEmpty else {
            throw .invalidConfiguration("no OIDC client secret is set: copy it from the provider's console")
        }
        // A loopback redirect is how people run Easel on their own machine; providers allow it.
        guard let redirectScheme = self.redirectURI.scheme?.lowercased(), self.redirectURI.host?.isEmpty == false,
            redirectScheme == "https" || (redirectScheme == "http" && Self.isLoopback(self.redirectURI))
        else {
            throw .invalidConfiguration(
                "the OIDC redirect URI \(self.redirectURI.absoluteString) must be an absolute https:// URL (http:// only on localhost)"
            )
        }
        guard self.redirectURI.fragment == nil else {
            throw .invalidConfiguration("the OIDC redirect URI \(self.redirectURI.absoluteString) must not have a fragment")
        }
        guard self.scopes.contains("openid") else {
            throw .invalidConfiguration("the OIDC scopes must include \"openid\" (they are: \(self.scopes.joined(separator: " ")))")
        }
        guard self.scopes.allSatisfy({ !$0.isEmpty && !$0.contains(" ") }) else {
            throw .invalidConfiguration("each OIDC scope must be one word without spaces")
        }
        let sensible: ClosedRange<Duration> = .milliseconds(1)...(.seconds(86_400))
        for (name, value) in [
            ("request timeout", self.requestTimeout), ("discovery lifetime", self.discoveryLifetime),
            ("default key set lifetime", self.defaultKeySetLifetime), ("minimum key refresh interval", self.minimumKeyRefreshInterval),
        ] where !sensible.contains(value) {
            throw .invalidConfiguration("the OIDC \(name) must be longer than zero and at most a day, not \(value)")
        }
        guard self.clockSkew >= .zero, self.clockSkew <= .seconds(600) else {
            throw .invalidConfiguration("the OIDC clock skew must be between 0 and 10 minutes, not \(self.clockSkew)")
        }
    }

    /// The `iss` values an ID token from this issuer may carry. Google documents both forms.
    var acceptedTokenIssuers: Set<String> {
        let configured = self.issuer.absoluteString
        if self.issuer.host?.lowercased() == "accounts.google.com" {
            return [configured, "https://accounts.google.com", "accounts.google.com"]
        }
        return [configured]
    }

    /// `{issuer}/.well-known/openid-configuration`, without doubling a trailing slash.
    var discoveryURL: URL {
        var base = self.issuer.absoluteString
        if base.hasSuffix("/") { base.removeLast() }
        return URL(string: base + "/.well-known/openid-configuration")!
    }

    /// Throws unless `url` is https, or http on loopback while that is allowed.
    func checkTransport(of url: URL, named name: String) throws(OIDCError) {
        guard let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty else {
            throw .invalidConfiguration("\(name) \(url.absoluteString) is not an absolute URL")
        }
        if scheme == "https" { return }
        if scheme == "http" && Self.isLoopback(url) {
            guard self.allowInsecureLoopback else {
                throw .invalidConfiguration("\(name) \(url.absoluteString) uses http: allow insecure loopback (for tests only) or use https")
            }
            return
        }
        throw .invalidConfiguration("\(name) \(url.absoluteString) must use https")
    }

    static func isLoopback(_ url: URL) -> Bool {
        guard let host = url.host?.lowercased() else { return false }
        // URL.host keeps the brackets of an IPv6 literal on some platforms.
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if bare == "localhost" || bare == "::1" { return true }
        let octets = bare.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }
}
