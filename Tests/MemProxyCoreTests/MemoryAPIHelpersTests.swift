import Testing

@testable import MemProxyCore

@Suite struct RFC3339Tests {
    @Test func formatsUTCWithMicrosecondsOnlyWhenNeeded() {
        #expect(RFC3339.string(fromUnixSeconds: 0) == "1970-01-01T00:00:00Z")
        #expect(RFC3339.string(fromUnixSeconds: 1_795_564_800 + 3_661.25) == "2026-11-25T01:01:01.250000Z")
        #expect(RFC3339.string(fromUnixSeconds: -0.5) == "1969-12-31T23:59:59.500000Z")
        #expect(RFC3339.string(fromUnixSeconds: 951_782_400) == "2000-02-29T00:00:00Z")
    }

    @Test func parsesOffsetsFractionsAndRejectsNonsense() {
        #expect(RFC3339.unixSeconds(from: "2026-11-25T01:01:01.25Z") == 1_795_564_800 + 3_661.25)
        #expect(RFC3339.unixSeconds(from: "2026-11-25t02:01:01+01:00") == 1_795_568_461.0)
        #expect(RFC3339.unixSeconds(from: "2026-11-24 20:01:01-05:00") == 1_795_568_461.0)
        #expect(RFC3339.unixSeconds(from: "1969-12-31T23:59:59.5Z") == -0.5)
        for bad in [
            "", "2026-11-25", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-11-25T24:00:00Z",
            "2026-11-25T01:01:01", "2026-11-25T01:01:01.Z", "2026-11-25T01:01:01Zjunk", "yesterday",
        ] {
            #expect(RFC3339.unixSeconds(from: bad) == nil, "\(bad)")
        }
    }

    @Test func microsecondsRoundTripExactly() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let seconds = Double(generator.next(upperBound: UInt64(4_000_000_000))) + Double.random(in: 0..<1)
            let text = RFC3339.string(fromUnixSeconds: seconds)
            let parsed = RFC3339.unixSeconds(from: text)
            #expect(parsed.map { RFC3339.string(fromUnixSeconds: $0) } == text)
            #expect(abs((parsed ?? 0) - seconds) < 0.000_001)
        }
    }
}

@Suite struct InjectionOrderTests {
    func item(_ id: String, _ type: String, _ score: Double) -> InjectableMemory {
        InjectableMemory(id: id, type: type, content: id, createdAt: 0, score: score)
    }

    @Test func proceduralFirstThenRecallOrderWithFactsFirstAtEqualScores() {
        let ordered = InjectionOrder.candidates(
            procedural: [item("p2", "procedural", 0), item("p1", "procedural", 0)],
            recalled: [
                item("e3", "episodic", 3), item("e1", "episodic", 2), item("s1", "semantic", 2),
                item("p1", "procedural", 5), item("e2", "episodic", 2), item("s2", "semantic", 1),
            ]
        )
        #expect(ordered.map(\.id) == ["p2", "p1", "e3", "s1", "e1", "e2", "s2"])
        #expect(ordered[1].score == 5)
        #expect(ordered.map(\.score) == [0, 5, 3, 2, 2, 2, 1])
    }

    @Test func recallOrderIsKeptOtherwise() {
        // Not re-sorted: recall may rank by more than the score it reports.
        let ordered = InjectionOrder.candidates(
            procedural: [], recalled: [item("a", "episodic", 1), item("b", "semantic", 2), item("c", "episodic", 1)])
        #expect(ordered.map(\.id) == ["a", "b", "c"])
    }
}
