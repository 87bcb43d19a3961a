// `import-weights`: published EfficientNet-B0 ImageNet weights into the engine's checkpoint format,
// and the export that proves the import against timm itself (docs/WEIGHTS.md).

import ArgumentParser
import Foundation
import Models
import Pipeline
import StageCLI

/// A line on standard error (standard output carries only the output path).
func note(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

struct ImportWeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-weights",
        abstract: "Convert published EfficientNet-B0 weights into an encoder checkpoint for --encoder-weights.",
        discussion: """
            segment train and classify-train also read timm's file directly with --encoder-weights; this converts \
            it once, prints every tensor mapped and skipped, and checks the whole encoder is there. See \
            docs/WEIGHTS.md for where to download the weights and the mapping table.
            """,
        subcommands: [Timm.self, ExportTimm.self])
}

struct Timm: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "timm's tf_efficientnet_b0 model.safetensors → our encoder checkpoint (Keras names, stem to top).",
        discussion: """
            Every tensor is renamed (conv_stem.weight → stem_conv/kernel, blocks.5.2.conv_dw.weight → \
            block6c_dwconv/depthwise_kernel, …) and its layout changed (OIHW → HWIO kernels; [C,1,k,k] → [k,k,C,1] \
            depthwise kernels). The ImageNet classifier and num_batches_tracked are skipped. A missing or \
            mis-shaped tensor stops the import, named, and nothing is written. Prints the output path last.
            """)

    @Argument(help: "timm's model.safetensors (tf_efficientnet_b0, any of its pretrained tags).")
    var input: String

    @Option(help: "Where the encoder checkpoint goes.")
    var out: String

    @Flag(help: "List every mapped tensor (timm name → ours, shape).")
    var verbose = false

    func run() throws {
        try runStage("import-weights timm") {
            let imported = try importTimmWeights(input: input, output: out)
            if verbose {
                for entry in TimmEfficientNetB0.mapping {
                    guard let tensor = imported.tensors[entry.ours] else { continue }
                    note("\(entry.foreign) → \(entry.ours) \(tensor.shape) (\(entry.layout.rawValue))")
                }
            }
            note("import-weights: \(imported.tensors.count) tensors imported; skipped \(imported.skipped.count)"
                + (imported.skipped.isEmpty ? "" : ": " + imported.skipped.joined(separator: ", ")))
            return out
        }
    }
}

struct ExportTimm: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-timm",
        abstract: "Write a seeded random EfficientNet-B0 encoder under timm's names and layouts (the import's test fixture).",
        discussion: """
            Tests/EngineTests/Fixtures/make_timm_fixture.py loads this file into \
            timm.create_model("tf_efficientnet_b0") and records its activations; the tests import the same file \
            and must reproduce them. Prints the output path last.
            """)

    @Option(help: "Seed of the random weights.")
    var seed: UInt64 = 1

    @Option(help: "Where the file goes.")
    var out: String

    func run() throws {
        try runStage("import-weights export-timm") {
            try exportRandomTimmWeights(seed: seed, output: out)
            return out
        }
    }
}

ImportWeightsCommand.main()
