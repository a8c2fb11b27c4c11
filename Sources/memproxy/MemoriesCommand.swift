import ArgumentParser
import Foundation
import MemProxy
import MemProxyStore

/// `memproxy memories …`: inspect and edit one session's memories in the database file.
struct MemoriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memories",
        abstract: "List, show, add, edit, delete, search, forget, export and import a session's memories.",
        discussion: "Works on the database file directly, also while the server runs.",
        subcommands: [
            List.self, Show.self, Add.self, Edit.self, Delete.self, Search.self, Forget.self, Export.self,
            Import.self,
        ]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a session's memories, newest first.")
        @OptionGroup var session: SessionOption
        @OptionGroup var store: StoreOptions
        @Option(help: "Only memories of this type: episodic, semantic or procedural.") var type: String?
        @Option(help: "Memories per page (1-500).") var limit: Int = 50
        @Option(help: "Continue after this cursor (printed under the previous page).") var cursor: String?

        func run() async throws {
            let api = store.open()
            let page = await cliRun {
                try await api.list(session: session.session, type: type, limit: limit, cursor: cursor)
            }
            if store.json { return emit(page.json) }
            var table = TextTable(headers: ["ID", "TYPE", "ROLE", "CREATED", "CONTENT"])
            for memory in page.data {
                table.add([memory.id, memory.type, memory.role ?? "-", timeText(memory.createdAt), memory.content])
            }
            emit(page.data.isEmpty ? "No memories in session \(session.session)." : table.text)
            if let next = page.nextCursor { emit("More: --cursor \(next)") }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one memory.")
        @Argument(help: "The memory id.") var id: String
        @OptionGroup var session: SessionOption
        @OptionGroup var store: StoreOptions

        func run() async throws {
            let api = store.open()
            printMemory(await cliRun { try await api.get(session: session.session, id: id) }, json: store.json)
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a memory by hand.")
        @Argument(help: "The text to remember; - reads it from standard input.") var content: String
        @OptionGroup var session: SessionOption
        @OptionGroup var store: StoreOptions
        @Option(help: "episodic, semantic or procedural (always injected first).") var type: String = "semantic"
        @Option(help: "A JSON object stored with the memory.") var metadata: String?

        func run() async throws {
            let api = store.open(create: true)
            let text = content == "-" ? readStandardInput() : content
            let memory = await cliRun {
                try await api.add(session: session.session, content: text, type: type, metadata: metadata)
            }
            printMemory(memory, json: store.json)
        }
    }

    struct Edit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a memory's content, type or metadata.")
        @Argument(help: "The memory id.") var id: String
        @OptionGroup var session: SessionOption
        @OptionGroup var store: StoreOptions
        @Option(help: "The new text.") var content: String?
        @Option(help: "The new type.") var type: String?
        @Option(help: "The new metadata (a JSON object; replaces the old one).") var metadata: String?

        func run() async throws {
            let api = store.open()
            let memory = await cliRun {
                try await api.edit(session: session.session, id: id, content: content, type: type, metadata: metadata)
            }
            printMemory(memory, json: store.json)
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete one memory (asks first unless --yes).")
        @Argument(help: "The memory id.") var id: String
        @OptionGroup var session: SessionOption
        @OptionGroup var store: StoreOptions
        @Flag(help: "Do not ask for confirmation.") var yes = false

        func run() async throws {
            let api = store.open()
            let memory = await cliRun { try await api.get(session: session.session, id: id) }
            confirm(
                "Delete memory \(id) (\(TextTable.cell(memory.content, maxWidth: 40))) of session \(session.session)?",
                yes: yes)
            await cliRun { try await api.delete(session: session.session, id: id) }
            emit(store.json ? #"{"deleted":1}"# : "Deleted memory \(id).")
        }
    }

    struct Search: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print exactly what the proxy would inject for a query.",
            discussion: "The block a chat request would get if its newest user message were QUERY."
        )
        @Argument(help: "The query (a user message).") var query: String
        @OptionGroup var session: SessionOption
        @OptionGroup var store: StoreOptions
        @Option(
            name: .customLong("top-k"),
            help: "Recalled memories (1-50; default memory.top_k, as the proxy; procedural ones come on top).")
        var topK: Int?
        @Flag(help: "Break each recalled memory's score into its parts (own text, neighbours, date, multipliers).")
        var explain = false

        func run() async throws {
            let api = store.open()
            let result = await cliRun {
                try await api.recall(session: session.session, query: query, topK: topK, explain: explain)
            }
            if store.json { return emit(result.json) }
            guard !result.context.isEmpty else { return emit("Nothing would be injected for this query.") }
            var headers = ["ID", "TYPE", "SCORE", "CONTENT"]
            if explain { headers.insert(contentsOf: ["CONTENT·NEAR·FAR·DATE·FEEDBACK", "×TYPE×TIME"], at: 3) }
            var table = TextTable(headers: headers)
            for memory in result.memories {
                var row = [memory.id, memory.type, String(format: "%.3f", memory.score ?? 0), memory.content]
                if explain {
                    let parts = memory.explanation.map { e in
                        [e.content, e.near, e.far, e.date, e.feedback].map { String(format: "%.3f", $0) }
                            .joined(separator: " ")
                    }
                    let multipliers = memory.explanation.map { e in
                        // Recall by meaning: the cosine fused with the lexical score.
                        String(format: "×%.2f ×%.2f", e.typeWeight, e.temporal)
                            + (e.lexical == nil ? "" : e.dense.map { String(format: " dense %.3f", $0) } ?? " dense -")
                    }
                    row.insert(contentsOf: [parts ?? "procedural", multipliers ?? ""], at: 3)
                }
                table.add(row)
            }
            emit(table.text + "\n\n" + result.context)
            if let recall = result.recall { emit("recall: \(recall)") }
        }
    }

    struct Forget: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete all of a session's memories and injection records (asks first unless --yes)."
        )
        @OptionGroup var session: SessionOption
        @OptionGroup var store: StoreOptions
        @Flag(help: "Do not ask for confirmation.") var yes = false

        func run() async throws {
            let api = store.open()
            confirm("Forget session \(session.session): delete all its memories and injection records?", yes: yes)
            let deleted = await cliRun { try await api.forget(session: session.session) }
            emit(
                store.json ? #"{"deleted":\#(deleted)}"# : "Deleted \(deleted) memories of session \(session.session).")
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a session's memories as JSON Lines.")
        @OptionGroup var session: SessionOption
        @OptionGroup var store: StoreOptions
        @Option(help: "Write to this file instead of standard output.") var output: String?

        func run() async throws {
            let api = store.open()
            let handle: FileHandle
            if let output {
                guard FileManager.default.createFile(atPath: output, contents: nil) else {
                    Serve.fail("cannot create \(output): check the directory exists and is writable")
                }
                handle = cliRun { try FileHandle(forWritingTo: URL(fileURLWithPath: output)) }
            } else {
                handle = FileHandle.standardOutput
            }
            let count = await cliRun {
                try await api.export(session: session.session) { lines in handle.write(Data(lines.utf8)) }
            }
            if output != nil { note("Exported \(count) memories of session \(session.session) to \(output ?? "").") }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add memories from JSON Lines (as written by export) to a session.",
            discussion: "Lines whose id already exists in the session are skipped, so importing twice is harmless."
        )
        @Argument(help: "The JSON Lines file; - or nothing reads standard input.") var file: String = "-"
        @OptionGroup var session: SessionOption
        @OptionGroup var store: StoreOptions

        func run() async throws {
            let api = store.open(create: true)
            let bytes: [UInt8]
            if file == "-" {
                bytes = Array(FileHandle.standardInput.readDataToEndOfFile())
            } else {
                bytes = cliRun { Array(try Data(contentsOf: URL(fileURLWithPath: file))) }
            }
            let result = await cliRun { try await api.importLines(session: session.session, bytes) }
            emit(
                store.json
                    ? #"{"imported":\#(result.imported),"skipped":\#(result.skipped)}"#
                    : "Imported \(result.imported) memories into session \(session.session) (\(result.skipped) already there)."
            )
        }
    }
}

/// One memory: JSON, or one `field: value` line per field with the content last, in full.
func printMemory(_ memory: MemoryObject, json: Bool) {
    if json { return emit(memory.json) }
    emit(
        """
        id:         \(memory.id)
        session:    \(memory.sessionID)
        type:       \(memory.type)
        role:       \(memory.role ?? "-")
        created:    \(timeText(memory.createdAt))
        updated:    \(timeText(memory.updatedAt))
        source:     \(memory.source)
        metadata:   \(memory.metadata)
        content:
        \(memory.content)
        """
    )
}

/// Standard input as text, without the trailing newline(s) that `echo` and editors add.
func readStandardInput() -> String {
    var text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
    while text.last?.isNewline == true { text.removeLast() }
    return text
}
