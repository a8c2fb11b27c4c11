import Foundation

/// Recall benchmarks of the memory store; prints tables.
///
/// ```
/// MemProxyBench recall [--sizes 10000,100000,1000000] [--queries 2000] [--limit 10] [--keep DIR] [--db FILE]
///                      [--configs baseline,default] [--try "near=0.4;depth=20"] [--vectors 384] [--vector-batch 1000]
/// MemProxyBench locomo [--data ../shared/data/locomo-dev.json] [--configs baseline,near,…,default]
///                      [--try "near=0.4,far=0.3;temporal=2"]
/// MemProxyBench locomo --embeddings URL --embeddings-model NAME [--candidates 50] [--embeddings-batch 64]
///                      [--embeddings-cache bench-out/embeddings] [--cost-samples 100] [--probe 1]
///                      [--fusions "NAME,NAME"] [--dump FILE]
/// MemProxyBench write  [--exchanges 5000] [--existing 20000] [--reply-words 80]
/// ```
/// Run from the repository root (the default data path is relative to it).
@main
struct MemProxyBench {
    static func main() async {
        var arguments = Array(CommandLine.arguments.dropFirst())
        guard let command = arguments.first else {
            usage()
            exit(2)
        }
        arguments.removeFirst()
        do {
            let options = try Options(arguments)
            switch command {
            case "recall":
                try await RecallBenchmark(options: options).run()
            case "locomo" where options.value("embeddings") != nil:
                try await EmbeddingsBenchmark(options: options).run()
            case "locomo":
                try await LoCoMoBenchmark(options: options).run()
            case "write":
                try await WriteBenchmark(options: options).run()
            default:
                usage()
                exit(2)
            }
        } catch {
            FileHandle.standardError.write(Data("MemProxyBench: \(error)\n".utf8))
            exit(1)
        }
    }

    static func usage() {
        let text = """
            usage: MemProxyBench recall [--sizes 10000,100000,1000000] [--queries 2000] [--limit 10] [--keep DIR]
                                        [--db FILE] [--configs baseline,default] [--try "KNOB=VALUE,…;…"]
                                        [--vectors D (random unit vectors, recall with a query vector too)]
                                        [--vector-batch 1000]
                   MemProxyBench locomo [--data ../shared/data/locomo-dev.json] [--configs NAME,…] [--try "KNOB=VALUE,…;…"]
                   MemProxyBench locomo --embeddings URL --embeddings-model NAME [--candidates 50] [--embeddings-batch 64]
                                        [--embeddings-dimensions D] [--embeddings-encoding float|base64]
                                        [--embeddings-cache bench-out/embeddings] [--cost-samples 100] [--probe 1|0]
                                        [--fusions "NAME,NAME" (as printed, no encoding; none)] [--dump FILE]
                                        (lexical / dense / hybrid; the key from MEMPROXY_EMBEDDINGS_API_KEY)
                   MemProxyBench write [--exchanges 5000] [--existing 20000] [--reply-words 80]
            knobs for --try: near, far, date, temporal, feedback, feedback_terms, feedback_weight, budget, depth,
                             baseline=1 (start from the baseline instead of the defaults)

            """
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// `--name value` pairs.
struct Options {
    private var values: [String: String] = [:]

    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    init(_ arguments: [String]) throws {
        var index = 0
        while index < arguments.count {
            let name = arguments[index]
            guard name.hasPrefix("--"), index + 1 < arguments.count else {
                throw Invalid(description: "unexpected argument '\(name)': options are '--name value'")
            }
            values[String(name.dropFirst(2))] = arguments[index + 1]
            index += 2
        }
    }

    func string(_ name: String, default value: String) -> String { values[name] ?? value }

    func value(_ name: String) -> String? { values[name] }

    func int(_ name: String, default value: Int) throws -> Int {
        guard let raw = values[name] else { return value }
        guard let parsed = Int(raw) else { throw Invalid(description: "--\(name) needs an integer, got '\(raw)'") }
        return parsed
    }

    func ints(_ name: String, default value: [Int]) throws -> [Int] {
        guard let raw = values[name] else { return value }
        return try raw.split(separator: ",").map { part in
            guard let parsed = Int(part.trimmingCharacters(in: .whitespaces)) else {
                throw Invalid(description: "--\(name) needs comma-separated integers, got '\(raw)'")
            }
            return parsed
        }
    }
}

/// Latency percentiles of a list of samples in milliseconds.
func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((p * Double(sorted.count - 1)).rounded())
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1000 + Double(attoseconds) / 1e15
}

func format(_ value: Double, _ digits: Int = 3) -> String {
    String(format: "%.\(digits)f", value)
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
}

/// A fresh temporary directory for benchmark databases.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("memproxy-bench-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
