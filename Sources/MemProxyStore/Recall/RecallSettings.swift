/// How recall ranks a session's memories. Every knob is read per query: changing one needs no re-indexing.
///
/// Recall scores each memory with FTS5's bm25 over four indexed columns (see the schema's neighbourhood
/// index): its own text (weight 1), its neighbours' text in the session's timeline (``nearWeight``,
/// ``farWeight``) and its date in words (``dateWeight``). The best candidates are then re-scored: memory
/// type (``semanticWeight``), questions about time (``temporalBoost``) and, optionally, pseudo-relevance
/// feedback (``feedbackDocuments``). Procedural memories are always returned first, whatever the settings.
///
/// The defaults are the best configuration measured on LoCoMo (`MemProxyBench locomo`).
public struct RecallSettings: Sendable, Equatable {
    /// bm25 weight of the text of the memories just before and just after a memory in its session's timeline,
    /// relative to the memory's own text (1). 0 turns it off.
    public var nearWeight: Double = 0.5
    /// bm25 weight of the text of the second and third memories before and after it. 0 turns it off.
    public var farWeight: Double = 0.4
    /// bm25 weight of the memory's date in words (e.g. `8 May 2023`, UTC). 0 turns it off.
    public var dateWeight: Double = 1.0
    /// Score multiplier for memories that mention a time ("yesterday", "last week", "in May", "2019") when the
    /// query asks about one ("when…", "what year…", "how long…"). 1 turns it off.
    public var temporalBoost: Double = 1.5
    /// Pseudo-relevance feedback: how many of the best results lend their words to a second query. 0 turns it
    /// off.
    public var feedbackDocuments: Int = 0
    /// Pseudo-relevance feedback: the most expansion terms taken from those results.
    public var feedbackTerms: Int = 10
    /// Pseudo-relevance feedback: weight of the expansion query's score, added to the original score.
    public var feedbackWeight: Double = 0.2
    /// Score multiplier of semantic memories (facts) over episodic ones (messages) at equal relevance.
    public var semanticWeight: Double = 1.25
    /// How many candidates beyond the requested number are re-scored after bm25.
    public var rerankDepth: Int = 10
    /// The most rows bm25 scores per query; in larger sessions only the newest matching rows are ranked. Bounds
    /// recall time whatever the session size (about 1 µs per row).
    public var candidateBudget: Int = 400

    /// Recall by meaning: the weight of the vectors' part in the fused score (the words' part weighs 1 − this);
    /// used only when the query and the session have embeddings (``HybridRanking``). Config `embeddings.weight`.
    public var hybridWeight: Double = 0.4
    /// Candidates taken from each side (words, vectors) before fusion.
    var hybridDepth = 50
    /// The lexical part of a fused score is a memory's lexical score over max(the best one, this).
    var lexicalFloor = 20.0

    // Term pruning (internal; tuned with MemProxyBench).
    /// A term in the own text of more than this share of the session's memories is dropped while rarer terms
    /// remain (on the rows of the neighbourhood index, where each neighbour slot in use repeats a memory's
    /// text, the threshold scales with 1 + slots).
    var commonTermFraction = 0.2
    /// …but in small sessions a term is never "common" below this many rows.
    var minCommonDF = 50
    /// The most query terms whose frequency is probed (the first ones in the text).
    var maxProbedTerms = 16
    /// Schemas v2–v5's SQL ranker (kept as the tests' reference) counted a term's rows up to this many, then
    /// extrapolated; the in-memory ``RecallEngine`` counts exactly.
    var probeLimit = 100
    /// The most terms (the rarest ones) the final query ORs.
    var maxQueryTerms = 8

    /// The defaults.
    public init() {}

    /// Plain bm25 over each memory's own text: no neighbours, no dates, no temporal boost, no feedback, no
    /// type weights, v1's candidate budget; recall exactly as before the neighbourhood index. The reference point
    /// of the benchmarks.
    public static var baseline: RecallSettings {
        var settings = RecallSettings()
        settings.nearWeight = 0
        settings.farWeight = 0
        settings.dateWeight = 0
        settings.temporalBoost = 1
        settings.feedbackDocuments = 0
        settings.semanticWeight = 1
        settings.candidateBudget = 500
        return settings
    }

    /// What is wrong with these settings, one message per knob; empty when they are usable.
    public var problems: [String] {
        var problems: [String] = []
        func nonNegative(_ value: Double, _ name: String) {
            if !(value.isFinite && value >= 0) { problems.append("\(name) must be a finite number ≥ 0, got \(value)") }
        }
        nonNegative(nearWeight, "near_weight")
        nonNegative(farWeight, "far_weight")
        nonNegative(dateWeight, "date_weight")
        nonNegative(feedbackWeight, "feedback_weight")
        if !(hybridWeight.isFinite && (0...1).contains(hybridWeight)) {
            problems.append("embeddings.weight must be a number in 0…1, got \(hybridWeight)")
        }
        if !(temporalBoost.isFinite && temporalBoost > 0) {
            problems.append("temporal_boost must be a finite number > 0 (1 = off), got \(temporalBoost)")
        }
        if !(semanticWeight.isFinite && semanticWeight > 0) {
            problems.append("semantic_weight must be a finite number > 0 (1 = no boost), got \(semanticWeight)")
        }
        if !(0...50).contains(feedbackDocuments) { problems.append("feedback_documents must be 0…50, got \(feedbackDocuments)") }
        if !(0...50).contains(feedbackTerms) { problems.append("feedback_terms must be 0…50, got \(feedbackTerms)") }
        if !(0...1000).contains(rerankDepth) { problems.append("rerank_depth must be 0…1000, got \(rerankDepth)") }
        if !(1...1_000_000).contains(candidateBudget) {
            problems.append("candidate_budget must be 1…1000000, got \(candidateBudget)")
        }
        return problems
    }

    /// These settings with every unusable value replaced by its default (used by the store, which never
    /// fails a recall over a bad knob; validate with ``problems`` when loading configuration).
    var sanitized: RecallSettings {
        let defaults = RecallSettings()
        var settings = self
        func fix(_ value: inout Double, _ fallback: Double, allowZero: Bool) {
            if !value.isFinite || value < 0 || (!allowZero && value == 0) { value = fallback }
        }
        fix(&settings.nearWeight, defaults.nearWeight, allowZero: true)
        fix(&settings.farWeight, defaults.farWeight, allowZero: true)
        fix(&settings.dateWeight, defaults.dateWeight, allowZero: true)
        fix(&settings.feedbackWeight, defaults.feedbackWeight, allowZero: true)
        if !(settings.hybridWeight.isFinite && (0...1).contains(settings.hybridWeight)) {
            settings.hybridWeight = defaults.hybridWeight
        }
        fix(&settings.temporalBoost, defaults.temporalBoost, allowZero: false)
        fix(&settings.semanticWeight, defaults.semanticWeight, allowZero: false)
        settings.feedbackDocuments = min(max(settings.feedbackDocuments, 0), 50)
        settings.feedbackTerms = min(max(settings.feedbackTerms, 0), 50)
        settings.rerankDepth = min(max(settings.rerankDepth, 0), 1000)
        settings.candidateBudget = min(max(settings.candidateBudget, 1), 1_000_000)
        return settings
    }
}
