import Foundation
import MemProxyCore
@testable import MemProxyStore
import Testing

/// Ranking rules on top of bm25: procedural first, semantic boost, temporal questions, feedback, settings.
@Suite struct RecallRulesTests {
    @Test func proceduralMemoriesComeFirstNewestFirstWhateverTheQuery() async throws {
        let store = try makeStore()
        try store.insert([
            memory("answer in French", at: 0, type: .procedural),
            memory("my dog Rex loves the park", at: 1),
            memory("never use emoji", at: 2, type: .procedural),
            memory("Rex is a good dog", at: 3),
            memory("the user's dog is Rex", at: 4, type: .semantic),
            memory("procedural rule of another session", session: "s2", at: 5, type: .procedural),
        ])
        let found = try await store.recall(session: "s1", query: "Where does Rex like to walk?", limit: 4)
        #expect(found.map(\.memory.content).prefix(2) == ["never use emoji", "answer in French"])
        #expect(found.count == 4)
        #expect(found.dropFirst(2).allSatisfy { $0.memory.type != .procedural && $0.memory.content.contains("Rex") })
        #expect(zip(found, found.dropFirst()).allSatisfy { $0.score >= $1.score })

        // No usable term (stop words only, or nothing at all): still the standing instructions.
        for query in ["What is it that you do?", "", "zzz-no-match"] {
            let standing = try await store.recall(session: "s1", query: query, limit: 10)
            #expect(standing.map(\.memory.content) == ["never use emoji", "answer in French"])
        }
        // They count toward the limit.
        #expect(try await store.recall(session: "s1", query: "Rex", limit: 1).map(\.memory.content) == ["never use emoji"])
        #expect(try await store.recall(session: "s1", query: "Rex", limit: 0).isEmpty)
        // Another session's instructions never leak.
        #expect(try await store.recall(session: "s1", query: "procedural rule", limit: 10).allSatisfy { $0.memory.sessionID == "s1" })
        #expect(try await store.recall(session: "s3", query: "", limit: 10).isEmpty)
    }

