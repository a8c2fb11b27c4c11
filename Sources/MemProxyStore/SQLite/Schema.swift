import GRDB

/// The versioned schema. Migrations are append-only: never edit a shipped one, add a new one.
enum Schema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            // Session scoping lives in the row ids: every session gets a 31-bit key, and its memories get
            // `seq = key << 32 | n`. A recall restricts the FTS5 scan to the session's rowid range, so FTS5
            // never reads another session's postings (no post-filter over all sessions, and no AND with a
            // per-session token, which doubled the cost). `seq` is an explicit INTEGER PRIMARY KEY so that
            // VACUUM never renumbers what the external-content index points at.
            try db.execute(
                sql: """
                    CREATE TABLE sessions (
                        key INTEGER PRIMARY KEY AUTOINCREMENT,
                        session_id TEXT NOT NULL UNIQUE,
                        next_seq INTEGER NOT NULL DEFAULT 0,
                        memory_count INTEGER NOT NULL DEFAULT 0
                    );

                    CREATE TABLE memories (
                        seq INTEGER PRIMARY KEY,
                        id TEXT NOT NULL UNIQUE,
                        session_id TEXT NOT NULL,
                        type TEXT NOT NULL,
                        role TEXT,
                        content TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        source TEXT NOT NULL,
                        metadata TEXT NOT NULL DEFAULT '{}',
                        exchange_id TEXT,
                        content_hash TEXT NOT NULL
                    );
                    CREATE INDEX memories_session_created ON memories(session_id, created_at);
                    CREATE INDEX memories_exchange ON memories(exchange_id) WHERE exchange_id IS NOT NULL;

                    -- The rowid range encodes the session: moving a memory means delete + insert.
                    CREATE TRIGGER memories_session_fixed BEFORE UPDATE OF session_id, seq ON memories BEGIN
                        SELECT RAISE(ABORT, 'memories.session_id and seq cannot change: delete and insert instead');
                    END;
                    CREATE TRIGGER memories_count_insert AFTER INSERT ON memories BEGIN
                        UPDATE sessions SET memory_count = memory_count + 1 WHERE session_id = new.session_id;
                    END;
                    CREATE TRIGGER memories_count_delete AFTER DELETE ON memories BEGIN
                        UPDATE sessions SET memory_count = memory_count - 1 WHERE session_id = old.session_id;
                    END;

                    CREATE VIRTUAL TABLE memories_fts USING fts5(
                        content,
                        content = 'memories', content_rowid = 'seq',
                        tokenize = 'porter unicode61'
                    );
                    CREATE TRIGGER memories_fts_insert AFTER INSERT ON memories BEGIN
                        INSERT INTO memories_fts(rowid, content) VALUES (new.seq, new.content);
                    END;
                    CREATE TRIGGER memories_fts_delete AFTER DELETE ON memories BEGIN
                        INSERT INTO memories_fts(memories_fts, rowid, content) VALUES ('delete', old.seq, old.content);
                    END;
                    CREATE TRIGGER memories_fts_update AFTER UPDATE OF content ON memories BEGIN
                        INSERT INTO memories_fts(memories_fts, rowid, content) VALUES ('delete', old.seq, old.content);
                        INSERT INTO memories_fts(rowid, content) VALUES (new.seq, new.content);
                    END;

                    CREATE TABLE exchanges (
                        id TEXT PRIMARY KEY,
                        session_id TEXT NOT NULL,
                        request_hash TEXT NOT NULL,
                        created_at REAL NOT NULL
                    );
                    CREATE INDEX exchanges_session_hash ON exchanges(session_id, request_hash);

                    CREATE TABLE injections (
                        seq INTEGER PRIMARY KEY,
                        request_id TEXT NOT NULL,
                        session_id TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        model TEXT,
                        memory_ids TEXT NOT NULL,
                        scores TEXT NOT NULL,
                        tokens INTEGER NOT NULL,
                        recall_ms REAL NOT NULL,
                        block TEXT NOT NULL
                    );
                    CREATE INDEX injections_session_created ON injections(session_id, created_at);
                    """
            )
        }
        migrator.registerMigration("v2") { db in
            // Neighbourhood index (see `NeighbourIndex`): next to v1's index of each memory's own text, a second
            // index that also holds each memory's neighbours' text and its date, re-indexed by triggers whenever
            // a neighbour is added, edited, re-dated or deleted. v1's objects are left as they were.
            try db.execute(sql: NeighbourIndex.createTable)
            try db.execute(sql: NeighbourIndex.createContextView)
            try db.execute(sql: NeighbourIndex.populate)
            for trigger in NeighbourIndex.triggers {
                try db.execute(sql: trigger)
            }
            // Procedural memories are returned first by every recall: find them without scanning the session.
            try db.execute(
                sql: "CREATE INDEX memories_procedural ON memories(session_id, created_at) WHERE type = 'procedural'"
            )
        }
        migrator.registerMigration("v3") { db in
            // Batched writes index their memories once per batch rather than once per neighbouring insert
            // (`NeighbourIndex.Batch`): a one-row flag that suspends the insert trigger inside the writer's
            // transaction. The index content is unchanged.
            try db.execute(sql: NeighbourIndex.createDeferralTable)
            try db.execute(sql: "DROP TRIGGER memories_context_fts_insert")
            try db.execute(sql: NeighbourIndex.deferrableInsertTrigger)
        }
        migrator.registerMigration("v4") { db in
            // v1's index of each memory's own text is no longer read: recall ranks the neighbourhood index, and
            // with neighbour and date weights at 0 its `content` column gives the same ranking (`SessionBM25`
            // counts lengths over the ranked columns only). Maintaining it cost about 20% of the writer's time.
            try db.execute(
                sql: """
                    DROP TRIGGER memories_fts_insert;
                    DROP TRIGGER memories_fts_delete;
                    DROP TRIGGER memories_fts_update;
                    DROP TABLE memories_fts;
                    """
            )
        }
        migrator.registerMigration("v5") { db in
            // Recall ranks an in-memory copy of each session (`RecallIndexCache`), extended by the rows inserted
            // since it was built. Any other change to a session's memories, by whoever makes it, bumps the
            // session's `revision`, and the next recall rebuilds that session's copy.
            try db.execute(
                sql: """
                    ALTER TABLE sessions ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
                    CREATE TRIGGER memories_revision_update AFTER UPDATE ON memories BEGIN
                        UPDATE sessions SET revision = revision + 1 WHERE session_id = new.session_id;
                    END;
                    CREATE TRIGGER memories_revision_delete AFTER DELETE ON memories BEGIN
                        UPDATE sessions SET revision = revision + 1 WHERE session_id = old.session_id;
                    END;
                    """
            )
        }
        migrator.registerMigration("v6") { db in
            // Recall no longer reads the neighbourhood index: `RecallEngine` computes the same rows (own text,
            // neighbours' text, date) from each session's memories in memory, with the same tokenizer and the
            // same ranking. Keeping the FTS5 table up to date cost most of the writer's time (each new memory
            // re-indexed its neighbours' rows).
            try db.execute(
                sql: """
                    DROP TRIGGER memories_context_fts_insert;
                    DROP TRIGGER memories_context_fts_delete;
                    DROP TRIGGER memories_context_fts_update;
                    DROP TRIGGER memories_context_fts_move;
                    DROP VIEW memories_neighbour_text;
                    DROP TABLE memories_context_deferral;
                    DROP TABLE memories_context_fts;
                    """
            )
        }
        migrator.registerMigration("v7") { db in
            // Memory serves three APIs: each injection record names its API, and keeps the upstream's response id
            // (Responses API) so that a request continuing that response gets the same block.
            try db.execute(
                sql: """
                    ALTER TABLE injections ADD COLUMN api TEXT NOT NULL DEFAULT 'chat.completions';
                    ALTER TABLE injections ADD COLUMN response_id TEXT;
                    CREATE INDEX injections_response ON injections(session_id, response_id)
                        WHERE response_id IS NOT NULL;
                    """
            )
        }
        migrator.registerMigration("v8") { db in
            // Explaining a past request replays recall for the text it recalled with, found by its request id.
            try db.execute(
                sql: """
                    ALTER TABLE injections ADD COLUMN query TEXT;
                    CREATE INDEX injections_request ON injections(request_id);
                    """
            )
        }
        migrator.registerMigration("v9") { db in
            // Recall by meaning (issue 12). Each memory's embedding, int8 with one scale (`CompactVector`), named by
            // the model (and dimensions) that made it; a vector of another model is stale and never ranked. A
            // session's `vector_revision` rises with every commit that stores vectors of its memories (and each
            // vector keeps the revision it came with), so an in-memory index reads only the vectors stored since.
            // Editing a memory's text drops its vector (and, by v5's trigger, raises `revision`: the index is
            // rebuilt); deleting it drops its vector and queue entry.
            // The queue holds the memories waiting for a vector, oldest first. It fills only once embeddings were
            // configured (`embedding_settings` has its row): until then nothing is queued, and the first start with
            // a model queues every memory that has no vector of it.
            try db.execute(
                sql: """
                    ALTER TABLE sessions ADD COLUMN vector_revision INTEGER NOT NULL DEFAULT 0;
                    CREATE TABLE memory_vectors (
                        seq INTEGER PRIMARY KEY,
                        session_key INTEGER NOT NULL,
                        revision INTEGER NOT NULL,
                        model TEXT NOT NULL,
                        scale REAL NOT NULL,
                        vector BLOB NOT NULL
                    );
                    CREATE INDEX memory_vectors_session ON memory_vectors(session_key, revision);
                    CREATE TABLE embedding_settings (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        model TEXT NOT NULL,
                        changed_at REAL NOT NULL
                    );
                    CREATE TABLE embedding_queue (
                        seq INTEGER PRIMARY KEY,
                        queued_at REAL NOT NULL
                    );
                    CREATE INDEX embedding_queue_age ON embedding_queue(queued_at);
                    CREATE TRIGGER embedding_queue_insert AFTER INSERT ON memories
                    WHEN EXISTS (SELECT 1 FROM embedding_settings) BEGIN
                        INSERT OR REPLACE INTO embedding_queue(seq, queued_at)
                        VALUES (new.seq, (julianday('now') - 2440587.5) * 86400.0);
                    END;
                    CREATE TRIGGER memory_vectors_content AFTER UPDATE OF content ON memories BEGIN
                        DELETE FROM memory_vectors WHERE seq = old.seq;
                        INSERT OR REPLACE INTO embedding_queue(seq, queued_at)
                        SELECT new.seq, (julianday('now') - 2440587.5) * 86400.0
                        WHERE EXISTS (SELECT 1 FROM embedding_settings);
                    END;
                    CREATE TRIGGER memory_vectors_delete AFTER DELETE ON memories BEGIN
                        DELETE FROM memory_vectors WHERE seq = old.seq;
                        DELETE FROM embedding_queue WHERE seq = old.seq;
                    END;
                    """
            )
        }
        migrator.registerMigration("v10") { db in
            // The dashboard (issue 15) lists injection records across sessions newest first, filtered by session or
            // API, and counts memories by type. An index on one column ends with the rowid (`seq`), so the two
            // injection indexes give a filter's records already in `seq` order: a page reads `limit` entries instead
            // of sorting all of a session's records (v1's index is by `created_at`) or walking the whole log for a
            // rare API. Semantic memories get the partial index procedural ones have (v2): counting them by session
            // or in total reads only them, and episodic is the rest of `sessions.memory_count`.
            try db.execute(
                sql: """
                    CREATE INDEX injections_session ON injections(session_id);
                    CREATE INDEX injections_api ON injections(api);
                    CREATE INDEX memories_semantic ON memories(session_id, created_at) WHERE type = 'semantic';
                    """
            )
        }
        return migrator
    }

    /// Bits of `seq` below the session key.
    static let sessionShift: Int64 = 32

    /// The rowid range `[lower, upper]` of the session whose key is `key`.
    static func rowRange(sessionKey key: Int64) -> (lower: Int64, upper: Int64) {
        (key << sessionShift, (key << sessionShift) | 0xFFFF_FFFF)
    }
}
