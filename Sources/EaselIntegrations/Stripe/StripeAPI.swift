import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// Where and how to reach Stripe's API. EaselApp fills it from STRIPE_SECRET_KEY and
/// EASEL_STRIPE_API_BASE.
public struct StripeConfiguration: Sendable, CustomStringConvertible {
    public static let defaultAPIBase = URL(string: "https://api.stripe.com")!

    public var secretKey: String
    /// Scheme, host and optional path prefix; "/v1/…" is appended.
    public var apiBase: URL
    /// For each call, connection to the last byte of the answer.
    public var timeout: Duration
    /// Sent as `Stripe-Version` when set; otherwise the account's default version applies.
    public var apiVersion: String?

    public init(secretKey: String, apiBase: URL = StripeConfiguration.defaultAPIBase, timeout: Duration = .seconds(30), apiVersion: String? = nil) {
        self.secretKey = secretKey
        self.apiBase = apiBase
        self.timeout = timeout
        self.apiVersion = apiVersion
    }

    /// Safe to log: the key is never shown, only whether it is a test or a live one.
    public var description: String {
        let key =
            self.secretKey.isEmpty
            ? "<unset>" : self.secretKey.hasPrefix("sk_live_") || self.secretKey.hasPrefix("rk_live_") ? "<live key>" : "<set>"
        return "stripe \(self.apiBase.absoluteString) timeout=\(self.timeout) secret_key=\(key)"
    }

    /// `{apiBase}/v1{path}`, without doubling a "/v1" the base already ends in.
    func endpoint(_ path: String) -> String {
        var base = self.apiBase.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        return base.hasSuffix("/v1") ? base + path : base + "/v1" + path
    }
}

/// Why a Stripe call failed, sorted by what the caller does next.
public struct StripeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// 400, 402, 404 and other 4xx: our parameters (or the Stripe object) are wrong. Not retried.
        case invalidRequest
        /// 401/403: the secret key is wrong, revoked or lacks a permission. Not retried.
        case authentication
        /// 429: retried later.
        case rateLimited
        /// 5xx (and 409, a conflict with a concurrent request of the same idempotency key), or no
        /// connection: retried with the same idempotency key.
        case unavailable
        /// No answer within the configured timeout: retried with the same idempotency key.
        case timeout
        /// An answer that is not what Stripe sends.
        case malformedResponse
    }

    public var kind: Kind
    /// Stripe's `error.message` when it gave one, else what happened.
    public var message: String
    /// Stripe's `error.code` (`resource_missing`, `rate_limit`, `parameter_missing`, …).
    public var code: String?
    /// The HTTP status, when there was an answer.
    public var status: Int?
    /// Stripe's `error.type` (`invalid_request_error`, `api_error`, `card_error`, `idempotency_error`).
    public var type: String?
    /// Stripe's `error.param`: the parameter at fault.
    public var param: String?
    /// Stripe's `Request-Id`, for the log and for Stripe's support.
    public var requestID: String?
    /// Stripe's own `Stripe-Should-Retry` advice, when it gave one.
    public var stripeShouldRetry: Bool?

    public init(
        _ kind: Kind, _ message: String, code: String? = nil, status: Int? = nil, type: String? = nil, param: String? = nil,
        requestID: String? = nil, stripeShouldRetry: Bool? = nil
    ) {
        self.kind = kind
        self.message = message
        self.code = code
        self.status = status
        self.type = type
        self.param = param
        self.requestID = requestID
        self.stripeShouldRetry = stripeShouldRetry
    }

    /// Whether the same call (with the same idempotency key) may succeed later.
    public var isRetryable: Bool {
        if let advice = self.stripeShouldRetry { return advice }
        switch self.kind {
        case .rateLimited, .unavailable, .timeout: return true
        case .invalidRequest, .authentication, .malformedResponse: return false
        }
    }

    public var description: String {
        var text = "Stripe \(self.kind)"
        if let status = self.status { text += " (\(status)" + (self.code.map { " \($0)" } ?? "") + ")" }
        text += ": \(self.message)"
        if let requestID = self.requestID { text += " [request \(requestID)]" }
        return text
    }
}

