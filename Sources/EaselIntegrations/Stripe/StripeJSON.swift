import Foundation

/// A JSON value as Stripe sends it, kept whole so an event's object can be read field by field
/// whatever API version shaped it (fields come and go between versions; unknown ones are kept).
public enum StripeJSON: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([StripeJSON])
    case object([String: StripeJSON])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([StripeJSON].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: StripeJSON].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    /// The member `key` of an object; nil for anything else.
    public subscript(key: String) -> StripeJSON? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    /// The element at `index` of an array; nil for anything else or out of range.
    public subscript(index: Int) -> StripeJSON? {
        if case .array(let elements) = self, elements.indices.contains(index) { return elements[index] }
        return nil
    }

    public var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// Whole numbers, also when written as `12.0`.
    public var int: Int? {
        switch self {
        case .int(let value): return value
        case .double(let value) where value.rounded() == value && abs(value) < 9e15: return Int(value)
        default: return nil
        }
    }

    public var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// A Unix time in seconds.
    public var date: Date? {
        self.int.map { Date(timeIntervalSince1970: TimeInterval($0)) }
    }

    /// An expandable field: the id itself, or the expanded object's `id`.
    public var expandableID: String? {
        switch self {
        case .string(let value): return value.isEmpty ? nil : value
        case .object: return self["id"]?.string
        default: return nil
        }
    }

    /// A `metadata` hash: string values as they are; numbers and booleans (which Stripe never
    /// sends here, but a hand-made event might) as their text; anything else left out.
    public var metadata: [String: String] {
        guard case .object(let members) = self else { return [:] }
        var result: [String: String] = [:]
        for (key, value) in members {
            switch value {
            case .string(let text): result[key] = text
            case .int(let number): result[key] = String(number)
            case .double(let number): result[key] = String(number)
            case .bool(let flag): result[key] = flag ? "true" : "false"
            default: continue
            }
        }
        return result
    }

    /// Follows a path of object keys and array indices: `json.at("lines", "data", 0, "price", "id")`.
    public func at(_ path: any StripeJSONPathComponent...) -> StripeJSON? {
        var current: StripeJSON? = self
        for component in path {
            current = current.flatMap { component.step(into: $0) }
        }
        if case .null = current { return nil }
        return current
    }
}

/// A step of `StripeJSON.at(_:)`: a `String` key or an `Int` index.
public protocol StripeJSONPathComponent: Sendable {
    func step(into json: StripeJSON) -> StripeJSON?
}

extension String: StripeJSONPathComponent {
    public func step(into json: StripeJSON) -> StripeJSON? { json[self] }
}

extension Int: StripeJSONPathComponent {
    public func step(into json: StripeJSON) -> StripeJSON? { json[self] }
}
