import MemProxyCore
import MemProxyStore
import Testing

@Suite struct FTSQueryBuilderTests {
    @Test func tokenisesLikeUnicode61AndDropsStopWords() {
        #expect(FTSQueryBuilder.terms(from: "What is my dog's name? Rex, I think!") == ["dog", "name", "rex", "think"])
        #expect(FTSQueryBuilder.terms(from: "Café déjà-vu 2023") == ["café", "déjà", "vu", "2023"])
        #expect(FTSQueryBuilder.terms(from: "Dog DOG dog") == ["dog"])
    }

    @Test func stopWordsOnlyGiveNoExpression() {
        let terms = FTSQueryBuilder.terms(from: "What is it that you do? And I, me, myself...")
        #expect(terms.isEmpty)
        #expect(FTSQueryBuilder.matchExpression(terms: terms) == nil)
    }

    @Test func quotesEveryTermSoSyntaxIsInert() {
        let terms = FTSQueryBuilder.terms(from: #"dog" AND NEAR(cat* -mouse) col:^x"#)
        #expect(terms == ["dog", "near", "cat", "mouse", "col", "x"])
        #expect(
            FTSQueryBuilder.matchExpression(terms: ["dog", "and"])
                == #""dog" OR "and""#
        )
        #expect(FTSQueryBuilder.quoted(#"a"b"#) == #""a""b""#)
    }

    @Test func columnFilterWrapsTheExpression() {
        #expect(
            FTSQueryBuilder.matchExpression(terms: ["dog", "rex"], columns: ["content", "near"])
                == #"{content near}: ("dog" OR "rex")"#
        )
        #expect(FTSQueryBuilder.matchExpression(terms: ["dog"], columns: []) == #""dog""#)
        #expect(FTSQueryBuilder.matchExpression(terms: [], columns: ["content"]) == nil)
    }

    @Test func capsTheNumberOfTerms() {
        let text = (0..<100).map { "word\($0)" }.joined(separator: " ")
        let terms = FTSQueryBuilder.terms(from: text)
        #expect(terms.count == FTSQueryBuilder.maxTerms)
        #expect(terms.first == "word0")
    }

    @Test func stableHashIsFNV1a64() {
        #expect(StableHash.fnv1a64Hex("".utf8) == "cbf29ce484222325")
        #expect(StableHash.fnv1a64Hex("a".utf8) == "af63dc4c8601ec8c")
        #expect(StableHash.fnv1a64Hex("foobar".utf8) == "85944171f73967e8")
        // Bytes that are not contiguous take the generic path, with the same result.
        #expect(StableHash.fnv1a64Hex("foobar".utf8.lazy.map { $0 }) == "85944171f73967e8")
        #expect(StableHash.fnv1a64Hex(Array("foobar".utf8)) == "85944171f73967e8")
    }
}

@Suite struct MemoryIDTests {
    @Test func idsArePrefixedHexAndDistinct() {
        let ids = (0..<2000).map { _ in Memory.makeID() }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(50) {
            #expect(id.hasPrefix("mem_") && id.count == 28)
            #expect(id.dropFirst(4).allSatisfy { "0123456789abcdef".contains($0) })
        }
        let exchange = Memory.makeID(prefix: "exc_")
        #expect(exchange.hasPrefix("exc_") && exchange.count == 28)
    }
}