/// What a Checkout Session is created with.
public struct StripeCheckoutRequest: Sendable, Equatable {
    public enum Mode: String, Sendable {
        case payment
        case subscription
    }

    public var mode: Mode
    /// `cus_…`: Easel creates the customer first, so receipts and the portal find one person.
    public var customer: String
    /// `price_…`.
    public var price: String
    public var quantity: Int
    /// Easel's own reference (the account), echoed in the session and its events.
    public var clientReferenceID: String
    public var metadata: [String: String]
    /// May contain `{CHECKOUT_SESSION_ID}`, which Stripe fills in.
    public var successURL: String
    public var cancelURL: String
    /// Checkout's language: `en`, `es`, `zh`, … (`auto` or nil: the browser's).
    public var locale: String?
    /// `subscription_data[metadata]`: copied onto the subscription (mode subscription only).
    public var subscriptionMetadata: [String: String]
    /// `payment_intent_data[metadata]`: copied onto the payment intent (mode payment only).
    public var paymentIntentMetadata: [String: String]

    public init(
        mode: Mode, customer: String, price: String, quantity: Int = 1, clientReferenceID: String, metadata: [String: String] = [:],
        successURL: String, cancelURL: String, locale: String? = nil, subscriptionMetadata: [String: String] = [:],
        paymentIntentMetadata: [String: String] = [:]
    ) {
        self.mode = mode
        self.customer = customer
        self.price = price
        self.quantity = quantity
        self.clientReferenceID = clientReferenceID
        self.metadata = metadata
        self.successURL = successURL
        self.cancelURL = cancelURL
        self.locale = locale
        self.subscriptionMetadata = subscriptionMetadata
        self.paymentIntentMetadata = paymentIntentMetadata
    }

    /// The form fields of `POST /v1/checkout/sessions`, in a stable order (metadata by key).
    /// `subscription_data` and `payment_intent_data` go only with the mode that allows them:
    /// Stripe refuses the other combination.
    var formFields: [(String, String)] {
        var fields: [(String, String)] = [
            ("mode", self.mode.rawValue),
            ("customer", self.customer),
            ("line_items[0][price]", self.price),
            ("line_items[0][quantity]", String(self.quantity)),
            ("client_reference_id", self.clientReferenceID),
            ("success_url", self.successURL),
            ("cancel_url", self.cancelURL),
        ]
        if let locale = self.locale, !locale.isEmpty { fields.append(("locale", locale)) }
        fields += StripeForm.metadata(self.metadata, prefix: "metadata")
        switch self.mode {
        case .subscription:
            fields += StripeForm.metadata(self.subscriptionMetadata, prefix: "subscription_data[metadata]")
        case .payment:
            fields += StripeForm.metadata(self.paymentIntentMetadata, prefix: "payment_intent_data[metadata]")
        }
        return fields
    }
}

/// A created Checkout Session: where to send the person.
public struct StripeCheckoutSessionCreated: Sendable, Equatable {
    /// `cs_…`.
    public var id: String
    public var url: URL

    public init(id: String, url: URL) {
        self.id = id
        self.url = url
    }
}

/// The few Stripe calls Easel makes. Every call is a POST with an idempotency key, so a call
/// retried after a lost answer returns the first result instead of creating a second object.
public protocol StripeAPI: Sendable {
    /// `POST /v1/customers`; returns `cus_…`.
    func createCustomer(email: String, name: String?, metadata: [String: String], idempotencyKey: String) async throws(StripeError) -> String
    /// `POST /v1/checkout/sessions` with one line item.
    func createCheckoutSession(_ request: StripeCheckoutRequest, idempotencyKey: String) async throws(StripeError) -> StripeCheckoutSessionCreated
    /// `POST /v1/billing_portal/sessions`; returns the portal's URL.
    func createPortalSession(customer: String, returnURL: String, idempotencyKey: String) async throws(StripeError) -> URL
}

/// Stripe's API over HTTPS: form-encoded requests, JSON answers.
public struct LiveStripeAPI: StripeAPI {
    public let configuration: StripeConfiguration
    private let httpClient: HTTPClient
    private let logger: Logger

