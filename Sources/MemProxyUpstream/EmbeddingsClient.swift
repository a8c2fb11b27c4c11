import Foundation
import NIOCore

/// An OpenAI-compatible embeddings client: `POST {url}/v1/embeddings` over an ``Upstream`` (the app's libcurl
/// engine), as served by OpenAI and by local servers (Ollama, llama.cpp, vLLM, text-embeddings-inference).
///
/// It asks for `base64` vectors (little-endian float32: half the bytes of a JSON float array) and also accepts float
/// arrays, which some local servers send whatever was asked. Results come back in the order of the texts, whatever
/// the order of the server's `data` items (each is placed by its `index`). The API key is sent as
/// `Authorization: Bearer` and never appears in an error.
public struct EmbeddingsClient: Sendable {
    /// The largest response read (64 MB: 64 texts of 3,072 dimensions as JSON floats take about 4 MB).
    static let responseLimit = 64 * 1024 * 1024
    /// The most of an error response's body read for its message.
    static let errorBodyLimit = 64 * 1024

    /// The full embeddings URL: `{url}/v1/embeddings`.
    public let endpoint: String
    /// The model asked for.
    public let model: String
    /// The dimensions asked for, when set (servers that cannot shorten vectors may ignore it).
    public let dimensions: Int?
    private let apiKey: String?
    private let upstream: any Upstream

    /// - Parameters:
    ///   - url: The server's base URL (`https://api.openai.com`, `http://127.0.0.1:11434`), with or without a trailing
    ///     slash; a URL that already ends in `/v1` (or `/v1/embeddings`) is not extended twice.
    ///   - model: The embedding model (`"model"` in the request).
    ///   - apiKey: Sent as `Authorization: Bearer <apiKey>`; nil or empty sends no `Authorization`.
    ///   - dimensions: Passed through as `"dimensions"` when set.
    ///   - upstream: What sends the requests (the app's `CurlEngine`).
    public init(url: String, model: String, apiKey: String?, dimensions: Int?, upstream: any Upstream) {
        var base = Substring(url)
        while base.hasSuffix("/") { base = base.dropLast() }
        if base.hasSuffix("/v1/embeddings") {
            self.endpoint = String(base)
        } else if base.hasSuffix("/v1") {
            self.endpoint = String(base) + "/embeddings"
        } else {
            self.endpoint = String(base) + "/v1/embeddings"
        }
        self.model = model
        self.apiKey = apiKey?.isEmpty == false ? apiKey : nil
        self.dimensions = dimensions
        self.upstream = upstream
    }

    /// Embeds `texts` in one request.
    ///
    /// - Parameters:
    ///   - texts: The texts, in order. An empty array returns at once, without a request.
    ///   - timeout: The whole exchange's limit (connecting is limited to the smaller of it and 5 seconds).
    /// - Returns: One vector per text, in the order of `texts`, all of the same length.
    /// - Throws: ``EmbeddingsError``; ``EmbeddingsError/isRetryable`` says whether trying again later may help.
    public func embed(_ texts: [String], timeout: Duration) async throws(EmbeddingsError) -> [[Float]] {
        guard !texts.isEmpty else { return [] }
        var headers = [(name: "Content-Type", value: "application/json")]
        if let apiKey { headers.append((name: "Authorization", value: "Bearer \(apiKey)")) }
        let body: Data
        do {
            body = try JSONEncoder().encode(
                RequestBody(input: texts, model: self.model, encodingFormat: "base64", dimensions: self.dimensions))
        } catch {
            throw self.error(.transportFailure, "the request could not be encoded: \(error)")
        }
        let total = Self.seconds(timeout)
        let request = UpstreamRequest(
            method: "POST", url: self.endpoint, headers: headers, body: ByteBuffer(bytes: body))
        let response: UpstreamResponse
        do {
            response = try await self.upstream.execute(
                request, timeouts: UpstreamTimeouts(connectSeconds: min(total, 5), totalSeconds: total))
        } catch {
            throw self.error(from: error)
        }
        guard (200..<300).contains(response.status) else {
            let text = try? await response.collect(upTo: Self.errorBodyLimit)
            throw self.error(
                .httpStatus, "the embeddings server answered \(response.status)", status: response.status,
                detail: text.flatMap { Self.serverMessage(in: $0) })
        }
        let payload: ByteBuffer
        do {
            payload = try await response.collect(upTo: Self.responseLimit)
        } catch let error as UpstreamError {
            throw self.error(from: error)
        } catch {
            throw self.error(.transportFailure, "the response could not be read: \(error)")
        }
        return try self.vectors(in: payload, count: texts.count)
    }

    /// The vectors of a 2xx response, ordered by `index`.
    func vectors(in payload: ByteBuffer, count: Int) throws(EmbeddingsError) -> [[Float]] {
        let reply: ResponseBody
        do {
            reply = try JSONDecoder().decode(ResponseBody.self, from: Data(payload.readableBytesView))
        } catch {
            throw self.error(.malformedResponse, "the response is not an embeddings list (\(Self.brief(error)))")
        }
        guard reply.data.count == count else {
            throw self.error(.malformedResponse, "the response has \(reply.data.count) embeddings for \(count) texts")
        }
        var result = [[Float]?](repeating: nil, count: count)
        var dimension: Int?
        for (position, item) in reply.data.enumerated() {
            let index = item.index ?? position
            guard result.indices.contains(index), result[index] == nil else {
                throw self.error(.malformedResponse, "the response has a missing or repeated index \(index)")
            }
            let vector: [Float]
            switch item.embedding {
            case .floats(let values): vector = values.map { Float($0) }
            case .base64(let text):
                guard let data = Data(base64Encoded: text), data.count % 4 == 0 else {
                    throw self.error(.malformedResponse, "embedding \(index) is not base64 float32")
                }
                vector = Self.littleEndianFloats(data)
            }
            guard !vector.isEmpty, vector.allSatisfy(\.isFinite) else {
                throw self.error(.malformedResponse, "embedding \(index) is empty or not a number")
            }
            guard vector.count == dimension ?? vector.count else {
                throw self.error(.malformedResponse, "the embeddings have different dimensions")
            }
            dimension = vector.count
            result[index] = vector
        }
        return result.compactMap { $0 }
    }

