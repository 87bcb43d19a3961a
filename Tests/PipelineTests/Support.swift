// Stage contexts for the pipeline tests: the repository's configuration at a profile, written under
// a scratch folder, quiet unless a test listens.

import Artifacts
import Pipeline
import TestSupport

/// The repository's configuration at `profile` (the small `ci` one by default) on two threads.
func repositoryConfig(profile: String = "ci") throws -> PipelineConfig {
    var config = try PipelineConfig.load(path: Repository.config, profile: profile)
    config.threads = 2
    return config
}

/// A context writing under `root` with `config` (the `ci` profile when nil).
func context(_ root: String, config: PipelineConfig? = nil, force: Bool = false,
             sink: @escaping EventSink = { _ in }) throws -> StageContext {
    StageContext(config: try config ?? repositoryConfig(), artifacts: root, force: force, sink: sink)
}
