import Hummingbird

/// An error a person can act on: an HTTP status, a stable code for API clients, and a sentence
/// that says what happened and what to do.
public struct WebError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public static func notFound(_ message: String = "There is nothing at this address. Check the link, or go back to the home page.") -> WebError {
        WebError(.notFound, code: "not_found", message: message)
    }

    public static func badRequest(_ message: String) -> WebError {
        WebError(.badRequest, code: "bad_request", message: message)
    }
}
