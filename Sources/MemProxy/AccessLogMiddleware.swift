import CoreMetrics
import HTTPTypes
import Hummingbird
import Logging
import Synchronization

/// Timing facts that inner handlers report back to the access log (context is a value, so they share a box).
final class RequestTiming: Sendable {
    private let state = Mutex<(upstreamSeconds: Double?, streamed: Bool)>((nil, false))

    var upstreamSeconds: Double? { self.state.withLock { $0.upstreamSeconds } }

    /// Whether the response body is relayed after the handler returned (so the request ends later).
    var isStreamed: Bool { self.state.withLock { $0.streamed } }

    func recordUpstream(seconds: Double) {
        self.state.withLock { $0.upstreamSeconds = seconds }
    }

    func markStreamed() {
        self.state.withLock { $0.streamed = true }
    }
}

/// Outermost middleware: turns every error into an OpenAI-shaped response, stamps `X-Memproxy-Request-Id`,
/// and, once the response body has been fully written, logs one access line and records request metrics.
struct AccessLogMiddleware: RouterMiddleware {
    typealias Context = ProxyRequestContext

    let metrics: AppMetrics

    static let requestIDHeader = HTTPField.Name("X-Memproxy-Request-Id")!

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        let path = request.uri.path
        let method = request.method.rawValue
        self.metrics.inFlight.increment()
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            response = Self.errorResponse(error, request: request, context: context)
        }
        response.headers[Self.requestIDHeader] = context.requestID
        let status = response.status.code
        let route = Self.route(for: path)
        let metrics = self.metrics
        let logger = context.logger
        let timing = context.timing
        let finished: @Sendable (String?) -> Void = { failure in
            let seconds = Self.seconds(since: start)
            metrics.inFlight.decrement()
            metrics.recordRequest(route: route, method: method, status: status, seconds: seconds)
            guard logger.logLevel <= .info else { return }
            var metadata: Logger.Metadata = [
                "http.method": .string(method),
                "http.path": .string(path),
                "http.status": .stringConvertible(status),
                "http.duration_ms": .stringConvertible(Self.milliseconds(seconds)),
            ]
            if let upstream = timing.upstreamSeconds {
                metadata["upstream.duration_ms"] = .stringConvertible(Self.milliseconds(upstream))
            }
            if let failure {
                metadata["http.body_error"] = .string(failure)
            }
            logger.info("request", metadata: metadata)
        }
        guard timing.isStreamed else {
            // The body is already in memory: the request is done. Leaving the body untouched lets Hummingbird
            // write head and body together.
            finished(nil)
            return response
        }
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            do {
                try await body.write(writer)
            } catch {
                finished("\(error)")
                throw error
            }
            finished(nil)
        }
        return response
    }

    private static func errorResponse(_ error: any Error, request: Request, context: Context) -> Response {
        let openAIError: OpenAIError
        switch error {
        case let error as OpenAIError:
            openAIError = error
        case let error as HTTPError where error.status == .notFound:
            openAIError = .notFound(request.uri.path)
        case let error as HTTPError where error.status == .contentTooLarge:
            openAIError = OpenAIError(
                status: .contentTooLarge,
                message: "Request body is too large.",
                code: "request_too_large"
            )
        case let error as any HTTPResponseError:
            openAIError = OpenAIError(
                status: error.status,
                message: "\(error)",
                code: error.status.code >= 500 ? "server_error" : "invalid_request"
            )
        default:
            context.logger.error("unhandled error", metadata: ["error": .string("\(error)")])
            openAIError = OpenAIError(
                status: .internalServerError,
                message: "memproxy failed to handle the request. This is a bug; the log line with this request id says why.",
                type: "server_error",
                code: "internal_error"
            )
        }
        // Rendering our own error cannot fail.
        return (try? openAIError.response(from: request, context: context)) ?? Response(status: openAIError.status)
    }

    /// Bounded label set for metrics: never the raw path (ids in paths would explode cardinality).
    static func route(for path: String) -> String {
        if path == "/healthz" || path == "/metrics" { return path }
        if path.hasPrefix("/memory/v1/") { return "/memory/v1" }
        guard path.hasPrefix("/v1/") else { return "other" }
        let first = path.dropFirst(4).split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        return Self.knownResources.contains(first) ? "/v1/\(first)" : "/v1/other"
    }

    private static let knownResources: Set<String> = [
        "chat", "completions", "embeddings", "models", "responses", "messages", "moderations", "files",
        "batches", "audio", "images", "assistants", "threads", "vector_stores", "fine_tuning", "uploads",
    ]

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    static func milliseconds(_ seconds: Double) -> Double {
        (seconds * 1_000_000).rounded() / 1000
    }
}
