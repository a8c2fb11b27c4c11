/// A JSON value that preserves what a client sent: object key order and the literal text of numbers.
///
/// memproxy edits client request bodies and must re-emit every field it does not touch exactly as received,
/// so this type deliberately does not interpret numbers (`1.0`, `1e5` and `-0` stay as written) and keeps
/// objects as ordered key/value pairs.
///
/// Equality is structural and order-sensitive: `{"a":1,"b":2}` and `{"b":2,"a":1}` are different values, and
/// numbers compare by their literal text (`1` is not equal to `1.0`).
public enum JSONValue: Sendable, Hashable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, stored as its raw literal text (for example `"-0"`, `"1.0"`, `"1e5"`) and re-emitted verbatim.
    ///
    /// The serializer writes this text unchanged; callers that build a value by hand must pass a valid
    /// RFC 8259 number literal.
    case number(String)
    /// A string (already unescaped).
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object with its key order preserved.
    case object(JSONObject)
}

extension JSONValue {
    /// The string payload, or `nil` if this is not a string.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The object payload, or `nil` if this is not an object.
    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// The array payload, or `nil` if this is not an array.
    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// The boolean payload, or `nil` if this is not `true`/`false`.
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The number as an `Int` when its literal is a plain integer (`0`, `-3`); `nil` otherwise.
    var intValue: Int? {
        if case .number(let text) = self { return Int(text) }
        return nil
    }
}

/// A JSON object: key/value pairs in the order they were received or inserted.
///
/// Lookups are linear scans, which is faster than hashing for the small objects found in API requests.
/// Keys are unique: when the input (parsed text or the initializer's pairs) repeats a key, the **last** value
/// wins and is stored at the position where the key **first** appeared, matching what most JSON parsers
/// (and therefore the upstream) see while keeping the original field order.
public struct JSONObject: Sendable, Hashable, Sequence {
    /// One key/value pair.
    public typealias Element = (key: String, value: JSONValue)

    struct Entry: Sendable, Hashable {
        var key: String
        var value: JSONValue
    }

    private(set) var entries: [Entry]

    /// Creates an object from pairs in order; a repeated key keeps the last value at the first key's position.
    /// - Parameter pairs: The key/value pairs, in output order.
    public init(_ pairs: [(String, JSONValue)] = []) {
        entries = []
        entries.reserveCapacity(pairs.count)
        if pairs.count <= 16 {
            for (key, value) in pairs {
                if let index = entries.firstIndex(where: { $0.key == key }) {
                    entries[index].value = value
                } else {
                    entries.append(Entry(key: key, value: value))
                }
            }
        } else {
            var positions: [String: Int] = [:]
            positions.reserveCapacity(pairs.count)
            for (key, value) in pairs {
                if let index = positions[key] {
                    entries[index].value = value
                } else {
                    positions[key] = entries.count
                    entries.append(Entry(key: key, value: value))
                }
            }
        }
    }

    /// The value for `key`, or `nil` if absent.
    ///
    /// Setting a value for an existing key replaces it in place (the key keeps its position); setting a new key
    /// appends it; setting `nil` removes the key.
    /// - Parameter key: The member name.
    public subscript(key: String) -> JSONValue? {
        get {
            for entry in entries where entry.key == key {
                return entry.value
            }
            return nil
        }
        set {
            let index = entries.firstIndex(where: { $0.key == key })
            switch (index, newValue) {
            case (let index?, let value?):
                entries[index].value = value
            case (let index?, nil):
                entries.remove(at: index)
            case (nil, let value?):
                entries.append(Entry(key: key, value: value))
            case (nil, nil):
                break
            }
        }
    }

    /// The keys in order.
    public var keys: [String] { entries.map(\.key) }

    /// The number of members.
    public var count: Int { entries.count }

    /// Edits the value stored under `key` in place, without copying it; returns `false` if the key is absent.
    ///
    /// The value is moved out of storage while `body` runs, so a nested array or object can be mutated without
    /// triggering a copy-on-write of its storage.
    @discardableResult
    mutating func modifyValue(forKey key: String, _ body: (inout JSONValue) -> Void) -> Bool {
        guard let index = entries.firstIndex(where: { $0.key == key }) else { return false }
        var value = entries[index].value
        entries[index].value = .null
        body(&value)
        entries[index].value = value
        return true
    }

    /// Returns an iterator over the pairs in order.
    public func makeIterator() -> Iterator {
        Iterator(base: entries.makeIterator())
    }

    /// Iterates the pairs of a ``JSONObject`` in order.
    public struct Iterator: IteratorProtocol {
        var base: IndexingIterator<[Entry]>

        /// Returns the next pair, or `nil` at the end.
        public mutating func next() -> Element? {
            guard let entry = base.next() else { return nil }
            return (key: entry.key, value: entry.value)
        }
    }
}

/// Why a JSON document was rejected, with the byte offset where the problem was found.
public struct JSONParseError: Error, Sendable, CustomStringConvertible {
    /// A human-readable description that includes the offset, such as `unexpected character 'x' at byte 17`.
    public var message: String
    /// The zero-based byte offset in the input where parsing failed.
    public var offset: Int

    init(_ problem: String, at offset: Int) {
        self.message = "\(problem) at byte \(offset)"
        self.offset = offset
    }

    /// The same as ``message``.
    public var description: String { message }
}

/// Strict RFC 8259 JSON parsing into order-preserving ``JSONValue``s.
public enum JSON {
    /// Parses one JSON document.
    ///
    /// The parser is strict: it rejects invalid UTF-8 (including overlong forms and encoded surrogates), a byte
    /// order mark, unescaped control characters, unpaired `\u` surrogates, leading zeros, trailing commas,
    /// and anything but whitespace after the value. It is iterative, so hostile nesting cannot overflow the
    /// stack: nesting deeper than `maxDepth` containers throws as soon as it is seen.
    ///
    /// - Parameters:
    ///   - bytes: The UTF-8 encoded document. Contiguous collections are parsed in place; others are copied once.
    ///   - maxDepth: The maximum number of nested arrays/objects (a top-level `[]` has depth 1).
    /// - Returns: The parsed value.
    /// - Throws: ``JSONParseError`` describing the first problem and its byte offset.
    public static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int = 128) throws(JSONParseError) -> JSONValue {
        let result =
            bytes.withContiguousStorageIfAvailable { buffer in
                parse(buffer: buffer, maxDepth: maxDepth)
            }
            ?? Array(bytes).withUnsafeBufferPointer { buffer in
                parse(buffer: buffer, maxDepth: maxDepth)
            }
        return try result.get()
    }

    private static func parse(buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int) -> Result<JSONValue, JSONParseError> {
        var parser = JSONParser(buffer: buffer, maxDepth: maxDepth)
        do {
            return .success(try parser.parseDocument())
        } catch {
            return .failure(error)
        }
    }
}
