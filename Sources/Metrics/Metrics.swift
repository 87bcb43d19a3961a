// Segmentation and classification metrics, intervals, significance tests and calibration
// (SPEC §5, §8) arrive with the metrics issue.

/// Namespace for the paper's evaluation numerics.
public enum Metrics {}
