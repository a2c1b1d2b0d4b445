import Foundation

/// What can be bought: subscription plans and one-time credit packs, each mapped to a Stripe
/// price, read from the JSON file named by `EASEL_BILLING_CATALOG` (format in docs/billing.md).
public struct BillingCatalog: Sendable, Equatable, Decodable {
    public struct Plan: Sendable, Equatable, Decodable {
        public var id: String
        public var name: String
        public var stripePrice: String
        public var monthlyCredits: Int
        /// At renewal, unspent credits above this expire (at most the last month's); nil keeps all.
        public var rolloverCap: Int?
        /// The price in the currency's smallest unit, for showing (Stripe charges its own price).
        public var amount: Int
        public var description: String?
    }

    public struct Pack: Sendable, Equatable, Decodable {
        public var id: String
        public var name: String
        public var stripePrice: String
        public var credits: Int
        public var amount: Int
        public var description: String?
    }

    /// ISO 4217, lower case as Stripe writes it.
    public var currency: String
    public var plans: [Plan]
    public var packs: [Pack]

    public init(currency: String, plans: [Plan], packs: [Pack]) {
        self.currency = currency.lowercased()
        self.plans = plans
        self.packs = packs
    }

    enum CodingKeys: String, CodingKey { case currency, plans, packs }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            currency: try c.decode(String.self, forKey: .currency),
            plans: try c.decodeIfPresent([Plan].self, forKey: .plans) ?? [],
            packs: try c.decodeIfPresent([Pack].self, forKey: .packs) ?? []
        )
    }

    /// Reads and checks a catalog file; the error says what to fix.
    public static func load(_ data: Data) throws -> BillingCatalog {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let catalog: BillingCatalog
        do {
            catalog = try decoder.decode(BillingCatalog.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw BillingCatalogError("missing \"\(Self.snake(key.stringValue))\" at \(Self.path(context.codingPath))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw BillingCatalogError("wrong type at \(Self.path(context.codingPath)): \(context.debugDescription)")
        } catch {
            throw BillingCatalogError("not valid JSON: \(error.localizedDescription)")
        }
        try catalog.check()
        return catalog
    }

    func check() throws {
        guard self.currency.count == 3, self.currency.allSatisfy(\.isLetter) else { throw BillingCatalogError("currency must be a 3-letter code such as \"usd\"") }
        var ids = Set<String>()
        var prices = Set<String>()
        for (id, price, credits, amount) in self.plans.map({ ($0.id, $0.stripePrice, $0.monthlyCredits, $0.amount) })
            + self.packs.map({ ($0.id, $0.stripePrice, $0.credits, $0.amount) })
        {
            guard !id.isEmpty, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                throw BillingCatalogError("id \"\(id)\" may hold only letters, digits, - and _")
            }
            guard ids.insert(id).inserted else { throw BillingCatalogError("id \"\(id)\" is used twice") }
            guard price.hasPrefix("price_") else { throw BillingCatalogError("\(id): stripe_price must be a Stripe price id (price_…)") }
            guard prices.insert(price).inserted else { throw BillingCatalogError("\(id): stripe_price \(price) is used twice") }
            guard credits > 0 else { throw BillingCatalogError("\(id): credits must be more than 0") }
            guard amount >= 0 else { throw BillingCatalogError("\(id): amount must not be negative") }
        }
        for plan in self.plans where (plan.rolloverCap ?? 0) < 0 {
            throw BillingCatalogError("\(plan.id): rollover_cap must not be negative")
        }
    }

    public func plan(id: String) -> Plan? { self.plans.first { $0.id == id } }
    public func pack(id: String) -> Pack? { self.packs.first { $0.id == id } }
    public func plan(stripePrice: String) -> Plan? { self.plans.first { $0.stripePrice == stripePrice } }

    private static func snake(_ key: String) -> String {
        key.reduce(into: "") { out, c in
            if c.isUppercase { out += "_" + c.lowercased() } else { out.append(c) }
        }
    }

    private static func path(_ path: [any CodingKey]) -> String {
        path.isEmpty ? "the top" : path.map { $0.intValue.map { "[\($0)]" } ?? Self.snake($0.stringValue) }.joined(separator: ".")
    }
}

public struct BillingCatalogError: Error, CustomStringConvertible, Sendable {
    public var description: String
    init(_ description: String) { self.description = "billing catalog: " + description }
}

/// Money as people read it: 900 usd → "$9.00", 1000 jpy → "¥1,000".
public enum MoneyFormat {
    public static func string(amount: Int, currency: String, locale: Locale = Locale(identifier: "en_US")) -> String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .currency
        formatter.locale = locale
        formatter.currencyCode = currency.uppercased()
        let digits = formatter.maximumFractionDigits
        var divisor = 1.0
        for _ in 0..<digits { divisor *= 10 }
        return formatter.string(from: NSNumber(value: Double(amount) / divisor)) ?? "\(amount) \(currency.uppercased())"
    }

    /// Decimals of the currency's smallest unit: 2 for usd and eur, 0 for jpy.
    public static func fractionDigits(_ currency: String) -> Int {
        let formatter = NumberFormatter()
        formatter.numberStyle = .currency
        formatter.currencyCode = currency.uppercased()
        return formatter.maximumFractionDigits
    }
}
