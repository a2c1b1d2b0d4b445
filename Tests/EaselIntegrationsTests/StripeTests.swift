import AsyncHTTPClient
import EaselTestSupport
import Foundation
import NIOCore
import Testing

@testable import EaselIntegrations

// MARK: - Webhook signatures

/// Given events signed by the official `stripe` SDK (or by us and checked by it), when Easel
/// verifies them, then only authentic, timely deliveries pass, and each refusal says why.
@Suite("Stripe webhook signatures, cross-checked with the official stripe SDK")
struct StripeWebhookSignatureTests {
    static let secret = "whsec_" + "c2VjcmV0LWZvci10ZXN0cy1vbmx5"
    static let otherSecret = "whsec_" + "b3RoZXItc2VjcmV0LWZvci10ZXN0cw"
    /// A fixed "now", so no test depends on the clock or on how long Python takes to start.
    static let now = Date(timeIntervalSince1970: 1_760_000_000)

    static func payload(_ id: String = "evt_\(UUID().uuidString.prefix(8))") -> [UInt8] {
        Array(
            """
            {
              "id": "\(id)",
              "object": "event",
              "api_version": "2025-03-31.basil",
              "created": 1760000000,
              "data": {"object": {"id": "cs_test_1", "object": "checkout.session", "metadata": {"note": "Zoë 🎨"}}},
              "livemode": false,
              "type": "checkout.session.completed"
            }
            """.utf8)
    }

    static func verifyError(
        payload: [UInt8], header: String?, secrets: [String], now: Date = Self.now
    ) -> StripeSignatureError? {
        do {
            try StripeWebhookSignature.verify(payload: payload, header: header, secrets: secrets, now: now)
            return nil
        } catch {
            return error
        }
    }

    @Test("headers made by the SDK verify, for any body and any timestamp within 300 s either way")
    func sdkHeadersVerify() async throws {
        let payloads = [Self.payload(), Array("{}".utf8), Array("{\"a\":\"\\u00e9 – ü\"}".utf8)]
        let offsets: [TimeInterval] = [0, -300, 300, -1, 1]
        var items: [(payload: [UInt8], secrets: [String], timestamp: Date)] = []
        for payload in payloads {
            for offset in offsets {
                items.append((payload, [Self.secret], Self.now.addingTimeInterval(offset)))
            }
        }

        let headers = try await StripeSigner.sign(items)

        for (item, header) in zip(items, headers) {
            #expect(header.hasPrefix("t=\(Int(item.timestamp.timeIntervalSince1970)),v1="))
            #expect(Self.verifyError(payload: item.payload, header: header, secrets: [Self.secret]) == nil, "header \(header)")
        }
    }

    @Test("our header(...) is exactly the SDK's for the same body, secret and time")
    func ourHeaderEqualsTheSDKs() async throws {
        let payload = Self.payload()
        let sdk = try await StripeSigner.sign([(payload, [Self.secret], Self.now)])
        #expect(sdk == [StripeWebhookSignature.header(payload: payload, secret: Self.secret, timestamp: Self.now)])
    }

    @Test("the SDK's construct_event accepts our header, and refuses it for another body or secret")
    func sdkAcceptsOurHeader() async throws {
        // construct_event checks against the real clock, so sign with the real time.
        let payload = Self.payload("evt_ours")
        let header = StripeWebhookSignature.header(payload: payload, secret: Self.secret, timestamp: Date())
        var tampered = payload
        tampered[tampered.firstIndex(of: UInt8(ascii: "1"))!] = UInt8(ascii: "2")
        let rolled = StripeWebhookSignature.header(payload: payload, secrets: [Self.otherSecret, Self.secret], timestamp: Date())

        let verdicts = try await StripeSigner.verify([
            (payload, header, Self.secret),
            (tampered, header, Self.secret),
            (payload, header, Self.otherSecret),
            (payload, rolled, Self.secret),
            (payload, rolled, Self.otherSecret),
        ])

        #expect(verdicts[0].ok && verdicts[0].id == "evt_ours" && verdicts[0].type == "checkout.session.completed", "\(verdicts[0])")
        #expect(!verdicts[1].ok)
        #expect(!verdicts[2].ok)
        #expect(verdicts[3].ok, "\(verdicts[3])")
        #expect(verdicts[4].ok, "\(verdicts[4])")
    }

    @Test("a wrong secret, a changed body or a changed timestamp is noMatchingSignature")
    func wrongSecretOrBody() async throws {
        let payload = Self.payload()
        let header = try #require(try await StripeSigner.sign([(payload, [Self.secret], Self.now)]).first)
        var changed = payload
        changed.append(UInt8(ascii: " "))
        let shifted = header.replacingOccurrences(
            of: "t=\(Int(Self.now.timeIntervalSince1970))", with: "t=\(Int(Self.now.timeIntervalSince1970) + 1)")

        #expect(Self.verifyError(payload: payload, header: header, secrets: [Self.otherSecret])?.kind == .noMatchingSignature)
        #expect(Self.verifyError(payload: changed, header: header, secrets: [Self.secret])?.kind == .noMatchingSignature)
        #expect(Self.verifyError(payload: payload, header: shifted, secrets: [Self.secret])?.kind == .noMatchingSignature)
        #expect(Self.verifyError(payload: payload, header: header, secrets: [])?.kind == .noMatchingSignature)
        #expect(Self.verifyError(payload: payload, header: header, secrets: [""])?.kind == .noMatchingSignature)
        #expect(Self.verifyError(payload: payload, header: header, secrets: [Self.secret]) == nil)
    }

    @Test("a delivery signed 301 s ago is timestampTooOld, one signed 301 s ahead is timestampInFuture")
    func staleAndFuture() async throws {
        let payload = Self.payload()
        let headers = try await StripeSigner.sign([
            (payload, [Self.secret], Self.now.addingTimeInterval(-301)),
            (payload, [Self.secret], Self.now.addingTimeInterval(301)),
            (payload, [Self.secret], Self.now.addingTimeInterval(-300)),
            (payload, [Self.secret], Self.now.addingTimeInterval(300)),
        ])

        let stale = Self.verifyError(payload: payload, header: headers[0], secrets: [Self.secret])
        let future = Self.verifyError(payload: payload, header: headers[1], secrets: [Self.secret])
        #expect(stale?.kind == .timestampTooOld)
        #expect(stale?.message.contains("301 s old") == true, "\(stale?.message ?? "")")
        #expect(future?.kind == .timestampInFuture)
        #expect(Self.verifyError(payload: payload, header: headers[2], secrets: [Self.secret]) == nil)
        #expect(Self.verifyError(payload: payload, header: headers[3], secrets: [Self.secret]) == nil)
        // A stale delivery under the wrong secret is refused for its signature first.
        #expect(Self.verifyError(payload: payload, header: headers[0], secrets: [Self.otherSecret])?.kind == .noMatchingSignature)
    }

