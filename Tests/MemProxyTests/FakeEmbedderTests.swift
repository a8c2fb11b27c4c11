import FakeUpstream
import Foundation
import MemProxyUpstream
import NIOCore
import ServiceLifecycle
import Testing

/// The fake upstream alone (no memproxy) and a libcurl engine, on loopback: runs `body`, then shuts both down.
func withFakeEmbedder(_ body: (_ fake: FakeUpstream, _ url: String, _ engine: CurlEngine) async throws -> Void)
    async throws
{
    let fake = FakeUpstream()
    let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
    let fakeGroup = ServiceGroup(
        services: [fake.makeApplication(logger: quietLogger) { portContinuation.yield($0) }], logger: quietLogger)
    let engine = CurlEngine(logger: quietLogger)
    let engineGroup = ServiceGroup(services: [engine], logger: quietLogger)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await fakeGroup.run() }
        group.addTask { try await engineGroup.run() }
        var iterator = ports.makeAsyncIterator()
        let port = try #require(await iterator.next())
        var failure: (any Error)?
        do {
            try await body(fake, "http://127.0.0.1:\(port)", engine)
        } catch {
            failure = error
        }
        // Requests still waiting out a delay are answered now, so that shutdown does not wait for them.
        fake.setEmbeddingsDelay(milliseconds: 0)
        await fakeGroup.triggerGracefulShutdown()
        await engineGroup.triggerGracefulShutdown()
        if let failure { throw failure }
        try await group.waitForAll()
    }
}

/// Cosine similarity of two vectors of one length.
func cosine(_ a: [Float], _ b: [Float]) -> Float {
    let dot = zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 }
    let norms = a.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot() * b.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
    return norms == 0 ? 0 : dot / norms
}

/// The fake upstream's deterministic embedder: meaning enough for recall tests, and the OpenAI wire format.
@Suite("Fake embedder", .timeLimit(.minutes(1)))
struct FakeEmbedderTests {
    private func embedding(_ text: String, _ dimensions: Int = 64) -> [Float] {
        FakeUpstream.fakeEmbedding(text, dimensions: dimensions)
    }

    private func post(
        _ engine: CurlEngine, _ url: String, _ body: String, headers: [(name: String, value: String)] = []
    )
        async throws -> (status: Int, object: [String: Any])
    {
        let response = try await engine.execute(
            UpstreamRequest(
                method: "POST", url: url + "/v1/embeddings",
                headers: [("Content-Type", "application/json")] + headers, body: ByteBuffer(string: body)),
            timeouts: UpstreamTimeouts(connectSeconds: 5, totalSeconds: 30))
        let text = String(buffer: try await response.collect(upTo: 16 * 1024 * 1024))
        return (response.status, try jsonObject(text))
    }

    @Test("a paraphrase is clearly closer than unrelated text")
    func paraphrasesAreNear() {
        let memory = self.embedding("My cat is called Miso and she is 7 years old")
        let paraphrases = ["What is my pet's name?", "Tell me about my kitty", "How old is she?"]
        let unrelated = [
            "Quarterly budget spreadsheet deadline tomorrow", "The printer on floor three jams again",
            "Rain expected over the weekend", "Please summarise this article about rockets",
        ]
        let near = paraphrases.map { cosine(memory, self.embedding($0)) }
        let far = unrelated.map { cosine(memory, self.embedding($0)) }
        for (text, similarity) in zip(paraphrases, near) {
            #expect(similarity > 0.3, "\(text): \(similarity)")
        }
        for (text, similarity) in zip(unrelated, far) {
            #expect(abs(similarity) < 0.25, "\(text): \(similarity)")
        }
        #expect(near.min()! > far.max()! + 0.2)
        let pair = cosine(self.embedding("My cat is called Miso"), self.embedding("What is my pet's name?"))
        #expect(pair > 0.6, "\(pair)")
    }

    @Test("synonyms, plurals and -ing/-ed forms map to the same features; stop words carry nothing")
    func synonymsAndStems() {
        #expect(self.embedding("cat") == self.embedding("kitty"))
        #expect(self.embedding("kittens") == self.embedding("cat"))
        #expect(self.embedding("she moved") == self.embedding("city"))
        #expect(self.embedding("cooking dinner") == self.embedding("food eat"))
        #expect(self.embedding("the job at my employer") == self.embedding("career work"))
        #expect(cosine(self.embedding("my dog"), self.embedding("my pet")) > 0.5)
        #expect(self.embedding("what is the") == self.embedding(""))
    }

