import Foundation
import MemProxy
import MemProxyStore
import Testing

/// `[embeddings]`: off by default, every key from the file and the environment, clear errors (issue 12).
@Suite struct EmbeddingsConfigurationTests {
    func writeTemp(_ text: String) throws -> String {
        try ConfigurationTests().writeTemp(text)
    }

    @Test("off by default, and in the checked-in proxy.conf")
    func offByDefault() throws {
        let defaults = try ProxyConfiguration.load(file: nil, environment: [:])
        #expect(!defaults.embeddings.enabled)
        #expect(defaults.embeddings.queryTimeoutMs == 150 && defaults.embeddings.batchSize == 64)
        #expect(defaults.recall.hybridWeight == 0.4)
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let checkedIn = try ProxyConfiguration.load(file: root.appendingPathComponent("proxy.conf").path, environment: [:])
        #expect(!checkedIn.embeddings.enabled && checkedIn.recall.hybridWeight == 0.4)
    }

    @Test("every key from the file, the environment over it; the fingerprint names model and dimensions")
    func keys() throws {
        let path = try writeTemp(
            """
            [embeddings]
            url = "http://127.0.0.1:11434"
            model = "nomic-embed-text"
            api_key = "sk-emb"
            dimensions = 256
            query_timeout_ms = 90
            batch_size = 16
            weight = 0.25
            """)
        let file = try ProxyConfiguration.load(file: path, environment: [:])
        #expect(file.embeddings.enabled && file.embeddings.url == "http://127.0.0.1:11434")
        #expect(file.embeddings.model == "nomic-embed-text" && file.embeddings.apiKey == "sk-emb")
        #expect(file.embeddings.dimensions == 256 && file.embeddings.queryTimeoutMs == 90)
        #expect(file.embeddings.batchSize == 16 && file.recall.hybridWeight == 0.25)
        #expect(file.embeddings.fingerprint == "nomic-embed-text@256")
        let environment = [
            "MEMPROXY_EMBEDDINGS_MODEL": "text-embedding-3-small", "MEMPROXY_EMBEDDINGS_DIMENSIONS": "",
            "MEMPROXY_EMBEDDINGS_WEIGHT": "0.5", "MEMPROXY_EMBEDDINGS_API_KEY": "",
        ]
        let both = try ProxyConfiguration.load(file: path, environment: environment)
        #expect(both.embeddings.model == "text-embedding-3-small" && both.embeddings.dimensions == nil)
        #expect(both.embeddings.fingerprint == "text-embedding-3-small" && both.embeddings.apiKey == nil)
        #expect(both.recall.hybridWeight == 0.5)
        let off = try ProxyConfiguration.load(file: path, environment: ["MEMPROXY_EMBEDDINGS_URL": ""])
        #expect(!off.embeddings.enabled)
    }

    @Test(
        "bad values are refused with a line that says what to fix",
        arguments: [
            ("url = \"ftp://x\"\nmodel = \"m\"", "embeddings.url"),
            ("url = \"http://127.0.0.1:1\"", "embeddings.model"),
            ("url = \"http://127.0.0.1:1\"\nmodel = \"m\"\nweight = 1.5", "embeddings.weight"),
            ("url = \"http://127.0.0.1:1\"\nmodel = \"m\"\nquery_timeout_ms = 0", "embeddings.query_timeout_ms"),
            ("url = \"http://127.0.0.1:1\"\nmodel = \"m\"\nbatch_size = 0", "embeddings.batch_size"),
            ("url = \"http://127.0.0.1:1\"\nmodel = \"m\"\ndimensions = 0", "embeddings.dimensions"),
            ("model = \"m\"\nbogus = 1", "known keys"),
        ])
    func badValues(body: String, mentions: String) throws {
        let path = try writeTemp("[embeddings]\n" + body + "\n")
        do {
            _ = try ProxyConfiguration.load(file: path, environment: [:])
            Issue.record("accepted: \(body)")
        } catch {
            #expect("\(error)".contains(mentions), "\(error)")
            #expect(!"\(error)".contains("recall."))
        }
    }
}
