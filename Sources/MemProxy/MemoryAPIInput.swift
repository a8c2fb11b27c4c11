import Foundation
import HTTPTypes
import MemProxyCore
import MemProxyStore

/// Validation of everything a client (HTTP or CLI) hands the memory API. Every violation is a 400 whose
/// `param` names the field and whose message says what is accepted.
enum MemoryInput {
    static let maxContentBytes = 32 * 1024
    static let maxMetadataBytes = 16 * 1024
    static let maxSourceLength = 40
    static let listLimit = (default: 50, range: 1...500)
    /// Explicit `top_k` of a recall preview (the default is `memory.top_k`).
    static let topKRange = 1...50

    static func invalid(_ message: String, param: String?, code: String = "invalid_request") -> OpenAIError {
        OpenAIError(status: .badRequest, message: message, param: param, code: code, shouldRetry: false)
    }

    static func session(_ session: String) throws -> String {
        guard SessionIDValidator.isValid(session) else {
            throw invalid(
                "The session id is not valid: use 1 to 200 characters without control characters.",
                param: "session",
                code: "invalid_session_id"
            )
        }
        return session
    }

    static func content(_ content: String, param: String = "content") throws -> String {
        guard !content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw invalid("\(param) must not be empty.", param: param)
        }
        guard content.utf8.count <= maxContentBytes else {
            throw invalid(
                "\(param) is \(content.utf8.count) bytes; the limit is \(maxContentBytes) bytes (32 KiB). Split it into several memories.",
                param: param
            )
        }
        return content
    }

    static func type(_ name: String?) throws -> MemoryType? {
        guard let name else { return nil }
        guard let type = MemoryType(rawValue: name) else {
            throw invalid("type must be episodic, semantic or procedural (got \"\(name.prefix(40))\").", param: "type")
        }
        return type
    }

    /// A metadata object as compact JSON text (key order kept).
    static func metadata(_ value: JSONValue?) throws -> String? {
        guard let value else { return nil }
        guard case .object = value else { throw invalid("metadata must be a JSON object.", param: "metadata") }
        let bytes = value.serialized()
        guard bytes.count <= maxMetadataBytes else {
            throw invalid(
                "metadata is \(bytes.count) bytes of JSON; the limit is \(maxMetadataBytes) bytes (16 KiB).",
                param: "metadata"
            )
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Metadata given as JSON text (the CLI's `--metadata`).
    static func metadata(text: String?) throws -> String? {
        guard let text else { return nil }
        do {
            return try metadata(JSON.parse(Array(text.utf8)))
        } catch let error as OpenAIError {
            throw error
        } catch {
            throw invalid("metadata is not valid JSON: \(error)", param: "metadata")
        }
    }

    static func limit(_ value: Int?, name: String = "limit", bounds: (default: Int, range: ClosedRange<Int>)) throws
        -> Int
    {
        guard let value else { return bounds.default }
        guard bounds.range.contains(value) else {
            throw invalid(
                "\(name) must be between \(bounds.range.lowerBound) and \(bounds.range.upperBound) (got \(value)).",
                param: name
            )
        }
        return value
    }

    static func cursor<Cursor>(_ token: String?, _ parse: (String) -> Cursor?) throws -> Cursor? {
        guard let token else { return nil }
        guard let cursor = parse(token) else {
            throw invalid("cursor is not a cursor this API returned; start again without it.", param: "cursor")
        }
        return cursor
    }

    // MARK: - JSON bodies

    /// The request body as a JSON object whose keys are all in `allowed`.
    static func object(_ bytes: some Collection<UInt8>, allowed: Set<String>) throws -> JSONObject {
        let value: JSONValue
        do {
            value = try JSON.parse(bytes)
        } catch {
            throw invalid("The request body is not valid JSON: \(error.message).", param: nil, code: "invalid_json")
        }
        guard case .object(let object) = value else {
            throw invalid("The request body must be a JSON object.", param: nil, code: "invalid_json")
        }
        for key in object.keys where !allowed.contains(key) {
            throw invalid(
                "Unknown field \"\(key.prefix(40))\"; accepted fields: \(allowed.sorted().joined(separator: ", ")).",
                param: key
            )
        }
        return object
    }

    /// `object[key]` as a string; `nil` when absent or null.
    static func string(_ object: JSONObject, _ key: String) throws -> String? {
        switch object[key] {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw invalid("\(key) must be a string.", param: key)
        }
    }

    /// `object[key]` as an integer; `nil` when absent or null.
    static func bool(_ object: JSONObject, _ key: String) throws -> Bool? {
        switch object[key] {
        case nil, .null?: return nil
        case .bool(let value)?: return value
        default: throw invalid("\(key) must be true or false.", param: key)
        }
    }

    static func int(_ object: JSONObject, _ key: String) throws -> Int? {
        switch object[key] {
        case nil, .null?: return nil
        case .number(let literal)?:
            if let value = Int(literal) { return value }
            throw invalid("\(key) must be a whole number.", param: key)
        default: throw invalid("\(key) must be a whole number.", param: key)
        }
    }

    /// A query-string integer.
    static func int(query value: String?, _ name: String) throws -> Int? {
        guard let value else { return nil }
        guard let number = Int(value) else { throw invalid("\(name) must be a whole number.", param: name) }
        return number
    }

    // MARK: - Import

    /// Parses JSON Lines of memory objects (as written by export) into memories of `session`.
    ///
    /// Accepted per line: `content` (required), `type` (default semantic), `role` (`user`, `assistant` or
    /// null), `metadata`, `created_at`/`updated_at` (RFC 3339; default now / `created_at`), `source` (default
    /// `import`), `id` (kept when it has memproxy's form). Other fields (`session_id`, `score`, …) are ignored.
    /// Blank lines are skipped. The first bad line rejects the whole import.
    static func importLines(_ bytes: [UInt8], session: String, now: Date) throws -> [Memory] {
        var memories: [Memory] = []
        for (index, line) in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            guard
                line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\r") && $0 != UInt8(ascii: "\t") }
                )
            else { continue }
            do {
                memories.append(try importLine(line, session: session, now: now))
            } catch let error as OpenAIError {
                var error = error
                error.message = "line \(index + 1): " + error.message
                throw error
            }
        }
        return memories
    }

    private static func importLine(_ line: ArraySlice<UInt8>, session: String, now: Date) throws -> Memory {
        let object: JSONObject
        do {
            guard case .object(let parsed) = try JSON.parse(line) else {
                throw invalid("each line must be a JSON object.", param: nil, code: "invalid_json")
            }
            object = parsed
        } catch let error as JSONParseError {
            throw invalid("not valid JSON: \(error.message).", param: nil, code: "invalid_json")
        }
        guard let content = try string(object, "content") else {
            throw invalid("content is required.", param: "content")
        }
        let role = try string(object, "role")
        guard role == nil || role == "user" || role == "assistant" else {
            throw invalid("role must be \"user\", \"assistant\" or null.", param: "role")
        }
        let source = try string(object, "source") ?? "import"
        guard !source.isEmpty, source.count <= maxSourceLength,
            source.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" })
        else { throw invalid("source must be 1 to 40 letters, digits, '-' or '_'.", param: "source") }
        let createdAt = try time(object, "created_at") ?? now
        let id = try string(object, "id").flatMap { isMemoryID($0) ? $0 : nil } ?? Memory.makeID()
        return Memory(
            id: id,
            sessionID: session,
            type: try type(try string(object, "type")) ?? .semantic,
            role: role,
            content: try self.content(content),
            createdAt: createdAt,
            updatedAt: try time(object, "updated_at") ?? createdAt,
            source: source,
            metadata: try metadata(object["metadata"].flatMap { $0 == .null ? nil : $0 }) ?? "{}"
        )
    }

    private static func time(_ object: JSONObject, _ key: String) throws -> Date? {
        guard let text = try string(object, key) else { return nil }
        guard let seconds = RFC3339.unixSeconds(from: text) else {
            throw invalid("\(key) must be an RFC 3339 time such as 2026-11-25T10:00:00Z.", param: key)
        }
        return Date(timeIntervalSince1970: seconds)
    }

    /// `mem_` followed by 24 lowercase hex digits, the form ``Memory/makeID()`` produces.
    static func isMemoryID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        return bytes.count == 28 && id.hasPrefix("mem_")
            && bytes.dropFirst(4).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}
