// `gradcam` (SPEC §7, Fig 6): class-activation maps of a trained classifier (at its DCL, or any
// named activation) or of a model-level ensemble (at NewConv) for the images of a dataset split:
// the raw maps, overlays at each image's own size, a per-image table with the share of the map's
// positive mass inside the lungs (where the dataset has lung masks), a Fig 6-style sheet, and the
// shares summarised per class and for right and wrong predictions.

import Artifacts
import Datasets
import Engine
import Ensembles
import Foundation
import GradCAM
import Imaging
import Metrics
import Models
import Report
import Training

/// What decides a Grad-CAM artifact besides the model and the dataset.
public struct GradCAMSettings: Codable, Sendable, Equatable {
    public var method: CAMMethod
    /// "predicted", "truth" or a class name.
    public var target: String
    /// The layer the maps are taken at.
    public var layer: String
    /// The images: "test", "val", "train" or "all".
    public var split: String
    /// The released code's overlay cut (exact zeros only) instead of 0.2 of the range.
    public var paperOverlay: Bool
    /// Images per class on the Fig 6-style sheet.
    public var sheetImagesPerClass: Int

    public init(method: CAMMethod, target: String, layer: String, split: String, paperOverlay: Bool, sheetImagesPerClass: Int) {
        self.method = method
        self.target = target
        self.layer = layer
        self.split = split
        self.paperOverlay = paperOverlay
        self.sheetImagesPerClass = sheetImagesPerClass
    }

    /// The target as the library takes it.
    var camTarget: CAMTarget? {
        switch target {
        case "predicted": .predicted
        case "truth": .truth
        default: CXRClass(name: target).map { .index($0.rawValue) }
        }
    }
}

/// One image's map, as gradcam.csv lists it.
struct CAMRecord {
    var row: DatasetRow
    var predicted: Int
    var target: Int
    var probability: Float
    var lungShare: Double?
}

/// Version of the Grad-CAM artifact's files.
public let gradcamFormatVersion = 1

