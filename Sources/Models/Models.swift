// EfficientNet-B0 with Keras layer names, the U-Net decoder and the classifier head
// (SPEC §1.1, §3) arrive with the engine issue. This target exists so the package layout
// already tells the architecture (DESIGN §3).

/// Namespace for the paper's network architectures.
public enum Models {}
