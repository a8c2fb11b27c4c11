import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// The in-process knobs of `POST /v1/embeddings` (memproxy's own embedder sends no `X-Fake-*` headers) and its
/// counters.
struct EmbeddingsSettings {
    var delayMs = 0
    var failureStatus: Int?
    /// How many more requests fail with `failureStatus`; nil: every one until cleared.
    var failuresLeft: Int?
    var requests = 0
    var texts = 0
    var nextWaiter = 0
    /// Delayed requests: nil until the waiting request has registered its continuation.
    var waiters: [Int: CheckedContinuation<Void, Never>?] = [:]
}

/// `POST /v1/embeddings`: a deterministic embedder whose vectors carry a little meaning (see ``fakeEmbedding``).
extension FakeUpstream {
    /// Delays every `POST /v1/embeddings` answer by `milliseconds` (0, the default: none), as a slow embedding model
    /// would. Requests waiting now are answered at once, so a test can end without waiting out a long delay.
    public func setEmbeddingsDelay(milliseconds: Int) {
        let waiters = self.embeddingsSettings.withLock { settings in
            settings.delayMs = max(0, milliseconds)
            defer { settings.waiters.removeAll() }
            return settings.waiters.values.compactMap { $0 }
        }
        waiters.forEach { $0.resume() }
    }

    /// Makes `POST /v1/embeddings` answer `status` with an OpenAI error body: the next `times` requests, or every
    /// request until cleared when `times` is nil. A nil `status` clears it.
    public func setEmbeddingsFailure(status: Int?, times: Int? = nil) {
        self.embeddingsSettings.withLock { settings in
            settings.failureStatus = status
            settings.failuresLeft = status == nil ? nil : times
        }
    }

    /// Requests received by `POST /v1/embeddings`, failed ones included.
    public var embeddingRequests: Int { self.embeddingsSettings.withLock { $0.requests } }

    /// Texts embedded in successful `POST /v1/embeddings` answers.
    public var embeddedTexts: Int { self.embeddingsSettings.withLock { $0.texts } }

    func embeddings(_ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 64 * 1024 * 1024)
        let script = ChatScript(request.headers)
        let (delay, knobFailure) = self.embeddingsSettings.withLock { settings -> (Int, Int?) in
            settings.requests += 1
            let failure = settings.failureStatus
            if let left = settings.failuresLeft {
                settings.failuresLeft = left - 1
                if left <= 1 { settings.failureStatus = nil }
            }
            return (max(settings.delayMs, script.delayMs), failure)
        }
        if delay > 0 { await self.embeddingsPause(milliseconds: delay) }
        if let failure = self.scriptedFailure(script, body: body, render: Self.embeddingsError(code:)) {
            return failure
        }
        if let status = knobFailure { return Self.embeddingsError(code: status) }
        let parsed: EmbeddingsRequest
        switch EmbeddingsRequest.parse(body) {
        case .success(let request): parsed = request
        case .failure(let error): return Self.invalidEmbeddingsRequest(error.message, param: error.param)
        }
        var data: [String] = []
        data.reserveCapacity(parsed.inputs.count)
        var tokens = 0
        for (index, input) in parsed.inputs.enumerated() {
            let vector = Self.fakeEmbedding(input, dimensions: parsed.dimensions)
            let embedding =
                parsed.base64 ? "\"\(Self.base64(vector))\"" : "[\(vector.map { "\($0)" }.joined(separator: ","))]"
            data.append(#"{"object":"embedding","index":\#(index),"embedding":\#(embedding)}"#)
            tokens += max(1, input.split(whereSeparator: \.isWhitespace).count)
        }
        self.embeddingsSettings.withLock { $0.texts += parsed.inputs.count }
        return Self.json(
            #"{"object":"list","data":[\#(data.joined(separator: ","))],"model":"\#(Self.escape(parsed.model))","usage":{"prompt_tokens":\#(tokens),"total_tokens":\#(tokens)}}"#
        )
    }

