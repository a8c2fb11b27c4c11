import GRDB

/// The SQL of the neighbourhood full-text index (schema `v2`).
///
/// (v1's `memories_fts`, an index of each memory's own text, was dropped by migration `v4`: the `content` column
/// here serves the same purpose.) Next to it, every memory is also indexed in `memories_context_fts` with
/// four columns:
/// - `content`: its own text;
/// - `near`: the text of the memory just before and just after it in its session's timeline;
/// - `far`: the text of the second and third memories before and after it;
/// - `date`: its creation date in words, e.g. `8 May 2023` (UTC).
///
/// The timeline of a session is `created_at` order, ties broken by `seq` (insertion order). Each
/// neighbour contributes at most ``maxNeighbourCharacters`` characters.
///
/// Triggers on `memories` keep the index exact for every write, whoever makes it (the writer, the memory API,
/// plain SQL): inserting, deleting, editing or re-dating a memory re-indexes it and every memory within
/// ``farRadius`` of its old and new positions. The work happens inside the writing transaction, never in
/// recall. `memories_context_fts` keeps its own copy of the indexed text (it is not an external-content
/// table), so a row is re-indexed without knowing what was indexed before.
///
/// Migration `v2` creates these objects from the constants below: changing one changes what `v2` would create,
/// so such a change needs a new migration that drops and rebuilds them.
enum NeighbourIndex {
    /// Neighbours on each side that feed `near` (distance 1) and `far` (distances 2…farRadius).
    static let farRadius = 3
    /// The most characters of one neighbour's text that are indexed in another memory's row.
    static let maxNeighbourCharacters = 512

    /// The table.
    static let table = "memories_context_fts"

    /// The indexed columns, in table order.
    enum Column: String, CaseIterable, Sendable {
        case content, near, far, date
    }

    static let createTable = """
        CREATE VIRTUAL TABLE memories_context_fts USING fts5(
            content, near, far, date,
            tokenize = 'porter unicode61'
        )
        """

    /// Indexes every existing memory (used once, by the migration), with window functions over each session.
    static let populate = """
        INSERT INTO memories_context_fts(rowid, content, near, far, date)
        SELECT seq, content,
               \(joined(["lag(content, 1) OVER w", "lead(content, 1) OVER w"])),
               \(joined((2...farRadius).map { "lag(content, \($0)) OVER w" } + (2...farRadius).map { "lead(content, \($0)) OVER w" })),
               \(dateText("created_at"))
        FROM memories
        WINDOW w AS (PARTITION BY session_id ORDER BY created_at, seq)
        """

    /// `near` and `far` of every memory, computed from the current rows (one index probe per direction and
    /// tie group, so a long run of equal `created_at` values costs no more than distinct ones).
    static let createContextView = """
        CREATE VIEW memories_neighbour_text(seq, near, far) AS
        SELECT m.seq,
               (SELECT trim(coalesce((\(neighbourText(.before, "m.session_id", "m.created_at", "m.seq", limit: 1, offset: 0))), '')
                            || ' ' ||
                            coalesce((\(neighbourText(.after, "m.session_id", "m.created_at", "m.seq", limit: 1, offset: 0))), ''))),
               (SELECT coalesce(group_concat(t, ' '), '') FROM (
                    SELECT t FROM (\(neighbourText(.before, "m.session_id", "m.created_at", "m.seq", limit: farRadius - 1, offset: 1)))
                    UNION ALL
                    SELECT t FROM (\(neighbourText(.after, "m.session_id", "m.created_at", "m.seq", limit: farRadius - 1, offset: 1)))
               ))
        FROM memories AS m
        """

    /// The triggers that keep `memories_context_fts` in step with `memories`.
    static let triggers: [String] = [
        """
        CREATE TRIGGER memories_context_fts_insert AFTER INSERT ON memories BEGIN
            INSERT INTO memories_context_fts(rowid, content, near, far, date)
            SELECT new.seq, new.content, c.near, c.far, \(dateText("new.created_at"))
            FROM memories_neighbour_text AS c WHERE c.seq = new.seq;
            \(refresh(window("new.session_id", "new.created_at", "new.seq")));
        END
        """,
        """
        CREATE TRIGGER memories_context_fts_delete AFTER DELETE ON memories BEGIN
            DELETE FROM memories_context_fts WHERE rowid = old.seq;
            \(refresh(window("old.session_id", "old.created_at", "old.seq")));
        END
        """,
        """
        CREATE TRIGGER memories_context_fts_update AFTER UPDATE OF content ON memories
        WHEN old.content IS NOT new.content AND old.created_at IS new.created_at BEGIN
            UPDATE memories_context_fts SET content = new.content WHERE rowid = new.seq;
            \(refresh(window("new.session_id", "new.created_at", "new.seq")));
        END
        """,
        // A memory that moves in the timeline leaves one neighbourhood and joins another: re-index both.
        """
        CREATE TRIGGER memories_context_fts_move AFTER UPDATE OF created_at ON memories
        WHEN old.created_at IS NOT new.created_at BEGIN
            UPDATE memories_context_fts
            SET content = new.content, date = \(dateText("new.created_at")),
                (near, far) = (SELECT c.near, c.far FROM memories_neighbour_text AS c WHERE c.seq = new.seq)
            WHERE rowid = new.seq;
            \(refresh(window("old.session_id", "old.created_at", "old.seq", excluding: "new.seq")
                + " UNION ALL " + window("new.session_id", "new.created_at", "new.seq")));
        END
        """,
    ]

