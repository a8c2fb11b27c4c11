import FakeUpstream
import Foundation
import InMemoryLogging
import Logging
import MemProxy
import MemProxyUpstream
import NIOCore
import Prometheus
import ServiceLifecycle
import Testing

@Suite("Forwarding", .timeLimit(.minutes(1)))
struct ForwardingTests {
    @Test("request body, method, query and headers reach the upstream unchanged; hop-by-hop headers do not")
    func requestPassthrough() async throws {
        try await withProxy { proxy in
            let body = #"{"model":"m","z":1,"a":[1.0,2e3],"unicode":"héllo 👋"}"#
            let (response, _) = try await proxy.fetch(
                "POST",
                "/v1/test/echo?x=1&y=%20two",
                headers: [
                    ("Authorization", "Bearer sk-client"),
                    ("Content-Type", "application/json"),
                    ("OpenAI-Organization", "org-1"),
                    ("X-Custom", "custom-value"),
                    ("Connection", "keep-alive, X-Hop"),
                    ("X-Hop", "must-not-pass"),
                    ("Keep-Alive", "timeout=5"),
                    ("Proxy-Authorization", "Basic c2VjcmV0"),
                    ("Upgrade", "websocket"),
                ],
                body: body
            )
            #expect(response.status == 200)
            let recorded = try #require(proxy.fake.requests.last)
            #expect(recorded.method == "POST")
            #expect(recorded.target == "/v1/test/echo?x=1&y=%20two")
            #expect(recorded.body == Array(body.utf8))
            #expect(recorded.header("Authorization") == "Bearer sk-client")
            #expect(recorded.header("OpenAI-Organization") == "org-1")
            #expect(recorded.header("X-Custom") == "custom-value")
            #expect(recorded.header("Content-Type") == "application/json")
            #expect(recorded.header("Content-Length") == String(body.utf8.count))
            #expect(recorded.header("Host") == "127.0.0.1:\(proxy.fakePort)")
            for hop in ["X-Hop", "Keep-Alive", "Proxy-Authorization", "Upgrade", "Transfer-Encoding"] {
                #expect(recorded.header(hop) == nil, "\(hop) must not be forwarded")
            }
            #expect(recorded.header("Connection")?.lowercased() != "keep-alive, x-hop")
        }
    }

    @Test("response status, headers and body reach the client unchanged, with a memproxy request id")
    func responsePassthrough() async throws {
        try await withProxy { proxy in
            let (response, text) = try await proxy.fetch("GET", "/v1/test/echo")
            #expect(response.status == 200)
            #expect(response.header("X-Fake-Header") == "fake-value")
            #expect(response.header("x-request-id") == "req_fake_echo")
            #expect(response.header("Content-Length") == String(text.utf8.count))
            let requestID = try #require(response.header("X-Memproxy-Request-Id"))
            #expect(requestID.hasPrefix("req_") && requestID.count == 28)
            let echoed = try jsonObject(text)
            #expect(echoed["method"] as? String == "GET")
            let (second, _) = try await proxy.fetch("GET", "/v1/test/echo")
            #expect(second.header("X-Memproxy-Request-Id") != requestID)
        }
    }

