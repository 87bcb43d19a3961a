// Checkpoints in the safetensors layout (DESIGN §4): an 8-byte little-endian header length, a JSON
// header {name: {dtype "F32", shape, data_offsets}, "__metadata__": {string: string}} padded with
// spaces to 8 bytes, then the raw little-endian float32 data. Any Python user can open them with
// `safetensors` or numpy. Tensors are written in name order, so the same weights give the same bytes.
// The engine produces and consumes bytes; the stages write them atomically.

import Foundation

/// A checkpoint that cannot be read or does not fit the model, naming the source and every problem.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case malformed(source: String, message: String)
    case mismatch(source: String, missing: [String], unused: [String], misshaped: [String])

    public var description: String {
        switch self {
        case let .malformed(source, message): "\(source): not a readable safetensors checkpoint: \(message)"
        case let .mismatch(source, missing, unused, misshaped):
            "\(source): checkpoint does not fit the model:"
                + (missing.isEmpty ? "" : " missing tensors [\(missing.joined(separator: ", "))];")
                + (unused.isEmpty ? "" : " unused tensors [\(unused.joined(separator: ", "))];")
                + (misshaped.isEmpty ? "" : " wrong shapes [\(misshaped.joined(separator: "; "))]")
        }
    }
}

public enum Safetensors {
    /// The bytes of a safetensors file holding `tensors` and `metadata`.
    ///
    /// - Throws: `CheckpointError.malformed` when the header cannot be written as JSON (never a file
    ///   with an empty header).
    public static func encode(_ tensors: [String: Tensor], metadata: [String: String]) throws(CheckpointError) -> [UInt8] {
        let names = tensors.keys.sorted()
        var header: [String: Any] = [:]
        var offset = 0
        for name in names {
            guard let t = tensors[name] else { continue }
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.count]]
            offset += 4 * t.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json: [UInt8]
        do { json = [UInt8](try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) } catch {
            throw .malformed(source: "<safetensors encoder>", message: "the header cannot be written as JSON: \(error)")
        }
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        for name in names {
            tensors[name]?.data.withUnsafeBufferPointer { buffer in
                #if _endian(little)
                out.append(contentsOf: UnsafeRawBufferPointer(buffer))  // already little-endian F32: one copy
                #else
                for value in buffer { withUnsafeBytes(of: value.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
                #endif
            }
        }
        return out
    }

    /// The tensors and metadata of safetensors bytes.
    ///
    /// - Throws: `CheckpointError.malformed` naming `source`, also for a tensor that is not F32.
    public static func decode(_ bytes: [UInt8], source: String) throws(CheckpointError) -> (tensors: [String: Tensor], metadata: [String: String]) {
        let (tensors, metadata, _) = try decode(bytes, source: source, foreign: false)
        return (tensors, metadata)
    }

    /// The floating-point tensors of a checkpoint written elsewhere (timm's, say): F32 as is, F16
    /// and BF16 widened to F32; tensors of other types (integer counters such as batch norm's
    /// `num_batches_tracked`) are left out and named in `skipped`.
    ///
    /// - Throws: `CheckpointError.malformed` naming `source`.
    public static func decodeForeign(_ bytes: [UInt8], source: String) throws(CheckpointError)
        -> (tensors: [String: Tensor], metadata: [String: String], skipped: [String])
    {
        try decode(bytes, source: source, foreign: true)
    }

    private static func decode(_ bytes: [UInt8], source: String, foreign: Bool) throws(CheckpointError)
        -> (tensors: [String: Tensor], metadata: [String: String], skipped: [String])
    {
        guard bytes.count >= 8 else { throw .malformed(source: source, message: "shorter than the 8-byte header length") }
        let length = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        guard length > 0, 8 + length <= bytes.count else {
            throw .malformed(source: source, message: "header length \(length) exceeds the file (\(bytes.count) bytes)")
        }
        guard let header = try? JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + length)])) as? [String: Any] else {
            throw .malformed(source: source, message: "the header is not a JSON object")
        }
        let dataStart = 8 + length
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        var skipped: [String] = []
        for (name, entry) in header {
            if name == "__metadata__" {
                metadata = (entry as? [String: String]) ?? [:]
                continue
            }
            guard let info = entry as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2 else {
                throw .malformed(source: source, message: "tensor '\(name)' has no dtype/shape/data_offsets")
            }
            let width: Int
            switch dtype {
            case "F32": width = 4
            case "F16" where foreign, "BF16" where foreign: width = 2
            default:
                guard foreign, !dtype.hasPrefix("F") else {
                    throw .malformed(source: source, message: "tensor '\(name)' is \(dtype), expected F32")
                }
                skipped.append(name)
                continue
            }
            let count = shape.reduce(1, *)
            guard offsets[1] - offsets[0] == width * count, offsets[0] >= 0, dataStart + offsets[1] <= bytes.count else {
                throw .malformed(source: source, message: "tensor '\(name)': data_offsets \(offsets) do not fit shape \(shape) and the file")
            }
            var data = [Float](repeating: 0, count: count)
            let base = dataStart + offsets[0]
            for i in 0..<count {
                var bits: UInt32 = 0
                for b in 0..<width { bits |= UInt32(bytes[base + width * i + b]) << (8 * UInt32(b)) }
                switch dtype {
                case "F16": data[i] = Float(Float16(bitPattern: UInt16(bits)))
                case "BF16": data[i] = Float(bitPattern: bits << 16)
                default: data[i] = Float(bitPattern: bits)
                }
            }
            tensors[name] = Tensor(shape: shape, data: data)
        }
        return (tensors, metadata, skipped.sorted())
    }
}

extension ParameterStore {
    /// Every parameter and state tensor by name.
    public var allTensors: [String: Tensor] {
        Dictionary(uniqueKeysWithValues: names.map { ($0, value($0)) })
    }

    /// Loads `tensors` into the store; every name of the store must be there with its shape, and
    /// (when `allowUnused` is false) nothing else.
    ///
    /// - Throws: `CheckpointError.mismatch` listing every missing, unused and mis-shaped tensor.
    public func load(_ tensors: [String: Tensor], source: String, allowUnused: Bool = false) throws(CheckpointError) {
        let missing = names.filter { tensors[$0] == nil }
        let unused = allowUnused ? [] : tensors.keys.filter { !names.contains($0) }.sorted()
        let misshaped = names.compactMap { name -> String? in
            guard let t = tensors[name], t.shape != value(name).shape else { return nil }
            return "\(name): file \(t.shape), model \(value(name).shape)"
        }
        guard missing.isEmpty, unused.isEmpty, misshaped.isEmpty else {
            throw .mismatch(source: source, missing: missing, unused: unused, misshaped: misshaped)
        }
        for name in names { if let t = tensors[name] { set(name, t) } }
    }
}
