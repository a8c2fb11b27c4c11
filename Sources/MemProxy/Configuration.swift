import Foundation
public import Logging
public import MemProxyCore
public import MemProxyStore
import TOMLKit

/// Everything memproxy can be configured with.
///
/// Sources, weakest first: built-in defaults < the TOML file (`proxy.conf`) < environment variables
/// `MEMPROXY_<SECTION>_<KEY>` < command-line flags. Keys (type, default):
/// - `server.listen` (string, `"127.0.0.1:8080"`): address to accept clients on, `HOST:PORT` or `[IPv6]:PORT`.
/// - `server.max_body_bytes` (int, 8388608): largest request body accepted; larger → 413 `request_too_large`.
/// - `upstream.url` (string, `"https://api.openai.com"`): base URL; the request path (e.g. `/v1/chat/completions`)
///   and query are appended to it, so a path prefix in the URL is kept.
/// - `upstream.connect_timeout_seconds` (number, 10): connect limit; exceeded → 502 `upstream_unreachable`.
/// - `upstream.timeout_seconds` (number, 600): limit for a whole upstream exchange; exceeded → 504 `upstream_timeout`.
/// - `upstream.api_key` (string, unset): when set, replaces the client's `Authorization` header. Never logged.
/// - `upstream.anthropic_url` (string, `upstream.url`): where Anthropic requests go (`/v1/messages` and below, and
///   any request with an `anthropic-version` header); path and query are appended as for `upstream.url`.
/// - `upstream.anthropic_api_key` (string, unset): when set, replaces the client's `x-api-key` on Anthropic
///   requests (`upstream.api_key` is never sent there). Never logged.
/// - `log.level` (string, `"info"`): trace, debug, info, notice, warning, error, critical.
/// - `log.format` (string, `"json"`): `json` (one object per line) or `text`.
/// - `memory.database` (string, `"memproxy.db"`): the SQLite file holding memories (created when missing).
/// - `memory.session_headers` (array of strings, `["X-Session-Id"]`): the first non-empty one names the session;
///   in the environment, a comma-separated list.
/// - `memory.require_session` (bool, false): reject chat completions without a session (400 `session_required`).
/// - `memory.top_k` (int, 8): most memories injected into one request.
/// - `memory.placement` (string, `"system"`): where the block goes: `system` (the system prompt: chat's first
///   system/developer message, Responses' `instructions`, Anthropic's `system`) or `last_user` (appended to the
///   newest user message; every earlier byte stays as sent, so prompt caches keep hitting). Stateful Responses
///   requests always use `instructions`; Anthropic requests with `cache_control` always use the last user message.
/// - `memory.max_injected_tokens` (int, 1000): token budget of the injected block (estimate: UTF-8 bytes / 4).
/// - `memory.fail_open` (bool, true): when the store fails, forward without memory instead of answering 503.
/// - `memory.store_exchanges` (bool, true): store each successful exchange as episodic memory.
/// - `memory.recall_timeout_ms` (int, 250): a recall slower than this counts as a store failure (fail-open rules).
/// - `memory.injection_retention_days` (int, 30): injection records older than this are deleted (0 = keep).
/// - `memory.max_queued_writes` (int, 50000): the writer's queue bound; past it, a request waits up to
///   `recall_timeout_ms` for room, then is proxied without storing anything (`X-Memory-Error: store_backlog`),
///   or answered 503 `memory_unavailable` with `fail_open = false`.
/// - `memory.recall_cache_memories` (int, 500000): most memories recall keeps indexed in RAM across sessions
///   (least recently used sessions are dropped first and rebuilt from the database on their next recall).
/// - `admin.api_key` (string, unset): when set, every `/memory/v1` request needs `Authorization: Bearer <key>`;
///   when unset, `/memory/v1` answers loopback clients only. Secret: never logged.
/// - `embeddings.*`: recall by meaning, off while `url` is empty (``Embeddings``): `url`, `model`, `api_key`
///   (secret), `dimensions`, `query_timeout_ms` (150), `batch_size` (64), `weight` (the vectors' share of the fused
///   score, 0.4).
/// - `ui.enabled` (bool, true): serve the web dashboard under `/ui` (the memory API's access rule).
/// - `recall.*`: how recall ranks memories (see `RecallSettings`; README "Retrieval quality"): `near_weight` (0.5),
///   `far_weight` (0.4), `date_weight` (1.0), `temporal_boost` (1.5), `feedback_documents` (0), `feedback_terms`
///   (10), `feedback_weight` (0.2), `semantic_weight` (1.25), `rerank_depth` (10), `candidate_budget` (400).
public struct ProxyConfiguration: Sendable {
    public struct Server: Sendable {
        public var listen = ListenAddress(host: "127.0.0.1", port: 8080)
        public var maxBodyBytes = 8 * 1024 * 1024
    }