    @Test("no header is missingHeader; a header without a timestamp or without any v1 is malformedHeader")
    func missingAndMalformed() {
        let payload = Self.payload()
        let good = StripeWebhookSignature.header(payload: payload, secret: Self.secret, timestamp: Self.now)
        let signature = String(good.split(separator: ",")[1].dropFirst(3))
        let t = Int(Self.now.timeIntervalSince1970)

        #expect(Self.verifyError(payload: payload, header: nil, secrets: [Self.secret])?.kind == .missingHeader)
        #expect(Self.verifyError(payload: payload, header: "", secrets: [Self.secret])?.kind == .missingHeader)
        #expect(Self.verifyError(payload: payload, header: "  ", secrets: [Self.secret])?.kind == .missingHeader)
        let malformed = [
            "garbage",
            "v1=\(signature)",
            "t=,v1=\(signature)",
            "t=abc,v1=\(signature)",
            "t=-5,v1=\(signature)",
            "t=\(t)",
            "t=\(t),v0=\(signature)",
            "t=\(t),t=\(t),v1=\(signature)",
            "t=\(t),v1=\(signature)," + Array(repeating: "v1=\(signature)", count: 9).joined(separator: ","),
            "t=\(t),v1=\(signature)," + String(repeating: "x", count: 5_000),
        ]
        for header in malformed {
            #expect(Self.verifyError(payload: payload, header: header, secrets: [Self.secret])?.kind == .malformedHeader, "\(header.prefix(80))")
        }
        // A v1 that is not hex, or of the wrong length, cannot match; a valid one beside it still does.
        #expect(Self.verifyError(payload: payload, header: "t=\(t),v1=zz", secrets: [Self.secret])?.kind == .noMatchingSignature)
        #expect(Self.verifyError(payload: payload, header: "t=\(t),v1=abcd,v1=\(signature)", secrets: [Self.secret]) == nil)
        // Other schemes are ignored, and spaces around items are tolerated.
        #expect(Self.verifyError(payload: payload, header: "t=\(t), v0=00, v1=\(signature)", secrets: [Self.secret]) == nil)
        #expect(Self.verifyError(payload: payload, header: "t=\(t),v1=\(signature.uppercased())", secrets: [Self.secret]) == nil)
    }

    @Test("during a secret roll (two v1 values), a delivery passes when only the second matches our secret")
    func rotatedSecretTwoSignatures() async throws {
        let payload = Self.payload()
        let retired = "whsec_retired_\(UUID().uuidString)"
        let header = try #require(try await StripeSigner.sign([(payload, [retired, Self.secret], Self.now)]).first)

        #expect(header.components(separatedBy: "v1=").count == 3, "\(header)")
        #expect(Self.verifyError(payload: payload, header: header, secrets: [Self.secret]) == nil)
        #expect(Self.verifyError(payload: payload, header: header, secrets: [retired]) == nil)
        #expect(Self.verifyError(payload: payload, header: header, secrets: [Self.otherSecret])?.kind == .noMatchingSignature)
        // Our own rolled header carries the same two signatures.
        #expect(header == StripeWebhookSignature.header(payload: payload, secrets: [retired, Self.secret], timestamp: Self.now))
    }

    @Test("with two configured secrets, a delivery signed under either one passes")
    func twoConfiguredSecrets() async throws {
        let payload = Self.payload()
        let headers = try await StripeSigner.sign([
            (payload, [Self.otherSecret], Self.now),
            (payload, [Self.secret], Self.now),
            (payload, ["whsec_neither"], Self.now),
        ])

        let configured = [Self.secret, Self.otherSecret]
        #expect(Self.verifyError(payload: payload, header: headers[0], secrets: configured) == nil)
        #expect(Self.verifyError(payload: payload, header: headers[1], secrets: configured) == nil)
        #expect(Self.verifyError(payload: payload, header: headers[2], secrets: configured)?.kind == .noMatchingSignature)
    }

    @Test("the constant-time comparison tells equal from unequal in every byte position")
    func constantTimeCompare() {
        let a = [UInt8](repeating: 0xA5, count: 32)
        #expect(StripeWebhookSignature.constantTimeEqual(a, a) == 1)
        for index in a.indices {
            for bit in 0..<8 {
                var b = a
                b[index] ^= UInt8(1) << UInt8(bit)
                #expect(StripeWebhookSignature.constantTimeEqual(a, b) == 0)
            }
        }
        #expect(StripeWebhookSignature.constantTimeEqual(a, Array(a.dropLast())) == 0)
    }
}

// MARK: - Events

/// Given realistic event bodies from the API versions before and after 2025-03-31 ("basil"), when
/// they are parsed, then the typed readers find the same facts in either shape.
@Suite("Stripe event parsing, older and newer API shapes")
struct StripeEventTests {
    static func parse(_ text: String) throws -> StripeEvent {
        try StripeEvent.parse(Array(text.utf8))
    }

    static func event(_ type: String, apiVersion: String, object: String, previous: String? = nil) -> String {
        """
        {
          "id": "evt_1Q\(UUID().uuidString.prefix(12))",
          "object": "event",
          "api_version": "\(apiVersion)",
          "created": 1721300000,
          "data": {
            "object": \(object)\(previous.map { ",\n    \"previous_attributes\": \($0)" } ?? "")
          },
          "livemode": false,
          "pending_webhooks": 2,
          "request": {"id": "req_abc", "idempotency_key": "0f3b5c1e-7a6b-4d4b-9a49-1c2d3e4f5a6b"},
          "type": "\(type)"
        }
        """
    }

