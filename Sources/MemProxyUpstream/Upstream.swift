public import NIOCore

/// One HTTP request to send upstream. Headers are sent as given: the caller has already removed hop-by-hop and
/// memproxy's own headers; `Host` and `Content-Length` are set by the engine.
public struct UpstreamRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: ByteBuffer?

    public init(method: String, url: String, headers: [(name: String, value: String)], body: ByteBuffer?) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

/// Why an upstream exchange failed. The app maps each code onto an OpenAI-shaped error response.
public struct UpstreamError: Error, Sendable, CustomStringConvertible {
    private enum Kind: Sendable {
        case unreachable, timeout, disconnected, cancelled, internalFailure
    }
    private let kind: Kind
    /// Human-readable detail (libcurl's error text).
    public let message: String

    private init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The upstream could not be connected (refused, DNS failure, TLS failure).
    public static func unreachable(_ message: String) -> Self { .init(.unreachable, message) }
    /// The upstream did not answer within the configured time.
    public static func timeout(_ message: String) -> Self { .init(.timeout, message) }
    /// The upstream closed the connection before the response was complete.
    public static func disconnected(_ message: String) -> Self { .init(.disconnected, message) }
    /// The transfer was cancelled by memproxy (client went away, shutdown).
    public static func cancelled(_ message: String) -> Self { .init(.cancelled, message) }
    /// Anything else libcurl reported.
    public static func internalFailure(_ message: String) -> Self { .init(.internalFailure, message) }

    public var isUnreachable: Bool { self.kind == .unreachable }
    public var isTimeout: Bool { self.kind == .timeout }
    public var isDisconnected: Bool { self.kind == .disconnected }
    public var isCancelled: Bool { self.kind == .cancelled }

    public var description: String { "\(self.kind): \(self.message)" }
}

/// Per-request limits.
public struct UpstreamTimeouts: Sendable {
    public var connectSeconds: Double
    public var totalSeconds: Double

    public init(connectSeconds: Double, totalSeconds: Double) {
        self.connectSeconds = connectSeconds
        self.totalSeconds = totalSeconds
    }
}

/// Something that can send a request upstream and stream the answer back.
public protocol Upstream: Sendable {
    /// Sends `request` and returns once the response head has arrived; the body streams afterwards.
    func execute(_ request: UpstreamRequest, timeouts: UpstreamTimeouts) async throws(UpstreamError) -> UpstreamResponse
}

/// A response whose head has arrived. Iterate `body` to receive the payload as it arrives; dropping the
/// response (or calling `cancel()`) aborts the transfer.
public final class UpstreamResponse: Sendable {
    public let status: Int
    public let headers: [(name: String, value: String)]
    let transfer: CurlTransfer?
    private let fixedBody: ByteBuffer?

    init(status: Int, headers: [(name: String, value: String)], transfer: CurlTransfer) {
        self.status = status
        self.headers = headers
        self.transfer = transfer
        self.fixedBody = nil
    }

    /// A response with a body already in memory (for fakes and tests).
    public init(status: Int, headers: [(name: String, value: String)], body: ByteBuffer) {
        self.status = status
        self.headers = headers
        self.transfer = nil
        self.fixedBody = body
    }

    deinit {
        self.transfer?.cancel(reason: "response dropped")
    }

    /// Aborts the transfer: the upstream connection is closed and `body` ends with a cancellation error.
    public func cancel() {
        self.transfer?.cancel(reason: "cancelled by memproxy")
    }

    /// Number of TCP connections curl opened for this transfer (0 when an idle connection was reused).
    public var connectionsOpened: Int {
        self.transfer?.connectionsOpened ?? 0
    }

    /// The first value of a header, compared case-insensitively.
    public func header(_ name: String) -> String? {
        self.headers.first { $0.name.caseInsensitiveEquals(name) }?.value
    }

    /// The response payload, chunk by chunk, as it arrives. Throws `UpstreamError` if the transfer fails midway.
    public var body: Body { Body(response: self) }

    public struct Body: AsyncSequence, Sendable {
        public typealias Element = ByteBuffer
        let response: UpstreamResponse

        public func makeAsyncIterator() -> AsyncIterator {
            AsyncIterator(response: self.response, fixed: self.response.fixedBody)
        }

        public struct AsyncIterator: AsyncIteratorProtocol {
            let response: UpstreamResponse
            var fixed: ByteBuffer?

            public mutating func next() async throws -> ByteBuffer? {
                guard let transfer = self.response.transfer else {
                    defer { self.fixed = nil }
                    return self.fixed
                }
                return try await transfer.nextChunk()
            }
        }
    }

    /// Collects the whole body (bounded by `limit` bytes).
    public func collect(upTo limit: Int) async throws -> ByteBuffer {
        var result = ByteBuffer()
        for try await var chunk in self.body {
            guard result.readableBytes + chunk.readableBytes <= limit else {
                self.cancel()
                throw UpstreamError.internalFailure("response larger than \(limit) bytes")
            }
            result.writeBuffer(&chunk)
        }
        return result
    }
}

extension String {
    func caseInsensitiveEquals(_ other: String) -> Bool {
        guard self.utf8.count == other.utf8.count else { return false }
        return zip(self.utf8, other.utf8).allSatisfy { a, b in
            a == b || (a | 0x20 == b | 0x20 && (a | 0x20) >= 0x61 && (a | 0x20) <= 0x7A)
        }
    }
}