    // MARK: - Deferred re-indexing (schema `v3`)

    /// One row whose `deferred` flag, while set (1), makes the insert trigger skip a new memory entirely: the
    /// writer that set it indexes the new rows and re-indexes their neighbours itself, each row once per batch
    /// (see ``Batch``). Only ever set inside a writing transaction, and cleared before that transaction
    /// commits, so no other connection ever sees it set; with the flag clear (or the row missing) every write
    /// behaves exactly as under `v2`.
    static let createDeferralTable = """
        CREATE TABLE memories_context_deferral (
            id INTEGER PRIMARY KEY CHECK (id = 0),
            deferred INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO memories_context_deferral(id, deferred) VALUES (0, 0);
        """

    /// `v2`'s insert trigger, unchanged but for its `WHEN` clause: it stands aside while the flag is set.
    static let deferrableInsertTrigger = """
        CREATE TRIGGER memories_context_fts_insert AFTER INSERT ON memories
        WHEN (SELECT deferred FROM memories_context_deferral WHERE id = 0) IS NOT 1 BEGIN
            INSERT INTO memories_context_fts(rowid, content, near, far, date)
            SELECT new.seq, new.content, c.near, c.far, \(dateText("new.created_at"))
            FROM memories_neighbour_text AS c WHERE c.seq = new.seq;
            \(refresh(window("new.session_id", "new.created_at", "new.seq")));
        END
        """

    /// Indexing of the memories one transaction inserts, deferred to the end of the transaction: every new
    /// memory, and every memory within ``farRadius`` of one in the final timeline (the only rows whose
    /// neighbours changed), is (re-)indexed exactly once, however many memories the batch appends next to it.
    ///
    /// Use: ``begin(in:)`` inside the transaction, ``inserted(_:)`` for each `seq` inserted, ``finish(in:)``
    /// before the commit. If ``finish(in:)`` is never reached the transaction must roll back. Memories whose
    /// insert was rolled back (a failed savepoint) are skipped. Updates and deletes made meanwhile keep their
    /// triggers and stay exact.
    struct Batch {
        private var seqs: [Int64] = []

        private init() {}

        /// Sets the flag: from now on in this transaction, inserts into `memories` are not indexed by trigger.
        static func begin(in db: Database) throws -> Batch {
            try db.cachedStatement(sql: "UPDATE memories_context_deferral SET deferred = 1 WHERE id = 0").execute()
            return Batch()
        }

        /// Records a memory inserted since ``begin(in:)``.
        mutating func inserted(_ seq: Int64) {
            seqs.append(seq)
        }

        /// Indexes the recorded memories and re-indexes their neighbours, then clears the flag.
        func finish(in db: Database) throws {
            var new = Set<Int64>()
            var affected = Set<Int64>()
            let position = try db.cachedStatement(sql: "SELECT session_id, created_at FROM memories WHERE seq = ?")
            let around = try db.cachedStatement(sql: window("?1", "?2", "?3"))
            for seq in seqs where !new.contains(seq) {
                // Missing: its savepoint was rolled back, and the index never saw it.
                guard let row = try Row.fetchOne(position, arguments: [seq]) else { continue }
                new.insert(seq)
                let session: String = row[0]
                let createdAt: Double = row[1]
                for neighbour in try Int64.fetchAll(around, arguments: [session, createdAt, seq]) {
                    affected.insert(neighbour)
                }
            }
            let insert = try db.cachedStatement(
                sql: """
                    INSERT INTO memories_context_fts(rowid, content, near, far, date)
                    SELECT m.seq, m.content, c.near, c.far, \(dateText("m.created_at"))
                    FROM memories AS m, memories_neighbour_text AS c WHERE m.seq = ?1 AND c.seq = ?1
                    """
            )
            let update = try db.cachedStatement(sql: refresh("?"))
            for seq in new.sorted() {
                try insert.execute(arguments: [seq])
            }
            for seq in affected.subtracting(new).sorted() {
                try update.execute(arguments: [seq])
            }
            try db.cachedStatement(sql: "UPDATE memories_context_deferral SET deferred = 0 WHERE id = 0").execute()
        }
    }

