// `classify-train predict`: a trained classifier's predictions for every image of any prepared
// dataset (every split), so a model can be scored on data it never saw, and on request its DCL maps
// for model-level ensembles.

import Artifacts
import Datasets
import Engine
import Foundation
import Losses
import Models
import Training

/// What decides a prediction artifact besides the model and the dataset.
struct ClassifyPredictSettings: Codable, Equatable {
    var model: ClassifySettings
    var features: Bool
}

/// Predictions of a trained classifier artifact for every image of a dataset (any split), written
/// as `predictions.csv` in the evaluate format, so a model can be scored on data it never saw; with
/// `features`, also `features.safetensors`: the DCL maps as tensor `dcl` [N,h,w,512] in row order,
/// the image ids and labels in its metadata.
public func runClassifyPredict(_ context: StageContext, model: (folder: String, manifest: Manifest), data: (dataset: Dataset, key: String),
                               variant: String, features: Bool = false) throws(StageError) -> StageResult {
    let (modelFolder, modelManifest, dataset) = (model.folder, model.manifest, data.dataset)
    let settings: ClassifySettings
    do {
        settings = try JSONDecoder().decode(ClassifySettings.self, from: JSONEncoder().encode(modelManifest.config))
    } catch {
        throw .artifact(.invalidManifest(path: modelFolder + "/manifest.json", message: "not a classify-train artifact: \(error)"))
    }
    let predictSettings = ClassifyPredictSettings(model: settings, features: features)
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "classify-predict", variant: variant, settings: predictSettings,
                                       inputKeys: [modelManifest.key, data.key], formatVersion: classifierFormatVersion, force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }
    let parameters = Classifier.parameters(seed: settings.seed)
    try loadWeights(parameters, from: modelFolder + "/model.safetensors")
    do {
        let images = try ClassificationImages.load(dataset, rows: dataset.rows, size: settings.config.size,
                                                   interpolation: settings.config.interpolation, threads: context.threads, sink: context.sink)
        let lossSettings = settings.config.codeCompat ? ClassificationLossSettings.codeCompat : ClassificationLossSettings()
        let (_, predictions, maps) = evaluateClassifier(parameters, images: images, loss: settings.loss, settings: lossSettings,
                                                        batchSize: settings.config.batchSize, features: features)
        var writer = try run.begin(inputs: [ManifestInput(name: "model", path: modelFolder, key: modelManifest.key),
                                            ManifestInput(name: "dataset", path: dataset.folder, key: data.key)],
                                   seed: settings.seed)
        try writer.write(Array(predictionCSV(predictions).utf8), to: "predictions.csv")
        if let maps {
            let ids = String(decoding: try canonicalJSON(images.ids), as: UTF8.self)
            let labels = String(decoding: try canonicalJSON(images.labels), as: UTF8.self)
            try writer.write(try Safetensors.encode(["dcl": maps], metadata: ["format": "multiloss-cxr/dcl-features", "layer": Classifier.dcl,
                                                                           "ids": ids, "labels": labels]), to: "features.safetensors")
        }
        let manifest = try writer.finish(summary: .object(["images": .number(Double(predictions.count)), "loss": .string(settings.loss.rawValue)]))
        return writer.result(manifest)
    } catch {
        throw .wrapping(error, folder: run.folder)
    }
}
