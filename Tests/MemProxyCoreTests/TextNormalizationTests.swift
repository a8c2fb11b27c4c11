@testable import MemProxyCore
import Testing

@Suite struct TextNormalizationTests {
    /// The ASCII fast paths give exactly what the Unicode path gives.
    @Test(arguments: [
        "", " ", "  ", "a", " a", "a ", "a b", "a  b", "a\tb", "a \n b", "\n\na\r\nb\u{0B}c\u{0C}\n",
        "already collapsed text.", "x\u{1F}y", "é  x", "a\u{A0}b", " \u{2003}a\u{3000}", "tab\t", "\u{85}z",
    ])
    func fastPathsMatchTheUnicodePath(text: String) {
        #expect(TextNormalization.collapsingWhitespace(text) == TextNormalization.collapsingUnicodeWhitespace(text))
    }

    @Test func collapsesRunsAndTrimsEnds() {
        #expect(TextNormalization.collapsingWhitespace("  one\n\ttwo   three ") == "one two three")
        #expect(TextNormalization.collapsingWhitespace("one two") == "one two")
    }
}
