// A trained U-Net (`segment train` artifact) loaded for prediction: lung probabilities at its input
// size and binary masks at each image's own size. `segment evaluate` and `segment predict` use it.

import Artifacts
import Engine
import Foundation
import Imaging
import Models
import Training

/// A trained U-Net artifact, loaded for prediction.
public struct TrainedSegmenter {
    public let folder: String
    public let manifest: Manifest
    public let settings: SegmentSettings
    let parameters: ParameterStore

    /// The loss name, which names the model in tables.
    public var name: String { settings.loss.rawValue }

    /// Loads the `segment train` artifact in `folder`.
    ///
    /// - Throws: `StageError.artifact` when the folder holds no complete U-Net artifact, or
    ///   `.checkpoint` naming a missing or misshaped tensor.
    public init(folder: String, store: ArtifactStore) throws(StageError) {
        guard let manifest = store.completeManifest(at: folder) else {
            throw .artifact(.incomplete(path: folder, message: "no complete segment train artifact here (its manifest.json is missing)"))
        }
        guard manifest.stage == "segment-train",
              let settings = try? JSONDecoder().decode(SegmentSettings.self, from: JSONEncoder().encode(manifest.config)) else {
            throw .artifact(.invalidManifest(path: folder + "/manifest.json", message: "stage '\(manifest.stage)', not a segment train artifact"))
        }
        self.folder = folder
        self.manifest = manifest
        self.settings = settings
        parameters = UNet.parameters(seed: settings.seed)
        try loadWeights(parameters, from: folder + "/model.safetensors")
    }

    /// Lung probabilities at the model's input size for images of any size: each image is
    /// resampled to the input size with the model's training interpolation.
    func probabilities(_ images: [GrayImage]) -> [GrayImage] {
        let size = settings.config.size
        let method = settings.config.interpolation
        let input = networkInput(images.map { $0.resized(width: size, height: size, method: method).bytes().map { Float($0) / 255 } }, size: size)
        let p = unetPredict(store: parameters, images: input).probabilities
        return (0..<images.count).map { b in
            GrayImage(width: size, height: size, bitDepth: 8, pixels: Array(p.data[(b * size * size)..<((b + 1) * size * size)]))
        }
    }

    /// Binary lung masks at each image's own size: probabilities resampled bilinearly from the
    /// input size, then p > threshold.
    public func masks(_ images: [GrayImage], threshold: Double) -> [Mask] {
        zip(images, probabilities(images)).map { image, p in
            Mask(probabilities: p.resized(width: image.width, height: image.height, method: .linear).pixels,
                 width: image.width, height: image.height, threshold: Float(threshold))
        }
    }
}

/// The mask file of an image path: the same relative path with a .png extension.
func maskFileName(_ imagePath: String) -> String {
    (imagePath as NSString).deletingPathExtension + ".png"
}
