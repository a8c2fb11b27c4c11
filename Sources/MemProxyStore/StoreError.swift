/// An error of the memory store, with a code and a message that says what to do.
public struct MemoryStoreError: Error, Sendable, CustomStringConvertible {
    fileprivate enum Base: String, Sendable {
        case cannotOpen
        case migrationFailed
        case writerAlreadyRunning
    }

    /// The kind of a ``MemoryStoreError``.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate let base: Base
        /// The database file could not be opened or created.
        public static let cannotOpen = Code(base: .cannotOpen)
        /// The schema could not be brought up to date.
        public static let migrationFailed = Code(base: .migrationFailed)
        /// `run()` was called while the writer already runs (or has run).
        public static let writerAlreadyRunning = Code(base: .writerAlreadyRunning)
        /// The code's name.
        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public let code: Code
    /// A message for operators, saying what to do.
    public let message: String
    /// The underlying error, if any.
    public let cause: (any Error)?

    init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    /// The message, followed by the cause.
    public var description: String {
        if let cause { return "\(message) (\(cause))" }
        return message
    }
}