    /// The embedding the fake returns for `text`: its words lowercased (letters and digits), stop words dropped,
    /// crudely stemmed (plural `s`, `-ies`, `-ing`, `-ed`), mapped through a small synonym table onto shared
    /// concepts (`cat`/`kitty`/`kitten` → feline + pet, `dog`/`puppy` → canine + pet, `pet`/`animal` → pet,
    /// `name`/`called` → name, `old`/`age`/`years` → age, `car`/`drive`, `city`/`town`/`live`/`moved`,
    /// `job`/`work`/`employer`, `food`/`eat`/`dinner`/`cook`, …), each concept or other word hashed (FNV-1a) to 4
    /// signed positions, summed and L2-normalised. A text with no words (or whose features cancel out) gives
    /// `[1, 0, 0, …]`.
    ///
    /// So "My cat is called Miso" and "What is my pet's name?" have a cosine of about 0.7, and unrelated texts one
    /// near 0 (about ±0.1 at 64 dimensions).
    /// - Parameters:
    ///   - text: The text to embed.
    ///   - dimensions: The vector's length (at least 1).
    /// - Returns: A unit vector of `dimensions` floats, the same in every process.
    public static func fakeEmbedding(_ text: String, dimensions: Int) -> [Float] {
        let dimensions = max(1, dimensions)
        var vector = [Float](repeating: 0, count: dimensions)
        for feature in FakeEmbedder.features(of: text) {
            var state = FakeEmbedder.fnv1a(feature)
            var used: [Int] = []
            while used.count < min(4, dimensions) {
                state = FakeEmbedder.mix(state)
                let position = Int(state % UInt64(dimensions))
                guard !used.contains(position) else { continue }
                used.append(position)
                vector[position] += state >> 63 == 0 ? 1 : -1
            }
        }
        let norm = vector.reduce(Float(0)) { $0 + $1 * $1 }.squareRoot()
        guard norm > 0 else {
            vector[0] = 1
            return vector
        }
        return vector.map { $0 / norm }
    }

    /// Waits `milliseconds`, or less when `setEmbeddingsDelay` releases the waiting requests.
    private func embeddingsPause(milliseconds: Int) async {
        let id = self.embeddingsSettings.withLock { settings in
            settings.nextWaiter += 1
            settings.waiters[settings.nextWaiter] = .some(nil)
            return settings.nextWaiter
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: .milliseconds(milliseconds)) }
            group.addTask { await self.waitForEmbeddingsRelease(id) }
            await group.next()
            group.cancelAll()
        }
        self.releaseEmbeddingsWaiter(id)
    }

    private func waitForEmbeddingsRelease(_ id: Int) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let registered = self.embeddingsSettings.withLock { settings in
                    guard settings.waiters[id] != nil else { return false }
                    settings.waiters[id] = continuation
                    return true
                }
                if !registered { continuation.resume() }
            }
        } onCancel: {
            self.releaseEmbeddingsWaiter(id)
        }
    }

    /// Forgets waiter `id`, resuming it if it is waiting.
    private func releaseEmbeddingsWaiter(_ id: Int) {
        let continuation = self.embeddingsSettings.withLock { $0.waiters.removeValue(forKey: id) }
        continuation??.resume()
    }

    private static func embeddingsError(code: Int) -> Response {
        let body =
            #"{"error":{"message":"fake embeddings error \#(code)","type":"fake_error","param":null,"code":"fake_\#(code)"}}"#
        return Self.errorResponse(code: code, body: body, requestIDHeader: "x-request-id")
    }

    private static func invalidEmbeddingsRequest(_ message: String, param: String?) -> Response {
        let param = param.map { "\"\($0)\"" } ?? "null"
        let body =
            #"{"error":{"message":"\#(Self.escape(message))","type":"invalid_request_error","param":\#(param),"code":null}}"#
        return Self.errorResponse(code: 400, body: body, requestIDHeader: "x-request-id")
    }

    /// `vector` as little-endian float32, base64-encoded (OpenAI's `encoding_format: base64`).
    private static func base64(_ vector: [Float]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(vector.count * 4)
        for value in vector {
            let bits = value.bitPattern
            bytes.append(contentsOf: [0, 8, 16, 24].map { UInt8(truncatingIfNeeded: bits >> $0) })
        }
        return Data(bytes).base64EncodedString()
    }
}

/// An embeddings request as the fake reads it.
private struct EmbeddingsRequest {
    struct Invalid: Error {
        var message: String
        var param: String?
    }

    var inputs: [String]
    var model: String
    var dimensions: Int
    var base64: Bool

    static func parse(_ body: ByteBuffer) -> Result<Self, Invalid> {
        let value = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView), options: [.fragmentsAllowed])
        guard let object = value as? [String: Any] else {
            return .failure(Invalid(message: "The body must be a JSON object."))
        }
        guard let model = object["model"] as? String, !model.isEmpty else {
            return .failure(Invalid(message: "You must provide a model parameter.", param: "model"))
        }
        let inputs: [String]
        if let single = object["input"] as? String {
            inputs = [single]
        } else if let many = object["input"] as? [Any], !many.isEmpty, many.allSatisfy({ $0 is String }) {
            inputs = many.compactMap { $0 as? String }
        } else {
            return .failure(
                Invalid(
                    message: "input must be a string or a non-empty array of strings (the fake takes no token arrays).",
                    param: "input"))
        }
        var dimensions = 64
        if let value = object["dimensions"], !(value is NSNull) {
            guard let number = value as? Int, (1...8192).contains(number) else {
                return .failure(Invalid(message: "dimensions must be an integer from 1 to 8192.", param: "dimensions"))
            }
            dimensions = number
        }
        let format = object["encoding_format"] as? String ?? "float"
        guard format == "float" || format == "base64" else {
            return .failure(Invalid(message: "encoding_format must be float or base64.", param: "encoding_format"))
        }
        return .success(Self(inputs: inputs, model: model, dimensions: dimensions, base64: format == "base64"))
    }
}

