/// Validates the session ids clients send in `X-Session-Id`.
public enum SessionIDValidator {
    /// The maximum length of a session id, in characters.
    static let maxLength = 200

    /// Whether `id` is an acceptable session id: 1 to 200 characters (grapheme clusters, as Swift counts them)
    /// and no control characters (Unicode general category `Cc`, which includes NUL, tab, CR, LF and DEL) and no
    /// U+FFFD. Header bytes that are not UTF-8 reach us decoded as U+FFFD, so without that rule distinct ids
    /// such as `a\xFE` and `a\xFF` would share one session's memories.
    /// - Parameter id: The candidate session id.
    /// - Returns: `true` if the id can be used.
    public static func isValid(_ id: String) -> Bool {
        guard !id.isEmpty else { return false }
        // Count at most maxLength + 1 characters, so a huge header does not cost a full grapheme walk.
        var count = 0
        for _ in id {
            count += 1
            if count > maxLength { return false }
        }
        return !id.unicodeScalars.contains { $0.properties.generalCategory == .control || $0 == "\u{FFFD}" }
    }
}

/// Whether memproxy reads (injects) and/or writes (stores) memories for a request, from the memory mode header.
public struct MemoryMode: Sendable, Equatable, CustomStringConvertible {
    private enum Kind: String, Sendable {
        case on, off, read, write
    }

    private let kind: Kind

    private init(_ kind: Kind) {
        self.kind = kind
    }

    /// Read and write: recall memories into the request and store the exchange.
    public static let on = MemoryMode(.on)
    /// Neither read nor write: pass the request through untouched.
    public static let off = MemoryMode(.off)
    /// Read only: inject recalled memories but do not store this exchange.
    public static let read = MemoryMode(.read)
    /// Write only: store the exchange but do not inject memories.
    public static let write = MemoryMode(.write)

    /// Parses a header value: `on`, `off`, `read` or `write`, case-insensitive, surrounding whitespace ignored.
    /// - Parameter header: The raw header value.
    /// - Returns: `nil` for any other value.
    public init?(header: String) {
        guard let kind = Kind(rawValue: TextNormalization.trimmingWhitespace(header).lowercased()) else {
            return nil
        }
        self.kind = kind
    }

    /// Whether memories are recalled and injected.
    public var reads: Bool { kind == .on || kind == .read }

    /// Whether the exchange is stored.
    public var writes: Bool { kind == .on || kind == .write }

    /// The canonical header value: `on`, `off`, `read` or `write`.
    public var name: String { kind.rawValue }

    /// The same as ``name``.
    public var description: String { name }
}
