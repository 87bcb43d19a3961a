// What every stage run is given, decided once when the stage starts: the configuration after the
// profile and command-line overlays, the artifact store (with the run environment its manifests
// record), `--force` and where progress goes. Stages take this one value instead of the same
// trailing parameters each.

import Artifacts
import Datasets
import Engine
import Training

/// The settings of one stage invocation.
public struct StageContext: Sendable {
    /// The configuration with the profile and command-line overlays applied.
    public let config: PipelineConfig
    /// The store artifacts are read from and written to; its environment goes into every manifest.
    public let store: ArtifactStore
    /// Rerun even when a complete artifact with the same key exists.
    public let force: Bool
    /// Where progress and notes go.
    public let sink: EventSink

    /// A context for `config`, writing under `artifacts`; its manifests record `config.threads` and
    /// the BLAS provider and convolution algorithm this process runs with. Touches no global state:
    /// the executable that owns the process sets the engine's threads (`Parallel.configure`) from the
    /// same configuration.
    public init(config: PipelineConfig, artifacts: String, force: Bool = false, sink: @escaping EventSink = { _ in }) {
        self.config = config
        store = ArtifactStore(root: artifacts, environment: RunEnvironment(
            threads: config.threads, blasProvider: BLAS.provider, convolution: Winograd.enabled ? "winograd" : "patches"), sink: sink)
        self.force = force
        self.sink = sink
    }

    /// Worker threads of data-parallel loops (the configuration's, after `--threads`).
    public var threads: Int { config.threads }

    /// The dataset named `name` (a `prepare` or `mask-crop` artifact) and its key.
    ///
    /// - Throws: `ArtifactError` when there is none or it is unreadable.
    public func dataset(named name: String) throws(ArtifactError) -> (dataset: Dataset, key: String) {
        let (folder, manifest) = try store.dataset(named: name)
        return (try Dataset(folder: folder, manifest: manifest), manifest.key)
    }
}

/// Runs a training stage's `body` for `run`. When it fails for any reason but an interruption and
/// the artifact is complete by then, another run of the same key finished it meanwhile (and, say,
/// removed the checkpoint this one was resuming from): that artifact is returned instead of the
/// error. Both runs compute the same bytes, so which one wrote them does not matter.
func yieldingToAnotherRun(_ run: ArtifactRun, sink: EventSink,
                          _ body: () throws(TrainingError) -> StageResult) throws(TrainingError) -> StageResult {
    do {
        return try body()
    } catch {
        if case .interrupted = error { throw error }
        guard let finished = run.completedElsewhere() else { throw error }
        sink(.warning("another run of this key finished \(run.folder) meanwhile; using its artifact (this run stopped at: \(error))"))
        return finished
    }
}
