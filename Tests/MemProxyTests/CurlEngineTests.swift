import FakeUpstream
import Foundation
import MemProxyUpstream
import NIOCore
import Testing

/// The libcurl engine on its own, against the fake upstream (no memproxy in between): consecutive and concurrent
/// transfers, and the hand-off of heads, bodies and ends to the reader.
@Suite("Curl engine", .timeLimit(.minutes(1)))
struct CurlEngineTests {
    private func request(
        _ proxy: ProxyHarness,
        _ method: String,
        _ path: String,
        headers: [(name: String, value: String)] = [],
        body: String? = nil
    ) async throws -> (response: UpstreamResponse, body: String) {
        let response = try await proxy.client.execute(
            UpstreamRequest(
                method: method,
                url: "http://127.0.0.1:\(proxy.fakePort)\(path)",
                headers: headers,
                body: body.map { ByteBuffer(string: $0) }
            ),
            timeouts: UpstreamTimeouts(connectSeconds: 5, totalSeconds: 30)
        )
        let bytes = try await response.collect(upTo: 16 * 1024 * 1024)
        return (response, String(buffer: bytes))
    }

    @Test("consecutive requests carry nothing of each other (method, body, headers); HEAD ends without a body")
    func consecutiveRequestsAreIndependent() async throws {
        try await withProxy { proxy in
            for round in 0..<5 {
                let (post, _) = try await self.request(
                    proxy, "POST", "/v1/test/echo?round=\(round)",
                    headers: [("X-First", "only-on-post"), ("Content-Type", "text/plain")],
                    body: "post body \(round)"
                )
                #expect(post.status == 200)
                let (put, _) = try await self.request(proxy, "PUT", "/v1/test/echo", body: "put body")
                #expect(put.status == 200)
                let (get, _) = try await self.request(proxy, "GET", "/v1/test/echo")
                #expect(get.status == 200)
                let (_, headBody) = try await self.request(proxy, "HEAD", "/v1/models")
                #expect(headBody.isEmpty)
                let (models, modelsBody) = try await self.request(proxy, "GET", "/v1/models")
                #expect(models.status == 200)
                #expect(!modelsBody.isEmpty, "a GET after a HEAD must have a body again")
            }
            let recorded = proxy.fake.requests
            let posts = recorded.filter { $0.method == "POST" }
            let puts = recorded.filter { $0.method == "PUT" }
            let gets = recorded.filter { $0.method == "GET" && $0.target == "/v1/test/echo" }
            #expect(posts.count == 5 && puts.count == 5 && gets.count == 5)
            for (round, post) in posts.enumerated() {
                #expect(post.body == Array("post body \(round)".utf8))
                #expect(post.header("X-First") == "only-on-post")
            }
            for put in puts {
                #expect(put.body == Array("put body".utf8))
                #expect(put.header("X-First") == nil)
                #expect(put.header("Content-Type") == nil)
            }
            for get in gets {
                #expect(get.body.isEmpty)
                #expect(get.header("X-First") == nil)
                #expect(get.header("Content-Length") == nil)
            }
        }
    }

    @Test("after a cancelled stream, the next requests work")
    func requestAfterCancel() async throws {
        try await withProxy { proxy in
            for _ in 0..<3 {
                let stream = try await proxy.client.execute(
                    UpstreamRequest(
                        method: "GET",
                        url: "http://127.0.0.1:\(proxy.fakePort)/v1/test/sse?events=1000&delay_ms=20",
                        headers: [],
                        body: nil
                    ),
                    timeouts: UpstreamTimeouts(connectSeconds: 5, totalSeconds: 30)
                )
                var iterator = stream.body.makeAsyncIterator()
                let first = try await iterator.next()
                #expect(first != nil)
                stream.cancel()
                await #expect(throws: UpstreamError.self) {
                    while try await iterator.next() != nil {}
                }
                let (response, text) = try await self.request(proxy, "GET", "/v1/test/echo")
                #expect(response.status == 200)
                #expect(text.contains("\"method\":\"GET\""))
            }
        }
    }

    @Test("200 concurrent requests each get their own answer, whole")
    func concurrentChurn() async throws {
        try await withProxy { proxy in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<200 {
                    group.addTask {
                        let (response, text) = try await self.request(
                            proxy, "POST", "/v1/test/echo?i=\(index)", body: "body-\(index)")
                        #expect(response.status == 200)
                        let expected = Data("body-\(index)".utf8).base64EncodedString()
                        #expect(text.contains(expected), "request \(index) got another request's answer")
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    @Test("a stream read slower than it arrives is delivered whole and in order")
    func slowReaderGetsEverything() async throws {
        try await withProxy { proxy in
            let response = try await proxy.client.execute(
                UpstreamRequest(
                    method: "GET",
                    url: "http://127.0.0.1:\(proxy.fakePort)/v1/test/sse?events=5000",
                    headers: [],
                    body: nil
                ),
                timeouts: UpstreamTimeouts(connectSeconds: 5, totalSeconds: 30)
            )
            #expect(response.status == 200)
            var text = ""
            for try await chunk in response.body {
                text += String(buffer: chunk)
                await Task.yield()
            }
            let expected = (0..<5000).map { "data: {\"n\":\($0)}\n\n" }.joined() + "data: [DONE]\n\n"
            #expect(text == expected)
        }
    }

    @Test("cancelling requests as they complete never deadlocks the engine (continuations resumed outside the lock)")
    func cancellationRacingCompletion() async throws {
        try await withProxy { proxy in
            // Each round starts small requests and cancels their tasks at once, so that cancellation handlers
            // (which take the task's status lock, then the transfer's) race the curl thread completing the same
            // transfers (which took the transfer's lock, then resumed the task). Before the fix this hung the engine.
            for round in 0..<40 {
                await withTaskGroup(of: Void.self) { group in
                    for index in 0..<25 {
                        let task = Task {
                            _ = try? await self.request(proxy, "GET", "/v1/models?r=\(round)-\(index)")
                        }
                        group.addTask {
                            if index % 2 == 0 { await Task.yield() }
                            task.cancel()
                            _ = await task.result
                        }
                    }
                }
            }
            // The engine still serves.
            let (models, body) = try await self.request(proxy, "GET", "/v1/models")
            #expect(models.status == 200 && body.contains("fake-model"))
        }
    }
}