    static let checkoutSubscriptionOld = """
        {
          "id": "cs_test_a1Wq2",
          "object": "checkout.session",
          "after_expiration": null,
          "allow_promotion_codes": null,
          "amount_subtotal": 1500,
          "amount_total": 1500,
          "automatic_tax": {"enabled": false, "liability": null, "status": null},
          "billing_address_collection": null,
          "cancel_url": "https://easel.example/billing",
          "client_reference_id": "42",
          "consent": null,
          "created": 1721299000,
          "currency": "usd",
          "custom_fields": [],
          "customer": "cus_QA1bcD",
          "customer_creation": null,
          "customer_details": {
            "address": {"city": "Berlin", "country": "DE", "line1": null, "line2": null, "postal_code": "10115", "state": null},
            "email": "zoe@example.com", "name": "Zoë Ünal", "phone": null, "tax_exempt": "none", "tax_ids": []
          },
          "customer_email": null,
          "expires_at": 1721385400,
          "invoice": "in_1PdT0Z",
          "livemode": false,
          "locale": "de",
          "metadata": {"user_id": "42", "plan": "pro"},
          "mode": "subscription",
          "payment_intent": null,
          "payment_link": null,
          "payment_method_types": ["card"],
          "payment_status": "paid",
          "status": "complete",
          "submit_type": null,
          "subscription": "sub_1PdT0Z",
          "success_url": "https://easel.example/billing/success?session_id={CHECKOUT_SESSION_ID}",
          "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
          "ui_mode": "hosted",
          "url": null
        }
        """

