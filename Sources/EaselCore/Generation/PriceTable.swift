import Foundation

/// Credits per image by model, quality and size class, plus a charge per reference image.
/// Read from EASEL_PRICES, for example
/// `*: low=1/2/4 medium=4/6/12 high=16/24/48; gpt-image-1-mini: low=1/1/2 medium=1/2/4 high=4/6/12; reference=1`
/// where the three numbers are the small, medium and large size classes and `*` is every model
/// not named. `auto` quality is reserved at the `high` price, then charged at the quality the
/// provider reports when it reports one.
public struct PriceTable: Sendable, Equatable {
    /// Sizes by pixel count: providers bill bigger pictures more (OpenAI's output tokens per
    /// image grow about 1.5× from square to 3:2, and with the area beyond that).
    public enum SizeClass: Int, Sendable, CaseIterable, Comparable {
        case small, medium, large

        /// Up to about one megapixel (1024×1024), up to 2.5 MP (1536×1024, 2048×1152), beyond.
        public init(width: Int, height: Int) {
            let pixels = width * height
            self = pixels <= 1_100_000 ? .small : pixels <= 2_500_000 ? .medium : .large
        }

        public static func < (lhs: SizeClass, rhs: SizeClass) -> Bool { lhs.rawValue < rhs.rawValue }

        public var name: String { ["small", "medium", "large"][self.rawValue] }
    }

    /// Per quality ("low", "medium", "high"), the price for each size class.
    public typealias ModelPrices = [String: [Int]]

    public var defaultPrices: ModelPrices
    public var models: [String: ModelPrices]
    public var perReferenceImage: Int

    public static let qualities = ["low", "medium", "high"]

    public static let defaultSpecification =
        "*: low=1/2/4 medium=4/6/12 high=16/24/48; gpt-image-1-mini: low=1/1/2 medium=1/2/4 high=4/6/12; reference=1"

    public static let standard = try! PriceTable(specification: PriceTable.defaultSpecification)

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public init(specification: String) throws(ParseError) {
        var defaults: ModelPrices?
        var models: [String: ModelPrices] = [:]
        var reference = 0
        for part in specification.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            if part.hasPrefix("reference=") {
                guard let value = Int(part.dropFirst("reference=".count)), value >= 0 else {
                    throw ParseError(description: "\"\(part)\": reference= takes a whole number of credits, 0 or more")
                }
                reference = value
                continue
            }
            guard let colon = part.firstIndex(of: ":") else {
                throw ParseError(description: "\"\(part)\" should look like \"MODEL: low=1/2/4 medium=4/6/12 high=16/24/48\"")
            }
            let model = part[..<colon].trimmingCharacters(in: .whitespaces)
            var prices: ModelPrices = [:]
            for item in part[part.index(after: colon)...].split(separator: " ") {
                let pieces = item.split(separator: "=")
                guard pieces.count == 2, Self.qualities.contains(String(pieces[0])) else {
                    throw ParseError(description: "\"\(item)\" in \"\(model)\" should be low=, medium= or high= followed by three prices")
                }
                let values = pieces[1].split(separator: "/").compactMap { Int($0) }
                guard values.count == 3, values.allSatisfy({ $0 >= 0 }) else {
                    throw ParseError(description: "\"\(item)\" in \"\(model)\" needs three whole numbers: small/medium/large")
                }
                prices[String(pieces[0])] = values
            }
            guard Set(prices.keys) == Set(Self.qualities) else {
                throw ParseError(description: "\"\(model)\" must price low, medium and high")
            }
            if model == "*" { defaults = prices } else { models[model] = prices }
        }
        guard let defaults else { throw ParseError(description: "a \"*: low=… medium=… high=…\" entry for every other model is required") }
        self.defaultPrices = defaults
        self.models = models
        self.perReferenceImage = reference
    }

    /// Credits for one image. `auto` (or anything unknown) costs as `high`.
    public func pricePerImage(model: String, quality: String, sizeClass: SizeClass) -> Int {
        let prices = self.models[model] ?? self.defaultPrices
        let row = prices[quality] ?? prices["high"]!
        return row[sizeClass.rawValue]
    }

    /// What a request costs up front: every image at its size class (`auto` size at the largest),
    /// plus the reference images.
    public func quote(model: String, quality: String, size: String, count: Int, referenceCount: Int) -> Quote {
        let sizeClass = Self.sizeClass(of: size)
        let perImage = self.pricePerImage(model: model, quality: quality, sizeClass: sizeClass)
        return Quote(perImage: perImage, count: count, referenceCharge: referenceCount * self.perReferenceImage, sizeClass: sizeClass)
    }

    /// What finished images cost: each at the size class it came out in and the quality the
    /// provider reports (else the one asked for), plus the reference images.
    public func charge(model: String, quality: String, dimensions: [(width: Int, height: Int)], referenceCount: Int) -> Int {
        let images = dimensions.reduce(0) { total, size in
            total + self.pricePerImage(model: model, quality: quality, sizeClass: SizeClass(width: size.width, height: size.height))
        }
        return images + referenceCount * self.perReferenceImage
    }

    /// `WxH` by its pixels; `auto`, ratios and anything else at the largest class.
    public static func sizeClass(of size: String) -> SizeClass {
        guard let (width, height) = Self.dimensions(of: size) else { return .large }
        return SizeClass(width: width, height: height)
    }

    public static func dimensions(of size: String) -> (Int, Int)? {
        let parts = size.lowercased().split(separator: "x")
        guard parts.count == 2, let width = Int(parts[0]), let height = Int(parts[1]), width > 0, height > 0 else { return nil }
        return (width, height)
    }

    public struct Quote: Sendable, Equatable, Codable {
        public var perImage: Int
        public var count: Int
        public var referenceCharge: Int
        public var credits: Int { self.perImage * self.count + self.referenceCharge }
        public var sizeClass: String

        init(perImage: Int, count: Int, referenceCharge: Int, sizeClass: SizeClass) {
            self.perImage = perImage
            self.count = count
            self.referenceCharge = referenceCharge
            self.sizeClass = sizeClass.name
        }
    }
}