    public struct UpstreamSettings: Sendable {
        public var url = "https://api.openai.com"
        public var connectTimeoutSeconds = 10.0
        public var timeoutSeconds = 600.0
        /// Secret: never logged or printed.
        public var apiKey: String?
        /// `nil`: Anthropic requests go to ``url``.
        public var anthropicURL: String?
        /// Secret: never logged or printed.
        public var anthropicAPIKey: String?
    }

    public struct Log: Sendable {
        public var level: Logger.Level = .info
        public var format: LogFormat = .json
    }

    public struct Memory: Sendable {
        public var database = "memproxy.db"
        public var sessionHeaders = ["X-Session-Id"]
        public var requireSession = false
        public var topK = 8
        public var placement = MemoryPlacement.system
        public var maxInjectedTokens = 1000
        public var failOpen = true
        public var recallTimeoutMs = 250
        public var maxQueuedWrites = 50_000
        public var recallCacheMemories = 500_000
        public var injectionRetentionDays = 30
        public var storeExchanges = true
    }

    public struct Admin: Sendable {
        /// Secret: never logged or printed.
        public var apiKey: String?
    }

    public var server = Server()
    public var upstream = UpstreamSettings()
    public var log = Log()
    public var memory = Memory()
    public var recall = RecallSettings()
    public var admin = Admin()
    public var embeddings = Embeddings()
    public var ui = UI()

    public init() {}
}

/// `HOST:PORT` where the server listens.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `127.0.0.1:8080`, `localhost:0`, `[::1]:8080`.
    public init?(parsing text: String) {
        let text = text.trimmingCharacters(in: .whitespaces)
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        guard !hostPart.isEmpty, !hostPart.contains(":") || text.hasPrefix("["),
            let port = Int(portPart), (0...65535).contains(port)
        else { return nil }
        self.host = String(hostPart)
        self.port = port
    }

    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }
}

/// Log line format.
public struct LogFormat: Sendable, Equatable, CustomStringConvertible {
    private enum Kind: String { case json, text }
    private let kind: Kind
    public static let json = LogFormat(kind: .json)
    public static let text = LogFormat(kind: .text)
    private init(kind: Kind) { self.kind = kind }
    public init?(_ text: String) {
        guard let kind = Kind(rawValue: text.lowercased()) else { return nil }
        self.kind = kind
    }
    public var description: String { self.kind.rawValue }
}

/// A configuration problem, reported as one line that says which key is wrong and how to fix it.
public struct ConfigurationError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension ProxyConfiguration {
    /// A value from one source, before it is checked against the key's type.
    enum RawValue {
        case string(String)
        case int(Int)
        case double(Double)
        case bool(Bool)
        case strings([String])
        case other(String)

        func string(_ key: String) throws(ConfigurationError) -> String {
            if case .string(let s) = self { return s }
            throw ConfigurationError("\(key) must be a string, e.g. \(key.split(separator: ".").last!) = \"...\"")
        }

        func int(_ key: String) throws(ConfigurationError) -> Int {
            switch self {
            case .int(let i): return i
            case .string(let s): if let i = Int(s.trimmingCharacters(in: .whitespaces)) { return i }
            default: break
            }
            throw ConfigurationError("\(key) must be a whole number")
        }

        func bool(_ key: String) throws(ConfigurationError) -> Bool {
            switch self {
            case .bool(let b): return b
            case .string(let s):
                switch s.trimmingCharacters(in: .whitespaces).lowercased() {
                case "true", "1", "yes", "on": return true
                case "false", "0", "no", "off": return false
                default: break
                }
            default: break
            }
            throw ConfigurationError("\(key) must be true or false")
        }

