// Progress and messages of long work, as typed events. Libraries emit; executables choose the
// printer (a text line with ETA on a terminal, JSON lines otherwise). No `print` in library code.

/// Something a stage wants its user to know.
public enum StageEvent: Sendable {
    /// `done` of `total` items of `task` finished.
    case progress(task: String, done: Int, total: Int)
    /// A plain note ("generated 90 synthetic images").
    case note(String)
    /// Something worth attention that does not stop the stage.
    case warning(String)
}

/// Where events go.
public typealias EventSink = @Sendable (StageEvent) -> Void
