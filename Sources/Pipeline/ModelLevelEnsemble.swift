// The model-level ensemble (SPEC §6.2, Table 4): the frozen members' DCL maps (`extra_conv_eff0`,
// after its ReLU) concatenated along channels → Conv2D(512, 1×1, relu) → global average pooling →
// Dense(3, softmax), trained with cross-entropy, class weights, Keras SGD and callbacks on
// validation accuracy; `ensemble.modelLevelCodeCompat` trains only the Dense, as the released
// code's freezing bug did.
//
// The members are frozen and in inference mode, so their maps never change: they are computed once
// per image and member and cached as float16 files in the artifact folder ([N, h, w, 512] per member,
// rows in dataset order), and each batch reads its rows back with pread. Recomputing them would cost
// K member forward passes per image per epoch; the cache costs them once, and keeps the resident
// memory at a batch of maps whatever the dataset's size (the page cache holds the files). The
// cache is scaffolding: removed when the artifact is complete.

import Artifacts
import Datasets
import Engine
import Ensembles
import Foundation
import Imaging
import Losses
import Metrics
import Models
import SeededRandom
import Training

/// One member's cached DCL maps: float16, row after row, each row h·w·512 values.
struct DCLCacheFile {
    let path: String
    let rows: Int
    let h: Int
    let w: Int
    let channels: Int

    var rowValues: Int { h * w * channels }
}

/// The frozen members' DCL maps of every image of a dataset, cached in `folder`.
struct DCLCache {
    let files: [DCLCacheFile]
    let labels: [Int]
    let ids: [String]

    var channels: Int { files.map(\.channels).reduce(0, +) }
    var h: Int { files[0].h }
    var w: Int { files[0].w }

    /// Computes (or finds complete from an interrupted run) each member's maps for every row of `dataset`.
    ///
    /// - Throws: `StageError` naming the member whose weights do not load or whose input size differs.
    static func build(_ context: StageContext, members: [EnsembleMember], dataset: Dataset, folder: String) throws(StageError) -> DCLCache {
        var files: [DCLCacheFile] = []
        var sizes: [Int: ClassificationLoss] = [:]
        var ids: [String] = [], labels: [Int] = []
        var loaded: (interpolation: Interpolation, images: ClassificationImages)?
        for (index, member) in members.enumerated() {
            guard let manifest = context.store.completeManifest(at: member.folder),
                  let settings = try? JSONDecoder().decode(ClassifySettings.self, from: JSONEncoder().encode(manifest.config)) else {
                throw .artifact(.invalidManifest(path: member.folder + "/manifest.json", message: "member '\(member.loss.rawValue)' is not a complete classify-train artifact"))
            }
            let size = settings.config.size
            sizes[size] = sizes[size] ?? member.loss
            if sizes.count > 1 {
                throw .artifact(.missingInput(message: "member '\(member.loss.rawValue)' was trained at \(size)² but '\(sizes.values.first { $0 != member.loss }?.rawValue ?? "")' "
                    + "at another size; a model-level ensemble concatenates maps of one size"))
            }
            let path = folder + "/dcl-\(index + 1)-\(member.loss.rawValue).f16"
            // The images are decoded once for every member that reads them alike.
            if loaded?.interpolation != settings.config.interpolation {
                do {
                    loaded = (settings.config.interpolation,
                              try ClassificationImages.load(dataset, rows: dataset.rows, size: size, interpolation: settings.config.interpolation,
                                                            threads: context.threads, sink: context.sink))
                } catch { throw .data(error) }
            }
            guard let images = loaded?.images else { continue }
            ids = images.ids
            labels = images.labels
            // The DCL of a 32·s input is s/16 + … : read it from one forward pass.
            let parameters = Classifier.parameters(seed: settings.seed)
            try loadWeights(parameters, from: member.folder + "/model.safetensors")
            let probe = Tape(recording: false, training: false)
            let shape = probe.shape(Classifier.forward(Layers(tape: probe, store: parameters), probe.constant(images.batch([0]).images)).dcl)
            let file = DCLCacheFile(path: path, rows: images.count, h: shape[1], w: shape[2], channels: shape[3])
            files.append(file)
            let bytes = file.rows * file.rowValues * 2
            if (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) == bytes {
                context.sink(.note("reusing the cached DCL maps of '\(member.loss.rawValue)' (\(path))"))
                continue
            }
            try writeMaps(parameters, images: images, to: file, batchSize: settings.config.batchSize, label: member.loss.rawValue,
                          sink: context.sink)
        }
        return DCLCache(files: files, labels: labels, ids: ids)
    }

    /// Runs the member on every image and writes its maps as float16, batch by batch, to a temporary
    /// name moved into place when complete.
    private static func writeMaps(_ parameters: ParameterStore, images: ClassificationImages, to file: DCLCacheFile, batchSize: Int,
                                  label: String, sink: EventSink) throws(StageError) {
        let temporary = file.path + ".partial"
        guard FileManager.default.createFile(atPath: temporary, contents: nil), let handle = FileHandle(forWritingAtPath: temporary) else {
            throw .artifact(.io(path: temporary, message: "cannot be created"))
        }
        do {
            var start = 0
            while start < images.count {
                let indices = Array(start..<min(start + batchSize, images.count))
                let tape = Tape(recording: false, training: false)
                let dcl = tape.value(Classifier.forward(Layers(tape: tape, store: parameters), tape.constant(images.batch(indices).images)).dcl)
                let halves = dcl.data.map { Float16($0) }
                try halves.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
                start += batchSize
                sink(.progress(task: "caching the DCL maps of \(label)", done: min(start, images.count), total: images.count))
            }
            try handle.close()
            if FileManager.default.fileExists(atPath: file.path) { try FileManager.default.removeItem(atPath: file.path) }
            try FileManager.default.moveItem(atPath: temporary, toPath: file.path)
        } catch {
            throw .artifact(.io(path: file.path, message: "writing the cached maps failed: \(error.localizedDescription)"))
        }
    }