        func strings(_ key: String) throws(ConfigurationError) -> [String] {
            switch self {
            case .strings(let values): return values
            case .string(let s):
                return s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            default:
                throw ConfigurationError("\(key) must be an array of strings, e.g. [\"X-Session-Id\"]")
            }
        }

        func double(_ key: String) throws(ConfigurationError) -> Double {
            switch self {
            case .int(let i): return Double(i)
            case .double(let d): return d
            case .string(let s): if let d = Double(s.trimmingCharacters(in: .whitespaces)) { return d }
            default: break
            }
            throw ConfigurationError("\(key) must be a number")
        }
    }

    /// One configurable key: where it lives and how it is applied.
    struct Key: Sendable {
        let section: String
        let name: String
        let apply: @Sendable (inout ProxyConfiguration, RawValue) throws(ConfigurationError) -> Void

        var path: String { "\(self.section).\(self.name)" }
        var environmentName: String { "MEMPROXY_\(self.section.uppercased())_\(self.name.uppercased())" }
    }


    /// Builds the configuration from the file (if any), the environment and flag overrides, in that order.
    /// - Parameters:
    ///   - file: path of a TOML file; nil to use only defaults, environment and flags.
    ///   - environment: usually `ProcessInfo.processInfo.environment`.
    ///   - overrides: values from command-line flags keyed by `section.key`; they win over everything.
    public static func load(
        file: String?,
        environment: [String: String],
        overrides: [String: String] = [:]
    ) throws(ConfigurationError) -> ProxyConfiguration {
        var config = ProxyConfiguration()
        if let file {
            try config.applyFile(file)
        }
        for key in Self.keys {
            if let value = environment[key.environmentName] {
                do {
                    try key.apply(&config, .string(value))
                } catch {
                    throw ConfigurationError("\(error.description) (from environment variable \(key.environmentName))")
                }
            }
        }
        for (path, value) in overrides.sorted(by: { $0.key < $1.key }) {
            guard let key = Self.keys.first(where: { $0.path == path }) else {
                throw ConfigurationError("unknown configuration key \(path)")
            }
            try key.apply(&config, .string(value))
        }
        if let problem = config.recall.problems.first {
            throw ConfigurationError(problem.hasPrefix("embeddings.") ? problem : "recall.\(problem)")
        }
        try config.checkEmbeddings()
        return config
    }

    private mutating func applyFile(_ path: String) throws(ConfigurationError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(
                "cannot read config file \(path): \(error.localizedDescription). Check the path or pass --config."
            )
        }
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(
                "config file \(path) is not valid TOML: \(error.description) at line \(error.source.begin.line), column \(error.source.begin.column)"
            )
        } catch {
            throw ConfigurationError("config file \(path) is not valid TOML: \(error)")
        }
        let sections = Set(Self.keys.map(\.section))
        for sectionName in table.keys {
            guard sections.contains(sectionName), let section = table[sectionName]?.table else {
                throw ConfigurationError(
                    "unknown section [\(sectionName)] in \(path); known sections: \(sections.sorted().joined(separator: ", "))"
                )
            }
            for name in section.keys {
                guard let key = Self.keys.first(where: { $0.section == sectionName && $0.name == name }) else {
                    let known = Self.keys.filter { $0.section == sectionName }.map(\.name).joined(separator: ", ")
                    throw ConfigurationError("unknown key \(name) in [\(sectionName)] of \(path); known keys: \(known)")
                }
                guard let value = section[name] else { continue }
                do {
                    try key.apply(&self, Self.raw(value))
                } catch {
                    throw ConfigurationError("\(error.description) (in \(path))")
                }
            }
        }
    }

    private static func raw(_ value: any TOMLValueConvertible) -> RawValue {
        if let s = value.string { return .string(s) }
        if let i = value.int { return .int(i) }
        if let d = value.double { return .double(d) }
        if let b = value.bool { return .bool(b) }
        if let array = value.array {
            let strings = array.compactMap { $0.string }
            if strings.count == array.count { return .strings(strings) }
        }
        return .other(value.debugDescription)
    }
}