    @Test("checkout.session.completed (2024-06-20, subscription mode) reads as a Checkout Session")
    func checkoutSessionOld() throws {
        let event = try Self.parse(Self.event("checkout.session.completed", apiVersion: "2024-06-20", object: Self.checkoutSubscriptionOld))

        #expect(event.type == "checkout.session.completed")
        #expect(event.created == Date(timeIntervalSince1970: 1_721_300_000))
        #expect(event.livemode == false)
        #expect(event.apiVersion == "2024-06-20")
        #expect(event.objectType == "checkout.session")
        #expect(event.objectID == "cs_test_a1Wq2")
        #expect(event.invoice == nil && event.subscription == nil && event.charge == nil)
        #expect(
            event.checkoutSession
                == StripeCheckoutSession(
                    id: "cs_test_a1Wq2", mode: "subscription", status: "complete", paymentStatus: "paid", clientReferenceID: "42",
                    customer: "cus_QA1bcD", subscription: "sub_1PdT0Z", paymentIntent: nil, amountTotal: 1500, currency: "usd",
                    metadata: ["user_id": "42", "plan": "pro"], country: "DE"
                )
        )
    }

    @Test("a payment-mode session with expanded customer and payment intent, still unpaid, reads their ids")
    func checkoutSessionExpandedAndAsync() throws {
        let object = """
            {
              "id": "cs_test_b2", "object": "checkout.session", "amount_total": 900, "currency": "eur",
              "client_reference_id": null,
              "customer": {"id": "cus_X9", "object": "customer", "email": "a@b.test"},
              "customer_details": {"address": null, "email": "a@b.test"},
              "metadata": {},
              "mode": "payment",
              "payment_intent": {"id": "pi_3X", "object": "payment_intent", "status": "processing"},
              "payment_status": "unpaid",
              "status": "complete",
              "subscription": null,
              "some_field_from_the_future": {"nested": [1, 2.5, true, null]}
            }
            """
        let session = try #require(
            try Self.parse(Self.event("checkout.session.completed", apiVersion: "2025-03-31.basil", object: object)).checkoutSession)

        #expect(session.customer == "cus_X9")
        #expect(session.paymentIntent == "pi_3X")
        #expect(session.paymentStatus == "unpaid")
        #expect(session.mode == "payment")
        #expect(session.subscription == nil)
        #expect(session.clientReferenceID == nil)
        #expect(session.country == nil)
        #expect(session.amountTotal == 900)
        #expect(session.metadata.isEmpty)
    }

    static let invoiceOld = """
        {
          "id": "in_1PdT0Z",
          "object": "invoice",
          "account_country": "US",
          "amount_due": 1500,
          "amount_paid": 1500,
          "amount_remaining": 0,
          "attempt_count": 1,
          "attempted": true,
          "billing_reason": "subscription_cycle",
          "charge": "ch_3PdT0a",
          "collection_method": "charge_automatically",
          "created": 1721299900,
          "currency": "usd",
          "customer": "cus_QA1bcD",
          "customer_email": "zoe@example.com",
          "discount": null,
          "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1/test_x",
          "lines": {
            "object": "list",
            "data": [
              {
                "id": "il_1PdT0Z",
                "object": "line_item",
                "amount": 1500,
                "currency": "usd",
                "description": "1 × Easel Pro (at $15.00 / month)",
                "discountable": true,
                "livemode": false,
                "metadata": {},
                "period": {"end": 1723978300, "start": 1721299900},
                "plan": {"id": "price_1Pro", "object": "plan", "amount": 1500, "interval": "month"},
                "price": {"id": "price_1Pro", "object": "price", "recurring": {"interval": "month", "interval_count": 1}, "type": "recurring", "unit_amount": 1500},
                "proration": false,
                "quantity": 1,
                "subscription": "sub_1PdT0Z",
                "subscription_item": "si_QA1",
                "type": "subscription"
              }
            ],
            "has_more": false,
            "total_count": 1,
            "url": "/v1/invoices/in_1PdT0Z/lines"
          },
          "livemode": false,
          "metadata": {},
          "paid": true,
          "payment_intent": "pi_3PdT0a",
          "period_end": 1721299900,
          "period_start": 1718621500,
          "status": "paid",
          "subscription": "sub_1PdT0Z",
          "subscription_details": {"metadata": {"user_id": "42", "plan": "pro"}},
          "total": 1500
        }
        """

    static let invoiceBasil = """
        {
          "id": "in_1RbAsL",
          "object": "invoice",
          "account_country": "IE",
          "amount_due": 1200,
          "amount_paid": 1200,
          "amount_remaining": 0,
          "billing_reason": "subscription_create",
          "collection_method": "charge_automatically",
          "created": 1751400000,
          "currency": "eur",
          "customer": {"id": "cus_SbAs", "object": "customer"},
          "lines": {
            "object": "list",
            "data": [
              {
                "id": "il_1RbAsL",
                "object": "line_item",
                "amount": 1200,
                "currency": "eur",
                "description": "1 × Easel Pro (at €12.00 / month)",
                "invoice": "in_1RbAsL",
                "parent": {
                  "invoice_item_details": null,
                  "subscription_item_details": {
                    "invoice_item": null, "proration": false, "proration_details": {"credited_items": null},
                    "subscription": "sub_1RbAsL", "subscription_item": "si_SbAs"
                  },
                  "type": "subscription_item_details"
                },
                "period": {"end": 1754078400, "start": 1751400000},
                "pretax_credit_amounts": [],
                "pricing": {"price_details": {"price": "price_1ProEur", "product": "prod_Easel"}, "type": "price_details", "unit_amount_decimal": "1200"},
                "quantity": 1,
                "taxes": []
              }
            ],
            "has_more": false,
            "total_count": 1,
            "url": "/v1/invoices/in_1RbAsL/lines"
          },
          "livemode": false,
          "metadata": {},
          "parent": {
            "quote_details": null,
            "subscription_details": {"metadata": {"user_id": "43"}, "subscription": "sub_1RbAsL"},
            "type": "subscription_details"
          },
          "payments": {
            "object": "list",
            "data": [
              {"id": "inpay_1RbAsL", "object": "invoice_payment", "amount_paid": 1200, "is_default": true,
               "payment": {"payment_intent": "pi_3RbAsL", "type": "payment_intent"}, "status": "paid"}
            ],
            "has_more": false
          },
          "period_end": 1751400000,
          "period_start": 1751400000,
          "status": "paid",
          "total": 1200
        }
        """

    @Test("invoice.paid (2024-06-20): subscription, price and period from the top level and the first line")
    func invoiceOldShape() throws {
        let event = try Self.parse(Self.event("invoice.paid", apiVersion: "2024-06-20", object: Self.invoiceOld))

        #expect(event.checkoutSession == nil)
        #expect(
            event.invoice
                == StripeInvoice(
                    id: "in_1PdT0Z", customer: "cus_QA1bcD", subscription: "sub_1PdT0Z", status: "paid", amountPaid: 1500, amountDue: 1500,
                    currency: "usd", billingReason: "subscription_cycle", priceID: "price_1Pro",
                    // The line's period: the invoice's own period_start/end is the previous period.
                    periodStart: Date(timeIntervalSince1970: 1_721_299_900), periodEnd: Date(timeIntervalSince1970: 1_723_978_300),
                    paymentIntent: "pi_3PdT0a", charge: "ch_3PdT0a", subscriptionMetadata: ["user_id": "42", "plan": "pro"]
                )
        )
    }

    @Test("invoice.paid (2025-03-31.basil): subscription and metadata under parent, price under pricing.price_details")
    func invoiceBasilShape() throws {
        let event = try Self.parse(Self.event("invoice.paid", apiVersion: "2025-03-31.basil", object: Self.invoiceBasil))

        #expect(
            event.invoice
                == StripeInvoice(
                    id: "in_1RbAsL", customer: "cus_SbAs", subscription: "sub_1RbAsL", status: "paid", amountPaid: 1200, amountDue: 1200,
                    currency: "eur", billingReason: "subscription_create", priceID: "price_1ProEur",
                    periodStart: Date(timeIntervalSince1970: 1_751_400_000), periodEnd: Date(timeIntervalSince1970: 1_754_078_400),
                    paymentIntent: "pi_3RbAsL", charge: nil, subscriptionMetadata: ["user_id": "43"]
                )
        )
    }

    @Test("an invoice without lines takes its period from period_start/period_end")
    func invoiceWithoutLines() throws {
        let object = """
            {"id": "in_manual", "object": "invoice", "amount_due": 500, "amount_paid": 0, "currency": "usd", "customer": "cus_1",
             "billing_reason": "manual", "lines": {"object": "list", "data": []}, "period_start": 1700000000, "period_end": 1700000100,
             "status": "open", "subscription": null, "parent": null}
            """
        let invoice = try #require(try Self.parse(Self.event("invoice.payment_failed", apiVersion: "2025-08-27.basil", object: object)).invoice)

        #expect(invoice.periodStart == Date(timeIntervalSince1970: 1_700_000_000))
        #expect(invoice.periodEnd == Date(timeIntervalSince1970: 1_700_000_100))
        #expect(invoice.subscription == nil)
        #expect(invoice.priceID == nil)
        #expect(invoice.amountPaid == 0)
        #expect(invoice.subscriptionMetadata.isEmpty)
    }

    @Test("customer.subscription.updated (2024-06-20): current_period_end at the top level, previous attributes kept")
    func subscriptionOldShape() throws {
        let object = """
            {
              "id": "sub_1PdT0Z", "object": "subscription", "billing_cycle_anchor": 1721299900, "cancel_at": 1723978300,
              "cancel_at_period_end": true, "canceled_at": 1722000000, "collection_method": "charge_automatically",
              "created": 1721299900, "currency": "usd", "current_period_end": 1723978300, "current_period_start": 1721299900,
              "customer": "cus_QA1bcD", "ended_at": null,
              "items": {"object": "list", "data": [
                {"id": "si_QA1", "object": "subscription_item", "created": 1721299900, "metadata": {},
                 "plan": {"id": "price_1Pro", "object": "plan"},
                 "price": {"id": "price_1Pro", "object": "price", "type": "recurring", "unit_amount": 1500},
                 "quantity": 1, "subscription": "sub_1PdT0Z"}
              ], "has_more": false, "total_count": 1},
              "latest_invoice": "in_1PdT0Z", "livemode": false, "metadata": {"user_id": "42"}, "status": "active"
            }
            """
        let event = try Self.parse(
            Self.event("customer.subscription.updated", apiVersion: "2024-06-20", object: object, previous: "{\"cancel_at_period_end\": false}")
        )

        #expect(event.previousAttributes?["cancel_at_period_end"] == .bool(false))
        #expect(
            event.subscription
                == StripeSubscription(
                    id: "sub_1PdT0Z", customer: "cus_QA1bcD", status: "active", cancelAtPeriodEnd: true,
                    currentPeriodEnd: Date(timeIntervalSince1970: 1_723_978_300), priceID: "price_1Pro", metadata: ["user_id": "42"],
                    canceledAt: Date(timeIntervalSince1970: 1_722_000_000), endedAt: nil,
                    currentPeriodStart: Date(timeIntervalSince1970: 1_721_299_900), cancelAt: Date(timeIntervalSince1970: 1_723_978_300)
                )
        )
    }

    @Test("customer.subscription.deleted (basil): the period on the item, no top-level current_period_end")
    func subscriptionBasilShape() throws {
        let object = """
            {
              "id": "sub_1RbAsL", "object": "subscription", "billing_cycle_anchor": 1751400000, "cancel_at": null,
              "cancel_at_period_end": false, "canceled_at": 1754078400, "created": 1751400000, "currency": "eur",
              "customer": "cus_SbAs", "ended_at": 1754078400,
              "items": {"object": "list", "data": [
                {"id": "si_SbAs", "object": "subscription_item", "created": 1751400000,
                 "current_period_end": 1754078400, "current_period_start": 1751400000, "metadata": {},
                 "price": {"id": "price_1ProEur", "object": "price", "type": "recurring", "unit_amount": 1200},
                 "quantity": 1, "subscription": "sub_1RbAsL"}
              ], "has_more": false, "total_count": 1},
              "livemode": false, "metadata": {"user_id": "43"}, "status": "canceled"
            }
            """
        let event = try Self.parse(Self.event("customer.subscription.deleted", apiVersion: "2025-03-31.basil", object: object))

        #expect(
            event.subscription
                == StripeSubscription(
                    id: "sub_1RbAsL", customer: "cus_SbAs", status: "canceled", cancelAtPeriodEnd: false,
                    currentPeriodEnd: Date(timeIntervalSince1970: 1_754_078_400), priceID: "price_1ProEur", metadata: ["user_id": "43"],
                    canceledAt: Date(timeIntervalSince1970: 1_754_078_400), endedAt: Date(timeIntervalSince1970: 1_754_078_400),
                    currentPeriodStart: Date(timeIntervalSince1970: 1_751_400_000), cancelAt: nil
                )
        )
    }

    @Test("charge.refunded (2024-06-20): card last four, invoice, and no country when there is no billing address (the card's issuing country is not kept)")
    func chargeOldShape() throws {
        let object = """
            {
              "id": "ch_3PdT0a", "object": "charge", "amount": 1500, "amount_captured": 1500, "amount_refunded": 500,
              "billing_details": {"address": {"city": null, "country": null, "line1": null, "line2": null, "postal_code": "10115", "state": null},
                                  "email": "zoe@example.com", "name": "Zoë Ünal", "phone": null},
              "captured": true, "created": 1721299950, "currency": "usd", "customer": "cus_QA1bcD", "invoice": "in_1PdT0Z",
              "livemode": false, "metadata": {}, "paid": true, "payment_intent": "pi_3PdT0a",
              "payment_method_details": {"card": {"brand": "visa", "checks": {"cvc_check": "pass"}, "country": "US", "exp_month": 8,
                                                  "exp_year": 2030, "funding": "credit", "last4": "4242", "network": "visa"}, "type": "card"},
              "refunded": false,
              "refunds": {"object": "list", "data": [{"id": "re_1", "object": "refund", "amount": 500, "status": "succeeded"}], "has_more": false},
              "status": "succeeded"
            }
            """
        let event = try Self.parse(Self.event("charge.refunded", apiVersion: "2024-06-20", object: object))

        #expect(
            event.charge
                == StripeCharge(
                    id: "ch_3PdT0a", customer: "cus_QA1bcD", paymentIntent: "pi_3PdT0a", invoice: "in_1PdT0Z", amount: 1500, amountRefunded: 500,
                    currency: "usd", refunded: false, status: "succeeded", cardLast4: "4242", country: nil
                )
        )
    }

    @Test("charge.refunded (basil): no invoice on the charge, the billing address's country wins over the card's")
    func chargeBasilShape() throws {
        let object = """
            {
              "id": "ch_3RbAsL", "object": "charge", "amount": 900, "amount_refunded": 900,
              "billing_details": {"address": {"country": "ES"}, "email": null, "name": null, "phone": null, "tax_id": null},
              "currency": "eur", "customer": {"id": "cus_SbAs", "object": "customer"},
              "payment_intent": "pi_3RbAsL",
              "payment_method_details": {"card": {"brand": "mastercard", "country": "FR", "last4": "4444"}, "type": "card"},
              "refunded": true, "status": "succeeded"
            }
            """
        let charge = try #require(try Self.parse(Self.event("charge.refunded", apiVersion: "2025-03-31.basil", object: object)).charge)

        #expect(charge.invoice == nil)
        #expect(charge.customer == "cus_SbAs")
        #expect(charge.refunded)
        #expect(charge.amountRefunded == 900)
        #expect(charge.cardLast4 == "4444")
        #expect(charge.country == "ES")
    }

    @Test("an event of a kind Easel does not handle still parses, with no typed object")
    func unknownEvent() throws {
        let event = try Self.parse(
            Self.event(
                "payment_intent.succeeded", apiVersion: "2025-03-31.basil",
                object: "{\"id\": \"pi_1\", \"object\": \"payment_intent\", \"amount\": 5}")
        )
        #expect(event.type == "payment_intent.succeeded")
        #expect(event.objectType == "payment_intent")
        #expect(event.object.at("amount")?.int == 5)
        #expect(event.checkoutSession == nil && event.invoice == nil && event.subscription == nil && event.charge == nil)
    }

    @Test("bodies that are not events are refused with a reason")
    func notEvents() {
        let bodies = [
            "not json",
            "[]",
            "{\"type\": \"invoice.paid\", \"created\": 1, \"data\": {\"object\": {}}}",
            "{\"id\": \"evt_1\", \"created\": 1, \"data\": {\"object\": {}}}",
            "{\"id\": \"evt_1\", \"type\": \"invoice.paid\", \"data\": {\"object\": {}}}",
            "{\"id\": \"evt_1\", \"type\": \"invoice.paid\", \"created\": 1}",
            "{\"id\": \"evt_1\", \"type\": \"invoice.paid\", \"created\": 1, \"data\": {\"object\": \"in_1\"}}",
        ]
        for body in bodies {
            #expect(throws: StripeEventError.self, "\(body)") { try StripeEvent.parse(Array(body.utf8)) }
        }
    }
}

