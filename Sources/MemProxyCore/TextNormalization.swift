/// Small text helpers shared by the memory block renderer and the validators.
enum TextNormalization {
    /// `text` with leading and trailing whitespace (Unicode `White_Space`, including newlines) removed.
    static func trimmingWhitespace(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }

    /// `text` on one line: each run of whitespace (including newlines) becomes one space; the ends are trimmed.
    static func collapsingWhitespace(_ text: String) -> String {
        // Fast path (most text): ASCII whose whitespace is already single spaces between words is returned as is;
        // other ASCII is collapsed byte by byte. Only non-ASCII text pays for Unicode properties.
        var isASCII = true
        var isCollapsed = true
        var previousIsSpace = true
        for byte in text.utf8 {
            if byte >= 0x80 {
                isASCII = false
                break
            }
            let isSpace = byte == 0x20 || (byte >= 0x09 && byte <= 0x0D)
            if isSpace && (byte != 0x20 || previousIsSpace) { isCollapsed = false }
            previousIsSpace = isSpace
        }
        if isASCII {
            if isCollapsed && !previousIsSpace { return text }
            if isCollapsed && text.isEmpty { return text }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(text.utf8.count)
            var pendingSpace = false
            for byte in text.utf8 {
                if byte == 0x20 || (byte >= 0x09 && byte <= 0x0D) {
                    pendingSpace = !bytes.isEmpty
                } else {
                    if pendingSpace {
                        bytes.append(0x20)
                        pendingSpace = false
                    }
                    bytes.append(byte)
                }
            }
            return String(decoding: bytes, as: UTF8.self)
        }
        return collapsingUnicodeWhitespace(text)
    }

    /// ``collapsingWhitespace(_:)`` for any text, by Unicode scalar properties.
    static func collapsingUnicodeWhitespace(_ text: String) -> String {
        var result = String.UnicodeScalarView()
        var pendingSpace = false
        for scalar in text.unicodeScalars {
            if scalar.properties.isWhitespace {
                pendingSpace = !result.isEmpty
            } else {
                if pendingSpace {
                    result.append(" ")
                    pendingSpace = false
                }
                result.append(scalar)
            }
        }
        return String(result)
    }

    /// `text` with `<memory>` and `</memory>` (ASCII case-insensitive) replaced by `<memory_>` and `</memory_>`.
    static func neutralizingMemoryTags(_ text: String) -> String {
        guard text.utf8.contains(ASCII.lessThan) else { return text }
        let bytes = Array(text.utf8)
        let tag = Array("memory".utf8)
        var output: [UInt8] = []
        var changed = false
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            output.append(byte)
            index += 1
            guard byte == ASCII.lessThan else { continue }
            var nameStart = index
            if nameStart < bytes.count, bytes[nameStart] == ASCII.slash { nameStart += 1 }
            let close = nameStart + tag.count
            guard close < bytes.count, bytes[close] == ASCII.greaterThan else { continue }
            let matches = (0..<tag.count).allSatisfy { offset in
                let candidate = bytes[nameStart + offset]
                let lower = candidate >= 0x41 && candidate <= 0x5A ? candidate + 0x20 : candidate
                return lower == tag[offset]
            }
            guard matches else { continue }
            output.append(contentsOf: bytes[index..<close])
            output.append(ASCII.underscore)
            output.append(ASCII.greaterThan)
            index = close + 1
            changed = true
        }
        return changed ? String(decoding: output, as: UTF8.self) : text
    }

    /// Whether `needle` occurs as a contiguous byte run inside `haystack`.
    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty else { return true }
        guard haystack.count >= needle.count else { return false }
        let first = needle[0]
        var start = 0
        let lastStart = haystack.count - needle.count
        while start <= lastStart {
            if haystack[start] == first {
                var offset = 1
                while offset < needle.count, haystack[start + offset] == needle[offset] { offset += 1 }
                if offset == needle.count { return true }
            }
            start += 1
        }
        return false
    }
}
