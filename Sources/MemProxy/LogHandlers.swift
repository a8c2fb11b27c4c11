import Foundation
public import Logging

/// Writes one JSON object per log line to standard output: `ts`, `level`, `label`, `msg`, then the metadata.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let extra = event.metadata {
            merged.merge(extra) { _, new in new }
        }
        var line = "{\"ts\":\"\(Self.timestamp())\",\"level\":\"\(event.level)\",\"label\":\"\(jsonEscape(self.label))\","
        line += "\"msg\":\"\(jsonEscape(event.message.description))\""
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            line += ",\"\(jsonEscape(key))\":\(Self.render(value))"
        }
        line += "}\n"
        FileHandle.standardOutput.write(Data(line.utf8))
    }

    private static func render(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): return "\"\(jsonEscape(s))\""
        case .stringConvertible(let c):
            let s = c.description
            if c is Int || c is Double || c is Bool || c is Int64 { return s }
            return "\"\(jsonEscape(s))\""
        case .array(let values): return "[" + values.map(render).joined(separator: ",") + "]"
        case .dictionary(let dict):
            return "{" + dict.sorted { $0.key < $1.key }.map { "\"\(jsonEscape($0.key))\":\(render($0.value))" }
                .joined(separator: ",") + "}"
        }
    }

    private static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

/// Installs the process-wide log handler chosen by `log.format` and `log.level`. Call once, from the CLI only.
public func bootstrapLogging(_ log: ProxyConfiguration.Log) {
    let level = log.level
    if log.format == .json {
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
    } else {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardOutput(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
