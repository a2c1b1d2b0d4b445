import Foundation

/// Why signing in with the OpenID Connect provider failed.
///
/// Descriptions say what happened and what to do; they never contain the client secret, a
/// code, or a token, so they can be logged.
public enum OIDCError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration cannot work; fix the setting named.
    case invalidConfiguration(String)
    /// The discovery document could not be fetched or is not acceptable.
    case discoveryFailed(issuer: String, reason: String)
    /// The provider's key set (jwks_uri) could not be fetched or holds no usable key.
    case keySetUnavailable(reason: String)
    /// The token endpoint could not be reached or answered something that is not OAuth.
    case tokenRequestFailed(reason: String)
    /// The token endpoint refused the code: `error` and `error_description` are the provider's.
    case tokenExchangeRejected(status: Int, error: String, errorDescription: String?)
    /// The ID token is not a JWT with the claims OpenID Connect requires.
    case malformedIDToken(reason: String)
    /// The ID token is not signed with RS256 (e.g. `none` or `HS256`).
    case unsupportedAlgorithm(String)
    /// The ID token names no key (`kid`), so it cannot be checked against the key set.
    case missingKeyID
    /// The ID token names a key the provider does not publish, even after fetching its keys again.
    case unknownKeyID(String)
    /// The signature does not verify with the key the token names.
    case invalidSignature(keyID: String)
    case wrongIssuer(expected: [String], actual: String)
    /// The token was issued to another client (`aud`), or presented by one (`azp`).
    case wrongAudience(audience: [String], authorizedParty: String?)
    case expired(at: Date)
    /// `iat` or `nbf` lies further in the future than the allowed clock skew.
    case notYetValid(at: Date)
    /// The token's `nonce` is missing or is not the one this sign-in started with (a replay).
    case nonceMismatch

    public var description: String {
        switch self {
        case .invalidConfiguration(let reason):
            return "OpenID Connect is misconfigured: \(reason)."
        case .discoveryFailed(let issuer, let reason):
            return "Could not use the OpenID Connect discovery document of \(issuer): \(reason). "
                + "Check the issuer setting and that the provider is reachable."
        case .keySetUnavailable(let reason):
            return "Could not get the OpenID Connect provider's signing keys: \(reason). Try again later."
        case .tokenRequestFailed(let reason):
            return "Could not exchange the sign-in code with the OpenID Connect provider: \(reason). Try again later."
        case .tokenExchangeRejected(let status, let error, let errorDescription):
            let detail = errorDescription.map { " (\($0))" } ?? ""
            let hint =
                error == "invalid_client"
                ? " Check the client id and client secret."
                : error == "invalid_grant" ? " Start the sign-in again." : ""
            return "The OpenID Connect provider refused the sign-in code with HTTP \(status): \(error)\(detail).\(hint)"
        case .malformedIDToken(let reason):
            return "The OpenID Connect provider sent an ID token that cannot be read: \(reason)."
        case .unsupportedAlgorithm(let algorithm):
            return "The ID token is signed with \"\(algorithm)\"; only RS256 is accepted."
        case .missingKeyID:
            return "The ID token does not name its signing key (no \"kid\"), so it cannot be verified."
        case .unknownKeyID(let keyID):
            return "The ID token is signed with key \"\(keyID)\", which the provider does not publish."
        case .invalidSignature(let keyID):
            return "The ID token's signature does not verify with the provider's key \"\(keyID)\"."
        case .wrongIssuer(let expected, let actual):
            return "The ID token was issued by \"\(actual)\", not by \(expected.map { "\"\($0)\"" }.joined(separator: " or "))."
        case .wrongAudience(let audience, let authorizedParty):
            let presenter = authorizedParty.map { ", presented by \"\($0)\"" } ?? ""
            return "The ID token was issued for \(audience.map { "\"\($0)\"" }.joined(separator: ", "))\(presenter), not for this client id."
        case .expired(let date):
            return "The ID token expired at \(date.formatted(.iso8601)); sign in again (or check this server's clock)."
        case .notYetValid(let date):
            return "The ID token is only valid from \(date.formatted(.iso8601)); check this server's clock."
        case .nonceMismatch:
            return "The ID token's nonce does not match this sign-in; start the sign-in again."
        }
    }
}
