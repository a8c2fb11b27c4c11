/// Builds safe SQLite FTS5 queries from arbitrary user text.
///
/// User text must never reach `MATCH` unquoted: `"`, `AND`, `OR`, `NOT`, `NEAR(`, `*`, `^`, `:`, `-`
/// and parentheses are FTS5 syntax. ``terms(from:)`` keeps only letters and digits, so every term can be
/// wrapped in double quotes as a plain phrase.
public enum FTSQueryBuilder {
    /// The most terms a query keeps (the first ones, in order of appearance).
    public static let maxTerms = 32

    /// Splits `text` into lowercase search terms the way SQLite's `unicode61` tokenizer does (anything
    /// that is not a letter or a number separates tokens; non-ASCII letters are kept), then drops English
    /// stop words and duplicates and keeps at most ``maxTerms`` terms.
    ///
    /// - Parameter text: Any text, e.g. the newest user message.
    /// - Returns: Terms in order of first appearance; empty when only stop words or punctuation remain.
    public static func terms(from text: String) -> [String] {
        var result: [String] = []
        var seen: Set<String> = []
        var current = String.UnicodeScalarView()

        func finishToken() {
            guard !current.isEmpty else { return }
            let token = String(current).lowercased()
            current = String.UnicodeScalarView()
            guard !StopWords.english.contains(token), seen.insert(token).inserted else { return }
            result.append(token)
        }

        for scalar in text.unicodeScalars {
            if result.count >= maxTerms { break }
            if isTokenScalar(scalar) {
                current.append(scalar)
            } else {
                finishToken()
            }
        }
        if result.count < maxTerms { finishToken() }
        return result
    }

    /// An FTS5 expression matching any of `terms`: each term double-quoted (inner quotes doubled), joined
    /// by `OR`, e.g. `"dog" OR "rex"`.
    ///
    /// - Parameter terms: Terms, normally from ``terms(from:)``.
    /// - Returns: The expression, or `nil` when there is no non-empty term.
    public static func matchExpression(terms: [String]) -> String? {
        let phrases = terms.filter { !$0.isEmpty }.map(quoted)
        return phrases.isEmpty ? nil : phrases.joined(separator: " OR ")
    }

    /// ``matchExpression(terms:)`` restricted to the named columns, e.g. `{content near}: ("dog" OR "rex")`.
    ///
    /// - Parameters:
    ///   - terms: Terms, normally from ``terms(from:)``.
    ///   - columns: Column names of the FTS5 table. They are the caller's identifiers, never user text; an
    ///     empty list means every column.
    /// - Returns: The expression, or `nil` when there is no non-empty term.
    public static func matchExpression(terms: [String], columns: [String]) -> String? {
        guard let expression = matchExpression(terms: terms) else { return nil }
        guard !columns.isEmpty else { return expression }
        return "{" + columns.joined(separator: " ") + "}: (" + expression + ")"
    }

    /// `term` as an FTS5 string: wrapped in double quotes, any double quote inside doubled.
    ///
    /// - Parameter term: Any text.
    /// - Returns: A phrase that FTS5 reads as plain text.
    public static func quoted(_ term: String) -> String {
        "\"" + term.split(separator: "\"", omittingEmptySubsequences: false).joined(separator: "\"\"") + "\""
    }

    /// Token characters of `unicode61` with its default `categories` (`L* N* Co`), plus combining marks so
    /// that decomposed accents stay inside their word.
    static func isTokenScalar(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII {
            let value = scalar.value
            return (value >= 0x30 && value <= 0x39) || (value >= 0x41 && value <= 0x5A)
                || (value >= 0x61 && value <= 0x7A)
        }
        switch scalar.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter,
            .decimalNumber, .letterNumber, .otherNumber, .privateUse, .nonspacingMark, .spacingMark,
            .enclosingMark:
            return true
        default:
            return false
        }
    }
}