/// The model Grad-CAM explains: a classifier, a model-level ensemble with its frozen members, or
/// the proposed weighted average of model-level ensembles (its map: the weighted sum of theirs, for
/// the class the average picks).
indirect enum CAMModel {
    case classifier(ParameterStore, size: Int, interpolation: Interpolation)
    case modelLevel(head: ParameterStore, members: [ParameterStore], size: Int, interpolation: Interpolation)
    case weighted([(model: CAMModel, weight: Double)])

    /// Loads the model of `folder`, checking that `layer` exists in it.
    ///
    /// - Throws: `StageError` listing what exists when the layer does not, or naming why the artifact
    ///   cannot be explained (a prediction-level ensemble).
    static func load(_ context: StageContext, folder: String, manifest: Manifest, layer: String) throws(StageError) -> CAMModel {
        func classifier(_ folder: String, _ manifest: Manifest) throws(StageError) -> (ParameterStore, ClassifySettings) {
            guard let settings = try? JSONDecoder().decode(ClassifySettings.self, from: JSONEncoder().encode(manifest.config)) else {
                throw .artifact(.invalidManifest(path: folder + "/manifest.json", message: "not a classify-train artifact"))
            }
            let parameters = Classifier.parameters(seed: settings.seed)
            try loadWeights(parameters, from: folder + "/model.safetensors")
            return (parameters, settings)
        }
        switch manifest.stage {
        case "classify-train":
            guard Classifier.layerNames.contains(layer) else {
                throw .artifact(.missingInput(message: "the classifier has no layer '\(layer)'; its layers: "
                    + Classifier.layerNames.joined(separator: ", ")))
            }
            let (parameters, settings) = try classifier(folder, manifest)
            return .classifier(parameters, size: settings.config.size, interpolation: settings.config.interpolation)
        case "ensemble" where FileManager.default.fileExists(atPath: folder + "/proposed.json"):
            let file: ProposedFile
            do { file = try JSONDecoder().decode(ProposedFile.self, from: Data(readFile(folder + "/proposed.json"))) } catch {
                throw .artifact(.invalidManifest(path: folder + "/proposed.json", message: "unreadable: \(error)"))
            }
            var parts: [(model: CAMModel, weight: Double)] = []
            for (part, weight) in zip(file.ensembles, file.weights.weights) {
                guard let partManifest = context.store.completeManifest(at: part.folder) else {
                    throw .artifact(.incomplete(path: part.folder, message: "'\(part.name)' is no longer complete"))
                }
                parts.append((try load(context, folder: part.folder, manifest: partManifest, layer: layer), weight))
            }
            return .weighted(parts)
        case "ensemble":
            let file: EnsembleFile
            do { file = try JSONDecoder().decode(EnsembleFile.self, from: Data(readFile(folder + "/ensemble.json"))) } catch {
                throw .artifact(.invalidManifest(path: folder + "/ensemble.json", message: "unreadable: \(error)"))
            }
            guard file.method == .modelLevel else {
                throw .artifact(.missingInput(message: "\(folder) is a \(file.method.title) ensemble (prediction level): it has no "
                    + "layer to take maps at; explain a model-level ensemble or one of its members ("
                    + file.members.map { $0.folder }.joined(separator: ", ") + ")"))
            }
            guard layer == ModelLevelHead.newConv else {
                throw .artifact(.missingInput(message: "a model-level ensemble's maps are taken at '\(ModelLevelHead.newConv)'; "
                    + "'\(layer)' is not one of its layers"))
            }
            var members: [ParameterStore] = [], size = 0, interpolation = Interpolation.nearestPIL
            for member in file.members {
                guard let memberManifest = context.store.completeManifest(at: member.folder) else {
                    throw .artifact(.incomplete(path: member.folder, message: "member '\(member.loss.rawValue)' is no longer complete"))
                }
                let (parameters, settings) = try classifier(member.folder, memberManifest)
                members.append(parameters)
                (size, interpolation) = (settings.config.size, settings.config.interpolation)
            }
            let head = ModelLevelHead.parameters(seed: context.config.seed, channels: 512 * members.count)
            try loadWeights(head, from: folder + "/model.safetensors")
            return .modelLevel(head: head, members: members, size: size, interpolation: interpolation)
        default:
            throw .artifact(.invalidManifest(path: folder + "/manifest.json",
                                             message: "a '\(manifest.stage)' artifact; Grad-CAM explains classify-train artifacts and model-level ensembles"))
        }
    }

    var size: Int {
        switch self {
        case let .classifier(_, size, _), let .modelLevel(_, _, size, _): size
        case let .weighted(parts): parts[0].model.size
        }
    }

    var interpolation: Interpolation {
        switch self {
        case let .classifier(_, _, interpolation), let .modelLevel(_, _, _, interpolation): interpolation
        case let .weighted(parts): parts[0].model.interpolation
        }
    }

    /// Maps of one batch.
    func maps(_ images: Tensor, labels: [Int], layer: String, method: CAMMethod, target: CAMTarget) -> CAMBatch {
        switch self {
        case let .weighted(parts):
            // The class comes from the weighted probabilities; each part's map explains that class.
            let first = parts.map { $0.model.maps(images, labels: labels, layer: layer, method: method, target: .index(0)) }
            let n = labels.count
            var probabilities = [[Float]](repeating: [0, 0, 0], count: n)
            for (batch, part) in zip(first, parts) {
                for i in 0..<n { for k in 0..<3 { probabilities[i][k] += Float(part.weight) * batch.probabilities[i][k] } }
            }
            let classes = (0..<n).map { target.resolve(probabilities: probabilities[$0], label: labels[$0], image: $0) }
            let batches = parts.map { $0.model.maps(images, labels: labels, layer: layer, method: method, target: .perImage(classes)) }
            var maps = [[Float]](repeating: [Float](repeating: 0, count: batches[0].h * batches[0].w), count: n)
            for (batch, part) in zip(batches, parts) {
                for i in 0..<n { for p in maps[i].indices { maps[i][p] += Float(part.weight) * batch.maps[i][p] } }
            }
            return CAMBatch(maps: maps, h: batches[0].h, w: batches[0].w, probabilities: probabilities, targets: classes)
        case let .classifier(parameters, _, _):
            return classifierCAM(parameters, images: images, labels: labels, layer: layer, method: method, target: target)
        case let .modelLevel(head, members, _, _):
            // The frozen members run without a gradient tape; only the head is differentiated.
            var maps: [Tensor] = []
            for member in members {
                let tape = Tape(recording: false, training: false)
                maps.append(tape.value(Classifier.forward(Layers(tape: tape, store: member), tape.constant(images)).dcl))
            }
            let (n, h, w) = (maps[0].shape[0], maps[0].shape[1], maps[0].shape[2])
            var x = [Float](repeating: 0, count: n * h * w * 512 * maps.count)
            for p in 0..<(n * h * w) {
                for (m, map) in maps.enumerated() {
                    for c in 0..<512 { x[(p * maps.count + m) * 512 + c] = map.data[p * 512 + c] }
                }
            }
            let concatenated = Tensor(shape: [n, h, w, 512 * maps.count], data: x)
            return camBatch(method: method, target: target, labels: labels) { tape in
                let out = ModelLevelHead.forwardWithNewConv(Layers(tape: tape, store: head), tape.constant(concatenated))
                return (out.logits, out.newConv)
            }
        }
    }
}

