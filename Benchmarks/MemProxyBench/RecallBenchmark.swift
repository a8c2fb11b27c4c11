import CVectorKernels
import Foundation
import Logging
import MemProxyStore

/// Recall latency at growing sizes, on synthetic conversational text.
struct RecallBenchmark {
    let sizes: [Int]
    let queries: Int
    let limit: Int
    /// Keep the databases in this directory (for inspection) instead of a temporary one.
    let keepDirectory: String?
    /// Measure an existing database (one written with `--keep`) instead of loading a new one.
    let existingDatabase: String?
    /// Which configurations to measure (`baseline`, `default`).
    let configurationNames: [String]
    /// Extra configurations (`--try "near=0.4;depth=10"`), as in the LoCoMo benchmark.
    let tryVariants: [String]
    /// `--vectors D`: give every memory a pseudo-random unit vector of D dimensions (through the store's
    /// `EmbeddingStore` API) and measure recall with a random query vector too (recall by meaning, issue 12).
    let vectorDimensions: Int
    /// `--vector-batch N`: memories per `pendingEmbeddings` / `storeEmbeddings` batch.
    let vectorBatch: Int

    init(options: Options) throws {
        sizes = try options.ints("sizes", default: [10_000, 100_000])
        queries = try options.int("queries", default: 2000)
        limit = try options.int("limit", default: 10)
        keepDirectory = options.value("keep")
        existingDatabase = options.value("db")
        configurationNames = options.string("configs", default: "baseline,default").split(separator: ",").map(String.init)
        tryVariants = options.value("try")?.split(separator: ";").map(String.init) ?? []
        vectorDimensions = try options.int("vectors", default: 0)
        vectorBatch = max(1, try options.int("vector-batch", default: 1000))
    }

    /// The model name the vectors are stored under.
    var vectorModel: String { "bench-random@\(vectorDimensions)" }

