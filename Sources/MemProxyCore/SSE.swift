/// One server-sent event.
public struct SSEEvent: Sendable, Equatable {
    /// The `event:` field of this event, or `nil` when absent or empty.
    public var event: String?
    /// The `data:` lines of this event joined with `"\n"`.
    public var data: String
    /// The `id:` field given in this event, or `nil`. Unlike a browser's `lastEventId`, it is not carried over
    /// from earlier events.
    public var id: String?

    /// Creates an event.
    /// - Parameters:
    ///   - event: The event type.
    ///   - data: The data payload.
    ///   - id: The event id.
    public init(event: String? = nil, data: String, id: String? = nil) {
        self.event = event
        self.data = data
        self.id = id
    }
}

/// An incremental parser for `text/event-stream` bodies (the WHATWG server-sent events framing).
///
/// Feed bytes as they arrive, split anywhere (inside a UTF-8 sequence, or between `\r` and `\n`); complete
/// events come out in order. Lines end with `\n`, `\r\n` or `\r`; lines starting with `:` are comments;
/// `data:`, `event:` and `id:` are recognised and other fields (such as `retry:`) ignored; one space after the
/// colon is stripped; a blank line dispatches the event. As in the specification, an event without any `data:`
/// line is not dispatched. Invalid UTF-8 is decoded with replacement characters.
///
/// A single event is capped at 16 MiB: a larger one is dropped whole and parsing resumes at the next event,
/// so a hostile upstream cannot make memory grow without bound.
public struct SSEParser: Sendable {
    static let defaultMaxEventBytes = 16 << 20

    private let maxEventBytes: Int
    private var line: [UInt8] = []
    /// Bytes seen in the current line, counted even while discarding.
    private var lineLength = 0
    private var previousWasCR = false
    private var data: [UInt8] = []
    private var hasData = false
    private var eventType: String?
    private var eventID: String?
    private var discarding = false

    /// Creates a parser with the default 16 MiB per-event cap.
    public init() {
        self.init(maxEventBytes: Self.defaultMaxEventBytes)
    }

    init(maxEventBytes: Int) {
        self.maxEventBytes = maxEventBytes
    }

    /// Consumes the next bytes of the stream.
    /// - Parameter bytes: Any number of bytes, split anywhere.
    /// - Returns: The events completed by these bytes, in order.
    public mutating func feed(_ bytes: some Collection<UInt8>) -> [SSEEvent] {
        var events: [SSEEvent] = []
        let handled: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            feed(buffer: buffer, into: &events)
        }
        if handled == nil {
            Array(bytes).withUnsafeBufferPointer { buffer in
                feed(buffer: buffer, into: &events)
            }
        }
        return events
    }

    /// Ends the stream: a final line without a line ending is processed, and an event that has data but no
    /// closing blank line is dispatched (more forgiving than browsers, so a reply cut short is not lost).
    /// The parser is then reset and can be reused.
    /// - Returns: The final event, if any.
    public mutating func finish() -> [SSEEvent] {
        var events: [SSEEvent] = []
        if lineLength > 0 {
            endLine(into: &events)
        }
        if !discarding {
            dispatch(into: &events)
        }
        self = SSEParser(maxEventBytes: maxEventBytes)
        return events
    }

    private mutating func feed(buffer: UnsafeBufferPointer<UInt8>, into events: inout [SSEEvent]) {
        var index = 0
        let end = buffer.count
        while index < end {
            if previousWasCR {
                previousWasCR = false
                if buffer[index] == ASCII.lineFeed {
                    index += 1
                    continue
                }
            }
            var lineEnd = index
            while lineEnd < end, buffer[lineEnd] != ASCII.lineFeed, buffer[lineEnd] != ASCII.carriageReturn {
                lineEnd += 1
            }
            appendToLine(UnsafeBufferPointer(rebasing: buffer[index..<lineEnd]))
            guard lineEnd < end else { return }
            previousWasCR = buffer[lineEnd] == ASCII.carriageReturn
            endLine(into: &events)
            index = lineEnd + 1
        }
    }

    private mutating func appendToLine(_ bytes: UnsafeBufferPointer<UInt8>) {
        lineLength += bytes.count
        guard !discarding, !bytes.isEmpty else { return }
        if data.count + line.count + bytes.count > maxEventBytes {
            startDiscarding()
        } else {
            line.append(contentsOf: bytes)
        }
    }

    private mutating func startDiscarding() {
        discarding = true
        line = []
        data = []
        hasData = false
        eventType = nil
        eventID = nil
    }

    private mutating func endLine(into events: inout [SSEEvent]) {
        defer {
            lineLength = 0
            if line.capacity > 1 << 16 {
                line = []
            } else {
                line.removeAll(keepingCapacity: true)
            }
        }
        if lineLength == 0 {
            if discarding {
                discarding = false
            } else {
                dispatch(into: &events)
            }
            return
        }
        guard !discarding, let first = line.first, first != ASCII.colon else { return }
        let colon = line.firstIndex(of: ASCII.colon) ?? line.count
        var valueStart = min(colon + 1, line.count)
        if valueStart < line.count, line[valueStart] == ASCII.space { valueStart += 1 }
        let name = line[..<colon]
        let value = line[valueStart...]
        if name.elementsEqual("data".utf8) {
            if hasData { data.append(ASCII.lineFeed) }
            data.append(contentsOf: value)
            hasData = true
        } else if name.elementsEqual("event".utf8) {
            eventType = value.isEmpty ? nil : String(decoding: value, as: UTF8.self)
        } else if name.elementsEqual("id".utf8) {
            if !value.contains(0) { eventID = String(decoding: value, as: UTF8.self) }
        }
    }

    private mutating func dispatch(into events: inout [SSEEvent]) {
        if hasData {
            events.append(SSEEvent(event: eventType, data: String(decoding: data, as: UTF8.self), id: eventID))
        }
        if data.capacity > 1 << 16 {
            data = []
        } else {
            data.removeAll(keepingCapacity: true)
        }
        hasData = false
        eventType = nil
        eventID = nil
    }
}
