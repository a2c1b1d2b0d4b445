import Foundation

/// Why a webhook body is not a Stripe event.
public struct StripeEventError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { self.message }
}

/// One Stripe event (a "snapshot" event, as webhooks deliver them): its envelope, and the object
/// it carries kept whole, with typed readers for the objects Easel acts on. Readers accept both
/// the shapes of API versions up to 2024-06-20 and those of 2025-03-31 ("basil") and later, so
/// changing the endpoint's API version does not silently stop fulfilment.
public struct StripeEvent: Sendable, Equatable {
    /// `evt_…`: what makes a delivery a repeat.
    public var id: String
    /// `checkout.session.completed`, `invoice.paid`, …
    public var type: String
    public var created: Date
    public var livemode: Bool
    /// The API version the object was rendered with (the endpoint's), when given.
    public var apiVersion: String?
    /// `data.object`.
    public var object: StripeJSON
    /// `data.previous_attributes` of `*.updated` events: the changed fields' old values.
    public var previousAttributes: StripeJSON?

    public init(
        id: String, type: String, created: Date, livemode: Bool, apiVersion: String? = nil, object: StripeJSON,
        previousAttributes: StripeJSON? = nil
    ) {
        self.id = id
        self.type = type
        self.created = created
        self.livemode = livemode
        self.apiVersion = apiVersion
        self.object = object
        self.previousAttributes = previousAttributes
    }

    /// Reads an event body: `{id, type, created, livemode, api_version, data: {object, previous_attributes?}}`.
    /// Unknown fields are ignored; a body without an id, a type, a creation time or an object is refused.
    public static func parse(_ body: [UInt8]) throws(StripeEventError) -> StripeEvent {
        let json: StripeJSON
        do {
            json = try JSONDecoder().decode(StripeJSON.self, from: Data(body))
        } catch {
            throw StripeEventError("the body is not JSON (\(body.count) bytes)")
        }
        guard case .object = json else { throw StripeEventError("the body is not a JSON object") }
        guard let id = json["id"]?.string, !id.isEmpty else { throw StripeEventError("the event has no id") }
        guard let type = json["type"]?.string, !type.isEmpty else { throw StripeEventError("event \(id) has no type") }
        guard let created = json["created"]?.date else { throw StripeEventError("event \(id) has no creation time") }
        guard let object = json.at("data", "object"), case .object = object else {
            throw StripeEventError("event \(id) (\(type)) has no data.object")
        }
        return StripeEvent(
            id: id,
            type: type,
            created: created,
            livemode: json["livemode"]?.bool ?? false,
            apiVersion: json["api_version"]?.string,
            object: object,
            previousAttributes: json.at("data", "previous_attributes")
        )
    }

    /// `data.object.object`: `checkout.session`, `invoice`, `subscription`, `charge`, …
    public var objectType: String? { self.object["object"]?.string }

    /// `data.object.id`.
    public var objectID: String? { self.object["id"]?.string }

    public var checkoutSession: StripeCheckoutSession? {
        self.objectType == "checkout.session" ? StripeCheckoutSession(json: self.object) : nil
    }

    public var invoice: StripeInvoice? {
        self.objectType == "invoice" ? StripeInvoice(json: self.object) : nil
    }

    public var subscription: StripeSubscription? {
        self.objectType == "subscription" ? StripeSubscription(json: self.object) : nil
    }

    public var charge: StripeCharge? {
        self.objectType == "charge" ? StripeCharge(json: self.object) : nil
    }
}

/// A Checkout Session, as `checkout.session.*` events carry it.
public struct StripeCheckoutSession: Sendable, Equatable {
    /// `cs_…`.
    public var id: String
    /// `payment` or `subscription` (or `setup`, which Easel does not create).
    public var mode: String
    /// `open`, `complete` or `expired`.
    public var status: String?
    /// `paid`, `unpaid` (an async method such as a bank debit is still pending) or `no_payment_required`.
    public var paymentStatus: String
    public var clientReferenceID: String?
    public var customer: String?
    public var subscription: String?
    public var paymentIntent: String?
    /// In the currency's smallest unit.
    public var amountTotal: Int?
    /// Lower-case ISO code.
    public var currency: String?
    public var metadata: [String: String]
    /// `customer_details.address.country`.
    public var country: String?

