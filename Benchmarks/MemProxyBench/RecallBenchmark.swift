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

    init(options: Options) throws {
        sizes = try options.ints("sizes", default: [10_000, 100_000])
        queries = try options.int("queries", default: 2000)
        limit = try options.int("limit", default: 10)
        keepDirectory = options.value("keep")
        existingDatabase = options.value("db")
        configurationNames = options.string("configs", default: "baseline,default").split(separator: ",").map(String.init)
        tryVariants = options.value("try")?.split(separator: ";").map(String.init) ?? []
    }

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
            let stores = try configurations.map { configuration in
                var storeConfiguration = SQLiteMemoryStore.Configuration(path: path)
                storeConfiguration.recall = configuration.settings
                return try SQLiteMemoryStore(configuration: storeConfiguration, logger: logger)
            }

            var random = SplitMix64(seed: 7)
            let queryTexts = (0..<(queries + 100)).map { _ in
                generator.sentence(words: 5 + Int(random.next() % 11), random: &random)
            }
            for store in stores {
                // The first recall of a session builds its in-memory index from the table (after a restart).
                let start = ContinuousClock.now
                _ = try await store.recall(session: "bench-main", query: queryTexts[0], limit: limit)
                print("  first recall of a \(inSession)-memory session (builds its index): \(ContinuousClock.now - start)")
            }
            for text in queryTexts.prefix(100) {  // warm-up
                for store in stores { _ = try await store.recall(session: "bench-main", query: text, limit: limit) }
            }
            var samples = Array(repeating: [Double](), count: stores.count)
            var cpuSamples = Array(repeating: [Double](), count: stores.count)
            var returned = Array(repeating: 0, count: stores.count)
            for (number, text) in queryTexts.dropFirst(100).enumerated() {
                let order = number % 2 == 0 ? Array(stores.indices) : stores.indices.reversed()
                for index in order {
                    let cpuStart = processCPUMilliseconds()
                    let start = ContinuousClock.now
                    let found = try await stores[index].recall(session: "bench-main", query: text, limit: limit)
                    samples[index].append(milliseconds(ContinuousClock.now - start))
                    cpuSamples[index].append(processCPUMilliseconds() - cpuStart)
                    returned[index] += found.count
                }
            }
            for index in stores.indices {
                let wall = samples[index].sorted()
                let cpu = cpuSamples[index].sorted()
                let stats = Stats(
                    p50: percentile(wall, 0.5), p99: percentile(wall, 0.99), max: wall.last ?? .nan,
                    mean: wall.reduce(0, +) / Double(max(wall.count, 1)),
                    cpu50: percentile(cpu, 0.5), cpu99: percentile(cpu, 0.99)
                )
                results.append((size, inSession, configurations[index].name, stats))
                print(
                    "  \(size) \(configurations[index].name): \(queries) queries, mean "
                        + "\(format(Double(returned[index]) / Double(queries), 1)) results each"
                )
            }
        }
        print("")
        print("recall latency (\(queries) queries of 5–15 words, limit \(limit), one query at a time)")
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