    /// Removes the neighbourhood index rows of every memory of `session`. Only for deleting a whole session:
    /// call it in the transaction that then runs `DELETE FROM memories WHERE session_id = ?`, whose triggers
    /// find no neighbour rows left to re-index (about 4× faster for a large session than the triggers alone).
    ///
    /// - Parameters:
    ///   - session: The session whose memories are about to be deleted.
    ///   - db: A connection inside the deleting transaction.
    static func dropSessionIndex(session: String, in db: Database) throws {
        guard
            let key = try Int64.fetchOne(
                db.cachedStatement(sql: "SELECT key FROM sessions WHERE session_id = ?"), arguments: [session]
            )
        else { return }
        let range = Schema.rowRange(sessionKey: key)
        try db.cachedStatement(sql: "DELETE FROM memories_context_fts WHERE rowid BETWEEN ? AND ?")
            .execute(arguments: [range.lower, range.upper])
    }

    // MARK: - SQL builders

    enum Direction { case before, after }

    /// The `limit` neighbours of position (`session`, `createdAt`, `seq`) on one side, nearest first, skipping
    /// the `offset` nearest: first the tie group (same `created_at`), then the rows beyond it. Each arm reads
    /// the `(session_id, created_at, rowid)` index in order and stops after `limit + offset` rows; `UNION ALL`
    /// yields the arms in order, so the compound needs no sort.
    static func neighbours(
        _ direction: Direction,
        _ session: String,
        _ createdAt: String,
        _ seq: String,
        columns: String,
        limit: Int,
        offset: Int,
        excluding excluded: String? = nil
    ) -> String {
        let depth = limit + offset
        let exclusion = excluded.map { " AND seq <> \($0)" } ?? ""
        let (tieOp, beyondOp, order) = direction == .before ? ("<", "<", "DESC") : (">", ">", "ASC")
        return """
            SELECT \(columns) FROM (SELECT \(columns) FROM memories
                WHERE session_id = \(session) AND created_at = \(createdAt) AND seq \(tieOp) \(seq)\(exclusion)
                ORDER BY seq \(order) LIMIT \(depth))
            UNION ALL
            SELECT \(columns) FROM (SELECT \(columns) FROM memories
                WHERE session_id = \(session) AND created_at \(beyondOp) \(createdAt)\(exclusion)
                ORDER BY created_at \(order), seq \(order) LIMIT \(depth))
            LIMIT \(limit) OFFSET \(offset)
            """
    }

    /// Neighbours' text (capped), as column `t`.
    static func neighbourText(
        _ direction: Direction, _ session: String, _ createdAt: String, _ seq: String, limit: Int, offset: Int
    ) -> String {
        let inner = neighbours(direction, session, createdAt, seq, columns: "content", limit: limit, offset: offset)
        return "SELECT substr(content, 1, \(maxNeighbourCharacters)) AS t FROM (\(inner))"
    }

    /// The `seq` of every memory within ``farRadius`` of a position, on both sides.
    static func window(_ session: String, _ createdAt: String, _ seq: String, excluding excluded: String? = nil) -> String {
        let before = neighbours(.before, session, createdAt, seq, columns: "seq", limit: farRadius, offset: 0, excluding: excluded)
        let after = neighbours(.after, session, createdAt, seq, columns: "seq", limit: farRadius, offset: 0, excluding: excluded)
        return "SELECT seq FROM (\(before)) UNION ALL SELECT seq FROM (\(after))"
    }

    /// Re-computes `near` and `far` of the rows whose `rowid` is in `seqs` (a subquery).
    static func refresh(_ seqs: String) -> String {
        """
        UPDATE memories_context_fts
            SET (near, far) = (SELECT c.near, c.far FROM memories_neighbour_text AS c WHERE c.seq = memories_context_fts.rowid)
            WHERE rowid IN (\(seqs))
        """
    }

    /// Capped texts joined by spaces, skipping missing ones (for the window-function population).
    private static func joined(_ expressions: [String]) -> String {
        let parts = expressions.map { "coalesce(substr(\($0), 1, \(maxNeighbourCharacters)), '')" }
        return "trim(" + parts.joined(separator: " || ' ' || ") + ")"
    }

    /// The date in words, e.g. `8 May 2023`, of a Unix-seconds expression, in UTC.
    static func dateText(_ seconds: String) -> String {
        let names = [
            "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
            "November", "December",
        ]
        let cases = names.enumerated().map { index, name in
            "WHEN '" + (index < 9 ? "0" : "") + "\(index + 1)' THEN '\(name)'"
        }.joined(separator: " ")
        return "(CAST(strftime('%d', \(seconds), 'unixepoch') AS INTEGER) || ' ' || "
            + "CASE strftime('%m', \(seconds), 'unixepoch') \(cases) END || ' ' || strftime('%Y', \(seconds), 'unixepoch'))"
    }
}