/// The words, stop words, stemming and synonym table behind ``FakeUpstream/fakeEmbedding(_:dimensions:)``.
enum FakeEmbedder {
    static let stopWords: Set<String> = [
        "a", "about", "am", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "d", "did", "do",
        "does", "for", "from", "had", "has", "have", "he", "her", "here", "him", "his", "how", "i", "in", "is", "it",
        "its", "ll", "m", "me", "mine", "my", "no", "not", "of", "on", "or", "our", "re", "s", "she", "should", "so",
        "t", "tell", "that", "the", "their", "them", "there", "these", "they", "this", "those", "to", "ve", "was", "we",
        "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you", "your",
    ]

    /// Word → the concepts it stands for. Related groups share a concept (a cat and a dog are both pets).
    static let concepts: [String: [String]] = {
        let groups: [(concepts: [String], words: [String])] = [
            (["feline", "pet"], ["cat", "kitty", "kitten", "feline", "tabby"]),
            (["canine", "pet"], ["dog", "puppy", "pup", "canine", "hound"]),
            (["pet"], ["pet", "animal"]),
            (["age"], ["age", "old", "older", "year", "aged", "birthday", "born"]),
            (["name"], ["name", "call", "nickname"]),
            (["vehicle"], ["car", "vehicle", "drive", "drove", "driver", "truck", "automobile"]),
            (["place"], ["city", "live", "town", "move", "home", "hometown", "neighborhood", "relocate"]),
            (["work"], ["job", "work", "career", "employer", "employ", "company", "office", "boss", "profession"]),
            (
                ["food"],
                ["food", "eat", "ate", "dinner", "lunch", "breakfast", "meal", "cook", "cuisine", "restaurant"]
            ),
            (["spouse"], ["wife", "husband", "partner", "spouse", "marry", "married", "marriage"]),
            (["child"], ["kid", "child", "children", "son", "daughter", "baby"]),
            (["like"], ["like", "love", "enjoy", "favorite", "favourite", "prefer", "fond"]),
            (["travel"], ["travel", "trip", "vacation", "holiday", "visit", "journey", "flight"]),
            (["health"], ["doctor", "hospital", "sick", "ill", "health", "allergy", "allergic", "medicine"]),
            (["music"], ["music", "song", "band", "guitar", "piano", "sing", "concert"]),
            (["exercise"], ["sport", "gym", "exercise", "run", "running", "jog", "hike", "workout"]),
        ]
        var table: [String: [String]] = [:]
        for group in groups {
            for word in group.words { table[word] = group.concepts }
        }
        return table
    }()

    /// The features hashed for `text`: a concept per synonym-table word, the stem of any other word.
    static func features(of text: String) -> [String] {
        var features: [String] = []
        for token in text.lowercased().split(whereSeparator: { !($0.isLetter || $0.isNumber) }) {
            let word = String(token)
            guard !stopWords.contains(word) else { continue }
            let stem = Self.stem(word)
            if let concepts = Self.concepts[word] ?? Self.concepts[stem] ?? Self.concepts[stem + "e"] {
                features.append(contentsOf: concepts.map { "concept:" + $0 })
            } else {
                features.append(stem)
            }
        }
        return features
    }

    /// `word` without one crude suffix: `-ies` → `y`, `-ing`, `-ed`, or a plural `s`.
    static func stem(_ word: String) -> String {
        let count = word.count
        if count > 4, word.hasSuffix("ies") { return String(word.dropLast(3)) + "y" }
        if count > 5, word.hasSuffix("ing") { return String(word.dropLast(3)) }
        if count > 4, word.hasSuffix("ed") { return String(word.dropLast(2)) }
        if count > 3, word.hasSuffix("s"), !word.hasSuffix("ss"), !word.hasSuffix("us") {
            return String(word.dropLast())
        }
        return word
    }

    /// The 64-bit FNV-1a hash of `text`'s UTF-8 (stable across processes, unlike `Hasher`).
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// One SplitMix64 step: the next well-mixed value after `state`.
    static func mix(_ state: UInt64) -> UInt64 {
        var z = state &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce5_e4b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