    func run() async throws {
        var logger = Logger(label: "memproxy.bench")
        logger.logLevel = .warning
        // Both configurations are measured in the same run, on the same database, query by query in
        // alternating order, so that load from other processes weighs on both alike.
        var configurations: [(name: String, settings: RecallSettings)] = [("baseline", .baseline), ("default", RecallSettings())]
            .filter { configurationNames.contains($0.name) }
        for variant in tryVariants {
            configurations.append((variant, try LoCoMoBenchmark.settings(variant, base: RecallSettings())))
        }
        var results: [(total: Int, inSession: Int, configuration: String, stats: Stats)] = []
        var kernelRows: [(rows: Int, stats: Stats)] = []
        for size in sizes {
            let directory = try keepDirectory.map { path in
                let url = URL(fileURLWithPath: path).appendingPathComponent("recall-\(size)")
                try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
                return url
            } ?? temporaryDirectory()
            defer { if keepDirectory == nil { try? FileManager.default.removeItem(at: directory) } }
            let path = existingDatabase ?? directory.appendingPathComponent("bench.sqlite").path
            let inSession = min(size, 100_000)
            let generator = SyntheticText(seed: 42)
            if existingDatabase == nil {
                try load(try SQLiteMemoryStore(configuration: .init(path: path), logger: logger), total: size, inSession: inSession, text: generator)
            }
            if vectorDimensions > 0 { try await storeVectors(path: path, logger: logger) }
            var stores = try configurations.map { configuration in
                var storeConfiguration = SQLiteMemoryStore.Configuration(path: path)
                storeConfiguration.recall = configuration.settings
                return try SQLiteMemoryStore(configuration: storeConfiguration, logger: logger)
            }
            var names = configurations.map(\.name)
            // Recall by meaning: the default settings, the vectors read (`embeddingModel`), a query vector per query.
            var hasVectors = Array(repeating: false, count: stores.count)
            if vectorDimensions > 0 {
                var storeConfiguration = SQLiteMemoryStore.Configuration(path: path)
                storeConfiguration.embeddingModel = vectorModel
                stores.append(try SQLiteMemoryStore(configuration: storeConfiguration, logger: logger))
                names.append("default + vectors (\(vectorDimensions)-d int8)")
                hasVectors.append(true)
            }

            var random = SplitMix64(seed: 7)
            let queryTexts = (0..<(queries + 100)).map { _ in
                generator.sentence(words: 5 + Int(random.next() % 11), random: &random)
            }
            // One random query vector per query (made before measuring).
            let queryVectors = vectorDimensions > 0
                ? queryTexts.indices.map { StoreVectors.randomUnitVector(seed: 1 << 40 + UInt64($0), dimensions: vectorDimensions) }
                : []
            /// One recall as measured: `recall` (lexical), or `context` with the query's vector.
            func recall(_ index: Int, _ query: Int) async throws -> Int {
                if hasVectors[index] {
                    return try await stores[index].context(
                        session: "bench-main", query: queryTexts[query], vector: queryVectors[query], limit: limit,
                        proceduralLimit: 0
                    ).recalled.count
                }
                return try await stores[index].recall(session: "bench-main", query: queryTexts[query], limit: limit).count
            }
            for index in stores.indices {
                // The first recall of a session builds its in-memory index from the table (after a restart).
                let start = ContinuousClock.now
                _ = try await recall(index, 0)
                print("  \(names[index]): first recall of a \(inSession)-memory session (builds its index): \(ContinuousClock.now - start)")
            }
            for query in 0..<100 {  // warm-up
                for index in stores.indices { _ = try await recall(index, query) }
            }
            var samples = Array(repeating: [Double](), count: stores.count)
            var cpuSamples = Array(repeating: [Double](), count: stores.count)
            var returned = Array(repeating: 0, count: stores.count)
            for query in 100..<queryTexts.count {
                let order = query % 2 == 0 ? Array(stores.indices) : stores.indices.reversed()
                for index in order {
                    let cpuStart = processCPUMilliseconds()
                    let start = ContinuousClock.now
                    let found = try await recall(index, query)
                    samples[index].append(milliseconds(ContinuousClock.now - start))
                    cpuSamples[index].append(processCPUMilliseconds() - cpuStart)
                    returned[index] += found
                }
            }
            if vectorDimensions > 0 { kernelRows.append((inSession, measureKernel(rows: inSession))) }
            for index in stores.indices {
                let wall = samples[index].sorted()
                let cpu = cpuSamples[index].sorted()
                let stats = Stats(
                    p50: percentile(wall, 0.5), p99: percentile(wall, 0.99), max: wall.last ?? .nan,
                    mean: wall.reduce(0, +) / Double(max(wall.count, 1)),
                    cpu50: percentile(cpu, 0.5), cpu99: percentile(cpu, 0.99)
                )
                results.append((size, inSession, names[index], stats))
                print(
                    "  \(size) \(names[index]): \(queries) queries, mean "
                        + "\(format(Double(returned[index]) / Double(queries), 1)) results each"
                )
            }
        }
        print("")
        print(
            "recall latency (\(queries) queries of 5–15 words, limit \(limit), one query at a time"
                + (vectorDimensions > 0 ? "; with vectors: a random \(vectorDimensions)-d query vector each, excluding making it)" : ")")
        )
        print("(wall clock; CPU = process CPU time per query, which other load on the machine does not inflate)")
        print("| memories | rows in session | configuration | p50 ms | p99 ms | max ms | mean ms | CPU p50 ms | CPU p99 ms |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        for row in results {
            let stats = row.stats
            print(
                "| \(row.total) | \(row.inSession) | \(row.configuration) | \(format(stats.p50)) | \(format(stats.p99)) "
                    + "| \(format(stats.max)) | \(format(stats.mean)) | \(format(stats.cpu50)) | \(format(stats.cpu99)) |"
            )
        }
        for (rows, stats) in kernelRows {
            print(
                "| (kernel alone) | \(rows) | mp_int8_dot_rows, \(vectorDimensions)-d (AVX2 \(mp_vector_kernels_use_avx2() != 0 ? "on" : "off")) "
                    + "| \(format(stats.p50)) | \(format(stats.p99)) | \(format(stats.max)) | \(format(stats.mean)) "
                    + "| \(format(stats.cpu50)) | \(format(stats.cpu99)) |"
            )
        }
    }