    public init(
        id: String, mode: String, status: String?, paymentStatus: String, clientReferenceID: String?, customer: String?,
        subscription: String?, paymentIntent: String?, amountTotal: Int?, currency: String?, metadata: [String: String], country: String?
    ) {
        self.id = id
        self.mode = mode
        self.status = status
        self.paymentStatus = paymentStatus
        self.clientReferenceID = clientReferenceID
        self.customer = customer
        self.subscription = subscription
        self.paymentIntent = paymentIntent
        self.amountTotal = amountTotal
        self.currency = currency
        self.metadata = metadata
        self.country = country
    }

    /// Nil when the object has no id.
    public init?(json: StripeJSON) {
        guard let id = json["id"]?.string else { return nil }
        self.init(
            id: id,
            mode: json["mode"]?.string ?? "",
            status: json["status"]?.string,
            paymentStatus: json["payment_status"]?.string ?? "",
            clientReferenceID: json["client_reference_id"]?.string,
            customer: json["customer"]?.expandableID,
            subscription: json["subscription"]?.expandableID,
            paymentIntent: json["payment_intent"]?.expandableID,
            amountTotal: json["amount_total"]?.int,
            currency: json["currency"]?.string,
            metadata: json["metadata"]?.metadata ?? [:],
            country: json.at("customer_details", "address", "country")?.string
        )
    }
}

/// An invoice, as `invoice.*` events carry it.
public struct StripeInvoice: Sendable, Equatable {
    /// `in_…`.
    public var id: String
    public var customer: String?
    /// Top-level `subscription` (up to 2024-x), or `parent.subscription_details.subscription` (basil).
    public var subscription: String?
    /// `draft`, `open`, `paid`, `uncollectible` or `void`.
    public var status: String?
    public var amountPaid: Int
    public var amountDue: Int
    public var currency: String
    /// `subscription_create`, `subscription_cycle`, `subscription_update`, `manual`, …
    public var billingReason: String?
    /// The first line's price: `lines.data[0].price.id`, or `lines.data[0].pricing.price_details.price` (basil).
    public var priceID: String?
    /// The first line's period, else the invoice's `period_start`/`period_end`.
    public var periodStart: Date?
    public var periodEnd: Date?
    /// Top-level `payment_intent`, or (basil, where it moved) the first of `payments.data` when present.
    public var paymentIntent: String?
    /// Top-level `charge`, or the first of `payments.data` when present.
    public var charge: String?
    /// `subscription_details.metadata`, or `parent.subscription_details.metadata` (basil).
    public var subscriptionMetadata: [String: String]

    public init(
        id: String, customer: String?, subscription: String?, status: String?, amountPaid: Int, amountDue: Int, currency: String,
        billingReason: String?, priceID: String?, periodStart: Date?, periodEnd: Date?, paymentIntent: String?, charge: String?,
        subscriptionMetadata: [String: String]
    ) {
        self.id = id
        self.customer = customer
        self.subscription = subscription
        self.status = status
        self.amountPaid = amountPaid
        self.amountDue = amountDue
        self.currency = currency
        self.billingReason = billingReason
        self.priceID = priceID
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.paymentIntent = paymentIntent
        self.charge = charge
        self.subscriptionMetadata = subscriptionMetadata
    }

    public init?(json: StripeJSON) {
        guard let id = json["id"]?.string else { return nil }
        let line = json.at("lines", "data", 0)
        let subscriptionDetails = json.at("parent", "subscription_details")
        let payment = json.at("payments", "data", 0, "payment")
        self.init(
            id: id,
            customer: json["customer"]?.expandableID,
            subscription: json["subscription"]?.expandableID ?? subscriptionDetails?["subscription"]?.expandableID
                ?? line?.at("parent", "subscription_item_details", "subscription")?.expandableID,
            status: json["status"]?.string,
            amountPaid: json["amount_paid"]?.int ?? 0,
            amountDue: json["amount_due"]?.int ?? 0,
            currency: json["currency"]?.string ?? "",
            billingReason: json["billing_reason"]?.string,
            priceID: line?.at("price")?.expandableID ?? line?.at("pricing", "price_details", "price")?.expandableID
                ?? line?.at("plan", "id")?.string,
            periodStart: line?.at("period", "start")?.date ?? json["period_start"]?.date,
            periodEnd: line?.at("period", "end")?.date ?? json["period_end"]?.date,
            paymentIntent: json["payment_intent"]?.expandableID ?? payment?["payment_intent"]?.expandableID,
            charge: json["charge"]?.expandableID ?? payment?["charge"]?.expandableID,
            subscriptionMetadata: json.at("subscription_details", "metadata")?.metadata ?? subscriptionDetails?["metadata"]?.metadata ?? [:]
        )
    }
}

