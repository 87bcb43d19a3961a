// `mask-crop`: AND the predicted lung masks, crop each image to the box with SPEC §2's margins,
// resize and contrast-stretch it, as a new dataset the classifier reads by name.

import ArgumentParser
import Foundation
import Pipeline
import StageCLI

struct MaskCropCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mask-crop",
        abstract: "Crop every image of a dataset to its lungs: AND of the predicted masks, box, resize, contrast stretch.",
        discussion: """
            Reads the masks of a `segment predict` run (--masks, default the dataset's name) and ANDs them per image; \
            the bounding box is relaxed by 5 % of its height and width (SPEC §2 step 4), or is the whole image when the \
            AND is empty (counted, named in the manifest and warned about). The crop is taken from the original image, \
            resized to crop.size × crop.size (crop.interpolation, INTER_AREA by default) and contrast-stretched \
            (MATLAB imadjust, 1 %/99 %; crop.contrastStretch). Writes artifacts/mask-crop/NAME/KEY/ as a dataset: \
            images/*.png, images.csv (classes, patients and splits of the source), crops.csv (the boxes) and \
            contact-sheet.png (originals with the mask outline and box beside their crops). When the source has \
            ground-truth masks, crops.csv and the manifest say whether each box holds the whole true lung.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "The dataset to crop.")
    var data: String

    @Option(help: "The segment predict run with its masks (default: the dataset's name).")
    var masks: String?

    @Option(help: "The name of the cropped dataset (default: DATA-crops).")
    var name: String?

    func run() throws {
        try runStage("mask-crop") {
            let context = try common.context(stage: "mask-crop")
            let dataset = try context.dataset(named: data)
            let predicted = try context.store.current(stage: "segment-predict", variant: masks ?? data)
            let result = try runMaskCrop(context, data: dataset, masks: predicted, variant: name ?? "\(data)-crops")
            return result.folder
        }
    }
}

MaskCropCommand.main()
