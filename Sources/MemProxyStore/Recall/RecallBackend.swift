/// How a replica learns that someone else committed: a counter that every commit to the database raises by exactly
/// one (wrapping), whoever made it, this process or another, read without a transaction. SQLite: the WAL index
/// header's `iChange` (``WALHeaderProbe``).
protocol CommitSignal: Sendable {
    /// The counter now; `nil` when it cannot be read (then every recall reads the database).
    func commitCounter() -> UInt32?
}
