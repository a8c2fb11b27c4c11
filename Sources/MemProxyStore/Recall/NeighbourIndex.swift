/// The neighbourhood of a memory: what recall ranks it by besides its own text.
///
/// Recall ranks each memory as a row of four columns:
/// - `content`: its own text;
/// - `near`: the text of the memory just before and just after it in its session's timeline;
/// - `far`: the text of the second and third memories before and after it;
/// - `date`: its creation date in words, e.g. `8 May 2023` (UTC).
///
/// The timeline of a session is `created_at` order, ties broken by `seq` (insertion order). Each
/// neighbour contributes at most ``maxNeighbourCharacters`` characters.
///
/// Since schema `v6` these rows are computed in memory from each session's memories (``SessionIndex``, ranked by
/// ``RecallEngine``); the SQL of the FTS5 table that held them in schemas `v2`–`v5` is SQLite's
/// (`SQLite/NeighbourIndex+SQL.swift`).
enum NeighbourIndex {
    /// Neighbours on each side that feed `near` (distance 1) and `far` (distances 2…farRadius).
    static let farRadius = 3
    /// The most characters of one neighbour's text that are indexed in another memory's row.
    static let maxNeighbourCharacters = 512
}