    /// Issue 12: neighbour context is for the turns of a conversation. A fact edited so that it no longer mentions
    /// "thunder" is not recalled for "thunder" just because the messages around it do; and a fact's words do not
    /// make the messages around it match.
    @Test func onlyEpisodicMemoriesTakeTheirNeighboursText() async throws {
        let store = try makeStore()
        try store.insert([
            memory("I love the sound of thunder at night", at: 0),
            memory("The user's favourite weather is a thunderstorm", at: 1, type: .semantic),
            memory("Thunder makes my dog hide under the bed", at: 2),
            memory("We talked about the garden today", at: 3),
            memory("The user grows purple tomatoes", at: 4, type: .semantic),
            memory("We talked about the kitchen today", at: 5),
        ])
        let fact = try #require(try store.memories(session: "s1").first { $0.type == .semantic })
        _ = try await store.update(
            session: "s1", id: fact.id,
            changes: MemoryChanges(content: "The user's favourite weather is light rain", updatedAt: baseDate + 10))
        let thunder = try await store.recall(session: "s1", query: "thunder", limit: 10).map(\.memory.content)
        #expect(!thunder.contains("The user's favourite weather is light rain"))
        #expect(
            Array(thunder.prefix(2)).sorted()
                == ["I love the sound of thunder at night", "Thunder makes my dog hide under the bed"])
        // The fact's own words still find it; they do not pull in the episodic memories around it.
        let tomatoes = try await store.recall(session: "s1", query: "purple tomatoes", limit: 10).map(\.memory.content)
        #expect(tomatoes == ["The user grows purple tomatoes"])
        // Between episodic memories, neighbours still count: "garden" finds the memory after it too.
        let garden = try await store.recall(session: "s1", query: "garden", limit: 10).map(\.memory.content)
        #expect(garden.first == "We talked about the garden today")
    }

    @Test func semanticMemoriesWinAtEqualRelevance() async throws {
        // Two memories with the same text are each other's only neighbour, so their bm25 is identical.
        let store = try makeStore()
        try store.insert([
            memory("the user's dog is called Rex", at: 0, type: .semantic),
            memory("the user's dog is called Rex", at: 1, type: .episodic),
        ])
        let found = try await store.recall(session: "s1", query: "dog name", limit: 2)
        #expect(found.map(\.memory.type) == [.semantic, .episodic])
        #expect(found[0].score > found[1].score)
        // Without the boost the tie goes to the newer one.
        let plain = try makeStore(path: store.configuration.path) { $0.recall.semanticWeight = 1 }
        #expect(try await plain.recall(session: "s1", query: "dog name", limit: 2).map(\.memory.type) == [.episodic, .semantic])
    }

    @Test func questionsAboutTimePreferMemoriesThatSayWhen() async throws {
        let store = try makeStore()
        try store.insert([
            memory("we went hiking yesterday", at: 0),
            memory("we went hiking together", at: 1),
        ])
        let when = try await store.recall(session: "s1", query: "When did we go hiking?", limit: 2)
        #expect(when.map(\.memory.content) == ["we went hiking yesterday", "we went hiking together"])
        // Not a question about time: a tie, newest first.
        let what = try await store.recall(session: "s1", query: "Did we go hiking?", limit: 2)
        #expect(what.map(\.memory.content) == ["we went hiking together", "we went hiking yesterday"])
        let off = try makeStore(path: store.configuration.path) { $0.recall.temporalBoost = 1 }
        #expect(try await off.recall(session: "s1", query: "When did we go hiking?", limit: 1).map(\.memory.content) == [
            "we went hiking together"
        ])
    }

    @Test func feedbackFindsMemoriesThatShareWordsWithTheBestResults() async throws {
        let path = try temporaryDatabasePath()
        let filler = (0..<8).map { memory("filler note number \($0) about the weather", at: Double(10 + $0)) }
        try makeStore(path: path).insert(
            [memory("my puppy Biscuit adores the beach", at: 0)] + filler
                + [memory("Biscuit chewed the sofa cushions", at: 50)]
        )
        let plain = try makeStore(path: path)
        #expect(try await plain.recall(session: "s1", query: "puppy", limit: 10).map(\.memory.content).contains("Biscuit chewed the sofa cushions") == false)
        let feedback = try makeStore(path: path) { $0.recall.feedbackDocuments = 1 }
        let found = try await feedback.recall(session: "s1", query: "puppy", limit: 10)
        #expect(found.first?.memory.content == "my puppy Biscuit adores the beach")
        #expect(found.map(\.memory.content).contains("Biscuit chewed the sofa cushions"))
    }

    @Test func badSettingsAreReportedAndFallBackToDefaults() {
        var settings = RecallSettings()
        #expect(settings.problems.isEmpty)
        #expect(RecallSettings.baseline.problems.isEmpty)
        settings.nearWeight = -1
        settings.farWeight = .nan
        settings.temporalBoost = 0
        settings.semanticWeight = .infinity
        settings.feedbackDocuments = -3
        settings.candidateBudget = 0
        #expect(settings.problems.count == 6)
        let fixed = settings.sanitized
        let defaults = RecallSettings()
        #expect(fixed.nearWeight == defaults.nearWeight)
        #expect(fixed.farWeight == defaults.farWeight)
        #expect(fixed.temporalBoost == defaults.temporalBoost)
        #expect(fixed.semanticWeight == defaults.semanticWeight)
        #expect(fixed.feedbackDocuments == 0)
        #expect(fixed.candidateBudget == 1)
        #expect(fixed.problems.isEmpty)
    }

    @Test func everyKnobCombinationAnswersWithinTheSession() async throws {
        let store = try makeStore()
        try store.insert((0..<30).map { memory("note \($0) about the garden in May", at: Double($0 * 3600)) })
        try store.insert([memory("note about the garden", session: "other")])
        var variants: [RecallSettings] = [.baseline, RecallSettings()]
        for knob in 0..<5 {
            var settings = RecallSettings.baseline
            switch knob {
            case 0: settings.nearWeight = 0.5
            case 1: settings.farWeight = 0.4
            case 2: settings.dateWeight = 1
            case 3: settings.temporalBoost = 2
            default: settings.feedbackDocuments = 3
            }
            variants.append(settings)
        }
        for settings in variants {
            let configured = try makeStore(path: store.configuration.path) { $0.recall = settings }
            let found = try await configured.recall(session: "s1", query: "When was the garden note written in May?", limit: 5)
            #expect(found.count == 5)
            #expect(found.allSatisfy { $0.memory.sessionID == "s1" })
            #expect(Set(found.map(\.memory.id)).count == 5)
            #expect(zip(found, found.dropFirst()).allSatisfy { $0.score >= $1.score })
        }
    }
}

@Suite struct TemporalCuesTests {
    @Test(arguments: [
        "When did Caroline go to the support group?", "What year did you move?", "In which month was the trip?",
        "How long has she been painting?", "How many years did it take?", "Since when do you play piano?",
    ])
    func temporalQuestions(_ question: String) {
        #expect(TemporalCues.isTemporalQuestion(question))
    }

    @Test(arguments: [
        "What did Caroline research?", "Where does the dog sleep?", "How many dogs do they have?",
        "Which book did she like?", "How is the weather?",
    ])
    func otherQuestions(_ question: String) {
        #expect(!TemporalCues.isTemporalQuestion(question))
    }

    @Test(arguments: [
        "I went to a support group yesterday", "We moved in 2019.", "See you next week!", "It was 3 days ago",
        "The party is on Saturday", "Back in May we painted", "Meet me at 7pm", "the train leaves at 10:30",
        "two weeks of rain", "I started last summer", "born on 4 March", "We met in December", "May 7 works",
    ])
    func timeExpressions(_ text: String) {
        #expect(TemporalCues.containsTimeExpression(text))
    }

    @Test(arguments: [
        "May I ask you something?", "I painted a lake", "We march on", "The week was long", "Café 2 people",
        "", "3 dogs and 1500 cats", "これは日本語です 2023年",
    ])
    func noTimeExpression(_ text: String) {
        #expect(!TemporalCues.containsTimeExpression(text))
    }
}
