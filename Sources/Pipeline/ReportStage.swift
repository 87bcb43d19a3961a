// The `report` stage: one reproduction's artifacts in (the folders the stages printed, so each is
// found by its key), `report.md`, a self-contained `report.html` and the figures out. It reads
// every manifest upstream of the given artifacts for the protocol and provenance sections.

import Artifacts
import Datasets
import Foundation
import Metrics
import Report

/// What decides a report besides its input artifacts.
public struct ReportSettings: Codable, Sendable, Equatable {
    public var profile: String

    public init(profile: String) { self.profile = profile }
}

/// The artifact folders a report is made from; any may be absent.
public struct ReportSources: Sendable, Equatable {
    public var segmentation: String?
    public var table2: String?
    public var table3: String?
    public var table4: String?
    public var gradcam: [String]

    public init(segmentation: String?, table2: String?, table3: String?, table4: String?, gradcam: [String]) {
        self.segmentation = segmentation
        self.table2 = table2
        self.table3 = table3
        self.table4 = table4
        self.gradcam = gradcam
    }

    var all: [String] { [segmentation, table2, table3, table4].compactMap { $0 } + gradcam }
}

/// Version of the report artifact's files (part of its key).
public let reportFormatVersion = 2

/// Writes `artifacts/report/<name>/<key>/`: report.md, report.html and figures/.
///
/// - Throws: `StageError` naming a folder that is not a complete artifact of the expected stage.
public func runReport(_ context: StageContext, sources: ReportSources, name: String,
                      settings: ReportSettings) throws(StageError) -> StageResult {
    guard !sources.all.isEmpty else {
        throw .artifact(.missingInput(message: "give at least one artifact to report on (--segmentation, --table2, …, --gradcam)"))
    }
    var manifests: [String: Manifest] = [:]
    func artifact(_ folder: String, stage: String) throws(StageError) -> Manifest {
        guard let manifest = context.store.completeManifest(at: folder) else {
            throw .artifact(.incomplete(path: folder, message: "not a complete artifact (no manifest.json, or it lists files that are missing)"))
        }
        guard manifest.stage == stage else {
            throw .artifact(.invalidManifest(path: folder, message: "a '\(manifest.stage)' artifact; expected '\(stage)'"))
        }
        manifests[folder] = manifest
        return manifest
    }
    var segmentation: (String, Manifest)?
    if let folder = sources.segmentation { segmentation = (folder, try artifact(folder, stage: "segment-evaluate")) }
    var tables: [(String, String, Manifest, [PaperClassificationRow])] = []
    for (table, folder) in zip(paperClassificationTables, [sources.table2, sources.table3, sources.table4]) {
        guard let folder else { continue }
        tables.append((table.title, folder, try artifact(folder, stage: "evaluate"), table.rows))
    }
    var gradcam: [(String, Manifest)] = []
    for folder in sources.gradcam { gradcam.append((folder, try artifact(folder, stage: "gradcam"))) }

    let inputs = sources.all.map { ManifestInput(name: manifests[$0]!.stage, path: $0, key: manifests[$0]!.key) }
    let run: ArtifactRun
    do {
        run = try context.store.locate(stage: "report", variant: name, settings: settings, inputKeys: inputs.map(\.key),
                                       formatVersion: reportFormatVersion, force: context.force)
    } catch { throw .artifact(error) }
    if let existing = run.existing { return existing }

    do {
        var figures: [(file: String, bytes: [UInt8])] = []
        var classification: [ClassificationTable] = []
        var predictions: [String: Predictions] = [:]
        for (index, (title, folder, manifest, paper)) in tables.enumerated() {
            let file = try decodeJSON(EvaluationFile.self, from: try readFile(folder + "/metrics.json"))
            for (input, report) in zip(manifest.inputs, file.models) where predictions[report.name] == nil {
                do { predictions[report.name] = try readPredictions(path: input.path).predictions } catch {
                    context.sink(.warning("\(report.name): no paired tests (\(error))"))
                }
            }
            let names = manifest.inputs.map { ($0.path as NSString).lastPathComponent }
            let split = names.allSatisfy { $0.hasSuffix("predictions-test.csv") } ? "test"
                : names.allSatisfy { $0.hasSuffix("predictions-val.csv") } ? "val" : "given"
            var shown: [(file: String, caption: String, svg: String)] = []
            let best = file.models.max { $0.mcc < $1.mcc }
            for report in file.models where report.name == best?.name || report.name == "proposed" {
                for (kind, caption) in [("confusion", "confusion matrix"), ("roc", "ROC curves"), ("pr", "precision–recall curves"),
                                        ("reliability", "reliability diagram")] {
                    let source = "plots/\(fileSafe(report.name))-\(kind).svg"
                    let target = "figures/table\(index + 2)-\(fileSafe(report.name))-\(kind).svg"
                    let bytes = try readFile(folder + "/" + source)
                    figures.append((target, bytes))
                    shown.append((target, "\(title.prefix(7)): \(report.name), \(caption)", String(decoding: bytes, as: UTF8.self)))
                }
            }
            classification.append(ClassificationTable(title: title, artifact: artifactName(manifest), split: split,
                                                      reports: file.models, paper: paper, figures: shown))
        }
        var cams: [GradCAMSection] = []
        for (index, (folder, manifest)) in gradcam.enumerated() {
            let sheet = try readFile(folder + "/sheet.png")
            let target = "figures/gradcam-\(index + 1)-\(fileSafe(manifest.variant)).png"
            figures.append((target, sheet))
            cams.append(GradCAMSection(title: "Grad-CAM of \(manifest.variant)", artifact: artifactName(manifest), sheetFile: target,
                                       sheet: sheet, lines: gradcamLines(manifest.summary)))
        }
        let segmentationFile = try segmentation.map { folder, manifest in
            (try decodeJSON(SegmentationEvaluation.self, from: try readFile(folder + "/metrics.json")), artifactName(manifest))
        }
        let graph = lineage(of: sources.all, store: context.store).map(\.manifest)
        let reproduction = ReproductionInputs(
            profile: settings.profile, segmentation: segmentationFile, tables: classification, predictions: predictions, gradcam: cams,
            protocolNotes: protocolNotes(graph, tables: classification), provenance: provenanceRows(graph),
            environment: environmentLines(graph, profile: settings.profile))
        let document = reproductionReport(reproduction)

        var writer = try run.begin(inputs: inputs, seed: 0)
        try writer.write(Array(document.markdown().utf8), to: "report.md")
        try writer.write(Array(document.html().utf8), to: "report.html")
        for figure in figures { try writer.write(figure.bytes, to: figure.file) }
        let claims = checkClaims(reproduction).filter { $0.held == true }.count
        let totalSeconds = graph.reduce(0) { $0 + $1.durationSeconds }
        return writer.result(try writer.finish(summary: .object([
            "claimsHeld": .number(Double(claims)), "artifacts": .number(Double(graph.count)),
            "computeSeconds": .number((totalSeconds * 10).rounded() / 10),
        ])))
    } catch {
        throw .wrapping(error, folder: run.folder)
    }
}

