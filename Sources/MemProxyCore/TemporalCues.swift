/// Recognises questions about time ("When did…", "What year…", "How long…") and text that mentions a time
/// ("yesterday", "last week", "in May", "2019", "3 days ago"). General English, no I/O.
///
/// Recall uses the pair: for a question about time, memories that say *when* something happened are more
/// likely to hold the answer, so they get a boost.
public enum TemporalCues {
    /// Whether `question` asks about a time, a date or a duration: it contains the word "when", a
    /// "what/which <time unit>" pair ("what year", "which month"), "how long", or "how many <time unit>s"
    /// ("how many years").
    ///
    /// - Parameter question: Free text, e.g. the newest user message.
    /// - Returns: `true` for a temporal question.
    public static func isTemporalQuestion(_ question: String) -> Bool {
        let words = self.words(question)
        for (index, word) in words.enumerated() {
            if word.text == "when" { return true }
            guard index + 1 < words.count else { break }
            let next = words[index + 1].text
            switch word.text {
            case "what", "which":
                if questionUnits.contains(next) { return true }
            case "how":
                if next == "long" { return true }
                if next == "many", index + 2 < words.count, pluralUnits.contains(words[index + 2].text) { return true }
            default:
                break
            }
        }
        return false
    }

    /// Whether `text` mentions a time: a month or weekday name, a year (1900–2099), a clock time ("3pm",
    /// "10:30"), a relative day ("yesterday", "tonight"), "ago", a duration ("two weeks", "5 years"), or
    /// "last/next/this/past <period>" ("last weekend", "next summer").
    ///
    /// "May" and "March" count only when capitalised inside the text or next to a number, since both are also
    /// common words.
    ///
    /// - Parameter text: Any text, e.g. a stored memory.
    /// - Returns: `true` when a time expression is found.
    public static func containsTimeExpression(_ text: String) -> Bool {
        let words = self.words(text)
        for (index, word) in words.enumerated() {
            let previous = index > 0 ? words[index - 1] : Word.none
            let text = word.text
            if relativeDays.contains(text) || weekdays.contains(text) || months.contains(text) { return true }
            if text == "may" || text == "march" {
                let nextIsNumber = index + 1 < words.count && words[index + 1].isNumber
                if (word.capitalised && index > 0) || nextIsNumber || previous.isNumber { return true }
                continue
            }
            if word.isYear || word.isClockTime { return true }
            if (text == "am" || text == "pm") && previous.isNumber { return true }
            if pluralUnits.contains(text) || singularUnits.contains(text) {
                if periodModifiers.contains(previous.text) { return true }
                if pluralUnits.contains(text) && (previous.isNumber || countWords.contains(previous.text)) { return true }
            }
            if seasons.contains(text) && periodModifiers.contains(previous.text) { return true }
        }
        return false
    }

    // MARK: - Vocabulary

    static let months: Set<String> = [
        "january", "february", "april", "june", "july", "august", "september", "october", "november", "december",
    ]
    static let weekdays: Set<String> = [
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "weekend", "weekends",
    ]
    static let relativeDays: Set<String> = [
        "yesterday", "today", "tonight", "tomorrow", "ago", "recently", "lately",
    ]
    static let singularUnits: Set<String> = [
        "year", "month", "week", "weekend", "day", "night", "morning", "afternoon", "evening", "hour", "decade",
        "time", "season", "semester",
    ]
    static let pluralUnits: Set<String> = [
        "years", "months", "weeks", "weekends", "days", "nights", "hours", "minutes", "decades", "semesters",
    ]
    static let questionUnits: Set<String> = [
        "year", "years", "month", "months", "day", "days", "date", "dates", "time", "week", "weekend", "season",
        "decade", "century", "hour",
    ]
    static let periodModifiers: Set<String> = ["last", "next", "this", "past", "coming", "previous", "few", "couple"]
    static let countWords: Set<String> = [
        "a", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "several", "few", "many", "couple",
    ]
    static let seasons: Set<String> = ["spring", "summer", "fall", "autumn", "winter"]

    // MARK: - Tokens

    /// A word of the text, lowercased (ASCII letters only; words with other letters never match the English
    /// vocabulary above, so they are kept as placeholders that only separate their neighbours).
    struct Word {
        var text: String
        var capitalised = false
        var isNumber = false
        var isYear = false
        var isClockTime = false

        static let none = Word(text: "")
    }

    /// Splits on anything but ASCII letters and digits (a `:` between digits stays inside the word, so that
    /// "10:30" is one word). Works on UTF-8 bytes: recall calls this on every candidate of a temporal query.
    static func words(_ text: String) -> [Word] {
        var words: [Word] = []
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        var foreign = false

        func finish() {
            defer {
                bytes.removeAll(keepingCapacity: true)
                foreign = false
            }
            guard !bytes.isEmpty else { return }
            // Longer than any word of the vocabulary, or not plain ASCII: a placeholder.
            guard !foreign, bytes.count <= 12 else {
                words.append(.none)
                return
            }
            var word = Word(text: "")
            word.capitalised = bytes[0] >= 0x41 && bytes[0] <= 0x5A
            for index in bytes.indices where bytes[index] >= 0x41 && bytes[index] <= 0x5A { bytes[index] += 0x20 }
            word.text = String(decoding: bytes, as: UTF8.self)
            if isDigit(bytes[0]) {
                let digits = bytes.allSatisfy(isDigit)
                word.isNumber =
                    digits
                    || (bytes.count >= 3 && bytes.dropLast(2).allSatisfy(isDigit)
                        && ["st", "nd", "rd", "th"].contains(String(decoding: bytes.suffix(2), as: UTF8.self)))
                if digits, bytes.count == 4, let value = Int(word.text), (1900...2099).contains(value) { word.isYear = true }
                word.isClockTime = isClockTime(bytes)
            }
            words.append(word)
        }

        for byte in text.utf8 {
            if isDigit(byte) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A) {
                bytes.append(byte)
            } else if byte >= 0x80 {
                bytes.append(byte)
                foreign = true
            } else if byte == 0x3A, let last = bytes.last, isDigit(last) {
                bytes.append(byte)
            } else {
                finish()
            }
        }
        finish()
        return words
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }

    /// `10:30`, `7pm`, `7:30am` (lowercase ASCII bytes).
    private static func isClockTime(_ word: [UInt8]) -> Bool {
        var body = word[...]
        if body.count > 2, body.suffix(2).elementsEqual("am".utf8) || body.suffix(2).elementsEqual("pm".utf8) {
            body = body.dropLast(2)
            if body.allSatisfy(isDigit) && body.count <= 2 { return true }
        }
        let parts = body.split(separator: 0x3A, omittingEmptySubsequences: false)
        return parts.count == 2 && (1...2).contains(parts[0].count) && parts[1].count == 2
            && parts.allSatisfy { $0.allSatisfy(isDigit) }
    }
}
