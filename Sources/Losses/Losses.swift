// The five segmentation losses (SPEC §1.2) and twelve classification losses (SPEC §4) arrive with
// the segment and classify-train issues.

/// Namespace for the paper's loss functions.
public enum Losses {}
