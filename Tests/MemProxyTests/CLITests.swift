import Foundation
import MemProxyStore
import MemProxyUpstream
import Testing

/// Runs the real `memproxy` executable (built next to the test bundle) on a database file.
struct CLI {
    let database: String
    let directory: URL

    init() throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "memproxy-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        self.database = self.directory.appendingPathComponent("memories.db").path
    }

    static var executable: URL {
        get throws {
            let testBinary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            for directory in [
                testBinary.deletingLastPathComponent(),
                testBinary.deletingLastPathComponent().deletingLastPathComponent(),
            ] {
                let candidate = directory.appendingPathComponent("memproxy")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            }
            throw DeadlineExceeded(
                what: "the memproxy executable next to \(testBinary.path) (build all products first)")
        }
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
        var json: [String: Any] { (try? jsonObject(self.stdout)) ?? [:] }
        var lines: [String] { self.stdout.split(separator: "\n").map(String.init) }
    }

    /// A started `memproxy`: its output files and a stream that ends when it exits.
    struct Running {
        let process: Process
        let out: URL
        let err: URL
        let exited: AsyncStream<Void>

        func wait() async throws {
            let exited = self.exited
            try await withDeadline(30, "memproxy \(self.process.arguments?.first ?? "") to exit") {
                for await _ in exited {}
            }
        }
    }

    /// Starts `memproxy args…` (with `--database` for commands that take it) in the temporary directory.
    func start(_ arguments: [String], stdin: String? = nil, database: Bool = true) throws -> Running {
        let process = Process()
        process.executableURL = try Self.executable
        process.arguments = arguments + (database ? ["--database", self.database] : [])
        process.currentDirectoryURL = self.directory
        let id = UUID().uuidString
        let out = self.directory.appendingPathComponent("\(id).out")
        let err = self.directory.appendingPathComponent("\(id).err")
        let input = self.directory.appendingPathComponent("\(id).in")
        for file in [out, err] { _ = FileManager.default.createFile(atPath: file.path, contents: nil) }
        _ = FileManager.default.createFile(atPath: input.path, contents: Data((stdin ?? "").utf8))
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = try FileHandle(forReadingFrom: input)
        let (exited, continuation) = AsyncStream.makeStream(of: Void.self)
        process.terminationHandler = { _ in continuation.finish() }
        try process.run()
        return Running(process: process, out: out, err: err, exited: exited)
    }

    /// Runs `memproxy args…` to completion.
    func run(_ arguments: [String], stdin: String? = nil, database: Bool = true) async throws -> Result {
        let running = try self.start(arguments, stdin: stdin, database: database)
        try await running.wait()
        return Result(
            status: running.process.terminationStatus,
            stdout: try String(contentsOf: running.out, encoding: .utf8),
            stderr: try String(contentsOf: running.err, encoding: .utf8)
        )
    }
}

@Suite("CLI", .timeLimit(.minutes(2)))
struct CLITests {
    @Test("add, list, show, edit, search, export, forget, import on a real database; --json for scripts")
    func memoriesRoundTrip() async throws {
        let cli = try CLI()
        let added = try await cli.run([
            "memories", "add", "--session", "ops", "--json", "--type", "procedural",
            "--metadata", #"{"by":"ops"}"#, "Always answer in haiku.",
        ])
        #expect(added.status == 0, "\(added.stderr)")
        let id = try #require(added.json["id"] as? String)
        let fact = try await cli.run(
            ["memories", "add", "--session", "ops", "-"], stdin: "The user's car is a blue Volvo.\n")
        #expect(fact.status == 0)
        #expect(fact.stdout.contains("type:       semantic"))

        let list = try await cli.run(["memories", "list", "--session", "ops"])
        #expect(list.lines.first?.hasPrefix("ID") == true)
        #expect(list.lines.count == 3)
        #expect(list.stdout.contains("procedural") && list.stdout.contains("Always answer in haiku."))
        let jsonList = try await cli.run(["memories", "list", "--session", "ops", "--json", "--type", "procedural"])
        #expect((jsonList.json["data"] as? [[String: Any]])?.map { $0["id"] as? String } == [id])

        let show = try await cli.run(["memories", "show", id, "--session", "ops"])
        #expect(show.stdout.contains("metadata:   {\"by\":\"ops\"}"))
        let edited = try await cli.run([
            "memories", "edit", id, "--session", "ops", "--json", "--content", "Answer in limericks.",
        ])
        #expect(edited.json["content"] as? String == "Answer in limericks.")

        let search = try await cli.run(["memories", "search", "--session", "ops", "Which car do I drive?"])
        #expect(search.status == 0)
        #expect(search.stdout.contains("<memory>\n"))
        #expect(search.stdout.contains("- ["))
        #expect(search.stdout.contains("instruction: Answer in limericks."))
        #expect(search.stdout.contains("fact: The user's car is a blue Volvo."))

        let export = try await cli.run(["memories", "export", "--session", "ops"])
        #expect(export.lines.count == 2)
        let forget = try await cli.run(["memories", "forget", "--session", "ops", "--yes", "--json"])
        #expect(forget.stdout == "{\"deleted\":2}\n")
        let empty = try await cli.run(["memories", "list", "--session", "ops"])
        #expect(empty.stdout.contains("No memories"))
        let imported = try await cli.run(["memories", "import", "--session", "ops"], stdin: export.stdout)
        #expect(imported.stdout.contains("Imported 2 memories"))
        #expect(try await cli.run(["memories", "export", "--session", "ops"]).stdout == export.stdout)

        let sessions = try await cli.run(["sessions", "--json"])
        let data = try #require(sessions.json["data"] as? [[String: Any]])
        #expect(data.map { $0["session_id"] as? String } == ["ops"])
        #expect(data.first?["memory_count"] as? Int == 2)
    }

