// The `mask-crop` stage (SPEC §2): the bitwise AND of the top-k U-Nets' masks, the bounding box
// with SPEC §2's 5 % margins (the whole image when the AND is empty, counted and named), the crop
// taken from the original image, resized (INTER_AREA) and contrast-stretched (imadjust), saved as
// 8-bit PNG. The output is a dataset artifact — same classes, patients and splits as its source —
// that the classifier reads by name, with the boxes as CSV and a contact sheet to check them.

import Artifacts
import Datasets
import Foundation
import Imaging
import Report

/// What decides a crop artifact besides the dataset and the masks.
struct MaskCropSettings: Codable, Equatable {
    var crop: CropConfig
}

/// Version of the crop artifact's files (2: the ground-truth masks cropped too, when the source has them).
public let cropFormatVersion = 2

/// One image's crop.
struct CropRecord: Sendable {
    var row: DatasetRow
    var source: String
    var imageWidth: Int
    var imageHeight: Int
    var box: PixelBox
    var emptyMask: Bool
    var limits: StretchLimits?
    /// Whether the box holds the whole ground-truth lung, when the source row has a mask.
    var truthInside: Bool?
    var png: [UInt8]
    /// The ground-truth lung mask cropped with the same box (PNG), when the source has one.
    var maskPNG: [UInt8]?
}

/// Crops every image of `data` to the AND of the masks in the `segment predict` artifact `masks`,
/// into the dataset artifact `mask-crop/<variant>`, with the context's `crop` settings.
public func runMaskCrop(_ context: StageContext, data: (dataset: Dataset, key: String), masks: (folder: String, manifest: Manifest),
                        variant: String) throws(StageError) -> StageResult {
    let (dataset, config, sink, threads) = (data.dataset, context.config.crop, context.sink, context.threads)
    let masksFolder = masks.folder, masksManifest = masks.manifest
    let maskFolders = try predictedMaskFolders(masks)
    let settings = MaskCropSettings(crop: config)
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "mask-crop", variant: variant, settings: settings, inputKeys: [data.key, masksManifest.key],
                                       formatVersion: cropFormatVersion, force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }
    let folder = run.folder

    func crop(_ row: DatasetRow) throws(IngestError) -> CropRecord {
        do throws(ImagingError) {
            let image = try GrayImage(contentsOf: dataset.imagePath(row))
            let anded = try predictedMask(row, image: image, dataset: dataset, masks: masksFolder, folders: maskFolders)
            let full = PixelBox(x: 0, y: 0, width: image.width, height: image.height)
            let box = anded?.cropBox ?? full
            var out = image.cropped(to: box).resized(width: config.size, height: config.size, method: config.interpolation).to8Bit()
            var limits: StretchLimits?
            if config.contrastStretch { (out, limits) = out.contrastStretched() }
            var truthInside: Bool?
            var maskPNG: [UInt8]?
            if let truthPath = dataset.maskPath(row) {
                let truth = try Mask(contentsOf: truthPath, sizedLike: image, imagePath: dataset.imagePath(row))
                truthInside = truth.tightBox.map { box.contains($0) } ?? true
                // The true lungs inside the crop, area-resampled and thresholded at ½ like training masks.
                let resampled = truth.image.cropped(to: box).resized(width: config.size, height: config.size, method: .area)
                maskPNG = try Mask(thresholding: resampled).image.pngData()
            }
            let png = try out.pngData()
            var cropped = row
            cropped.path = maskFileName(row.path)
            cropped.sha256 = SHA256.hex(png)
            cropped.width = config.size
            cropped.height = config.size
            cropped.mask = maskPNG == nil ? nil : "masks/" + maskFileName(row.path)
            return CropRecord(row: cropped, source: row.path, imageWidth: image.width, imageHeight: image.height, box: box,
                              emptyMask: box == full && anded?.count == 0, limits: limits, truthInside: truthInside, png: png,
                              maskPNG: maskPNG)
        } catch {
            throw .image(error)
        }
    }

    do {
        var writer = try run.begin(inputs: [ManifestInput(name: "dataset", path: dataset.folder, key: data.key),
                                            ManifestInput(name: "masks", path: masksFolder, key: masksManifest.key)],
                                   seed: 0)
        var records: [CropRecord] = []
        let chunk = 64
        for start in stride(from: 0, to: dataset.rows.count, by: chunk) {
            let part = try parallelMap(Array(dataset.rows[start..<min(start + chunk, dataset.rows.count)]), threads: threads,
                                       crop)
            for var record in part {
                let path = "images/" + record.row.path
                try FileManager.default.createDirectory(atPath: folder + "/" + (path as NSString).deletingLastPathComponent,
                                                        withIntermediateDirectories: true)
                try writer.write(record.png, to: path)
                if record.emptyMask { sink(.warning("empty lung mask for \(dataset.imagePath(record.row)); cropped to the whole image")) }
                if let mask = record.maskPNG, let maskPath = record.row.mask {
                    try FileManager.default.createDirectory(atPath: folder + "/" + (maskPath as NSString).deletingLastPathComponent,
                                                            withIntermediateDirectories: true)
                    try writer.write(mask, to: maskPath)
                }
                record.png = []
                record.maskPNG = nil
                records.append(record)
            }
            sink(.progress(task: "cropping \(dataset.rows.count) images", done: records.count, total: dataset.rows.count))
        }
        try writer.write(Array(datasetCSV(records.map(\.row)).utf8), to: "images.csv")
        try writer.write(Array(cropCSV(records).utf8), to: "crops.csv")
        if config.contactSheetImages > 0 {
            try writer.write(try cropSheet(records, dataset: dataset, masksFolder: masksFolder, maskFolders: maskFolders,
                                           folder: folder, count: config.contactSheetImages).pngData(), to: "contact-sheet.png")
        }
        let empty = records.filter(\.emptyMask).map(\.source)
        let judged = records.compactMap(\.truthInside)
        var summary = (try? JSONValue(encoding: DatasetSummary(
            layout: "mask-crop", imageRoot: URL(fileURLWithPath: folder + "/images").standardizedFileURL.path, maskRoot: URL(fileURLWithPath: folder).standardizedFileURL.path,
            images: records.count, masks: records.filter { $0.row.mask != nil }.count, validationRule: dataset.summary.validationRule, counts: dataset.summary.counts,
            classWeights: dataset.summary.classWeights, skipped: [])))?.objectValue ?? [:]
        summary["emptyMasks"] = .number(Double(empty.count))
        summary["emptyMaskImages"] = .array(empty.map { .string($0) })
        summary["ensembleMembers"] = .number(Double(maskFolders.count))
        if !judged.isEmpty {
            summary["truthInsideBox"] = .number(Double(judged.filter { $0 }.count))
            summary["truthJudged"] = .number(Double(judged.count))
        }
        let manifest = try writer.finish(summary: .object(summary))
        if !judged.isEmpty {
            sink(.note("crop boxes holding the whole ground-truth lung: \(judged.filter { $0 }.count)/\(judged.count) "
                       + "(\(formatFixed(100 * Double(judged.filter { $0 }.count) / Double(judged.count), decimals: 1)) %)"))
        }
        return writer.result(manifest)
    } catch {
        throw .wrapping(error, folder: folder)
    }
}

