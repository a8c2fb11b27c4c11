@testable import MemProxyCore

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

func string(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// Parses `text`, failing the calling test with the parser's message if it is rejected.
func parse(_ text: String) throws -> JSONValue {
    try JSON.parse(bytes(text))
}

/// The parse error for `input`, or `nil` if it parsed.
func parseError(_ input: [UInt8], maxDepth: Int = 128) -> JSONParseError? {
    do {
        _ = try JSON.parse(input, maxDepth: maxDepth)
        return nil
    } catch {
        return error
    }
}