    private func error(from error: UpstreamError) -> EmbeddingsError {
        if error.isTimeout {
            return self.error(.timeout, "the embeddings server did not answer in time (\(error.message))")
        }
        if error.isUnreachable || error.isDisconnected {
            return self.error(.unreachable, "the embeddings server could not be reached (\(error.message))")
        }
        if error.isCancelled { return self.error(.cancelled, "the embeddings request was cancelled") }
        return self.error(.transportFailure, "the embeddings request failed (\(error.message))")
    }

    /// An error whose text cannot contain the API key.
    private func error(
        _ code: EmbeddingsError.Code, _ message: String, status: Int? = nil, detail: String? = nil
    ) -> EmbeddingsError {
        var text = detail.map { "\(message): \($0)" } ?? message
        if let apiKey { text = text.replacingOccurrences(of: apiKey, with: "[redacted]") }
        return EmbeddingsError(code, text, status: status)
    }

    /// The message of an OpenAI-shaped error body (`{"error":{"message":…}}`, or `{"error":"…"}` as some local
    /// servers send), at most 300 characters.
    static func serverMessage(in body: ByteBuffer) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
        else { return nil }
        let message =
            (object["error"] as? [String: Any])?["message"] as? String ?? object["error"] as? String
            ?? object["message"] as? String
        guard let message, !message.isEmpty else { return nil }
        return message.count > 300 ? message.prefix(300) + "…" : message
    }

    static func littleEndianFloats(_ data: Data) -> [Float] {
        var values: [Float] = []
        values.reserveCapacity(data.count / 4)
        data.withUnsafeBytes { raw in
            for offset in stride(from: 0, to: raw.count, by: 4) {
                let bits =
                    UInt32(raw[offset]) | UInt32(raw[offset + 1]) << 8 | UInt32(raw[offset + 2]) << 16
                    | UInt32(raw[offset + 3]) << 24
                values.append(Float(bitPattern: bits))
            }
        }
        return values
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return max(0.001, Double(seconds) + Double(attoseconds) / 1e18)
    }

    /// A decoding error in a few words (not the whole coding path dump).
    private static func brief(_ error: any Error) -> String {
        guard let error = error as? DecodingError else { return "not JSON" }
        switch error {
        case .keyNotFound(let key, _): return "no \"\(key.stringValue)\""
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return path.isEmpty ? "not a JSON object" : "bad value at \(path)"
        @unknown default: return "undecodable"
        }
    }
}

/// Why embedding failed. ``isRetryable`` says whether the same request may succeed later; the message never contains
/// the API key.
public struct EmbeddingsError: Error, Sendable, CustomStringConvertible {
    fileprivate enum Base: String, Sendable {
        case unreachable, timeout, httpStatus, malformedResponse, cancelled, transportFailure
    }

    /// The kind of an ``EmbeddingsError``.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        fileprivate let base: Base
        /// The server could not be connected, or closed the connection before answering.
        public static let unreachable = Code(base: .unreachable)
        /// The server did not answer within the timeout.
        public static let timeout = Code(base: .timeout)
        /// The server answered a non-2xx status (``EmbeddingsError/status``).
        public static let httpStatus = Code(base: .httpStatus)
        /// A 2xx answer that is not a list of one finite vector per text, all of one length.
        public static let malformedResponse = Code(base: .malformedResponse)
        /// The request was cancelled by memproxy.
        public static let cancelled = Code(base: .cancelled)
        /// Any other transport failure (including a response over the size limit).
        public static let transportFailure = Code(base: .transportFailure)
        /// The code's name.
        public var description: String { self.base.rawValue }
    }

    /// What went wrong.
    public let code: Code
    /// The HTTP status, for ``Code/httpStatus``.
    public let status: Int?
    /// What happened, with the server's own message for an HTTP error (truncated); never the API key.
    public let message: String

    init(_ code: Code, _ message: String, status: Int? = nil) {
        self.code = code
        self.message = message
        self.status = status
    }

    /// Whether trying again later may succeed: timeouts, an unreachable server, 408, 429 and 5xx answers.
    public var isRetryable: Bool {
        switch self.code.base {
        case .unreachable, .timeout: return true
        case .httpStatus: return self.status.map { $0 == 408 || $0 == 429 || $0 >= 500 } ?? false
        case .malformedResponse, .cancelled, .transportFailure: return false
        }
    }

    /// The code and the message.
    public var description: String { "embeddings \(self.code): \(self.message)" }
}

private struct RequestBody: Encodable {
    var input: [String]
    var model: String
    var encodingFormat: String
    var dimensions: Int?

    enum CodingKeys: String, CodingKey {
        case input, model, dimensions
        case encodingFormat = "encoding_format"
    }
}

private struct ResponseBody: Decodable {
    struct Item: Decodable {
        var index: Int?
        var embedding: Embedding
    }

    enum Embedding: Decodable {
        case floats([Double])
        case base64(String)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .base64(text)
            } else {
                self = .floats(try container.decode([Double].self))
            }
        }
    }

    var data: [Item]
}