    /// The integer dot-product kernel alone (`mp_int8_dot_rows`, what the store's exact cosines run) over `rows`
    /// random int8 vectors: the floor of a query with vectors, without the Swift around it (cosines, top rows, fusion).
    private func measureKernel(rows: Int) -> Stats {
        let dimensions = vectorDimensions
        var random = SplitMix64(seed: 99)
        var matrix = [Int8](repeating: 0, count: rows * dimensions)
        for index in matrix.indices { matrix[index] = Int8(truncatingIfNeeded: random.next() % 255) &- 127 }
        let query = (0..<dimensions).map { _ in Int8(truncatingIfNeeded: random.next() % 255) &- 127 }
        var out = [Int32](repeating: 0, count: rows)
        var wall: [Double] = []
        var cpu: [Double] = []
        for _ in 0..<(min(queries, 500) + 20) {
            let cpuStart = processCPUMilliseconds()
            let start = ContinuousClock.now
            matrix.withUnsafeBufferPointer { m in
                query.withUnsafeBufferPointer { q in
                    out.withUnsafeMutableBufferPointer { o in
                        mp_int8_dot_rows(m.baseAddress, q.baseAddress, Int64(dimensions), Int64(rows), o.baseAddress)
                    }
                }
            }
            wall.append(milliseconds(ContinuousClock.now - start))
            cpu.append(processCPUMilliseconds() - cpuStart)
        }
        wall = Array(wall.dropFirst(20)).sorted()
        cpu = Array(cpu.dropFirst(20)).sorted()
        return Stats(
            p50: percentile(wall, 0.5), p99: percentile(wall, 0.99), max: wall.last ?? .nan,
            mean: wall.reduce(0, +) / Double(max(wall.count, 1)), cpu50: percentile(cpu, 0.5), cpu99: percentile(cpu, 0.99))
    }

    /// Gives every memory without one a pseudo-random unit vector (seeded by its row), as memproxy's embedder would:
    /// `useEmbeddingModel`, then the queue in batches through `pendingEmbeddings` / `storeEmbeddings`.
    private func storeVectors(path: String, logger: Logger) async throws {
        var configuration = SQLiteMemoryStore.Configuration(path: path)
        configuration.embeddingModel = vectorModel
        let store = try SQLiteMemoryStore(configuration: configuration, logger: logger)
        let queueStart = ContinuousClock.now
        let queued = try await store.useEmbeddingModel(vectorModel)
        let queueSeconds = milliseconds(ContinuousClock.now - queueStart) / 1000
        let dimensions = vectorDimensions
        let fed = try await StoreVectors.feed(store, model: vectorModel, batch: vectorBatch, progress: true) { memory in
            StoreVectors.randomUnitVector(seed: UInt64(bitPattern: memory.seq), dimensions: dimensions)
        }
        let status = try await store.embeddingStatus()
        print(
            "  vectors (\(vectorModel)): useEmbeddingModel queued \(queued) in \(format(queueSeconds, 2)) s; stored "
                + "\(fed.stored) in \(fed.batches) batches of \(vectorBatch) in \(format(fed.seconds, 1)) s "
                + "(\(format(Double(fed.stored) / max(fed.seconds, 1e-9), 0)) vectors/s; the store's calls alone "
                + "\(format(fed.storeSeconds, 1)) s, \(format(Double(fed.stored) / max(fed.storeSeconds, 1e-9), 0)) vectors/s); "
                + "status: \(status.embedded) embedded, \(status.queued) queued"
        )
    }

    struct Stats {
        var p50: Double
        var p99: Double
        var max: Double
        var mean: Double
        var cpu50: Double
        var cpu99: Double
    }

