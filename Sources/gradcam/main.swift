// `gradcam`: class-activation maps of a trained classifier or a model-level ensemble (SPEC §7, Fig 6).

import ArgumentParser
import Artifacts
import Foundation
import GradCAM
import Models
import Pipeline
import StageCLI

extension CAMMethod: ExpressibleByArgument {}

struct GradCAMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradcam",
        abstract: "Class-activation maps of a classifier or a model-level ensemble, with overlays and their share inside the lungs.",
        discussion: """
            --model is a classify-train artifact (maps at its DCL, extra_conv_eff0, or --layer NAME: any named \
            activation of the classifier) or a model-level ensemble artifact (maps at its 1×1 NewConv). Methods: \
            gradcam (gradient of the target logit, channel weights = the gradient's spatial mean, ReLU of the \
            weighted sum), gradcam-paper (the released code: gradient of the softmax probability, mean over \
            channels, ReLU, divided by the maximum), hirescam (gradient × activation element-wise, summed over \
            channels, ReLU). The target class is the predicted one, the true one, or a named class. The backward \
            pass stops at the layer, so maps cost little more than inference. Writes \
            artifacts/gradcam/MODEL-on-DATA/KEY/ with maps.safetensors (tensor 'maps' [N,h,w], image ids in the \
            metadata), overlays/ (0.4·HOT(map) + image at each image's size, cut below 0.2 of the map's range; \
            --paper-overlay removes only exact zeros as the released code did), gradcam.csv (image, label, \
            predicted, target, probability, lung_share: the share of the map's positive mass inside the lung mask, \
            where the dataset has masks, or the AND of the --masks artifact's predicted masks) and sheet.png (Fig 6: original, model input, overlay for a few images per \
            class). The manifest summarises the lung share per class and for right and wrong predictions.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "A classify-train or model-level ensemble artifact folder.")
    var model: String

    @Option(help: "The prepared dataset whose images are explained.")
    var data: String

    @Option(help: "gradcam, gradcam-paper or hirescam.")
    var method: CAMMethod = .gradcam

    @Option(help: "predicted, truth, or a class: bacterial, normal, viral.")
    var target = "predicted"

    @Option(help: "The layer (default: extra_conv_eff0 for a classifier, new_conv for a model-level ensemble).")
    var layer: String?

    @Option(help: "Which images: test, val, train or all (default: test when the dataset has a test split, else val).")
    var split: String?

    @Flag(help: "The released code's overlay: remove only exact zeros of the 8-bit heat map, not everything below 0.2.")
    var paperOverlay = false

    @Option(help: "Images per class on sheet.png.")
    var sheetImages = 3

    @Option(help: "A segment predict artifact of the same dataset: for images without their own lung mask, the AND of its masks gives the lung share.")
    var masks: String?

    func validate() throws {
        if let split, !["test", "val", "train", "all"].contains(split) { throw ValidationError("--split must be test, val, train or all") }
        guard sheetImages >= 0 else { throw ValidationError("--sheet-images must not be negative") }
    }

    func run() throws {
        try runStage("gradcam") {
            let context = try common.context(stage: "gradcam")
            guard let manifest = context.store.completeManifest(at: model) else {
                throw ArtifactError.incomplete(path: model, message: "no complete classify-train or ensemble artifact here")
            }
            let dataset = try context.dataset(named: data).dataset
            let chosenSplit = split ?? (dataset.rows.contains { $0.split == .test } ? "test" : "val")
            let defaultLayer = manifest.stage == "ensemble" ? ModelLevelHead.newConv : Classifier.dcl
            let settings = GradCAMSettings(method: method, target: target, layer: layer ?? defaultLayer, split: chosenSplit,
                                           paperOverlay: paperOverlay, sheetImagesPerClass: sheetImages)
            var predicted: (folder: String, manifest: Manifest)?
            if let masks {
                guard let masksManifest = context.store.completeManifest(at: masks) else {
                    throw ArtifactError.incomplete(path: masks, message: "no complete segment predict artifact here")
                }
                predicted = (masks, masksManifest)
            }
            let result = try runGradCAM(context, model: (model, manifest), data: data, settings: settings, masks: predicted)
            if result.reused { context.sink(.note("reusing the complete artifact (same model, data and settings; --force to redo)")) }
            return result.folder
        }
    }
}

GradCAMCommand.main()