    @Test("destructive commands ask first: no answer or 'n' changes nothing, 'y' deletes")
    func confirmation() async throws {
        let cli = try CLI()
        let id = try #require(
            try await cli.run(["memories", "add", "--session", "c", "--json", "keep me"]).json["id"] as? String)
        for answer in ["", "n\n", "maybe\n"] {
            let refused = try await cli.run(["memories", "delete", id, "--session", "c"], stdin: answer)
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("aborted"))
            let forget = try await cli.run(["memories", "forget", "--session", "c"], stdin: answer)
            #expect(forget.status == 1)
        }
        #expect(try await cli.run(["memories", "show", id, "--session", "c"]).status == 0)
        let deleted = try await cli.run(["memories", "delete", id, "--session", "c"], stdin: "y\n")
        #expect(deleted.status == 0)
        #expect(deleted.stdout.contains("Deleted memory \(id)"))
        let gone = try await cli.run(["memories", "show", id, "--session", "c"])
        #expect(gone.status == 1)
        #expect(gone.stderr.hasPrefix("memproxy: error: No memory \(id) in session c"))
    }

    @Test("errors: one line on stderr, exit status 1; a missing database is not created by a read")
    func errors() async throws {
        let cli = try CLI()
        let missing = try await cli.run(["memories", "list", "--session", "s"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("There is no memory database at \(cli.database)"))
        #expect(!FileManager.default.fileExists(atPath: cli.database))
        _ = try await cli.run(["memories", "add", "--session", "s", "x"])
        let badType = try await cli.run(["memories", "add", "--session", "s", "--type", "dream", "x"])
        #expect(badType.status == 1 && badType.stderr.contains("type must be episodic, semantic or procedural"))
        let badMetadata = try await cli.run(["memories", "add", "--session", "s", "--metadata", "[1]", "x"])
        #expect(badMetadata.status == 1 && badMetadata.stderr.contains("metadata must be a JSON object"))
    }

    @Test("injections and sessions on the database of a running server; --request-id; --follow prints new records")
    func injectionsWhileServing() async throws {
        let cli = try CLI()
        let store = try SQLiteMemoryStore(configuration: .init(path: cli.database), logger: quietLogger)
        try await withProxy(memoryStore: store) { proxy in
            #expect(
                try await cli.run(["memories", "add", "--session", "live", "The user's parrot is called Kiwi"]).status
                    == 0)
            let (first, _) = try await proxy.chat("What is my parrot called?", session: "live")
            let requestID = try #require(first.header("X-Memproxy-Request-Id"))
            await store.flush()

            let one = try await cli.run(["injections", "--session", "live", "--request-id", requestID, "--json"])
            #expect(one.lines.count == 1)
            #expect(one.json["request_id"] as? String == requestID)
            #expect((one.json["block"] as? String)?.contains("Kiwi") == true)
            let human = try await cli.run(["injections", "--session", "live"])
            #expect(human.stdout.contains(requestID) && human.stdout.contains("  - ["))

            let follower = try cli.start([
                "injections", "--session", "live", "--follow", "--json", "--max-records", "2",
            ])
            try await eventually("the follower to start following") {
                (try? String(contentsOf: follower.err, encoding: .utf8))?.contains("Following") == true
            }
            let (second, _) = try await proxy.chat("Does Kiwi the parrot talk?", session: "live")
            await store.flush()
            try await follower.wait()
            let lines = try String(contentsOf: follower.out, encoding: .utf8).split(separator: "\n").map {
                try jsonObject(String($0))
            }
            #expect(lines.map { $0["request_id"] as? String } == [requestID, second.header("X-Memproxy-Request-Id")])
            #expect(follower.process.terminationStatus == 0)

            // explain: the injection as recorded (with the query it recalled with), and recall replayed now.
            let explained = try await cli.run(["explain", requestID, "--json"])
            #expect(explained.status == 0)
            let recorded = try #require(explained.json["injection"] as? [String: Any])
            #expect(recorded["query"] as? String == "What is my parrot called?")
            #expect((recorded["block"] as? String)?.contains("Kiwi") == true)
            let replayed = try #require(explained.json["replayed_now"] as? [String: Any])
            let kiwi = try #require((replayed["data"] as? [[String: Any]])?.first { ($0["content"] as? String)?.contains("Kiwi") == true })
            #expect(((kiwi["explain"] as? [String: Any])?["content"] as? Double ?? 0) > 0)
            let explainedText = try await cli.run(["explain", requestID])
            #expect(explainedText.stdout.contains("Replayed now") && explainedText.stdout.contains("OWN TEXT"))
            let missing = try await cli.run(["explain", "req_does_not_exist"])
            #expect(missing.status == 1)
            #expect(missing.stderr.contains("No injection is recorded"))

            let sessions = try await cli.run(["sessions"])
            #expect(sessions.lines.first?.hasPrefix("SESSION") == true)
            #expect(sessions.stdout.contains("live"))
        }
    }

    @Test("memproxy demo runs a scripted conversation with no key and no network")
    func demo() async throws {
        let cli = try CLI()
        let demo = try await cli.run(["demo"], database: false)
        #expect(demo.status == 0, "\(demo.stderr)")
        #expect(demo.stdout.contains("instruction: Answer in one short sentence."))
        #expect(demo.stdout.contains("user: My dog is called Rex and he loves tennis balls."))
        #expect(demo.stdout.contains("session bob now has 2 memories"))
        #expect(demo.stdout.contains("with 0 memories injected"))
    }
}
