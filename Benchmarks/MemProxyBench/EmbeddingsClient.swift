import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A minimal client of an OpenAI-compatible `POST /v1/embeddings` (batched), and a file cache of its vectors so
/// reruns of a benchmark do not embed the same text twice.
struct EmbeddingsClient: Sendable {
    let endpoint: URL
    let model: String
    let apiKey: String?
    let dimensions: Int?
    let batchSize: Int
    /// `float` or `base64`, as sent in `encoding_format`.
    let encoding: String

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `base` may be a server root (`http://127.0.0.1:8080`), a `/v1` URL or the full `/v1/embeddings` URL.
    init(base: String, model: String, apiKey: String?, dimensions: Int?, batchSize: Int, encoding: String) throws {
        var text = base
        while text.hasSuffix("/") { text.removeLast() }
        if !text.hasSuffix("/embeddings") { text += text.hasSuffix("/v1") ? "/embeddings" : "/v1/embeddings" }
        guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https" else {
            throw Failure(description: "--embeddings needs an http(s) URL, got '\(base)'")
        }
        guard encoding == "float" || encoding == "base64" else {
            throw Failure(description: "--embeddings-encoding is float or base64, got '\(encoding)'")
        }
        endpoint = url
        self.model = model
        self.apiKey = apiKey
        self.dimensions = dimensions
        self.batchSize = max(1, batchSize)
        self.encoding = encoding
    }

    /// Vectors of `texts`, in order, `batchSize` texts per request.
    func embed(_ texts: [String]) async throws -> [[Float]] {
        var vectors: [[Float]] = []
        vectors.reserveCapacity(texts.count)
        var start = 0
        while start < texts.count {
            let end = min(start + batchSize, texts.count)
            vectors += try await request(Array(texts[start..<end]))
            start = end
        }
        return vectors
    }

    private struct Body: Encodable {
        let input: [String]
        let model: String
        let dimensions: Int?
        let encoding_format: String
    }

    private struct Reply: Decodable {
        struct Item: Decodable {
            let index: Int
            let embedding: Vector
        }
        let data: [Item]
    }

    private enum Vector: Decodable {
        case floats([Float])
        case base64(String)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .base64(text)
            } else {
                self = .floats(try container.decode([Float].self))
            }
        }

        func floats() throws -> [Float] {
            switch self {
            case .floats(let values):
                return values
            case .base64(let text):
                guard let data = Data(base64Encoded: text), data.count % 4 == 0 else {
                    throw Failure(description: "an embedding is not base64 of float32 values")
                }
                return stride(from: 0, to: data.count, by: 4).map { offset in
                    let bits = UInt32(data[offset]) | UInt32(data[offset + 1]) << 8 | UInt32(data[offset + 2]) << 16
                        | UInt32(data[offset + 3]) << 24
                    return Float(bitPattern: bits)
                }
            }
        }
    }

    private func request(_ texts: [String]) async throws -> [[Float]] {
        var request = URLRequest(url: endpoint)
        request.httpMethod = "POST"
        request.timeoutInterval = 600
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let apiKey, !apiKey.isEmpty { request.setValue("Bearer \(apiKey)", forHTTPHeaderField: "Authorization") }
        request.httpBody = try JSONEncoder().encode(
            Body(input: texts, model: model, dimensions: dimensions, encoding_format: encoding)
        )
        let (data, status) = try await send(request)
        guard status == 200 else {
            let text = String(decoding: data.prefix(500), as: UTF8.self)
            throw Failure(description: "POST \(endpoint.absoluteString): HTTP \(status): \(text)")
        }
        let reply = try JSONDecoder().decode(Reply.self, from: data)
        guard reply.data.count == texts.count else {
            throw Failure(description: "asked for \(texts.count) embeddings, got \(reply.data.count)")
        }
        return try reply.data.sorted { $0.index < $1.index }.map { try $0.embedding.floats() }
    }

    private func send(_ request: URLRequest) async throws -> (Data, Int) {
        try await withCheckedThrowingContinuation { continuation in
            URLSession.shared.dataTask(with: request) { data, response, error in
                if let error {
                    continuation.resume(throwing: error)
                } else {
                    continuation.resume(returning: (data ?? Data(), (response as? HTTPURLResponse)?.statusCode ?? 0))
                }
            }.resume()
        }
    }
}

/// Text → vector, kept in a JSON file (base64 of little-endian float32) named after the model and dimensions.
struct EmbeddingsCache {
    let path: String
    private(set) var vectors: [String: [Float]] = [:]
    private(set) var embeddedNow = 0

    init(directory: String, model: String, dimensions: Int?) throws {
        let safe = String(model.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." ? $0 : "_" })
        path = "\(directory)/\(safe)\(dimensions.map { "-d\($0)" } ?? "").json"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if let data = FileManager.default.contents(atPath: path) {
            let stored = try JSONDecoder().decode([String: String].self, from: data)
            for (text, encoded) in stored {
                guard let bytes = Data(base64Encoded: encoded) else { continue }
                vectors[text] = bytes.withUnsafeBytes { raw in
                    (0..<(bytes.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
                }
            }
        }
    }

    /// Embeds the texts not cached yet (batched) and saves the file.
    mutating func fill(_ texts: [String], client: EmbeddingsClient) async throws {
        var seen: Set<String> = []
        let missing = texts.filter { vectors[$0] == nil && seen.insert($0).inserted }
        guard !missing.isEmpty else { return }
        let embedded = try await client.embed(missing)
        for (text, vector) in zip(missing, embedded) { vectors[text] = vector }
        embeddedNow += missing.count
        try save()
    }

    func save() throws {
        var stored: [String: String] = [:]
        for (text, vector) in vectors {
            var data = Data(capacity: vector.count * 4)
            for value in vector { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
            stored[text] = data.base64EncodedString()
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(stored).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    subscript(text: String) -> [Float]? { vectors[text] }
}
