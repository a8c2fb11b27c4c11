import FakeUpstream
import Foundation
import MemProxyUpstream
import NIOCore
import Synchronization
import Testing

/// An upstream that answers every request with one fixed response, and records the requests and timeouts it got.
private final class StubUpstream: Upstream {
    let status: Int
    let body: String
    let calls = Mutex<[(request: UpstreamRequest, timeouts: UpstreamTimeouts)]>([])

    init(status: Int = 200, body: String) {
        self.status = status
        self.body = body
    }

    func execute(_ request: UpstreamRequest, timeouts: UpstreamTimeouts) async throws(UpstreamError)
        -> UpstreamResponse
    {
        self.calls.withLock { $0.append((request, timeouts)) }
        return UpstreamResponse(status: self.status, headers: [], body: ByteBuffer(string: self.body))
    }
}

/// `EmbeddingsClient` against the fake embedder over the real libcurl engine, and against fixed responses.
@Suite("Embeddings client", .timeLimit(.minutes(1)))
struct EmbeddingsClientTests {
    private func client(_ url: String, _ engine: any Upstream, key: String? = nil, dimensions: Int? = nil)
        -> EmbeddingsClient
    {
        EmbeddingsClient(url: url, model: "fake-embed", apiKey: key, dimensions: dimensions, upstream: engine)
    }

    /// The error `embed` throws for `texts`, or a test failure when it succeeds.
    private func failure(_ client: EmbeddingsClient, _ texts: [String] = ["x"], timeout: Duration = .seconds(10))
        async -> EmbeddingsError?
    {
        do {
            let vectors = try await client.embed(texts, timeout: timeout)
            Issue.record("expected an error, got \(vectors.count) vectors")
            return nil
        } catch {
            return error
        }
    }