/// Maps of `model` (a classify-train artifact or a model-level ensemble) for the images of
/// `settings.split` of dataset `data`.
///
/// - Throws: `StageError` naming a missing layer (with the layers there are), an artifact that has
///   no layer (a prediction-level ensemble), an unknown target class, or a file.
public func runGradCAM(_ context: StageContext, model: (folder: String, manifest: Manifest), data: String,
                       settings: GradCAMSettings, masks: (folder: String, manifest: Manifest)? = nil) throws(StageError) -> StageResult {
    guard let target = settings.camTarget else {
        throw .artifact(.missingInput(message: "unknown target '\(settings.target)': predicted, truth, bacterial, normal or viral"))
    }
    let camModel = try CAMModel.load(context, folder: model.folder, manifest: model.manifest, layer: settings.layer)
    let dataset: Dataset, datasetKey: String
    do { (dataset, datasetKey) = try context.dataset(named: data) } catch { throw .artifact(error) }
    let rows = dataset.rows.filter { settings.split == "all" || $0.split.rawValue == settings.split }
    guard !rows.isEmpty else { throw .emptySplit(dataset: dataset.folder, split: settings.split) }
    let maskFolders = try masks.map { masks throws(StageError) in try predictedMaskFolders(masks) } ?? []
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "gradcam", variant: "\(model.manifest.variant)-on-\(data)", settings: settings,
                                       inputKeys: [model.manifest.key, datasetKey] + (masks.map { [$0.manifest.key] } ?? []),
                                       formatVersion: gradcamFormatVersion, force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }

    let images: ClassificationImages
    do {
        images = try ClassificationImages.load(dataset, rows: rows, size: camModel.size, interpolation: camModel.interpolation,
                                               threads: context.threads, sink: context.sink)
    } catch { throw .data(error) }
    var maps: [[Float]] = [], targets: [Int] = [], predicted: [Int] = [], probabilities: [Float] = []
    var (h, w) = (0, 0)
    let started = Date()
    let batchSize = 8
    for start in stride(from: 0, to: images.count, by: batchSize) {
        let indices = Array(start..<min(start + batchSize, images.count))
        let batch = camModel.maps(images.batch(indices).images, labels: indices.map { images.labels[$0] }, layer: settings.layer,
                                  method: settings.method, target: target)
        maps += batch.maps
        targets += batch.targets
        (h, w) = (batch.h, batch.w)
        for (row, t) in zip(batch.probabilities, batch.targets) {
            predicted.append(CAMTarget.predicted.resolve(probabilities: row, label: 0))
            probabilities.append(row[t])
        }
        context.sink(.progress(task: "Grad-CAM of \(images.count) images", done: indices.last! + 1, total: images.count))
    }
    let seconds = Date().timeIntervalSince(started)

    do {
        var writer = try run.begin(inputs: [ManifestInput(name: "model", path: model.folder, key: model.manifest.key),
                                            ManifestInput(name: "dataset", path: dataset.folder, key: datasetKey)]
                                       + (masks.map { [ManifestInput(name: "masks", path: $0.folder, key: $0.manifest.key)] } ?? []),
                                   seed: context.config.seed)
        let ids = String(decoding: try canonicalJSON(rows.map(\.path)), as: UTF8.self)
        try writer.write(try Safetensors.encode(["maps": Tensor(shape: [maps.count, h, w], data: maps.flatMap { $0 })],
                                                metadata: ["format": "multiloss-cxr/gradcam", "method": settings.method.rawValue,
                                                           "layer": settings.layer, "ids": ids]), to: "maps.safetensors")
        var records: [CAMRecord] = []
        for (i, row) in rows.enumerated() {
            let image = try GrayImage(contentsOf: dataset.imagePath(row))
            let overlay = camOverlay(image, map: maps[i], h: h, w: w, paperCut: settings.paperOverlay)
            let path = "overlays/" + maskFileName(row.path)
            try FileManager.default.createDirectory(atPath: run.folder + "/" + (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try writer.write(try overlay.pngData(), to: path)
            // The image's own (ground-truth) mask, else the AND of the predicted ones given.
            var lungs: Mask?
            if let maskPath = dataset.maskPath(row) {
                lungs = try Mask(contentsOf: maskPath, sizedLike: image, imagePath: dataset.imagePath(row))
            } else if let masks {
                lungs = try predictedMask(row, image: image, dataset: dataset, masks: masks.folder, folders: maskFolders)
            }
            let share = lungs.flatMap { lungShare(map: maps[i], h: h, w: w, lungs: $0) }
            records.append(CAMRecord(row: row, predicted: predicted[i], target: targets[i], probability: probabilities[i], lungShare: share))
            if (i + 1) % 50 == 0 || i + 1 == rows.count { context.sink(.progress(task: "overlays", done: i + 1, total: rows.count)) }
        }
        try writer.write(Array(camCSV(records).utf8), to: "gradcam.csv")
        try writer.write(try camSheet(records, maps: maps, h: h, w: w, dataset: dataset, settings: settings).pngData(), to: "sheet.png")
        var summary = lungShareSummary(records)
        summary["images"] = .number(Double(rows.count))
        summary["method"] = .string(settings.method.rawValue)
        summary["layer"] = .string(settings.layer)
        summary["target"] = .string(settings.target)
        summary["mapsPerSecond"] = .number((Double(rows.count) / max(seconds, 1e-9) * 100).rounded() / 100)
        if let mean = summary["lungShareMean"], case let .number(value) = mean {
            context.sink(.note("share of the maps' positive mass inside the lungs: \(formatFixed(value, decimals: 3)) on average"))
        }
        return writer.result(try writer.finish(summary: .object(summary)))
    } catch {
        throw .wrapping(error, folder: run.folder)
    }
}

/// gradcam.csv: one row per image.
private func camCSV(_ records: [CAMRecord]) -> String {
    csvText(header: ["image", "label", "predicted", "target", "probability", "lung_share"], rows: records.map { r in
        [r.row.path, r.row.label?.name ?? "", CXRClass(rawValue: r.predicted)?.name ?? "", CXRClass(rawValue: r.target)?.name ?? "",
         formatFixed(Double(r.probability), decimals: 6), r.lungShare.map { formatFixed($0, decimals: 6) } ?? ""]
    })
}

/// Mean lung share over the images with masks, per true class, and for right and wrong predictions.
private func lungShareSummary(_ records: [CAMRecord]) -> [String: JSONValue] {
    func mean(_ subset: [CAMRecord]) -> JSONValue {
        let shares = subset.compactMap(\.lungShare)
        return shares.isEmpty ? .null : .number(shares.reduce(0, +) / Double(shares.count))
    }
    var perClass: [String: JSONValue] = [:]
    for label in CXRClass.allCases { perClass[label.name] = mean(records.filter { $0.row.label == label }) }
    return ["lungShareMean": mean(records), "lungShareByClass": .object(perClass),
            "lungShareCorrect": mean(records.filter { $0.predicted == $0.row.label?.rawValue }),
            "lungShareWrong": mean(records.filter { $0.predicted != $0.row.label?.rawValue }),
            "imagesWithMasks": .number(Double(records.filter { $0.lungShare != nil }.count))]
}

/// Fig 6-style sheet: for a few images of each class, the original chest X-ray (for a crop dataset,
/// the image it was cropped from), the image the model saw, and the overlay; rows banded by class.
private func camSheet(_ records: [CAMRecord], maps: [[Float]], h: Int, w: Int, dataset: Dataset,
                      settings: GradCAMSettings) throws -> RGBImage {
    let sources = cropSources(dataset)
    var tiles: [(image: RGBImage, band: RGB?)] = []
    for label in CXRClass.allCases {
        let picks = records.indices.filter { records[$0].row.label == label }.prefix(settings.sheetImagesPerClass)
        let band: RGB = switch label {
        case .bacterial: RGB(220, 40, 40)
        case .normal: RGB(40, 200, 70)
        case .viral: RGB(60, 110, 255)
        }
        for i in picks {
            let image = try GrayImage(contentsOf: dataset.imagePath(records[i].row))
            if let source = sources?[records[i].row.path] { tiles.append((RGBImage(gray: try GrayImage(contentsOf: source)), band)) }
            tiles.append((RGBImage(gray: image), band))
            tiles.append((camOverlay(image, map: maps[i], h: h, w: w, paperCut: settings.paperOverlay), band))
        }
    }
    guard !tiles.isEmpty else { return RGBImage(width: 1, height: 1) }
    // One row per class: each image's tiles side by side.
    return ContactSheet(columns: (sources == nil ? 2 : 3) * max(1, settings.sheetImagesPerClass), tileSize: 200).render(tiles)
}

/// For a dataset written by mask-crop, each crop's original image (absolute path), from crops.csv
/// and the source dataset named in its manifest; nil for other datasets.
private func cropSources(_ dataset: Dataset) -> [String: String]? {
    guard dataset.summary.layout == "mask-crop",
          let manifestData = FileManager.default.contents(atPath: dataset.folder + "/manifest.json"),
          let manifest = try? JSONDecoder().decode(Manifest.self, from: manifestData),
          let sourceFolder = manifest.inputs.first(where: { $0.name == "dataset" })?.path,
          let sourceManifest = try? JSONDecoder().decode(Manifest.self, from: Data(contentsOf: URL(fileURLWithPath: sourceFolder + "/manifest.json"))),
          let source = try? Dataset(folder: sourceFolder, manifest: sourceManifest),
          let text = FileManager.default.contents(atPath: dataset.folder + "/crops.csv"),
          let table = try? parseCSV(String(decoding: text, as: UTF8.self)),
          let imageColumn = table.first?.firstIndex(of: "image"), let sourceColumn = table.first?.firstIndex(of: "source")
    else { return nil }
    var out: [String: String] = [:]
    for row in table.dropFirst() where row.count > max(imageColumn, sourceColumn) {
        out[row[imageColumn]] = source.summary.imageRoot + "/" + row[sourceColumn]
    }
    return out
}