    /// Stripe's answers to these calls are a few kilobytes.
    static let maximumAnswerBytes = 1024 * 1024

    public init(configuration: StripeConfiguration, httpClient: HTTPClient, logger: Logger = Logger(label: "easel.stripe")) {
        self.configuration = configuration
        self.httpClient = httpClient
        self.logger = logger
    }

    public func createCustomer(email: String, name: String?, metadata: [String: String], idempotencyKey: String) async throws(StripeError) -> String {
        var fields: [(String, String)] = [("email", email)]
        if let name, !name.isEmpty { fields.append(("name", name)) }
        fields += StripeForm.metadata(metadata, prefix: "metadata")
        let answer = try await self.post("/customers", fields: fields, idempotencyKey: idempotencyKey)
        guard let id = answer["id"]?.string, !id.isEmpty else {
            throw StripeError(.malformedResponse, "Stripe created a customer but its answer has no id")
        }
        return id
    }

    public func createCheckoutSession(_ request: StripeCheckoutRequest, idempotencyKey: String) async throws(StripeError)
        -> StripeCheckoutSessionCreated
    {
        let answer = try await self.post("/checkout/sessions", fields: request.formFields, idempotencyKey: idempotencyKey)
        guard let id = answer["id"]?.string, !id.isEmpty else {
            throw StripeError(.malformedResponse, "Stripe created a Checkout Session but its answer has no id")
        }
        guard let url = Self.webURL(answer["url"]?.string) else {
            throw StripeError(.malformedResponse, "Stripe's Checkout Session \(id) has no https URL to send the customer to")
        }
        return StripeCheckoutSessionCreated(id: id, url: url)
    }

    public func createPortalSession(customer: String, returnURL: String, idempotencyKey: String) async throws(StripeError) -> URL {
        let fields = [("customer", customer), ("return_url", returnURL)]
        let answer = try await self.post("/billing_portal/sessions", fields: fields, idempotencyKey: idempotencyKey)
        guard let url = Self.webURL(answer["url"]?.string) else {
            throw StripeError(.malformedResponse, "Stripe's billing portal session has no https URL to send the customer to")
        }
        return url
    }

    // MARK: Plumbing

    /// An absolute http(s) URL, the only kind Easel redirects a person to.
    static func webURL(_ text: String?) -> URL? {
        guard let text, let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
            url.host?.isEmpty == false
        else { return nil }
        return url
    }

    /// One form-encoded POST; a 2xx answer's JSON object, or the failure sorted into a `StripeError`.
    func post(_ path: String, fields: [(String, String)], idempotencyKey: String) async throws(StripeError) -> StripeJSON {
        guard !idempotencyKey.isEmpty, idempotencyKey.utf8.count <= 255 else {
            throw StripeError(.invalidRequest, "an idempotency key of 1 to 255 characters is required for POST \(path)")
        }
        let url = self.configuration.endpoint(path)
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(self.configuration.secretKey)")
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "Accept", value: "application/json")
        request.headers.add(name: "User-Agent", value: "easel")
        request.headers.add(name: "Idempotency-Key", value: idempotencyKey)
        if let version = self.configuration.apiVersion, !version.isEmpty {
            request.headers.add(name: "Stripe-Version", value: version)
        }
        request.body = .bytes(ByteBuffer(string: StripeForm.encode(fields)))

