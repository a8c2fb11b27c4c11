public import Foundation

/// The reads behind the web dashboard (`/ui`): sessions found by id prefix with their memory counts by type, the
/// injection log across sessions (newest first, filtered, or followed live), and cheap totals.
///
/// Unlike recall and ``ManagedMemoryStore``, these reads span sessions: they are for the operator, behind the
/// dashboard's access rule, never for a proxied request. Every read is bounded by its `limit` and answered from
/// indexes, so a page costs the same with 10,000 sessions or 1,000,000 injection records.
public protocol DashboardStore: Sendable {
    /// One page of sessions whose id starts with `prefix`, ordered by session id (byte order), each with its
    /// memory counts by type and its last activity.
    ///
    /// - Parameters:
    ///   - prefix: Only sessions whose id starts with exactly these characters (case-sensitive, no wildcards:
    ///     `%`, `_`, `*`, `[` match themselves); all sessions when `nil` or empty.
    ///   - limit: The most sessions on the page (at least 1).
    ///   - cursor: Where the previous page ended (``DashboardSessionPage/nextCursor``); `nil` for the first page.
    /// - Returns: The page. Keyset pagination: sessions created meanwhile never shift or repeat a page.
    func sessionSummaries(prefix: String?, limit: Int, after cursor: SessionCursor?) async throws
        -> DashboardSessionPage

    /// One page of injection records across all sessions, newest first (by ``StoredInjection/sequence``).
    ///
    /// - Parameters:
    ///   - filter: Exact filters on the session, request id and API; none when empty.
    ///   - limit: The most records on the page (at least 1).
    ///   - cursor: Only records older than this sequence (``DashboardInjectionPage/nextCursor``); `nil` for the
    ///     newest.
    /// - Returns: The page.
    func recentInjections(filter: DashboardInjectionFilter, limit: Int, before cursor: Int64?) async throws
        -> DashboardInjectionPage

    /// Injection records across all sessions stored after `afterSequence`, oldest first: what a live view polls
    /// for, starting from ``latestInjectionSequence()``.
    ///
    /// - Parameters:
    ///   - afterSequence: The sequence of the last record already seen (0 for all).
    ///   - limit: The most records to return; poll again while a full batch comes back.
    /// - Returns: The records, oldest first.
    func injections(afterSequence: Int64, limit: Int) async throws -> [StoredInjection]

    /// The sequence of the newest injection record; 0 when there is none.
    func latestInjectionSequence() async throws -> Int64

    /// Totals for the overview page, each read in constant or near-constant time (see ``DashboardCounts``).
    func dashboardCounts() async throws -> DashboardCounts
}

/// How many memories there are of each type.
public struct MemoryTypeCounts: Sendable, Equatable {
    /// Episodic memories (what was said).
    public var episodic: Int
    /// Semantic memories (durable facts).
    public var semantic: Int
    /// Procedural memories (standing instructions).
    public var procedural: Int

    /// All memories.
    public var total: Int { episodic + semantic + procedural }

    /// Creates counts.
    ///
    /// - Parameters:
    ///   - episodic: Episodic memories.
    ///   - semantic: Semantic memories.
    ///   - procedural: Procedural memories.
    public init(episodic: Int, semantic: Int, procedural: Int) {
        self.episodic = episodic
        self.semantic = semantic
        self.procedural = procedural
    }

    /// The count of `type`.
    ///
    /// - Parameter type: The memory type.
    public subscript(type: MemoryType) -> Int {
        switch type {
        case .semantic: semantic
        case .procedural: procedural
        default: episodic
        }
    }
}

/// A session as the dashboard lists it.
public struct DashboardSessionSummary: Sendable, Equatable {
    /// The session id.
    public var sessionID: String
    /// Its memories by type (``MemoryTypeCounts/total`` is all of them).
    public var memoryCounts: MemoryTypeCounts
    /// The newest memory's creation time or the newest injection's time, whichever is later; `nil` when neither.
    public var lastActivity: Date?

    /// Creates a summary.
    ///
    /// - Parameters:
    ///   - sessionID: The session id.
    ///   - memoryCounts: Its memories by type.
    ///   - lastActivity: Its last activity.
    public init(sessionID: String, memoryCounts: MemoryTypeCounts, lastActivity: Date?) {
        self.sessionID = sessionID
        self.memoryCounts = memoryCounts
        self.lastActivity = lastActivity
    }
}

/// A page of sessions for the dashboard.
public struct DashboardSessionPage: Sendable, Equatable {
    /// The sessions, by session id.
    public var sessions: [DashboardSessionSummary]
    /// Where the next page starts (pass it back with the same prefix); `nil` on the last page.
    public var nextCursor: SessionCursor?

    /// Creates a page.
    ///
    /// - Parameters:
    ///   - sessions: The sessions.
    ///   - nextCursor: Where the next page starts.
    public init(sessions: [DashboardSessionSummary], nextCursor: SessionCursor?) {
        self.sessions = sessions
        self.nextCursor = nextCursor
    }
}

/// Which injection records the dashboard lists. Every filter is an exact match; `nil` filters nothing.
public struct DashboardInjectionFilter: Sendable, Equatable {
    /// Only records of this session.
    public var session: String?
    /// Only records of this request id.
    public var requestID: String?
    /// Only records of this API (`chat.completions`, `responses`, `messages`).
    public var api: String?

    /// Creates a filter.
    ///
    /// - Parameters:
    ///   - session: Only this session's records.
    ///   - requestID: Only this request's records.
    ///   - api: Only this API's records.
    public init(session: String? = nil, requestID: String? = nil, api: String? = nil) {
        self.session = session
        self.requestID = requestID
        self.api = api
    }
}

/// A page of injection records, newest first.
///
/// Not `Equatable`: ``StoredInjection`` and ``InjectionRecord`` are not.
public struct DashboardInjectionPage: Sendable {
    /// The records, newest first.
    public var injections: [StoredInjection]
    /// The sequence to pass as `before` for the next page (the last record's); `nil` on the last page.
    public var nextCursor: Int64?

    /// Creates a page.
    ///
    /// - Parameters:
    ///   - injections: The records.
    ///   - nextCursor: Where the next page starts.
    public init(injections: [StoredInjection], nextCursor: Int64?) {
        self.injections = injections
        self.nextCursor = nextCursor
    }
}

/// Totals for the dashboard's overview.
public struct DashboardCounts: Sendable, Equatable {
    /// Sessions that have (or had, until forgotten) memories.
    public var sessions: Int
    /// All memories, by type.
    public var memories: MemoryTypeCounts
    /// At most this many injection records are kept: the span of their sequences (newest − oldest + 1), read
    /// from the ends of the log in constant time. Exact while no record in the middle was deleted (records are
    /// pruned oldest first; forgetting a session deletes its records wherever they are); 0 when there are none.
    public var injectionRecordsAtMost: Int
    /// The newest injection record's sequence; 0 when there is none.
    public var latestInjectionSequence: Int64

    /// Creates totals.
    ///
    /// - Parameters:
    ///   - sessions: Sessions.
    ///   - memories: Memories by type.
    ///   - injectionRecordsAtMost: The upper bound on injection records.
    ///   - latestInjectionSequence: The newest injection record's sequence.
    public init(sessions: Int, memories: MemoryTypeCounts, injectionRecordsAtMost: Int, latestInjectionSequence: Int64)
    {
        self.sessions = sessions
        self.memories = memories
        self.injectionRecordsAtMost = injectionRecordsAtMost
        self.latestInjectionSequence = latestInjectionSequence
    }
}
