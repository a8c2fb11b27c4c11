import Foundation
import Logging
import MemProxyCore
import MemProxyStore

extension ProxyConfiguration {
    /// Every configurable key: its section, name and how a raw value is checked and applied.
    static let keys: [Key] = [
        Key(section: "server", name: "listen") { config, raw throws(ConfigurationError) in
            let text = try raw.string("server.listen")
            guard let address = ListenAddress(parsing: text) else {
                throw ConfigurationError(
                    "server.listen \"\(text)\" is not HOST:PORT (e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")"
                )
            }
            config.server.listen = address
        },
        Key(section: "server", name: "max_body_bytes") { config, raw throws(ConfigurationError) in
            let value = try raw.int("server.max_body_bytes")
            guard value > 0 else { throw ConfigurationError("server.max_body_bytes must be greater than 0") }
            config.server.maxBodyBytes = value
        },
        Key(section: "upstream", name: "url") { config, raw throws(ConfigurationError) in
            let text = try raw.string("upstream.url")
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                scheme == "http" || scheme == "https", url.host != nil
            else {
                throw ConfigurationError(
                    "upstream.url \"\(text)\" is not an http(s) URL (e.g. \"https://api.openai.com\")"
                )
            }
            config.upstream.url = text
        },
        Key(section: "upstream", name: "connect_timeout_seconds") { config, raw throws(ConfigurationError) in
            let value = try raw.double("upstream.connect_timeout_seconds")
            guard value > 0 else { throw ConfigurationError("upstream.connect_timeout_seconds must be greater than 0") }
            config.upstream.connectTimeoutSeconds = value
        },
        Key(section: "upstream", name: "timeout_seconds") { config, raw throws(ConfigurationError) in
            let value = try raw.double("upstream.timeout_seconds")
            guard value > 0 else { throw ConfigurationError("upstream.timeout_seconds must be greater than 0") }
            config.upstream.timeoutSeconds = value
        },
        Key(section: "upstream", name: "api_key") { config, raw throws(ConfigurationError) in
            let value = try raw.string("upstream.api_key")
            config.upstream.apiKey = value.isEmpty ? nil : value
        },
        Key(section: "upstream", name: "anthropic_url") { config, raw throws(ConfigurationError) in
            let text = try raw.string("upstream.anthropic_url")
            guard !text.isEmpty else {
                config.upstream.anthropicURL = nil
                return
            }
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                scheme == "http" || scheme == "https", url.host != nil
            else {
                throw ConfigurationError(
                    "upstream.anthropic_url \"\(text)\" is not an http(s) URL (e.g. \"https://api.anthropic.com\")"
                )
            }
            config.upstream.anthropicURL = text
        },
        Key(section: "upstream", name: "anthropic_api_key") { config, raw throws(ConfigurationError) in
            let value = try raw.string("upstream.anthropic_api_key")
            config.upstream.anthropicAPIKey = value.isEmpty ? nil : value
        },
        Key(section: "log", name: "level") { config, raw throws(ConfigurationError) in
            let text = try raw.string("log.level")
            guard let level = Logger.Level(rawValue: text.lowercased()) else {
                throw ConfigurationError(
                    "log.level \"\(text)\" is not one of trace, debug, info, notice, warning, error, critical"
                )
            }
            config.log.level = level
        },
        Key(section: "log", name: "format") { config, raw throws(ConfigurationError) in
            let text = try raw.string("log.format")
            guard let format = LogFormat(text) else {
                throw ConfigurationError("log.format \"\(text)\" must be \"json\" or \"text\"")
            }
            config.log.format = format
        },
        Key(section: "memory", name: "database") { config, raw throws(ConfigurationError) in
            let path = try raw.string("memory.database")
            guard !path.isEmpty else { throw ConfigurationError("memory.database must not be empty") }
            config.memory.database = path
        },
        Key(section: "memory", name: "session_headers") { config, raw throws(ConfigurationError) in
            let names = try raw.strings("memory.session_headers")
            guard !names.isEmpty else {
                throw ConfigurationError("memory.session_headers must name at least one header, e.g. [\"X-Session-Id\"]")
            }
            for name in names where !name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
                throw ConfigurationError("memory.session_headers: \"\(name)\" is not a valid header name")
            }
            config.memory.sessionHeaders = names
        },
        Key(section: "memory", name: "require_session") { config, raw throws(ConfigurationError) in
            config.memory.requireSession = try raw.bool("memory.require_session")
        },
        Key(section: "memory", name: "top_k") { config, raw throws(ConfigurationError) in
            let value = try raw.int("memory.top_k")
            guard (0...100).contains(value) else { throw ConfigurationError("memory.top_k must be between 0 and 100") }
            config.memory.topK = value
        },
        Key(section: "memory", name: "placement") { config, raw throws(ConfigurationError) in
            let text = try raw.string("memory.placement")
            guard let placement = MemoryPlacement(text) else {
                throw ConfigurationError("memory.placement \"\(text)\" must be \"system\" or \"last_user\"")
            }
            config.memory.placement = placement
        },
        Key(section: "memory", name: "max_injected_tokens") { config, raw throws(ConfigurationError) in
            let value = try raw.int("memory.max_injected_tokens")
            guard value >= 0 else { throw ConfigurationError("memory.max_injected_tokens must be 0 or more") }
            config.memory.maxInjectedTokens = value
        },
        Key(section: "memory", name: "fail_open") { config, raw throws(ConfigurationError) in
            config.memory.failOpen = try raw.bool("memory.fail_open")
        },
        Key(section: "memory", name: "recall_timeout_ms") { config, raw throws(ConfigurationError) in
            let value = try raw.int("memory.recall_timeout_ms")
            guard value > 0 else { throw ConfigurationError("memory.recall_timeout_ms must be greater than 0") }
            config.memory.recallTimeoutMs = value
        },
        Key(section: "memory", name: "injection_retention_days") { config, raw throws(ConfigurationError) in
            let value = try raw.int("memory.injection_retention_days")
            guard value >= 0 else {
                throw ConfigurationError("memory.injection_retention_days must be 0 (keep forever) or more")
            }
            config.memory.injectionRetentionDays = value
        },
        Key(section: "memory", name: "max_queued_writes") { config, raw throws(ConfigurationError) in
            let value = try raw.int("memory.max_queued_writes")
            guard value > 0 else { throw ConfigurationError("memory.max_queued_writes must be greater than 0") }
            config.memory.maxQueuedWrites = value
        },
        Key(section: "memory", name: "recall_cache_memories") { config, raw throws(ConfigurationError) in
            let value = try raw.int("memory.recall_cache_memories")
            guard value >= 0 else { throw ConfigurationError("memory.recall_cache_memories must be 0 or more") }
            config.memory.recallCacheMemories = value
        },
        Key(section: "recall", name: "near_weight") { config, raw throws(ConfigurationError) in
            config.recall.nearWeight = try raw.double("recall.near_weight")
        },
        Key(section: "recall", name: "far_weight") { config, raw throws(ConfigurationError) in
            config.recall.farWeight = try raw.double("recall.far_weight")
        },
        Key(section: "recall", name: "date_weight") { config, raw throws(ConfigurationError) in
            config.recall.dateWeight = try raw.double("recall.date_weight")
        },
        Key(section: "recall", name: "temporal_boost") { config, raw throws(ConfigurationError) in
            config.recall.temporalBoost = try raw.double("recall.temporal_boost")
        },
        Key(section: "recall", name: "feedback_documents") { config, raw throws(ConfigurationError) in
            config.recall.feedbackDocuments = try raw.int("recall.feedback_documents")
        },
        Key(section: "recall", name: "feedback_terms") { config, raw throws(ConfigurationError) in
            config.recall.feedbackTerms = try raw.int("recall.feedback_terms")
        },
        Key(section: "recall", name: "feedback_weight") { config, raw throws(ConfigurationError) in
            config.recall.feedbackWeight = try raw.double("recall.feedback_weight")
        },
        Key(section: "recall", name: "semantic_weight") { config, raw throws(ConfigurationError) in
            config.recall.semanticWeight = try raw.double("recall.semantic_weight")
        },
        Key(section: "recall", name: "rerank_depth") { config, raw throws(ConfigurationError) in
            config.recall.rerankDepth = try raw.int("recall.rerank_depth")
        },
        Key(section: "recall", name: "candidate_budget") { config, raw throws(ConfigurationError) in
            config.recall.candidateBudget = try raw.int("recall.candidate_budget")
        },
        Key(section: "memory", name: "store_exchanges") { config, raw throws(ConfigurationError) in
            config.memory.storeExchanges = try raw.bool("memory.store_exchanges")
        },
        Key(section: "admin", name: "api_key") { config, raw throws(ConfigurationError) in
            let value = try raw.string("admin.api_key")
            config.admin.apiKey = value.isEmpty ? nil : value
        },
    ] + embeddingKeys + uiKeys
}
