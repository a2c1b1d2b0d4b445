import Hummingbird

/// An error a person can act on: an HTTP status, a stable code for API clients, and a sentence
/// that says what happened and what to do.
public struct WebError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var headers: HTTPFields
    /// The catalog key (and its arguments) of `message`, so an error page shows it in the
    /// reader's language; API answers keep the English `message`.
    public var localized: (key: String, arguments: [String: String])?

    public init(_ status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    /// An error whose page text comes from the catalogs; `message` is its English form for API clients and logs.
    public init(_ status: HTTPResponse.Status, code: String, key: String, _ arguments: [String: String] = [:], english message: String) {
        self.init(status, code: code, message: message)
        self.localized = (key, arguments)
    }

    public static func notFound() -> WebError {
        WebError(.notFound, code: "not_found", key: "error.not_found", english: "There is nothing at this address. Check the link, or go back to the home page.")
    }

    public static func notFound(_ message: String) -> WebError {
        WebError(.notFound, code: "not_found", message: message)
    }

    public static func badRequest(_ message: String) -> WebError {
        WebError(.badRequest, code: "bad_request", message: message)
    }
}
