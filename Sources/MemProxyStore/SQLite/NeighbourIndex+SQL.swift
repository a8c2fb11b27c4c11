import GRDB

/// The SQL of the full-text index that held the neighbourhood rows (``NeighbourIndex``) in schemas `v2`–`v5`.
///
/// Schemas `v2`–`v5` kept these rows in the FTS5 table `memories_context_fts`, re-indexed by triggers (and, from
/// `v3`, once per writer batch) whenever a neighbour changed. Since `v6` they are computed in memory from each
/// session's memories (``SessionIndex``, ranked by ``RecallEngine``, identically); the SQL below stays because
/// the migrations that created and filled the table still run, in order, on every new database.
extension NeighbourIndex {
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
    /// (schema v3's `NeighbourIndex.Batch`). Only ever set inside a writing transaction, and cleared before that transaction
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