    @Test("upstream 4xx/5xx pass through byte for byte", arguments: [400, 401, 429, 500, 503])
    func upstreamErrorsPassThrough(code: Int) async throws {
        try await withProxy { proxy in
            let (response, text) = try await proxy.fetch("POST", "/v1/test/status/\(code)", body: "{}")
            #expect(response.status == code)
            #expect(
                text
                    == #"{"error":{"message":"fake upstream error \#(code)","type":"fake_error","param":null,"code":"fake_\#(code)"}}"#
            )
            #expect(response.header("x-request-id") == "req_fake_\(code)")
            #expect(response.header("retry-after") == "0")
        }
    }

    @Test("the configured upstream.api_key replaces the client's Authorization")
    func apiKeyReplacesAuthorization() async throws {
        try await withProxy(configure: { config, _ in config.upstream.apiKey = "sk-server" }) { proxy in
            _ = try await proxy.fetch("GET", "/v1/models", headers: [("Authorization", "Bearer sk-client")])
            let recorded = try #require(proxy.fake.requests.last)
            #expect(recorded.headers.filter { $0.name.lowercased() == "authorization" }.map(\.value) == ["Bearer sk-server"])
        }
    }

    @Test("a path prefix in upstream.url is kept")
    func upstreamPathPrefix() async throws {
        try await withProxy(configure: { config, port in config.upstream.url = "http://127.0.0.1:\(port)/prefix/" }) {
            proxy in
            let (response, _) = try await proxy.fetch("GET", "/v1/models?limit=2")
            #expect(response.status == 404)
            #expect(proxy.fake.requests.last?.target == "/prefix/v1/models?limit=2")
        }
    }

    @Test("models and embeddings pass through")
    func modelsAndEmbeddings() async throws {
        try await withProxy { proxy in
            let (models, modelsText) = try await proxy.fetch("GET", "/v1/models")
            #expect(models.status == 200)
            #expect(modelsText.contains("fake-model"))
            let request = #"{"input":"hello","model":"e","encoding_format":"base64"}"#
            let (embeddings, text) = try await proxy.fetch(
                "POST", "/v1/embeddings", headers: [("Content-Type", "application/json")], body: request)
            #expect(embeddings.status == 200)
            let data = try #require(try jsonObject(text)["data"] as? [[String: Any]])
            #expect(data.first?["embedding"] is String)
            #expect(proxy.fake.requests.last?.body == Array(request.utf8))
        }
    }

    @Test("upstream connections are kept alive and reused")
    func connectionReuse() async throws {
        try await withProxy { proxy in
            for _ in 0..<20 {
                let (response, _) = try await proxy.fetch("GET", "/v1/models")
                #expect(response.status == 200)
            }
            let metrics = proxy.metrics.emitToString()
            #expect(metrics.contains("upstream_connections_opened_total 1"), "\(metrics)")
        }
    }
}

@Suite("Errors memproxy makes", .timeLimit(.minutes(1)))
struct ProxyErrorTests {
    @Test("upstream refusing connections gives 502 upstream_unreachable")
    func upstreamDown() async throws {
        try await withProxy(configure: { config, _ in config.upstream.url = "http://127.0.0.1:1" }) { proxy in
            let (response, text) = try await proxy.fetch("POST", "/v1/chat/completions", body: "{}")
            #expect(response.status == 502)
            #expect(response.header("Content-Type") == "application/json")
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["code"] as? String == "upstream_unreachable")
            #expect(error["type"] as? String == "server_error")
            #expect(error.keys.contains("param"))
            #expect((error["message"] as? String)?.contains("upstream.url") == true)
        }
    }

    @Test("an upstream slower than upstream.timeout_seconds gives 504 upstream_timeout")
    func upstreamTimeout() async throws {
        try await withProxy(configure: { config, _ in config.upstream.timeoutSeconds = 0.3 }) { proxy in
            let (response, text) = try await proxy.fetch("GET", "/v1/test/slow?delay_ms=1500")
            #expect(response.status == 504)
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["code"] as? String == "upstream_timeout")
        }
    }

    @Test("a body over server.max_body_bytes gives 413 and is not forwarded")
    func bodyTooLarge() async throws {
        try await withProxy(configure: { config, _ in config.server.maxBodyBytes = 1024 }) { proxy in
            let big = String(repeating: "x", count: 2048)
            let (response, text) = try await proxy.fetch("POST", "/v1/chat/completions", body: big)
            #expect(response.status == 413)
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["code"] as? String == "request_too_large")
            #expect(proxy.fake.requests.isEmpty)
            let (ok, _) = try await proxy.fetch("POST", "/v1/test/echo", body: String(repeating: "y", count: 1024))
            #expect(ok.status == 200)
        }
    }

    @Test("paths outside /v1/ get a 404 in OpenAI's shape and are not forwarded")
    func notFound() async throws {
        try await withProxy { proxy in
            let (response, text) = try await proxy.fetch("GET", "/v2/models")
            #expect(response.status == 404)
            let error = try #require(try jsonObject(text)["error"] as? [String: Any])
            #expect(error["code"] as? String == "not_found")
            #expect(response.header("X-Memproxy-Request-Id") != nil)
            #expect(proxy.fake.requests.isEmpty)
        }
    }

    @Test("healthz and metrics are answered locally")
    func ownEndpoints() async throws {
        try await withProxy { proxy in
            let (health, text) = try await proxy.fetch("GET", "/healthz")
            #expect(health.status == 200)
            #expect(text == #"{"status":"ok"}"#)
            _ = try await proxy.fetch("GET", "/v1/models")
            let (metrics, exposition) = try await proxy.fetch("GET", "/metrics")
            #expect(metrics.status == 200)
            #expect(exposition.contains(#"http_server_requests_total{route="/v1/models",method="GET",status="200"} 1"#))
            #expect(exposition.contains("http_server_request_duration_seconds"))
            #expect(exposition.contains("upstream_request_duration_seconds"))
            #expect(exposition.contains("http_server_requests_in_flight"))
            #expect(proxy.fake.requests.count == 1)
        }
    }
}