/// crops.csv: where each crop came from.
private func cropCSV(_ records: [CropRecord]) -> String {
    csvText(header: ["image", "source", "source_width", "source_height", "box_x", "box_y", "box_width", "box_height",
                     "empty_mask", "stretch_low", "stretch_high", "truth_inside_box"],
            rows: records.map { r in
                [r.row.path, r.source, String(r.imageWidth), String(r.imageHeight), String(r.box.x), String(r.box.y),
                 String(r.box.width), String(r.box.height), r.emptyMask ? "1" : "0",
                 r.limits.map { String($0.low) } ?? "", r.limits.map { String($0.high) } ?? "",
                 r.truthInside.map { $0 ? "1" : "0" } ?? ""]
            })
}

/// Pairs of tiles for evenly spaced images: the original with the AND mask's outline (yellow) and
/// the crop box (cyan; red when the mask was empty), then the crop written.
private func cropSheet(_ records: [CropRecord], dataset: Dataset, masksFolder: String, maskFolders: [String],
                       folder: String, count: Int) throws(ImagingError) -> RGBImage {
    let n = min(count, records.count)
    var tiles: [(image: RGBImage, band: RGB?)] = []
    for pick in Array(Set((0..<n).map { $0 * records.count / n })).sorted() {
        let record = records[pick]
        var original = RGBImage(gray: try GrayImage(contentsOf: dataset.summary.imageRoot + "/" + record.source))
        var anded: Mask?
        for maskFolder in maskFolders {
            let mask = Mask(thresholding: try GrayImage(contentsOf: masksFolder + "/" + maskFolder + "/" + maskFileName(record.source)))
            anded = try anded?.and(mask) ?? mask
        }
        let thickness = max(1, original.width / 160)
        if let anded { original.drawOutline(of: anded, color: RGB(255, 220, 0), thickness: thickness) }
        original.drawRectangle(record.box, color: record.emptyMask ? RGB(255, 40, 40) : RGB(0, 220, 255), thickness: thickness)
        tiles.append((original, nil))
        tiles.append((RGBImage(gray: try GrayImage(contentsOf: folder + "/images/" + record.row.path)), nil))
    }
    return ContactSheet(columns: min(8, tiles.count), tileSize: 160).render(tiles)
}

/// The mask folders (`masks/<k>-<loss>`) of a `segment predict` artifact.
///
/// - Throws: `StageError` naming the manifest when it is not one, or lists none.
func predictedMaskFolders(_ masks: (folder: String, manifest: Manifest)) throws(StageError) -> [String] {
    guard masks.manifest.stage == "segment-predict", case let .array(models)? = masks.manifest.summary.objectValue?["models"] else {
        throw .artifact(.invalidManifest(path: masks.folder + "/manifest.json", message: "not a segment predict artifact"))
    }
    let folders = models.compactMap { $0.objectValue?["masks"]?.stringValue }
    guard !folders.isEmpty else {
        throw .artifact(.invalidManifest(path: masks.folder + "/manifest.json", message: "lists no mask folders"))
    }
    return folders
}

/// The bitwise AND of `row`'s predicted masks in `folders` of the segment-predict artifact `masks`
/// (nil when there are no folders), each checked against the image's size.
func predictedMask(_ row: DatasetRow, image: GrayImage, dataset: Dataset, masks: String,
                   folders: [String]) throws(ImagingError) -> Mask? {
    var anded: Mask?
    for folder in folders {
        let mask = try Mask(contentsOf: masks + "/" + folder + "/" + maskFileName(row.path), sizedLike: image,
                            imagePath: dataset.imagePath(row))
        anded = try anded?.and(mask) ?? mask
    }
    return anded
}