/// "stage/variant/key".
private func artifactName(_ manifest: Manifest) -> String { "\(manifest.stage)/\(manifest.variant)/\(manifest.key)" }

/// Every complete artifact the given folders were made from (themselves included), each once, in
/// pipeline order (stage by stage, then by variant and key), with its folder.
public func lineage(of folders: [String], store: ArtifactStore) -> [(folder: String, manifest: Manifest)] {
    var seen: Set<String> = [], out: [(folder: String, manifest: Manifest)] = []
    var queue = folders
    while let path = queue.popLast() {
        // An input is an artifact folder or a file inside one (a prediction file).
        let parent = (path as NSString).deletingLastPathComponent
        guard let (folder, manifest) = store.completeManifest(at: path).map({ (path, $0) })
                ?? store.completeManifest(at: parent).map({ (parent, $0) }),
              seen.insert(artifactName(manifest)).inserted else { continue }
        out.append((folder, manifest))
        queue += manifest.inputs.map(\.path)
    }
    return out.sorted { a, b in
        let ia = pipelineStages.firstIndex(of: a.manifest.stage) ?? pipelineStages.count
        let ib = pipelineStages.firstIndex(of: b.manifest.stage) ?? pipelineStages.count
        return ia != ib ? ia < ib : (a.manifest.variant, a.manifest.key) < (b.manifest.variant, b.manifest.key)
    }
}

