// Keras' epoch-end callbacks on a monitored value (validation loss, mode "min"): learning-rate
// reduction on plateaus, early stopping, and best-checkpoint selection. Plain value types, so
// their state is checkpointed with the rest of training.

/// `ReduceLROnPlateau(factor, patience, min_delta, cooldown, min_lr)`, mode min.
public struct ReduceLROnPlateau: Sendable, Codable, Equatable {
    public var factor: Float
    public var patience: Int
    public var minDelta: Float
    public var cooldown: Int
    public var minLearningRate: Float
    public private(set) var best = Float.infinity
    public private(set) var wait = 0
    public private(set) var cooldownCounter = 0

    public init(factor: Float = 0.5, patience: Int = 5, minDelta: Float = 1e-4, cooldown: Int = 0, minLearningRate: Float = 0) {
        self.factor = factor
        self.patience = patience
        self.minDelta = minDelta
        self.cooldown = cooldown
        self.minLearningRate = minLearningRate
    }

    /// The learning rate after an epoch whose monitored value was `current`.
    public mutating func update(current: Float, learningRate: Float) -> Float {
        if cooldownCounter > 0 { cooldownCounter -= 1; wait = 0 }
        if current < best - minDelta {
            best = current
            wait = 0
            return learningRate
        }
        guard cooldownCounter == 0 else { return learningRate }
        wait += 1
        guard wait >= patience, learningRate > minLearningRate else { return learningRate }
        cooldownCounter = cooldown
        wait = 0
        return max(learningRate * factor, minLearningRate)
    }
}

/// `EarlyStopping(patience, min_delta)`, mode min.
public struct EarlyStopping: Sendable, Codable, Equatable {
    public var patience: Int
    public var minDelta: Float
    public private(set) var best = Float.infinity
    public private(set) var wait = 0

    public init(patience: Int = 10, minDelta: Float = 1e-4) {
        self.patience = patience
        self.minDelta = minDelta
    }

    /// Whether training should stop after an epoch whose monitored value was `current`.
    public mutating func shouldStop(current: Float) -> Bool {
        wait += 1
        if current - minDelta < best {
            best = current
            wait = 0
        }
        return wait >= patience
    }
}

/// `ModelCheckpoint(save_best_only=True)`, mode min: whether this epoch's weights are the best so far.
public struct BestCheckpoint: Sendable, Codable, Equatable {
    public private(set) var best = Float.infinity
    public private(set) var bestEpoch: Int?

    public init() {}

    public mutating func isBest(current: Float, epoch: Int) -> Bool {
        guard current < best else { return false }
        best = current
        bestEpoch = epoch
        return true
    }
}