    @Test("vectors are deterministic, unit length, and as long as asked")
    func deterministicAndNormalised() {
        for text in [
            "", "the of and", "My cat is called Miso", "Ünïcödé wörds 42", String(repeating: "word ", count: 500),
        ] {
            for dimensions in [1, 8, 64, 384] {
                let vector = self.embedding(text, dimensions)
                #expect(vector.count == dimensions)
                #expect(vector == self.embedding(text, dimensions))
                let norm = vector.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
                #expect(abs(norm - 1) < 1e-5, "\(text.prefix(20)) at \(dimensions): \(norm)")
            }
        }
        #expect(self.embedding("", 4) == [1, 0, 0, 0])
    }

    @Test("POST /v1/embeddings: float and base64 give the fake's vectors; model echoed, usage counted")
    func wireFormat() async throws {
        try await withFakeEmbedder { fake, url, engine in
            let texts = ["My cat is called Miso", "hello", ""]
            let input = try String(decoding: JSONSerialization.data(withJSONObject: texts), as: UTF8.self)
            for format in ["float", "base64", nil] {
                let formatField = format.map { #","encoding_format":"\#($0)""# } ?? ""
                let (status, object) = try await self.post(
                    engine, url, #"{"input":\#(input),"model":"m-1","dimensions":16\#(formatField)}"#)
                #expect(status == 200)
                #expect(object["model"] as? String == "m-1")
                #expect((object["usage"] as? [String: Any])?["prompt_tokens"] as? Int == 7)
                let data = try #require(object["data"] as? [[String: Any]])
                #expect(data.map { $0["index"] as? Int } == [0, 1, 2])
                for (text, item) in zip(texts, data) {
                    let vector: [Float]
                    if format == "base64" {
                        let base64 = try #require(item["embedding"] as? String)
                        let encoded = try #require(Data(base64Encoded: base64))
                        vector = encoded.withUnsafeBytes { raw in
                            stride(from: 0, to: raw.count, by: 4).map {
                                Float(
                                    bitPattern: UInt32(
                                        littleEndian: raw.loadUnaligned(fromByteOffset: $0, as: UInt32.self)))
                            }
                        }
                    } else {
                        vector = try #require(item["embedding"] as? [Double]).map { Float($0) }
                    }
                    #expect(vector == self.embedding(text, 16))
                }
            }
            let (status, object) = try await self.post(engine, url, #"{"input":"one string","model":"m"}"#)
            #expect(status == 200)
            let data = try #require(object["data"] as? [[String: Any]])
            #expect((data.first?["embedding"] as? [Double])?.count == 64)
            #expect(fake.embeddingRequests == 4)
            #expect(fake.embeddedTexts == 10)
        }
    }

    @Test("bad requests get 400 invalid_request_error naming the parameter")
    func badRequests() async throws {
        try await withFakeEmbedder { fake, url, engine in
            let cases: [(body: String, param: String?)] = [
                (#"{"input":"x"}"#, "model"),
                (#"{"input":[[1,2,3]],"model":"m"}"#, "input"),
                (#"{"input":[1,2,3],"model":"m"}"#, "input"),
                (#"{"input":[],"model":"m"}"#, "input"),
                (#"{"input":"x","model":"m","encoding_format":"int8"}"#, "encoding_format"),
                (#"{"input":"x","model":"m","dimensions":0}"#, "dimensions"),
                (#"[1]"#, nil),
            ]
            for (body, param) in cases {
                let (status, object) = try await self.post(engine, url, body)
                #expect(status == 400, "\(body)")
                let error = try #require(object["error"] as? [String: Any])
                #expect(error["type"] as? String == "invalid_request_error")
                #expect(error["param"] as? String == param, "\(body)")
                #expect(!(error["message"] as? String ?? "").isEmpty)
                #expect(error.keys.contains("code"))
            }
            #expect(fake.embeddedTexts == 0)
        }
    }

    @Test("scripted failures: X-Fake-Status, and the in-process knob for a number of requests")
    func scriptedFailures() async throws {
        try await withFakeEmbedder { fake, url, engine in
            let body = #"{"input":"x","model":"m"}"#
            let (scripted, _) = try await self.post(engine, url, body, headers: [("X-Fake-Status", "503")])
            #expect(scripted == 503)
            fake.setEmbeddingsFailure(status: 500, times: 2)
            let statuses = try await [self.post(engine, url, body).status, self.post(engine, url, body).status]
            #expect(statuses == [500, 500])
            let (recovered, _) = try await self.post(engine, url, body)
            #expect(recovered == 200)
            fake.setEmbeddingsFailure(status: 429)
            for _ in 0..<3 {
                let (status, object) = try await self.post(engine, url, body)
                #expect(status == 429)
                #expect((object["error"] as? [String: Any])?["message"] as? String == "fake embeddings error 429")
            }
            fake.setEmbeddingsFailure(status: nil)
            #expect(try await self.post(engine, url, body).status == 200)
            #expect(fake.embeddingRequests == 8)
            #expect(fake.embeddedTexts == 2)
        }
    }
}
