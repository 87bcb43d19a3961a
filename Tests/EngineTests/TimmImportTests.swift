// The timm weight import (Models/TimmWeights.swift) against timm itself: the engine's seeded random
// encoder, exported under timm's names and layouts, was loaded into timm's tf_efficientnet_b0 by
// Fixtures/make_timm_fixture.py, whose activations on one image are the golden. Importing the same
// export must reproduce them; a transposed kernel must not.

import Foundation
import XCTest
@testable import Engine
@testable import Models

final class TimmImportTests: XCTestCase {
    static let golden = KerasGoldenTests.load("timm_b0.safetensors")
    static let layers = ["block2b_add", "block4c_add", "block5c_add", "block6d_add", "top_activation"]

    /// The random encoder of the fixture under timm's names.
    static var exported: [String: Tensor] { TimmEfficientNetB0.exporting(EfficientNetB0.fullyRandomParameters(seed: 1).allTensors) }

    /// Our shape of every encoder tensor.
    static let shapes: [String: [Int]] = {
        let store = EfficientNetB0.parameters(seed: 0)
        return Dictionary(uniqueKeysWithValues: store.names.map { ($0, store.value($0).shape) })
    }()

    /// The encoder's activations on the golden input, in inference mode, with `tensors` loaded.
    func activations(_ tensors: [String: Tensor]) throws -> [String: Tensor] {
        let store = EfficientNetB0.parameters(seed: 99)
        try store.load(tensors, source: "import")
        let tape = Tape(recording: false, training: false)
        let found = EfficientNetB0.encode(Layers(tape: tape, store: store), tape.constant(Self.golden["input"]!), outputs: Set(Self.layers))
        return found.mapValues { tape.value($0) }
    }

    /// max |got − want| / max |want|.
    func relativeError(_ got: Tensor, _ want: Tensor) -> Float {
        XCTAssertEqual(got.shape, want.shape)
        let scale = want.data.map(abs).max() ?? 1
        return (zip(got.data, want.data).map { abs($0 - $1) }.max() ?? 0) / scale
    }

    func testImportedTimmWeightsReproduceTimmsActivations() throws {
        let imported = TimmEfficientNetB0.importing(Self.exported, expected: Self.shapes)
        XCTAssertEqual(imported.missing, [])
        XCTAssertEqual(imported.misshaped, [])
        XCTAssertEqual(imported.skipped, [])
        XCTAssertEqual(imported.tensors.count, Self.shapes.count)
        // Import undoes export exactly.
        XCTAssertEqual(imported.tensors, EfficientNetB0.fullyRandomParameters(seed: 1).allTensors)
        let got = try activations(imported.tensors)
        for layer in Self.layers {
            let error = relativeError(got[layer]!, Self.golden[layer]!)
            XCTAssertLessThanOrEqual(error, 1e-4, "\(layer): relative error \(error) against timm")
        }
    }

    func testATransposedKernelIsCaught() throws {
        // The mistake a hand-written mapping makes: a 5×5 depthwise kernel's height and width swapped
        // (the shape still fits). block3a is the first 5×5 block.
        var foreign = Self.exported
        let name = "blocks.2.0.conv_dw.weight"
        foreign[name] = foreign[name]!.permuted([0, 1, 3, 2])
        let got = try activations(TimmEfficientNetB0.importing(foreign, expected: Self.shapes).tensors)
        let error = relativeError(got["block5c_add"]!, Self.golden["block5c_add"]!)
        XCTAssertGreaterThan(error, 1e-2, "a transposed kernel must be far outside the 1e-4 tolerance")
    }

    func testMissingExtraAndMisshapedTensorsAreNamed() {
        var foreign = Self.exported
        foreign["blocks.4.1.conv_pwl.weight"] = nil
        foreign["blocks.0.0.se.conv_reduce.weight"] = Tensor(zeros: [8, 32, 3, 1])
        foreign["classifier.weight"] = Tensor(zeros: [1000, 1280])
        let imported = TimmEfficientNetB0.importing(foreign, expected: Self.shapes)
        XCTAssertEqual(imported.missing, ["blocks.4.1.conv_pwl.weight"])
        XCTAssertEqual(imported.misshaped, ["blocks.0.0.se.conv_reduce.weight: file [8, 32, 3, 1], expected [8, 32, 1, 1]"])
        XCTAssertEqual(imported.skipped, ["classifier.weight"])
        // A classifier's encoder ends at block5c: later blocks are skipped, not missing.
        let upToBlock5c = Self.shapes.filter { !$0.key.hasPrefix("block6") && !$0.key.hasPrefix("block7") && !$0.key.hasPrefix("top") }
        let partial = TimmEfficientNetB0.importing(Self.exported, expected: upToBlock5c)
        XCTAssertEqual(partial.missing, [])
        XCTAssertEqual(partial.tensors.count, upToBlock5c.count)
        XCTAssertTrue(partial.skipped.contains("blocks.5.0.conv_pw.weight"))
        XCTAssertTrue(partial.skipped.contains("conv_head.weight"))
    }

    func testForeignCheckpointsWidenHalvesAndSkipCounters() throws {
        // Hand-built: F16 [1.5, -2], BF16 [0.15625], I64 counter 7.
        func header(_ json: String) -> [UInt8] {
            let bytes = Array(json.utf8)
            return (0..<8).map { UInt8((bytes.count >> (8 * $0)) & 0xFF) } + bytes
        }
        let json = #"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]},"n":{"dtype":"I64","shape":[],"data_offsets":[6,14]}}"#
        let data: [UInt8] = [0x00, 0x3E, 0x00, 0xC0, 0x20, 0x3E, 7, 0, 0, 0, 0, 0, 0, 0]
        let file = try Safetensors.decodeForeign(header(json) + data, source: "hand")
        XCTAssertEqual(file.tensors["h"]?.data, [1.5, -2])
        XCTAssertEqual(file.tensors["b"]?.data, [0.15625])
        XCTAssertEqual(file.skipped, ["n"])
        // Our own checkpoints stay F32 only.
        XCTAssertThrowsError(try Safetensors.decode(header(json) + data, source: "hand"))
    }
}
