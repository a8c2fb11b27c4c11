import Foundation
import GRDB
import GRDBSQLite

/// SQLite FTS5's own `porter unicode61` tokenizer, called directly: recall's in-memory index (``SessionIndex``)
/// splits, folds and stems text exactly as an FTS5 table declared with `tokenize = 'porter unicode61'` does.
///
/// The tokenizer lives on a private in-memory connection that this object keeps open. One FTS5 tokenizer
/// instance is not safe to share between threads (unicode61 reuses a buffer), so calls are serialised by a
/// lock; a call tokenizes one message, a few microseconds.
final class TextTokenizer: @unchecked Sendable {
    /// Tokens of one text: each token with the UTF-8 byte range it came from.
    struct Tokens {
        var tokens: [String] = []
        var starts: [Int32] = []
        var ends: [Int32] = []
    }

    private let connection: DatabaseQueue
    private let tokenizer: any FTS5Tokenizer
    private let lock = NSLock()

    /// Opens the private connection and creates the tokenizer.
    ///
    /// - Throws: When SQLite has no FTS5 or no porter tokenizer.
    init() throws {
        connection = try DatabaseQueue()
        tokenizer = try connection.inDatabase { db in try db.makeTokenizer(.porter(wrapping: .unicode61())) }
    }

    /// The tokens of `text` as FTS5 indexes a document.
    func tokens(of text: String) -> Tokens {
        var text = text
        return text.withUTF8 { buffer in tokenize(buffer, flags: FTS5Tokenization.document) }
    }

    /// The tokens of `text` as FTS5 reads a query phrase.
    func queryTokens(of text: String) -> [String] {
        var text = text
        return text.withUTF8 { buffer in tokenize(buffer, flags: FTS5Tokenization.query) }.tokens
    }

    /// The tokens of the bytes `[start, end)` of `text` (for the truncated last token of a capped text).
    func tokens(of text: String, bytes range: Range<Int>) -> [String] {
        var text = text
        return text.withUTF8 { buffer in
            tokenize(UnsafeBufferPointer(rebasing: buffer[range]), flags: FTS5Tokenization.document).tokens
        }
    }

    private func tokenize(_ buffer: UnsafeBufferPointer<UInt8>, flags: FTS5Tokenization) -> Tokens {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return Tokens() }
        let collector = Collector()
        let context = Unmanaged.passUnretained(collector).toOpaque()
        lock.lock()
        defer { lock.unlock() }
        _ = base.withMemoryRebound(to: CChar.self, capacity: buffer.count) { text in
            tokenizer.tokenize(
                context: context,
                tokenization: flags,
                pText: text,
                nText: CInt(buffer.count),
                tokenCallback: { context, _, token, count, start, end in
                    guard let context, let token, count > 0 else { return SQLITE_OK }
                    let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
                    let bytes = UnsafeRawBufferPointer(start: token, count: Int(count))
                    collector.tokens.tokens.append(String(decoding: bytes, as: UTF8.self))
                    collector.tokens.starts.append(start)
                    collector.tokens.ends.append(end)
                    return SQLITE_OK
                }
            )
        }
        return collector.tokens
    }

    private final class Collector {
        var tokens = Tokens()
    }
}
