import Foundation
import JWTKit
import Logging

/// The parts of a provider's discovery document (`/.well-known/openid-configuration`) Easel uses.
public struct OIDCProviderMetadata: Sendable, Equatable {
    public var issuer: String
    public var authorizationEndpoint: URL
    public var tokenEndpoint: URL
    public var jwksURI: URL
    public var userinfoEndpoint: URL?
    /// Absent in the document means `client_secret_basic` only (OpenID Connect Discovery 1.0 §3).
    public var tokenEndpointAuthMethods: [String]
    public var codeChallengeMethods: [String]?
    public var idTokenSigningAlgorithms: [String]?

    /// How Easel authenticates at the token endpoint: Basic when offered, else the form body.
    var clientAuthentication: ClientAuthentication? {
        if self.tokenEndpointAuthMethods.contains("client_secret_basic") { return .basic }
        if self.tokenEndpointAuthMethods.contains("client_secret_post") { return .post }
        return nil
    }

    enum ClientAuthentication {
        case basic
        case post
    }

    /// Parses and checks a discovery document against the configured issuer.
    static func parse(_ body: Data, configuration: OIDCConfiguration) throws(OIDCError) -> OIDCProviderMetadata {
        let issuer = configuration.issuer.absoluteString
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: body)
        } catch {
            throw .discoveryFailed(
                issuer: issuer,
                reason: "the document is not the JSON an OpenID provider publishes (\(Self.decodingProblem(error)))"
            )
        }
        // The issuer must match exactly, or a document could speak for someone else (OIDC Discovery §4.3).
        guard document.issuer == issuer else {
            throw .discoveryFailed(
                issuer: issuer,
                reason: "the document names the issuer \"\(document.issuer)\"; set the issuer setting to exactly that if it is the provider you mean"
            )
        }

        func endpoint(_ value: String?, _ field: String) throws(OIDCError) -> URL {
            guard let value, let url = URL(string: value) else {
                throw .discoveryFailed(issuer: issuer, reason: "the document has no valid \(field)")
            }
            do {
                try configuration.checkTransport(of: url, named: "its \(field)")
            } catch {
                throw .discoveryFailed(issuer: issuer, reason: "\(field) \(value) is not allowed: it must use https")
            }
            return url
        }
        let metadata = OIDCProviderMetadata(
            issuer: document.issuer,
            authorizationEndpoint: try endpoint(document.authorizationEndpoint, "authorization_endpoint"),
            tokenEndpoint: try endpoint(document.tokenEndpoint, "token_endpoint"),
            jwksURI: try endpoint(document.jwksURI, "jwks_uri"),
            userinfoEndpoint: document.userinfoEndpoint.flatMap(URL.init(string:)),
            tokenEndpointAuthMethods: document.tokenEndpointAuthMethodsSupported ?? ["client_secret_basic"],
            codeChallengeMethods: document.codeChallengeMethodsSupported,
            idTokenSigningAlgorithms: document.idTokenSigningAlgValuesSupported
        )
        guard metadata.clientAuthentication != nil else {
            throw .discoveryFailed(
                issuer: issuer,
                reason: "the token endpoint offers \(metadata.tokenEndpointAuthMethods.joined(separator: ", ")), "
                    + "but Easel supports only client_secret_basic and client_secret_post"
            )
        }
        return metadata
    }

    private static func decodingProblem(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "\(key.stringValue) is missing"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "\(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type"
        default: return "not valid JSON"
        }
    }

    private struct Document: Decodable {
        var issuer: String
        var authorizationEndpoint: String?
        var tokenEndpoint: String?
        var jwksURI: String?
        var userinfoEndpoint: String?
        var tokenEndpointAuthMethodsSupported: [String]?
        var codeChallengeMethodsSupported: [String]?
        var idTokenSigningAlgValuesSupported: [String]?

        enum CodingKeys: String, CodingKey {
            case issuer
            case authorizationEndpoint = "authorization_endpoint"
            case tokenEndpoint = "token_endpoint"
            case jwksURI = "jwks_uri"
            case userinfoEndpoint = "userinfo_endpoint"
            case tokenEndpointAuthMethodsSupported = "token_endpoint_auth_methods_supported"
            case codeChallengeMethodsSupported = "code_challenge_methods_supported"
            case idTokenSigningAlgValuesSupported = "id_token_signing_alg_values_supported"
        }
    }
}

/// The provider's RS256 signing keys, ready for jwt-kit, and the key ids among them.
struct OIDCSigningKeys: Sendable {
    let keys: JWTKeyCollection
    let keyIDs: Set<String>

    /// Keeps only RSA keys meant for signatures with RS256 (or no stated algorithm); each is
    /// pinned to RS256 so a token's header can never pick another algorithm for it.
    static func parse(_ body: Data, from url: URL, logger: Logger) async throws(OIDCError) -> OIDCSigningKeys {
        let set: KeySetDocument
        do {
            set = try JSONDecoder().decode(KeySetDocument.self, from: body)
        } catch {
            throw .keySetUnavailable(reason: "\(url.absoluteString) did not answer with a JSON Web Key Set")
        }
        let collection = JWTKeyCollection()
        var keyIDs: Set<String> = []
        for key in set.keys {
            guard key.kty == "RSA", key.use == nil || key.use == "sig", key.alg == nil || key.alg == "RS256",
                let kid = key.kid, !kid.isEmpty, let modulus = key.n, let exponent = key.e
            else {
                continue
            }
            do {
                try await collection.add(jwk: .rsa(.rs256, identifier: JWKIdentifier(string: kid), modulus: modulus, exponent: exponent))
                keyIDs.insert(kid)
            } catch {
                logger.warning("Skipping an unusable key in the OIDC key set", metadata: ["oidc.kid": .string(kid), "error": .string("\(error)")])
            }
        }
        guard !keyIDs.isEmpty else {
            throw .keySetUnavailable(reason: "\(url.absoluteString) holds no RSA signing key")
        }
        return OIDCSigningKeys(keys: collection, keyIDs: keyIDs)
    }

    private struct KeySetDocument: Decodable {
        var keys: [KeyDocument]
    }

    /// Every field optional, so one key of a kind we do not use cannot spoil the whole set.
    private struct KeyDocument: Decodable {
        var kty: String?
        var use: String?
        var alg: String?
        var kid: String?
        var n: String?
        var e: String?
    }
}