    /// The concatenated maps [B, h, w, 512·K] of rows `indices` (member after member within each pixel).
    func batch(_ indices: [Int]) throws(StageError) -> Tensor {
        let pixels = h * w, total = channels
        var out = [Float](repeating: 0, count: indices.count * pixels * total)
        var offset = 0
        for file in files {
            let fd = open(file.path, O_RDONLY)
            guard fd >= 0 else { throw .artifact(.io(path: file.path, message: "cannot be opened: \(String(cString: strerror(errno)))")) }
            defer { close(fd) }
            var row = [Float16](repeating: 0, count: file.rowValues)
            for (b, i) in indices.enumerated() {
                let wanted = file.rowValues * 2
                let read = row.withUnsafeMutableBytes { pread(fd, $0.baseAddress, wanted, off_t(i * wanted)) }
                guard read == wanted else { throw .artifact(.io(path: file.path, message: "short read at row \(i + 1)")) }
                for p in 0..<pixels {
                    let dst = (b * pixels + p) * total + offset, src = p * file.channels
                    for c in 0..<file.channels { out[dst + c] = Float(row[src + c]) }
                }
            }
            offset += file.channels
        }
        return Tensor(shape: [indices.count, h, w, total], data: out)
    }

    /// Removes the cache files.
    func remove() {
        for file in files { try? FileManager.default.removeItem(atPath: file.path) }
    }
}

/// The head's probabilities for `rows` of the cache and the mean unweighted cross-entropy.
func modelLevelPredict(_ parameters: ParameterStore, _ cache: DCLCache, rows: [Int], batchSize: Int) throws(StageError) -> (predictions: Predictions, loss: Float) {
    var probabilities: [Double] = [], total = 0.0
    var start = 0
    while start < rows.count {
        let indices = Array(rows[start..<min(start + batchSize, rows.count)])
        let x = try cache.batch(indices)
        var y = [Float](repeating: 0, count: indices.count * 3)
        for (b, i) in indices.enumerated() { y[b * 3 + cache.labels[i]] = 1 }
        let tape = Tape(recording: false, training: false)
        let p = tape.softmax(ModelLevelHead.forward(Layers(tape: tape, store: parameters), tape.constant(x)))
        let loss = classificationLoss(.cce, tape: tape, probabilities: p, labels: Tensor(shape: [indices.count, 3], data: y), classWeights: nil)
        total += Double(tape.value(loss).data[0]) * Double(indices.count)
        probabilities += tape.value(p).data.map(Double.init)
        start += batchSize
    }
    for i in 0..<rows.count {
        let sum = probabilities[(3 * i)..<(3 * i + 3)].reduce(0, +)
        for k in 0..<3 { probabilities[3 * i + k] /= sum }
    }
    return (Predictions(ids: rows.map { cache.ids[$0] }, labels: rows.map { cache.labels[$0] }, probabilities: probabilities, classes: 3),
            Float(total / Double(max(rows.count, 1))))
}

/// Trains the head into `writer`'s artifact on the cached maps of the training split and returns its
/// predictions for the validation and test splits.
func trainModelLevel(_ context: StageContext, cache: DCLCache, splits: [Split], resuming: Bool, writer: inout ArtifactWriter,
                     continueAfter: (TrainingPosition) -> Bool = { _ in true }) throws(StageError) -> (val: Predictions, test: Predictions?) {
    let config = context.config.ensemble.modelLevel, seed = context.config.seed
    let codeCompat = context.config.ensemble.modelLevelCodeCompat
    let train = splits.indices.filter { splits[$0] == .train }, val = splits.indices.filter { splits[$0] == .val }
    let test = splits.indices.filter { splits[$0] == .test }
    guard !train.isEmpty else { throw .emptySplit(dataset: writer.folder, split: "training") }
    guard !val.isEmpty else { throw .emptySplit(dataset: writer.folder, split: "validation") }
    let parameters = ModelLevelHead.parameters(seed: seed, channels: cache.channels)
    let batchSize = min(config.batchSize, train.count)
    var head = HeadTraining(label: "model-level", format: "multiloss-cxr/model-level", shuffleStream: 0x30DE,
                            inputs: { indices throws(StageError) in try cache.batch(indices.map { train[$0] }) },
                            logits: { layers, x in ModelLevelHead.forward(layers, x) },
                            validate: {
                                guard let (predictions, loss) = try? modelLevelPredict(parameters, cache, rows: val, batchSize: batchSize) else {
                                    return Validation(loss: .nan, accuracy: 0)
                                }
                                return Validation(loss: loss, accuracy: Ensembles.accuracy(predictions))
                            })
    if codeCompat { head.trains = { $0.hasPrefix(ModelLevelHead.output) } }
    try trainHead(context, head, config: config, parameters: parameters, labels: train.map { cache.labels[$0] }, resuming: resuming,
                  writer: &writer, continueAfter: continueAfter)
    return (try modelLevelPredict(parameters, cache, rows: val, batchSize: batchSize).predictions,
            test.isEmpty ? nil : try modelLevelPredict(parameters, cache, rows: test, batchSize: batchSize).predictions)
}