@Suite("Streaming", .timeLimit(.minutes(1)))
struct StreamingTests {
    @Test("events are relayed as they arrive, before the upstream finishes")
    func incrementalDelivery() async throws {
        try await withProxy { proxy in
            let response = try await proxy.send("GET", "/v1/test/gate")
            #expect(response.status == 200)
            #expect(response.header("Content-Type") == "text/event-stream")
            var iterator = response.body.makeAsyncIterator()
            // The upstream is blocked on its gate after event 1: receiving it proves nothing is buffered whole.
            let first = try await response.read(until: "{\"n\":1}", iterator: &iterator)
            #expect(first.contains("data: {\"n\":1}"))
            #expect(!first.contains("[DONE]"))
            proxy.fake.openGate()
            let rest = try await response.read(until: "[DONE]", iterator: &iterator)
            #expect(rest.contains("data: {\"n\":3}"))
            #expect(try await iterator.next() == nil)
        }
    }

    @Test("a client that disconnects mid-stream cancels the upstream transfer")
    func clientDisconnectCancelsUpstream() async throws {
        try await withProxy { proxy in
            let response = try await proxy.send("GET", "/v1/test/sse?events=2000&delay_ms=5")
            var iterator = response.body.makeAsyncIterator()
            _ = try await response.read(until: "{\"n\":1}", iterator: &iterator)
            #expect(proxy.fake.abortedStreams == 0)
            response.cancel()
            await proxy.fake.waitForAbortedStream()
            #expect(proxy.fake.abortedStreams == 1)
        }
    }

    @Test("an upstream that dies mid-stream ends the stream with an SSE error event")
    func upstreamDiesMidStream() async throws {
        try await withProxy { proxy in
            let (response, text) = try await proxy.fetch("GET", "/v1/test/sse?events=5&drop_after=2")
            #expect(response.status == 200)
            #expect(text.contains("data: {\"n\":1}"))
            #expect(!text.contains("[DONE]"))
            let last = try #require(text.split(separator: "\n\n").last)
            #expect(last.hasPrefix("data: {\"error\":"))
            let error = try #require(try jsonObject(String(last.dropFirst(6)))["error"] as? [String: Any])
            #expect(error["code"] as? String == "upstream_disconnected")
        }
    }

    @Test("graceful shutdown lets an in-flight stream finish")
    func gracefulShutdownFinishesStream() async throws {
        try await withProxy { proxy in
            let response = try await proxy.send("GET", "/v1/test/gate")
            var iterator = response.body.makeAsyncIterator()
            _ = try await response.read(until: "{\"n\":1}", iterator: &iterator)
            await proxy.proxyGroup.triggerGracefulShutdown()
            proxy.fake.openGate()
            let rest = try await response.read(until: "[DONE]", iterator: &iterator)
            #expect(rest.contains("data: {\"n\":3}"))
            #expect(rest.hasSuffix("data: [DONE]\n\n"))
            #expect(try await iterator.next() == nil)
        }
    }
}

@Suite("Logging", .timeLimit(.minutes(1)))
struct LoggingTests {
    @Test("one access line per request with status and ids; Authorization never appears in any log")
    func accessLogWithoutSecrets() async throws {
        let handler = InMemoryLogHandler()
        var logger = Logger(label: "memproxy") { _ in handler }
        logger.logLevel = .trace
        try await withProxy(logger: logger, configure: { config, _ in config.upstream.apiKey = "sk-server-secret" }) {
            proxy in
            let (response, _) = try await proxy.fetch(
                "POST", "/v1/test/echo?api_key=sk-query-secret", headers: [("Authorization", "Bearer sk-client-secret")],
                body: "{}")
            let requestID = try #require(response.header("X-Memproxy-Request-Id"))
            let entries = handler.entries
            let access = entries.filter { $0.message.description == "request" }
            #expect(access.count == 1)
            let metadata = try #require(access.first?.metadata)
            #expect(metadata["request.id"]?.description == requestID)
            #expect(metadata["http.status"]?.description == "200")
            #expect(metadata["http.path"]?.description == "/v1/test/echo")
            #expect(metadata["upstream.duration_ms"] != nil)
            #expect(entries.contains { $0.message.description.contains("listening on http://127.0.0.1:\(proxy.proxyPort)") })
            for entry in entries {
                let text = "\(entry.message) \(entry.metadata)"
                #expect(!text.contains("secret"), "log leaked a secret: \(text)")
            }
        }
    }
}
