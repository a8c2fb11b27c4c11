import Foundation
import MemProxyStore
import MemProxyUpstream

extension ProxyConfiguration {
    /// `[embeddings]`: recall by meaning (issue 12). Off (the default) while `url` is empty: then no embedder runs,
    /// no query is embedded and recall is lexical, exactly as without the section.
    public struct Embeddings: Sendable {
        /// An OpenAI-compatible base URL (`https://api.openai.com`, Ollama, llama.cpp, vLLM,
        /// text-embeddings-inference…); `POST {url}/v1/embeddings` is called. Empty: off.
        public var url = ""
        public var model = ""
        /// Sent as `Authorization: Bearer`. Secret: never logged or printed.
        public var apiKey: String?
        /// Passed through as `dimensions` when set.
        public var dimensions: Int?
        /// How long a request waits for its query's embedding; late or failed → lexical recall for that request.
        public var queryTimeoutMs = 150
        /// Memories embedded per call by the background embedder.
        public var batchSize = 64

        /// Whether recall by meaning is on.
        public var enabled: Bool { !url.isEmpty }

        /// The embeddings API client over `upstream`; `nil` when embeddings are off.
        func client(upstream: any Upstream) -> EmbeddingsClient? {
            guard enabled else { return nil }
            return EmbeddingsClient(url: url, model: model, apiKey: apiKey, dimensions: dimensions, upstream: upstream)
        }

        /// What names the vectors in the database: the model, and its dimensions when set. Changing either makes
        /// every stored vector stale.
        public var fingerprint: String { dimensions.map { "\(model)@\($0)" } ?? model }
    }

    /// The `[embeddings]` keys (env `MEMPROXY_EMBEDDINGS_<KEY>`).
    static let embeddingKeys: [Key] = [
        Key(section: "embeddings", name: "url") { config, raw throws(ConfigurationError) in
            let text = try raw.string("embeddings.url")
            guard !text.isEmpty else {
                config.embeddings.url = ""
                return
            }
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                scheme == "http" || scheme == "https", url.host != nil
            else {
                throw ConfigurationError(
                    "embeddings.url \"\(text)\" is not an http(s) URL (e.g. \"https://api.openai.com\" or "
                        + "\"http://127.0.0.1:11434\" for Ollama); leave it empty to turn embeddings off"
                )
            }
            config.embeddings.url = text
        },
        Key(section: "embeddings", name: "model") { config, raw throws(ConfigurationError) in
            config.embeddings.model = try raw.string("embeddings.model").trimmingCharacters(in: .whitespaces)
        },
        Key(section: "embeddings", name: "api_key") { config, raw throws(ConfigurationError) in
            let value = try raw.string("embeddings.api_key")
            config.embeddings.apiKey = value.isEmpty ? nil : value
        },
        Key(section: "embeddings", name: "dimensions") { config, raw throws(ConfigurationError) in
            if case .string(let text) = raw, text.trimmingCharacters(in: .whitespaces).isEmpty {
                config.embeddings.dimensions = nil
                return
            }
            let value = try raw.int("embeddings.dimensions")
            guard (1...65_536).contains(value) else {
                throw ConfigurationError("embeddings.dimensions must be between 1 and 65536 (or unset)")
            }
            config.embeddings.dimensions = value
        },
        Key(section: "embeddings", name: "query_timeout_ms") { config, raw throws(ConfigurationError) in
            let value = try raw.int("embeddings.query_timeout_ms")
            guard (1...60_000).contains(value) else {
                throw ConfigurationError("embeddings.query_timeout_ms must be between 1 and 60000")
            }
            config.embeddings.queryTimeoutMs = value
        },
        Key(section: "embeddings", name: "batch_size") { config, raw throws(ConfigurationError) in
            let value = try raw.int("embeddings.batch_size")
            guard (1...2048).contains(value) else {
                throw ConfigurationError("embeddings.batch_size must be between 1 and 2048")
            }
            config.embeddings.batchSize = value
        },
        Key(section: "embeddings", name: "weight") { config, raw throws(ConfigurationError) in
            let value = try raw.double("embeddings.weight")
            guard value.isFinite, (0...1).contains(value) else {
                throw ConfigurationError("embeddings.weight must be a number between 0 and 1")
            }
            config.recall.hybridWeight = value
        },
    ]

    /// Checks that hold across keys.
    func checkEmbeddings() throws(ConfigurationError) {
        if embeddings.enabled, embeddings.model.isEmpty {
            throw ConfigurationError(
                "embeddings.model must name the embedding model when embeddings.url is set "
                    + "(e.g. model = \"text-embedding-3-small\"), or leave embeddings.url empty to turn embeddings off"
            )
        }
    }
}