        let started = ContinuousClock.now
        var metadata: Logger.Metadata = ["path": .string(path), "idempotency_key": .string(idempotencyKey)]
        do throws(StripeError) {
            let response = try await self.execute(request, path: path)
            metadata["status"] = .stringConvertible(response.status.code)
            if let requestID = response.headers.first(name: "Request-Id") { metadata["stripe_request_id"] = .string(requestID) }
            guard (200..<300).contains(response.status.code) else {
                throw Self.failure(status: response.status.code, headers: response.headers, body: response.body)
            }
            guard let json = try? JSONDecoder().decode(StripeJSON.self, from: Data(buffer: response.body)), case .object = json else {
                throw StripeError(
                    .malformedResponse, "Stripe answered POST \(path) with something that is not a JSON object: \(Self.snippet(response.body))",
                    status: Int(response.status.code), requestID: response.headers.first(name: "Request-Id")
                )
            }
            metadata["milliseconds"] = .stringConvertible(Self.milliseconds(ContinuousClock.now - started))
            self.logger.debug("Stripe call succeeded", metadata: metadata)
            return json
        } catch {
            metadata["error"] = .string(error.description)
            self.logger.info("Stripe call failed", metadata: metadata)
            throw error
        }
    }

    private struct Answer {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    /// Runs the request within the configured timeout; transport failures become `timeout` or
    /// `unavailable`.
    private func execute(_ request: HTTPClientRequest, path: String) async throws(StripeError) -> Answer {
        let timeout = self.configuration.timeout
        do {
            let response = try await self.httpClient.execute(request, deadline: .now() + TimeAmount(timeout), logger: self.logger)
            let body = try await response.body.collect(upTo: Self.maximumAnswerBytes)
            return Answer(status: response.status, headers: response.headers, body: body)
        } catch let error as HTTPClientError
            where error == .deadlineExceeded || error == .readTimeout || error == .writeTimeout || error == .connectTimeout
        {
            throw StripeError(.timeout, "Stripe did not answer POST \(path) within \(timeout)")
        } catch is NIOTooManyBytesError {
            throw StripeError(.malformedResponse, "Stripe answered POST \(path) with more than \(Self.maximumAnswerBytes / 1024) KB")
        } catch is CancellationError {
            throw StripeError(.unavailable, "the call to Stripe (POST \(path)) was cancelled")
        } catch let error as HTTPClientError where error == .cancelled {
            throw StripeError(.unavailable, "the call to Stripe (POST \(path)) was cancelled")
        } catch {
            throw StripeError(
                .unavailable, "could not reach Stripe at \(request.url) (\(error)); check the network and EASEL_STRIPE_API_BASE"
            )
        }
    }

    /// Stripe's error body: `{"error": {"type", "code", "message", "param", …}}`.
    static func failure(status: UInt, headers: HTTPHeaders, body: ByteBuffer) -> StripeError {
        let json = try? JSONDecoder().decode(StripeJSON.self, from: Data(buffer: body))
        let error = json?["error"]
        let message = error?["message"]?.string ?? "Stripe answered \(status): \(Self.snippet(body))"
        let kind: StripeError.Kind =
            switch status {
            case 401, 403: .authentication
            case 429: .rateLimited
            case 409: .unavailable
            case 400..<500: .invalidRequest
            default: .unavailable
            }
        let shouldRetry: Bool? =
            switch headers.first(name: "Stripe-Should-Retry")?.lowercased() {
            case "true": true
            case "false": false
            default: nil
            }
        return StripeError(
            kind, message, code: error?["code"]?.string, status: Int(status), type: error?["type"]?.string, param: error?["param"]?.string,
            requestID: headers.first(name: "Request-Id"), stripeShouldRetry: shouldRetry
        )
    }

    static func snippet(_ body: ByteBuffer) -> String {
        let text = String(decoding: body.readableBytesView.prefix(300), as: UTF8.self)
            .replacingOccurrences(of: "\n", with: " ")
            .trimmingCharacters(in: .whitespaces)
        return text.isEmpty ? "(empty body)" : text
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }
}

/// Stripe's form encoding: `application/x-www-form-urlencoded`, nested hashes and arrays in
/// bracket notation (`metadata[user_id]=7`, `line_items[0][price]=price_x`). Names and values are
/// percent-encoded outside RFC 3986's unreserved set, brackets included (as Stripe's Python
/// library does; Stripe decodes both forms), spaces as `%20`.
enum StripeForm {
    static func encode(_ fields: [(String, String)]) -> String {
        fields.map { "\(self.percentEncode($0.0))=\(self.percentEncode($0.1))" }.joined(separator: "&")
    }

    /// `prefix[key]=value` for each entry, by key, so equal requests encode equally.
    static func metadata(_ metadata: [String: String], prefix: String) -> [(String, String)] {
        metadata.sorted { $0.key < $1.key }.map { ("\(prefix)[\($0.key)]", $0.value) }
    }

    static func percentEncode(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