    @Test("the endpoint is {url}/v1/embeddings however the URL is written")
    func endpoint() {
        let stub = StubUpstream(body: "")
        for url in ["http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/", "http://h:1/v1/embeddings"] {
            #expect(self.client(url, stub).endpoint == "http://h:1/v1/embeddings", "\(url)")
        }
        #expect(
            self.client("https://api.example.com/proxy/", stub).endpoint
                == "https://api.example.com/proxy/v1/embeddings")
    }

    @Test("one vector per text, in order, equal to the fake's; the request asks for base64 with model and input")
    func orderAndCount() async throws {
        try await withFakeEmbedder { fake, url, engine in
            let texts = (0..<40).map { "text number \($0) about cats" } + ["", "text number 3 about cats"]
            let vectors = try await self.client(url, engine).embed(texts, timeout: .seconds(10))
            #expect(vectors.count == texts.count)
            #expect(vectors == texts.map { FakeUpstream.fakeEmbedding($0, dimensions: 64) })
            let request = try #require(fake.requests.last)
            let body = try #require(try JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
            #expect(body["input"] as? [String] == texts)
            #expect(body["model"] as? String == "fake-embed")
            #expect(body["encoding_format"] as? String == "base64")
            #expect(body["dimensions"] == nil)
            #expect(request.header("Content-Type") == "application/json")
            #expect(request.header("Authorization") == nil)
            #expect(try await self.client(url, engine).embed([], timeout: .seconds(10)).isEmpty)
            #expect(fake.embeddingRequests == 1, "no request for no texts")
        }
    }

    @Test("dimensions are passed through")
    func dimensions() async throws {
        try await withFakeEmbedder { fake, url, engine in
            let vectors = try await self.client(url, engine, dimensions: 24).embed(
                ["a cat", "a dog"], timeout: .seconds(10))
            #expect(vectors.map(\.count) == [24, 24])
            #expect(vectors[0] == FakeUpstream.fakeEmbedding("a cat", dimensions: 24))
            let body = try #require(
                try JSONSerialization.jsonObject(with: Data(fake.requests.last?.body ?? [])) as? [String: Any])
            #expect(body["dimensions"] as? Int == 24)
        }
    }

    @Test("float arrays (a server that ignores encoding_format) and items out of order are accepted")
    func floatResponsesInAnyOrder() async throws {
        let body = #"""
            {"object":"list","data":[
             {"object":"embedding","index":2,"embedding":[0.5,-0.25,1e-3]},
             {"object":"embedding","index":0,"embedding":[1,0,0]},
             {"object":"embedding","index":1,"embedding":"AACAPwAAAAAAAIC/"}],
             "model":"m","usage":{"prompt_tokens":3,"total_tokens":3}}
            """#
        let vectors = try await self.client("http://h", StubUpstream(body: body)).embed(
            ["a", "b", "c"], timeout: .seconds(1))
        #expect(vectors == [[1, 0, 0], [1, 0, -1], [0.5, -0.25, 0.001]])
    }

    @Test(
        "a malformed answer is an error that is not retried",
        arguments: [
            #"{"data":[{"index":0,"embedding":[1,2]}]}"#,  // one vector for two texts
            #"{"data":[{"index":0,"embedding":[1,2]},{"index":0,"embedding":[3,4]}]}"#,  // index repeated
            #"{"data":[{"index":0,"embedding":[1,2]},{"index":5,"embedding":[3,4]}]}"#,  // index out of range
            #"{"data":[{"index":0,"embedding":[1,2]},{"index":1,"embedding":[3,4,5]}]}"#,  // dimensions differ
            #"{"data":[{"index":0,"embedding":[1,"x"]},{"index":1,"embedding":[3,4]}]}"#,  // not a number
            #"{"data":[{"index":0,"embedding":[]},{"index":1,"embedding":[]}]}"#,  // empty
            #"{"data":[{"index":0,"embedding":"AAA"},{"index":1,"embedding":"AAA"}]}"#,  // not float32 base64
            #"{"data":[{"index":0,"embedding":[1e60]},{"index":1,"embedding":[1]}]}"#,  // not a finite float
            #"{"object":"list"}"#, "not json", "",
        ])
    func malformed(body: String) async throws {
        let error = try #require(await self.failure(self.client("http://h", StubUpstream(body: body)), ["a", "b"]))
        #expect(error.code == .malformedResponse, "\(error)")
        #expect(!error.isRetryable)
    }

    @Test("an HTTP error carries the server's message; 408, 429 and 5xx are retryable, other 4xx are not")
    func httpErrors() async throws {
        try await withFakeEmbedder { fake, url, engine in
            for (status, retryable) in [
                (400, false), (401, false), (404, false), (429, true), (500, true), (503, true),
            ] {
                fake.setEmbeddingsFailure(status: status)
                let error = try #require(await self.failure(self.client(url, engine)))
                #expect(error.code == .httpStatus)
                #expect(error.status == status)
                #expect(error.isRetryable == retryable, "\(status)")
                #expect(error.description.contains("fake embeddings error \(status)"), "\(error)")
            }
            fake.setEmbeddingsFailure(status: nil)
            let noModel = EmbeddingsClient(url: url, model: "", apiKey: nil, dimensions: nil, upstream: engine)
            let error = try #require(await self.failure(noModel))
            #expect(error.status == 400 && !error.isRetryable)
            #expect(error.message.contains("You must provide a model parameter."), "\(error)")
        }
        let long = String(repeating: "y", count: 5000)
        let stub = StubUpstream(status: 502, body: #"{"error":"\#(long)"}"#)
        let error = try #require(await self.failure(self.client("http://h", stub)))
        #expect(error.message.count < 400, "a server's message is truncated")
        #expect(error.isRetryable)
        let plain = try #require(await self.failure(self.client("http://h", StubUpstream(status: 500, body: "<html>"))))
        #expect(plain.status == 500 && plain.message.contains("500"))
    }

    @Test("a late embedder gives a timeout error at the deadline, not when the server answers")
    func lateEmbedderTimesOut() async throws {
        try await withFakeEmbedder { fake, url, engine in
            fake.setEmbeddingsDelay(milliseconds: 30_000)
            let clock = ContinuousClock()
            let start = clock.now
            let error = try #require(await self.failure(self.client(url, engine), timeout: .milliseconds(200)))
            let elapsed = clock.now - start
            #expect(error.code == .timeout, "\(error)")
            #expect(error.isRetryable)
            #expect(elapsed < .seconds(5), "\(elapsed)")
        }
    }

    @Test("timeouts: connecting is limited to the smaller of the timeout and 5 s, the whole exchange to the timeout")
    func timeoutMapping() async throws {
        let stub = StubUpstream(body: #"{"data":[{"index":0,"embedding":[1]}]}"#)
        _ = try await self.client("http://h", stub).embed(["a"], timeout: .milliseconds(150))
        _ = try await self.client("http://h", stub).embed(["a"], timeout: .seconds(30))
        let timeouts = stub.calls.withLock { $0.map(\.timeouts) }
        #expect(timeouts.map(\.connectSeconds) == [0.15, 5])
        #expect(timeouts.map(\.totalSeconds) == [0.15, 30])
    }

    @Test("the key is sent as a Bearer token and never appears in an error")
    func keyIsSecret() async throws {
        let key = "sk-test-SECRET-4f9c"
        try await withFakeEmbedder { fake, url, engine in
            let withKey = self.client(url, engine, key: key)
            _ = try await withKey.embed(["hello"], timeout: .seconds(10))
            #expect(fake.requests.last?.header("Authorization") == "Bearer \(key)")
            fake.setEmbeddingsFailure(status: 401)
            let error = try #require(await self.failure(withKey))
            #expect(!"\(error)".contains(key) && !error.message.contains(key))
            // Port 1 on loopback: nothing listens there.
            let unreachable = try #require(await self.failure(self.client("http://127.0.0.1:1", engine, key: key)))
            #expect(unreachable.code == .unreachable, "\(unreachable)")
            #expect(unreachable.isRetryable)
            #expect(!"\(unreachable)".contains(key))
        }
        let echoing = StubUpstream(status: 401, body: #"{"error":{"message":"Incorrect API key provided: \#(key)."}}"#)
        let echoed = try #require(await self.failure(self.client("http://h", echoing, key: key)))
        #expect(!"\(echoed)".contains(key), "\(echoed)")
        #expect(echoed.message.contains("[redacted]"))
    }
}