// MARK: - API client

/// The Stripe API peer of the suite marked `.stripeAPIPeer`, started before it and stopped after.
enum StripeAPIPeerScope {
    @TaskLocal static var peer: StripeAPIPeer?
}

extension Trait where Self == PeerScope<StripeAPIPeer> {
    static var stripeAPIPeer: Self { Self(StripeAPIPeerScope.$peer, start: { try await StripeAPIPeer.start() }, stop: { await $0.stop() }) }
}

/// Given a loopback fake of Stripe's API that checks form encoding, keys and idempotency as
/// Stripe does, when the live client calls it, then it sends exactly the documented fields and
/// sorts every failure into the right kind with Stripe's own message.
@Suite("LiveStripeAPI against a loopback fake of Stripe's API", .stripeAPIPeer)
struct LiveStripeAPITests {
    var peer: StripeAPIPeer { StripeAPIPeerScope.peer! }

    /// An idempotency key no other test uses; faults and requests are found by its prefix.
    static func key(_ label: String) -> String { "easel-test-\(label)-\(UUID().uuidString.lowercased())" }

    func withAPI<T>(
        secretKey: String? = nil, apiBase: URL? = nil, timeout: Duration = .seconds(10), apiVersion: String? = nil,
        _ body: (LiveStripeAPI) async throws -> T
    ) async throws -> T {
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: HTTPClient.Configuration(timeout: .init(connect: .seconds(5))))
        let api = LiveStripeAPI(
            configuration: StripeConfiguration(
                secretKey: secretKey ?? self.peer.secretKey, apiBase: apiBase ?? self.peer.baseURL, timeout: timeout, apiVersion: apiVersion
            ),
            httpClient: client
        )
        do {
            let result = try await body(api)
            try await client.shutdown()
            return result
        } catch {
            try await client.shutdown()
            throw error
        }
    }

    func requests(keyPrefix: String) async throws -> [StripeAPIPeerRequest] {
        try await self.peer.requests().filter { $0.idempotencyKey?.hasPrefix(keyPrefix) == true }
    }

    static func stripeError<T>(_ call: () async throws(StripeError) -> T) async -> StripeError? {
        do {
            _ = try await call()
            return nil
        } catch {
            return error
        }
    }

    func customer(_ api: LiveStripeAPI) async throws -> String {
        try await api.createCustomer(email: "zoe@example.com", name: nil, metadata: [:], idempotencyKey: Self.key("customer"))
    }

    @Test("createCustomer posts email, name and metadata[…] form-encoded with the bearer key and an Idempotency-Key")
    func createCustomer() async throws {
        let key = Self.key("create-customer")
        let id = try await self.withAPI { api in
            try await api.createCustomer(
                email: "zoë+tag@example.com", name: "Zoë Ünal", metadata: ["user_id": "7", "source": "easel signup"], idempotencyKey: key)
        }

        let request = try #require(try await self.requests(keyPrefix: key).first)
        #expect(id.hasPrefix("cus_"))
        #expect(request.answerID == id)
        #expect(request.method == "POST")
        #expect(request.path == "/v1/customers")
        #expect(request.status == 200)
        #expect(request.headers["authorization"] == "Bearer \(self.peer.secretKey)")
        #expect(request.headers["content-type"] == "application/x-www-form-urlencoded")
        #expect(request.headers["idempotency-key"] == key)
        #expect(request.headers["stripe-version"] == nil)
        #expect(request.form == ["email": "zoë+tag@example.com", "name": "Zoë Ünal", "metadata[source]": "easel signup", "metadata[user_id]": "7"])
        // RFC 3986 percent-encoding, brackets included, spaces as %20, metadata by key.
        #expect(
            request.rawBody
                == "email=zo%C3%AB%2Btag%40example.com&name=Zo%C3%AB%20%C3%9Cnal&metadata%5Bsource%5D=easel%20signup&metadata%5Buser_id%5D=7"
        )
    }

    @Test("a subscription Checkout Session sends line_items[0][…], metadata and subscription_data[metadata], never payment_intent_data")
    func checkoutSubscription() async throws {
        let key = Self.key("checkout-subscription")
        try await self.peer.addPrice(id: "price_pro_monthly_test", recurring: true, unitAmount: 1500)
        let (customer, created) = try await self.withAPI { api in
            let customer = try await self.customer(api)
            let created = try await api.createCheckoutSession(
                StripeCheckoutRequest(
                    mode: .subscription, customer: customer, price: "price_pro_monthly_test", clientReferenceID: "user-7",
                    metadata: ["user_id": "7", "plan": "pro"],
                    successURL: "https://easel.example/billing/success?session_id={CHECKOUT_SESSION_ID}",
                    cancelURL: "https://easel.example/pricing?canceled=1&x=a b", locale: "es",
                    subscriptionMetadata: ["user_id": "7"], paymentIntentMetadata: ["ignored": "yes"]
                ),
                idempotencyKey: key
            )
            return (customer, created)
        }

        let request = try #require(try await self.requests(keyPrefix: key).first)
        #expect(request.path == "/v1/checkout/sessions")
        #expect(request.status == 200, "\(request.errorMessage ?? "")")
        #expect(created.id == request.answerID)
        #expect(created.id.hasPrefix("cs_test_"))
        #expect(created.url.absoluteString == "https://checkout.stripe.test/c/pay/\(created.id)")
        #expect(
            request.form == [
                "mode": "subscription",
                "customer": customer,
                "line_items[0][price]": "price_pro_monthly_test",
                "line_items[0][quantity]": "1",
                "client_reference_id": "user-7",
                "metadata[plan]": "pro",
                "metadata[user_id]": "7",
                "success_url": "https://easel.example/billing/success?session_id={CHECKOUT_SESSION_ID}",
                "cancel_url": "https://easel.example/pricing?canceled=1&x=a b",
                "locale": "es",
                "subscription_data[metadata][user_id]": "7",
            ]
        )
        #expect(request.headers["idempotency-key"] == key)
    }

    @Test("a payment Checkout Session sends payment_intent_data[metadata] and the quantity, never subscription_data")
    func checkoutPayment() async throws {
        let key = Self.key("checkout-payment")
        try await self.peer.addPrice(id: "price_pack_500_test", recurring: false, unitAmount: 900, currency: "eur")
        let created = try await self.withAPI { api in
            let customer = try await self.customer(api)
            return try await api.createCheckoutSession(
                StripeCheckoutRequest(
                    mode: .payment, customer: customer, price: "price_pack_500_test", quantity: 2, clientReferenceID: "user-8",
                    metadata: ["pack": "500"], successURL: "https://easel.example/ok", cancelURL: "https://easel.example/no",
                    subscriptionMetadata: ["ignored": "yes"], paymentIntentMetadata: ["user_id": "8", "pack": "500"]
                ),
                idempotencyKey: key
            )
        }

        let request = try #require(try await self.requests(keyPrefix: key).first)
        #expect(request.status == 200, "\(request.errorMessage ?? "")")
        #expect(request.answerID == created.id)
        #expect(request.form["mode"] == "payment")
        #expect(request.form["line_items[0][quantity]"] == "2")
        #expect(request.form["payment_intent_data[metadata][user_id]"] == "8")
        #expect(request.form["payment_intent_data[metadata][pack]"] == "500")
        #expect(request.form["locale"] == nil)
        #expect(!request.form.keys.contains { $0.hasPrefix("subscription_data") })
    }

    @Test("the same idempotency key with the same request replays the first session; with another request it is refused")
    func idempotency() async throws {
        let key = Self.key("idempotency")
        let (first, second, conflict) = try await self.withAPI { api in
            let customer = try await self.customer(api)
            let request = StripeCheckoutRequest(
                mode: .payment, customer: customer, price: "price_any_one_time", clientReferenceID: "user-9",
                metadata: ["b": "2", "a": "1"], successURL: "https://easel.example/ok", cancelURL: "https://easel.example/no"
            )
            let first = try await api.createCheckoutSession(request, idempotencyKey: key)
            let second = try await api.createCheckoutSession(request, idempotencyKey: key)
            var changed = request
            changed.quantity = 3
            let conflict = await Self.stripeError { () async throws(StripeError) in try await api.createCheckoutSession(changed, idempotencyKey: key)
            }
            return (first, second, conflict)
        }

        #expect(first == second)
        let requests = try await self.requests(keyPrefix: key)
        #expect(requests.map(\.replayed) == [false, true, false])
        #expect(requests.map(\.status) == [200, 200, 400])
        let error = try #require(conflict)
        #expect(error.kind == .invalidRequest)
        #expect(error.type == "idempotency_error")
        #expect(error.status == 400)
        #expect(error.message.hasPrefix("Keys for idempotent requests can only be used with the same parameters"))
        #expect(!error.isRetryable)
    }

    @Test("a billing portal session posts customer and return_url and answers the portal's URL")
    func portalSession() async throws {
        let key = Self.key("portal")
        let (customer, url) = try await self.withAPI { api in
            let customer = try await self.customer(api)
            let url = try await api.createPortalSession(customer: customer, returnURL: "https://easel.example/billing", idempotencyKey: key)
            return (customer, url)
        }

        let request = try #require(try await self.requests(keyPrefix: key).first)
        #expect(request.path == "/v1/billing_portal/sessions")
        #expect(request.form == ["customer": customer, "return_url": "https://easel.example/billing"])
        #expect(url.absoluteString == request.answerURL)
        #expect(url.absoluteString.hasPrefix("https://billing.stripe.test/p/session/"))
    }

    @Test("Stripe-Version is sent when an API version is configured")
    func apiVersionHeader() async throws {
        let key = Self.key("version")
        _ = try await self.withAPI(apiVersion: "2025-03-31.basil") { api in
            try await api.createCustomer(email: "v@example.com", name: nil, metadata: [:], idempotencyKey: key)
        }
        let request = try #require(try await self.requests(keyPrefix: key).first)
        #expect(request.headers["stripe-version"] == "2025-03-31.basil")
    }

    @Test("a 500 is unavailable with Stripe's message and retryable; the retry with the same key then succeeds")
    func serverErrorThenRetry() async throws {
        let key = Self.key("500")
        try await self.peer.failNext(count: 1, status: 500, message: "An unknown error occurred (scripted)", idempotencyKeyPrefix: key)
        let (error, id) = try await self.withAPI { api in
            let error = await Self.stripeError { () async throws(StripeError) in
                try await api.createCustomer(email: "r@example.com", name: nil, metadata: [:], idempotencyKey: key)
            }
            let id = try await api.createCustomer(email: "r@example.com", name: nil, metadata: [:], idempotencyKey: key)
            return (error, id)
        }

        let failure = try #require(error)
        #expect(failure.kind == .unavailable)
        #expect(failure.status == 500)
        #expect(failure.type == "api_error")
        #expect(failure.message == "An unknown error occurred (scripted)")
        #expect(failure.requestID?.hasPrefix("req_") == true)
        #expect(failure.isRetryable)
        #expect(id.hasPrefix("cus_"))
        #expect(try await self.requests(keyPrefix: key).map(\.status) == [500, 200])
    }

    @Test("a 429 is rateLimited with Stripe's code and message")
    func rateLimited() async throws {
        let key = Self.key("429")
        try await self.peer.failNext(count: 1, status: 429, idempotencyKeyPrefix: key)
        let error = try await self.withAPI { api in
            await Self.stripeError { () async throws(StripeError) in
                try await api.createPortalSession(customer: "cus_whatever", returnURL: "https://easel.example/billing", idempotencyKey: key)
            }
        }

        let failure = try #require(error)
        #expect(failure.kind == .rateLimited)
        #expect(failure.status == 429)
        #expect(failure.code == "rate_limit")
        #expect(failure.message.hasPrefix("Request rate limit exceeded."))
        #expect(failure.isRetryable)
    }

    @Test("a wrong secret key is authentication, with Stripe's message (which does not show the key)")
    func wrongKey() async throws {
        let key = Self.key("401")
        let error = try await self.withAPI(secretKey: "sk_test_wrong_key_1234") { api in
            await Self.stripeError { () async throws(StripeError) in
                try await api.createCustomer(email: "k@example.com", name: nil, metadata: [:], idempotencyKey: key)
            }
        }

        let failure = try #require(error)
        #expect(failure.kind == .authentication)
        #expect(failure.status == 401)
        #expect(failure.message.hasPrefix("Invalid API Key provided: "))
        #expect(!failure.message.contains("wrong_key"))
        #expect(!failure.isRetryable)
    }

    @Test("an unknown customer is invalidRequest with Stripe's code, param and message")
    func unknownCustomer() async throws {
        let key = Self.key("400")
        let error = try await self.withAPI { api in
            await Self.stripeError { () async throws(StripeError) in
                try await api.createCheckoutSession(
                    StripeCheckoutRequest(
                        mode: .payment, customer: "cus_doesnotexist", price: "price_x", clientReferenceID: "u",
                        successURL: "https://easel.example/ok", cancelURL: "https://easel.example/no"
                    ),
                    idempotencyKey: key
                )
            }
        }

        let failure = try #require(error)
        #expect(failure.kind == .invalidRequest)
        #expect(failure.code == "resource_missing")
        #expect(failure.param == "customer")
        #expect(failure.message == "No such customer: 'cus_doesnotexist'")
    }

    @Test("a price of the wrong kind for the mode is refused as Stripe refuses it")
    func recurringPriceInPaymentMode() async throws {
        let key = Self.key("price-kind")
        try await self.peer.addPrice(id: "price_recurring_only", recurring: true, unitAmount: 100)
        let error = try await self.withAPI { api in
            let customer = try await self.customer(api)
            return await Self.stripeError { () async throws(StripeError) in
                try await api.createCheckoutSession(
                    StripeCheckoutRequest(
                        mode: .payment, customer: customer, price: "price_recurring_only", clientReferenceID: "u",
                        successURL: "https://easel.example/ok", cancelURL: "https://easel.example/no"
                    ),
                    idempotencyKey: key
                )
            }
        }
        #expect(error?.kind == .invalidRequest)
        #expect(error?.message.contains("recurring price") == true, "\(String(describing: error))")
    }

    @Test("a 200 that is not JSON is malformedResponse; a 503 is unavailable; 402 and 404 are invalidRequest; 403 authentication")
    func otherStatuses() async throws {
        let prefix = Self.key("statuses")
        try await self.peer.failNext(count: 1, status: 200, idempotencyKeyPrefix: prefix + "-malformed", malformed: true)
        try await self.peer.failNext(count: 1, status: 503, idempotencyKeyPrefix: prefix + "-503")
        try await self.peer.failNext(count: 1, status: 402, idempotencyKeyPrefix: prefix + "-402")
        try await self.peer.failNext(count: 1, status: 404, idempotencyKeyPrefix: prefix + "-404")
        try await self.peer.failNext(count: 1, status: 403, idempotencyKeyPrefix: prefix + "-403")

        let kinds = try await self.withAPI { api in
            var kinds: [String: StripeError.Kind] = [:]
            for suffix in ["malformed", "503", "402", "404", "403"] {
                let error = await Self.stripeError { () async throws(StripeError) in
                    try await api.createCustomer(email: "s@example.com", name: nil, metadata: [:], idempotencyKey: "\(prefix)-\(suffix)")
                }
                kinds[suffix] = error?.kind
            }
            return kinds
        }

        #expect(kinds["malformed"] == .malformedResponse)
        #expect(kinds["503"] == .unavailable)
        #expect(kinds["402"] == .invalidRequest)
        #expect(kinds["404"] == .invalidRequest)
        #expect(kinds["403"] == .authentication)
    }

    @Test("an answer slower than the timeout is timeout; an API base where nothing listens is unavailable")
    func timeoutAndUnreachable() async throws {
        let key = Self.key("slow")
        try await self.peer.failNext(count: 1, status: 500, delay: .seconds(8), idempotencyKeyPrefix: key)
        let slow = try await self.withAPI(timeout: .seconds(1)) { api in
            await Self.stripeError { () async throws(StripeError) in
                try await api.createCustomer(email: "t@example.com", name: nil, metadata: [:], idempotencyKey: key)
            }
        }
        #expect(slow?.kind == .timeout)
        #expect(slow?.isRetryable == true)

        let port = try FreePort.find()
        let unreachable = try await self.withAPI(apiBase: URL(string: "http://127.0.0.1:\(port)")!) { api in
            await Self.stripeError { () async throws(StripeError) in
                try await api.createCustomer(email: "u@example.com", name: nil, metadata: [:], idempotencyKey: Self.key("unreachable"))
            }
        }
        #expect(unreachable?.kind == .unavailable || unreachable?.kind == .timeout, "\(String(describing: unreachable))")
    }

    @Test("an empty idempotency key is refused before anything is sent")
    func emptyIdempotencyKey() async throws {
        let error = try await self.withAPI { api in
            await Self.stripeError { () async throws(StripeError) in
                try await api.createCustomer(email: "e@example.com", name: nil, metadata: [:], idempotencyKey: "")
            }
        }
        #expect(error?.kind == .invalidRequest)
        #expect(error?.status == nil)
        // The fake refuses a POST without a key, so none reaching it proves none was sent.
        #expect(try await self.peer.requests().allSatisfy { $0.idempotencyKey?.isEmpty == false })
    }
}

