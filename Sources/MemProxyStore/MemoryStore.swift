/// Where memories live. Every read and write is scoped by a session id; no call returns another session's
/// rows. Implementations: ``SQLiteMemoryStore`` (and, later, PostgreSQL, run against the same tests).
public protocol MemoryStore: Sendable {
    /// The most relevant memories of `session` for `query`, best first.
    ///
    /// - Parameters:
    ///   - session: The session to search; nothing outside it is returned.
    ///   - query: Free text (e.g. the newest user message); never interpreted as query syntax.
    ///   - limit: The most memories to return.
    /// - Returns: At most `limit` memories: the session's procedural memories first (newest first, whatever the
    ///   query), then the best matches, highest score first; no matches when the query has no usable term.
    func recall(session: String, query: String, limit: Int) async throws -> [RecalledMemory]

    /// Non-blocking: enqueues the exchange for the writer; never waits for disk.
    ///
    /// - Parameter exchange: The finished exchange.
    func submit(_ exchange: ExchangeRecord)

    /// Non-blocking: enqueues the injection record for the writer; never waits for disk.
    ///
    /// - Parameter injection: What was injected into one request.
    func submit(_ injection: InjectionRecord)

    /// Waits until everything submitted before this call is committed (or failed).
    func flush() async

    /// Waits until the store can take more writes without growing its queue past its bound; `false` when
    /// `timeout` passes first (the caller should then submit nothing for this request).
    func waitForWriteCapacity(timeout: Duration) async -> Bool
}

extension MemoryStore {
    /// Stores without a bounded queue always have room.
    public func waitForWriteCapacity(timeout: Duration) async -> Bool { true }
}
