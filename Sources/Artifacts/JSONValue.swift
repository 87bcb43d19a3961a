// A JSON tree: what `pipeline.json` profiles are merged on, and the free-form parts of manifests.

import Foundation

/// Any JSON value. Objects keep their keys sorted when encoded (the encoder sorts keys).
public enum JSONValue: Sendable, Equatable, Codable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case let .bool(value): try container.encode(value)
        case let .number(value):
            if value == value.rounded(), abs(value) < 1e15 { try container.encode(Int64(value)) }
            else { try container.encode(value) }
        case let .string(value): try container.encode(value)
        case let .array(value): try container.encode(value)
        case let .object(value): try container.encode(value)
        }
    }

    /// `overlay` laid over this value: objects merge key by key, anything else is replaced.
    public func merged(with overlay: JSONValue) -> JSONValue {
        guard case let .object(base) = self, case let .object(top) = overlay else { return overlay }
        var out = base
        for (key, value) in top { out[key] = base[key].map { $0.merged(with: value) } ?? value }
        return .object(out)
    }

    /// The JSON value of any encodable (through JSONEncoder).
    public init(encoding value: some Encodable) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(value))
    }

    /// The members of an object.
    public var objectValue: [String: JSONValue]? {
        guard case let .object(members) = self else { return nil }
        return members
    }

    /// The string itself.
    public var stringValue: String? {
        guard case let .string(value) = self else { return nil }
        return value
    }

    /// The string at `key` of an object, if there is one.
    public func stringValue(of key: String) -> String? {
        guard case let .object(members) = self, case let .string(value)? = members[key] else { return nil }
        return value
    }

    /// Dotted paths of every object key in this tree (`segment.epochs`), arrays indexed `[i]`.
    public func keyPaths(prefix: String = "") -> Set<String> {
        switch self {
        case let .object(members):
            var out = Set<String>()
            for (key, value) in members {
                let path = prefix.isEmpty ? key : "\(prefix).\(key)"
                out.insert(path)
                out.formUnion(value.keyPaths(prefix: path))
            }
            return out
        case let .array(items):
            var out = Set<String>()
            for (i, item) in items.enumerated() { out.formUnion(item.keyPaths(prefix: "\(prefix)[\(i)]")) }
            return out
        default:
            return []
        }
    }
}

/// Canonical JSON bytes: sorted keys, no escaping of slashes, pretty-printed; the same value
/// always gives the same bytes, so manifests and artifact keys are reproducible. Non-finite numbers
/// (an interval that is undefined, say) are written as the strings "NaN", "Infinity", "-Infinity".
public func canonicalJSON(_ value: some Encodable) throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return [UInt8](try encoder.encode(value)) + [0x0A]
}

/// Decodes JSON the tool wrote (`canonicalJSON`, `jsonLine`): non-finite numbers as those strings.
public func decodeJSON<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return try decoder.decode(type, from: Data(bytes))
}

/// One JSON line (log.jsonl): sorted keys, non-finite numbers spelt as in `canonicalJSON`.
public func jsonLine(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
}