/// The stages in the order the study runs them.
public let pipelineStages = ["prepare", "segment-train", "segment-evaluate", "segment-predict", "mask-crop", "classify-train",
                             "classify-predict", "ensemble", "evaluate", "gradcam", "report"]

private func provenanceRows(_ graph: [Manifest]) -> [[String]] {
    graph.map { m in
        [m.stage, m.variant, m.key, formatFixed(m.durationSeconds, decimals: 1), "\(m.threads)", m.blasProvider, m.convolution ?? "—"]
    }
}

private func environmentLines(_ graph: [Manifest], profile: String) -> [String] {
    let total = graph.reduce(0) { $0 + $1.durationSeconds }
    var byStage: [String: Double] = [:]
    for m in graph { byStage[m.stage, default: 0] += m.durationSeconds }
    let stages = graph.map(\.stage).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
    return [
        "configuration profile: `\(profile)`; tool version \(Set(graph.map(\.toolVersion)).sorted().joined(separator: ", "))",
        "source commit: \(gitCommit())",
        "BLAS: \(Set(graph.map(\.blasProvider)).sorted().joined(separator: ", ")); threads: \(Set(graph.map(\.threads)).sorted().map(String.init).joined(separator: ", ")); "
            + "convolution: \(Set(graph.compactMap(\.convolution)).sorted().joined(separator: ", "))",
        "compute time of the \(graph.count) artifacts: \(formatFixed(total / 3600, decimals: 2)) h ("
            + stages.map { "\($0) \(formatFixed(byStage[$0]! / 60, decimals: 1)) min" }.joined(separator: ", ") + ")",
    ]
}

/// The commit of the working tree the report ran in (`git describe --always --dirty`), or why not.
private func gitCommit() -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["git", "describe", "--always", "--dirty", "--abbrev=12"]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return "unknown (git not found)" }
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    process.waitUntilExit()
    return process.terminationStatus == 0 && !text.isEmpty ? "`\(text)`" : "unknown (not a git checkout)"
}

private func gradcamLines(_ summary: JSONValue) -> [String] {
    guard case let .object(fields) = summary else { return [] }
    func number(_ key: String) -> String {
        guard case let .number(x)? = fields[key] else { return "NA" }
        return x == x.rounded() && abs(x) < 1e15 ? "\(Int(x))" : formatFixed(x, decimals: 3)
    }
    var lines = ["method \(fields["method"].flatMap { if case let .string(s) = $0 { s } else { nil } } ?? "?"), "
                 + "\(number("images")) images, \(number("mapsPerSecond")) maps/s"]
    lines.append("share of the map's positive mass inside the lungs: mean \(number("lungShareMean")), correct predictions "
                 + "\(number("lungShareCorrect")), wrong \(number("lungShareWrong")) (\(number("imagesWithMasks")) images with masks)")
    if case let .object(perClass)? = fields["lungShareByClass"] {
        lines.append("per class: " + perClass.keys.sorted().map { key in
            if case let .number(x)? = perClass[key] { "\(key) \(formatFixed(x, decimals: 3))" } else { "\(key) NA" }
        }.joined(separator: ", "))
    }
    return lines
}