/// A subscription, as `customer.subscription.*` events carry it.
public struct StripeSubscription: Sendable, Equatable {
    /// `sub_…`.
    public var id: String
    public var customer: String?
    /// `incomplete`, `incomplete_expired`, `trialing`, `active`, `past_due`, `canceled`, `unpaid` or `paused`.
    public var status: String
    public var cancelAtPeriodEnd: Bool
    /// Top-level `current_period_end` (up to 2024-x), or `items.data[0].current_period_end` (basil).
    public var currentPeriodEnd: Date?
    /// `items.data[0].price.id`.
    public var priceID: String?
    public var metadata: [String: String]
    public var canceledAt: Date?
    public var endedAt: Date?
    /// Top-level `current_period_start`, or `items.data[0].current_period_start` (basil).
    public var currentPeriodStart: Date?
    /// When a scheduled cancellation takes effect (`cancel_at`); newer portals cancel this way
    /// rather than with `cancel_at_period_end`.
    public var cancelAt: Date?

    public init(
        id: String, customer: String?, status: String, cancelAtPeriodEnd: Bool, currentPeriodEnd: Date?, priceID: String?,
        metadata: [String: String], canceledAt: Date?, endedAt: Date?, currentPeriodStart: Date? = nil, cancelAt: Date? = nil
    ) {
        self.id = id
        self.customer = customer
        self.status = status
        self.cancelAtPeriodEnd = cancelAtPeriodEnd
        self.currentPeriodEnd = currentPeriodEnd
        self.priceID = priceID
        self.metadata = metadata
        self.canceledAt = canceledAt
        self.endedAt = endedAt
        self.currentPeriodStart = currentPeriodStart
        self.cancelAt = cancelAt
    }

    public init?(json: StripeJSON) {
        guard let id = json["id"]?.string else { return nil }
        let item = json.at("items", "data", 0)
        self.init(
            id: id,
            customer: json["customer"]?.expandableID,
            status: json["status"]?.string ?? "",
            cancelAtPeriodEnd: json["cancel_at_period_end"]?.bool ?? false,
            currentPeriodEnd: json["current_period_end"]?.date ?? item?["current_period_end"]?.date,
            priceID: item?["price"]?.expandableID ?? item?.at("plan", "id")?.string,
            metadata: json["metadata"]?.metadata ?? [:],
            canceledAt: json["canceled_at"]?.date,
            endedAt: json["ended_at"]?.date,
            currentPeriodStart: json["current_period_start"]?.date ?? item?["current_period_start"]?.date,
            cancelAt: json["cancel_at"]?.date
        )
    }
}

/// A charge, as `charge.*` events (refunds among them) carry it.
public struct StripeCharge: Sendable, Equatable {
    /// `ch_…` (or `py_…` for some payment methods).
    public var id: String
    public var customer: String?
    public var paymentIntent: String?
    /// Gone from charges in basil; find the invoice through the payment intent there.
    public var invoice: String?
    public var amount: Int
    /// The total refunded so far, across all refunds of this charge.
    public var amountRefunded: Int
    public var currency: String
    /// True only once the whole amount is refunded.
    public var refunded: Bool
    /// `succeeded`, `pending` or `failed`.
    public var status: String?
    /// `payment_method_details.card.last4`.
    public var cardLast4: String?
    /// `billing_details.address.country`, else the card's issuing country.
    public var country: String?

    public init(
        id: String, customer: String?, paymentIntent: String?, invoice: String?, amount: Int, amountRefunded: Int, currency: String,
        refunded: Bool, status: String?, cardLast4: String?, country: String?
    ) {
        self.id = id
        self.customer = customer
        self.paymentIntent = paymentIntent
        self.invoice = invoice
        self.amount = amount
        self.amountRefunded = amountRefunded
        self.currency = currency
        self.refunded = refunded
        self.status = status
        self.cardLast4 = cardLast4
        self.country = country
    }

    public init?(json: StripeJSON) {
        guard let id = json["id"]?.string else { return nil }
        self.init(
            id: id,
            customer: json["customer"]?.expandableID,
            paymentIntent: json["payment_intent"]?.expandableID,
            invoice: json["invoice"]?.expandableID,
            amount: json["amount"]?.int ?? 0,
            amountRefunded: json["amount_refunded"]?.int ?? 0,
            currency: json["currency"]?.string ?? "",
            refunded: json["refunded"]?.bool ?? false,
            status: json["status"]?.string,
            cardLast4: json.at("payment_method_details", "card", "last4")?.string,
            // The billing address's country only: the card's issuing country is not a field Easel keeps.
            country: json.at("billing_details", "address", "country")?.string
        )
    }
}