// MARK: - Form encoding and configuration

@Suite("Stripe form encoding and configuration")
struct StripeFormTests {
    @Test("percent-encoding keeps only RFC 3986's unreserved characters")
    func percentEncoding() {
        #expect(StripeForm.percentEncode("AZaz09-._~") == "AZaz09-._~")
        #expect(StripeForm.percentEncode("a b+c&d=e[f]/?#%") == "a%20b%2Bc%26d%3De%5Bf%5D%2F%3F%23%25")
        #expect(StripeForm.percentEncode("ë🎨") == "%C3%AB%F0%9F%8E%A8")
        #expect(
            StripeForm.encode([("metadata[k]", "v w"), ("line_items[0][price]", "price_x")])
                == "metadata%5Bk%5D=v%20w&line_items%5B0%5D%5Bprice%5D=price_x")
    }

    @Test("the endpoint is {base}/v1{path}, with or without a trailing slash or /v1 on the base")
    func endpoints() {
        for base in ["https://api.stripe.com", "https://api.stripe.com/", "https://api.stripe.com/v1", "https://api.stripe.com/v1/"] {
            let configuration = StripeConfiguration(secretKey: "sk_test_x", apiBase: URL(string: base)!)
            #expect(configuration.endpoint("/customers") == "https://api.stripe.com/v1/customers", "\(base)")
        }
        #expect(
            StripeConfiguration(secretKey: "sk_test_x", apiBase: URL(string: "http://127.0.0.1:9/stripe")!).endpoint("/customers")
                == "http://127.0.0.1:9/stripe/v1/customers")
    }

    @Test("the configuration's description never shows the secret key")
    func descriptionHidesKey() {
        let live = StripeConfiguration(secretKey: "sk_live_abcdef123456")
        #expect(!live.description.contains("abcdef"))
        #expect(live.description.contains("<live key>"))
        #expect(StripeConfiguration(secretKey: "").description.contains("<unset>"))
    }

    @Test("the checkout form's metadata is sorted by key, so equal requests encode equally")
    func stableOrder() {
        let request = StripeCheckoutRequest(
            mode: .subscription, customer: "cus_1", price: "price_1", clientReferenceID: "u", metadata: ["z": "1", "a": "2", "m": "3"],
            successURL: "https://a.test", cancelURL: "https://a.test/c"
        )
        let names = request.formFields.map(\.0).filter { $0.hasPrefix("metadata[") }
        #expect(names == ["metadata[a]", "metadata[m]", "metadata[z]"])
        #expect(StripeForm.encode(request.formFields) == StripeForm.encode(request.formFields))
    }
}