    /// Loads `total` memories: `inSession` in the measured session, the rest spread over sessions of 1,000,
    /// interleaved in time as a real store would be.
    private func load(_ store: SQLiteMemoryStore, total: Int, inSession: Int, text: SyntheticText) throws {
        var random = SplitMix64(seed: UInt64(total))
        let batchSize = 20_000
        let start = ContinuousClock.now
        var loaded = 0
        var mainLoaded = 0
        let base = Date(timeIntervalSince1970: 1_700_000_000)
        while loaded < total {
            let count = min(batchSize, total - loaded)
            var batch: [Memory] = []
            batch.reserveCapacity(count)
            for index in 0..<count {
                let position = loaded + index
                // Spread the measured session evenly over the load.
                let isMain = mainLoaded < inSession
                    && (total == inSession || Double(mainLoaded) < Double(position + 1) * Double(inSession) / Double(total))
                let session: String
                if isMain {
                    session = "bench-main"
                    mainLoaded += 1
                } else {
                    session = "bench-other-\((position - mainLoaded) / 1000)"
                }
                batch.append(
                    Memory(
                        sessionID: session,
                        type: .episodic,
                        role: position % 2 == 0 ? "user" : "assistant",
                        content: text.sentence(words: 6 + Int(random.next() % 35), random: &random),
                        createdAt: base.addingTimeInterval(Double(position)),
                        source: "import"
                    )
                )
            }
            try store.insert(batch)
            loaded += count
            let elapsed = milliseconds(ContinuousClock.now - start) / 1000
            let progress = "  loading \(total): \(loaded) memories (\(format(elapsed, 1)) s)\r"
            FileHandle.standardError.write(Data(progress.utf8))
        }
        FileHandle.standardError.write(Data("\n".utf8))
        let seconds = milliseconds(ContinuousClock.now - start) / 1000
        print("  loaded \(total) memories in \(format(seconds, 1)) s (\(format(Double(total) / seconds, 0)) inserts/s)")
    }
}

/// A deterministic pseudo-random generator (SplitMix64).
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Conversational-looking text: English function words at the top of a Zipf (s = 1.05) distribution over a
/// 30,000-word vocabulary of made-up words.
struct SyntheticText: Sendable {
    let vocabulary: [String]
    let cumulative: [Double]

    init(seed: UInt64) {
        let common = [
            "i", "the", "you", "to", "and", "a", "it", "that", "my", "of", "is", "in", "was", "for", "me", "we",
            "so", "have", "but", "this", "with", "on", "just", "be", "about", "what", "like", "do", "your",
            "really", "great", "know", "think", "love", "time", "been", "going", "when", "can", "at", "had", "get",
            "all", "good", "one", "out", "some", "day", "new", "how",
        ]
        let syllables = [
            "ka", "lo", "ri", "mu", "sen", "ta", "vi", "ne", "por", "al", "bex", "do", "fi", "gra", "hu", "jin",
            "ke", "lam", "mor", "nu", "pe", "qui", "ros", "sa", "tor", "ul", "ve", "wen", "xo", "yan", "zed",
            "ing", "er", "ly", "tion", "ment",
        ]
        var random = SplitMix64(seed: seed)
        var seen = Set(common)
        var words = common
        while words.count < 30_000 {
            let length = 2 + Int(random.next() % 3)
            let word = (0..<length).map { _ in syllables[Int(random.next() % UInt64(syllables.count))] }.joined()
            if seen.insert(word).inserted { words.append(word) }
        }
        vocabulary = words
        var total = 0.0
        cumulative = (1...words.count).map { rank in
            total += 1 / pow(Double(rank), 1.05)
            return total
        }
    }

    func word(random: inout SplitMix64) -> String {
        let target = Double(random.next() >> 11) / Double(1 << 53) * (cumulative.last ?? 1)
        var low = 0
        var high = cumulative.count - 1
        while low < high {
            let mid = (low + high) / 2
            if cumulative[mid] < target { low = mid + 1 } else { high = mid }
        }
        return vocabulary[low]
    }

    func sentence(words: Int, random: inout SplitMix64) -> String {
        var text = (0..<words).map { _ in word(random: &random) }.joined(separator: " ")
        text = text.prefix(1).uppercased() + text.dropFirst()
        return text + (random.next() % 4 == 0 ? "?" : ".")
    }
}

/// CPU time used by this process so far, in milliseconds.
func processCPUMilliseconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) * 1000 + Double(spec.tv_nsec) / 1e6
}
