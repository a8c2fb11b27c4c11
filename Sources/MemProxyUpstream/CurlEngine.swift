import CCurl
import Foundation
public import Logging
public import Metrics
import NIOCore
public import ServiceLifecycle
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

private let curlGlobalInit: Bool = {
    curl_global_init(memproxy_curl_global_all()) == CURLE_OK
}()

/// The libcurl engine: one curl multi handle driven by one dedicated thread.
///
/// Every upstream transfer of the process runs on this thread, so the number of threads does not grow with the
/// number of concurrent requests, and all easy handles share the multi handle's connection cache (keep-alive
/// reuse). Other threads talk to the curl thread only through a locked command queue plus `curl_multi_wakeup`.
/// The engine is a `Service`: `run()` starts the thread; graceful shutdown lets running transfers finish.
public final class CurlEngine: Upstream, Service, @unchecked Sendable {
    /// Engine-wide settings.
    public struct Configuration: Sendable {
        /// Idle connections kept for reuse.
        public var maxCachedConnections: Int = 512
        /// Upper bound on connections per upstream host (0 = unlimited).
        public var maxConnectionsPerHost: Int = 0

        public init() {}
    }

    private enum Command {
        case add(CurlTransfer)
        case cancel(CurlTransfer)
        case unpause(CurlTransfer)
    }

    private struct Shared {
        var commands: [Command] = []
        var stopping = false
        var started = false
        /// The curl thread is in (or about to enter) `curl_multi_poll` with no command left: a new command must
        /// wake it. While it runs it picks commands up by itself, so a submit then needs no wake-up syscall.
        var sleeping = false
        var pendingBeforeStart: [Command] = []
    }

    private let multi: UnsafeMutableRawPointer
    private let shared = Mutex(Shared())
    private let logger: Logger
    private let connectionsOpened: Counter
    private let activeTransfers: Gauge
    // curl thread only
    private var active: [UnsafeMutableRawPointer: CurlTransfer] = [:]

    /// Creates the engine; nothing runs until `run()`.
    public init(configuration: Configuration = .init(), logger: Logger, metricsFactory: (any MetricsFactory)? = nil) {
        precondition(curlGlobalInit, "curl_global_init failed")
        guard let multi = curl_multi_init() else {
            preconditionFailure("curl_multi_init failed: out of memory")
        }
        self.multi = multi
        self.logger = logger
        let factory = metricsFactory ?? MetricsSystem.factory
        self.connectionsOpened = Counter(label: "upstream_connections_opened_total", factory: factory)
        self.activeTransfers = Gauge(label: "upstream_transfers_active", factory: factory)
        _ = memproxy_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, configuration.maxCachedConnections)
        _ = memproxy_curl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, configuration.maxConnectionsPerHost)
    }

    deinit {
        curl_multi_cleanup(self.multi)
    }

    // MARK: Service

    public func run() async throws {
        let exited = Mutex<(done: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))
        let thread = Thread { [self] in
            self.loop()
            // Resumed outside the lock, as every continuation here (see CurlTransfer.Resumptions).
            let waiter = exited.withLock { state -> CheckedContinuation<Void, Never>? in
                state.done = true
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
        thread.name = "memproxy-curl"
        self.shared.withLock { shared in
            shared.started = true
            shared.commands.append(contentsOf: shared.pendingBeforeStart)
            shared.pendingBeforeStart.removeAll()
        }
        thread.start()
        // Serve until graceful shutdown (or cancellation); the HTTP server has drained its requests by then.
        try? await gracefulShutdown()
        self.shared.withLock { $0.stopping = true }
        curl_multi_wakeup(self.multi)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = exited.withLock { state -> Bool in
                if !state.done { state.waiter = continuation }
                return state.done
            }
            if done { continuation.resume() }
        }
        self.logger.debug("curl engine stopped")
    }

    // MARK: Upstream

    public func execute(
        _ request: UpstreamRequest,
        timeouts: UpstreamTimeouts
    ) async throws(UpstreamError) -> UpstreamResponse {
        guard let easy = curl_easy_init() else {
            throw .internalFailure("curl_easy_init failed")
        }
        let transfer = CurlTransfer(easy: easy, engine: self)
        do {
            try self.configure(transfer, request: request, timeouts: timeouts)
        } catch {
            curl_easy_cleanup(easy)
            throw error
        }
        do {
            let head = try await transfer.waitForHead {
                transfer.submitted = true
                self.submit(.add(transfer))
            }
            return UpstreamResponse(status: head.status, headers: head.headers, transfer: transfer)
        } catch {
            if !transfer.submitted {
                // Never reached the curl thread: nobody else will release the handle.
                curl_easy_cleanup(easy)
                curl_slist_free_all(transfer.headerList)
                transfer.headerList = nil
            }
            if let error = error as? UpstreamError { throw error }
            throw .internalFailure("\(error)")
        }
    }

    func cancel(_ transfer: CurlTransfer) {
        self.submit(.cancel(transfer))
    }

    func unpause(_ transfer: CurlTransfer) {
        self.submit(.unpause(transfer))
    }

    private func submit(_ command: Command) {
        let wake = self.shared.withLock { shared -> Bool in
            guard shared.started else {
                shared.pendingBeforeStart.append(command)
                return false
            }
            shared.commands.append(command)
            guard shared.sleeping else { return false }
            shared.sleeping = false
            return true
        }
        if wake {
            curl_multi_wakeup(self.multi)
        }
    }

    // MARK: configuration of one easy handle

    private func configure(
        _ transfer: CurlTransfer,
        request: UpstreamRequest,
        timeouts: UpstreamTimeouts
    ) throws(UpstreamError) {
        let easy = transfer.easy
        func check(_ code: CURLcode, _ what: String) throws(UpstreamError) {
            guard code == CURLE_OK else {
                throw .internalFailure("\(what): \(String(cString: curl_easy_strerror(code)))")
            }
        }
        try check(memproxy_curl_easy_setopt_string(easy, CURLOPT_URL, request.url), "invalid upstream URL")
        try check(memproxy_curl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1), "nosignal")
        _ = memproxy_curl_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1)
        _ = memproxy_curl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        _ = memproxy_curl_easy_setopt_long(easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1)
        _ = memproxy_curl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, Int(timeouts.connectSeconds * 1000))
        _ = memproxy_curl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, Int(timeouts.totalSeconds * 1000))
        _ = memproxy_curl_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(transfer.errorBuffer))
        let opaque = Unmanaged.passUnretained(transfer).toOpaque()
        _ = memproxy_curl_easy_setopt_pointer(easy, CURLOPT_PRIVATE, opaque)
        _ = memproxy_curl_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, opaque)
        _ = memproxy_curl_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, opaque)
        _ = memproxy_curl_easy_setopt_data_callback(easy, CURLOPT_HEADERFUNCTION, curlHeaderCallback)
        _ = memproxy_curl_easy_setopt_data_callback(easy, CURLOPT_WRITEFUNCTION, curlWriteCallback)

        let method = request.method.uppercased()
        let body = request.body
        switch method {
        case "GET" where body == nil || body?.readableBytes == 0:
            _ = memproxy_curl_easy_setopt_long(easy, CURLOPT_HTTPGET, 1)
        case "HEAD":
            _ = memproxy_curl_easy_setopt_long(easy, CURLOPT_NOBODY, 1)
            transfer.expectsBody = false
        case "POST":
            _ = memproxy_curl_easy_setopt_long(easy, CURLOPT_POST, 1)
        default:
            try check(memproxy_curl_easy_setopt_string(easy, CURLOPT_CUSTOMREQUEST, method), "method")
        }
        if method != "HEAD", method == "POST" || (body?.readableBytes ?? 0) > 0 {
            let bytes = body ?? ByteBuffer()
            _ = memproxy_curl_easy_setopt_off_t(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bytes.readableBytes))
            let code = bytes.withUnsafeReadableBytes { raw -> CURLcode in
                // COPYPOSTFIELDS copies exactly POSTFIELDSIZE bytes, so the body may contain NULs.
                memproxy_curl_easy_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!))
            }
            try check(code, "request body")
        }

        var list: UnsafeMutablePointer<curl_slist>?
        var sawAccept = false
        var sawContentType = false
        for header in request.headers {
            let lower = header.name.lowercased()
            if lower == "accept" { sawAccept = true }
            if lower == "content-type" { sawContentType = true }
            // An empty value must be sent as "Name;" — "Name:" would tell curl to drop the header.
            let line = header.value.isEmpty ? "\(header.name);" : "\(header.name): \(header.value)"
            list = curl_slist_append(list, line)
        }
        // curl adds these on its own unless told not to; the client's request must pass through unchanged.
        list = curl_slist_append(list, "Expect:")
        if !sawAccept { list = curl_slist_append(list, "Accept:") }
        if !sawContentType { list = curl_slist_append(list, "Content-Type:") }
        transfer.headerList = list
        _ = memproxy_curl_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, list)
    }

    // MARK: the curl thread

    private func loop() {
        var running: Int32 = 0
        while true {
            let (commands, stopping) = self.shared.withLock { shared -> ([Command], Bool) in
                let commands = shared.commands
                shared.commands.removeAll(keepingCapacity: true)
                shared.sleeping = false
                return (commands, shared.stopping)
            }
            for command in commands {
                self.apply(command)
            }
            if stopping && self.active.isEmpty {
                break
            }
            curl_multi_perform(self.multi, &running)
            self.collectFinished()
            // Sleep only if no command came in meanwhile; from here on a submit wakes the thread (a wake-up sent
            // before the poll starts makes it return at once). A graceful stop wakes it unconditionally (`run()`).
            let idle = self.shared.withLock { shared -> Bool in
                guard shared.commands.isEmpty else { return false }
                shared.sleeping = true
                return true
            }
            if idle {
                var numfds: Int32 = 0
                curl_multi_poll(self.multi, nil, 0, 1000, &numfds)
            }
        }
    }

    private func apply(_ command: Command) {
        switch command {
        case .add(let transfer):
            let code = curl_multi_add_handle(self.multi, transfer.easy)
            if code == CURLM_OK {
                self.active[transfer.easy] = transfer
                self.activeTransfers.record(self.active.count)
            } else {
                self.finish(transfer, error: .internalFailure("curl_multi_add_handle failed (\(code.rawValue))"))
            }
        case .cancel(let transfer):
            // Compare identity: a finished handle's address may already belong to a newer transfer.
            guard self.active[transfer.easy] === transfer else { return }
            self.active.removeValue(forKey: transfer.easy)
            curl_multi_remove_handle(self.multi, transfer.easy)
            self.activeTransfers.record(self.active.count)
            self.finish(transfer, error: .cancelled("cancelled"))
        case .unpause(let transfer):
            guard self.active[transfer.easy] === transfer else { return }
            curl_easy_pause(transfer.easy, memproxy_curl_pause_cont())
        }
    }

    private func collectFinished() {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(self.multi, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            let result = message.pointee.data.result
            guard let transfer = self.active.removeValue(forKey: easy) else { continue }
            curl_multi_remove_handle(self.multi, easy)
            self.activeTransfers.record(self.active.count)
            let error = result == CURLE_OK ? nil : self.mapError(result, transfer: transfer)
            self.finish(transfer, error: error)
        }
    }

    private func finish(_ transfer: CurlTransfer, error: UpstreamError?) {
        var status = 0
        var connects = 0
        _ = memproxy_curl_easy_getinfo_long(transfer.easy, CURLINFO_RESPONSE_CODE, &status)
        _ = memproxy_curl_easy_getinfo_long(transfer.easy, CURLINFO_NUM_CONNECTS, &connects)
        if connects > 0 { self.connectionsOpened.increment(by: connects) }
        transfer.complete(error: error, status: status, connectionsOpened: connects)
        curl_easy_cleanup(transfer.easy)
        curl_slist_free_all(transfer.headerList)
        transfer.headerList = nil
    }

    private func mapError(_ code: CURLcode, transfer: CurlTransfer) -> UpstreamError {
        var detail = String(cString: transfer.errorBuffer)
        if detail.isEmpty { detail = String(cString: curl_easy_strerror(code)) }
        switch code {
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY,
            CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_UNSUPPORTED_PROTOCOL,
            CURLE_URL_MALFORMAT:
            return .unreachable(detail)
        case CURLE_OPERATION_TIMEDOUT:
            return .timeout(detail)
        case CURLE_WRITE_ERROR, CURLE_ABORTED_BY_CALLBACK:
            return .cancelled(detail)
        case CURLE_GOT_NOTHING, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_PARTIAL_FILE:
            return .disconnected(detail)
        default:
            return .internalFailure(detail)
        }
    }
}

// C callbacks cannot capture context: the transfer comes back through the user-data pointer.
private func curlHeaderCallback(
    _ pointer: UnsafeMutablePointer<CChar>?,
    _ size: Int,
    _ count: Int,
    _ userData: UnsafeMutableRawPointer?
) -> Int {
    let length = size * count
    guard let pointer, let userData else { return length }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(userData).takeUnretainedValue()
    transfer.receivedHeaderLine(UnsafeRawBufferPointer(start: pointer, count: length))
    return length
}

private func curlWriteCallback(
    _ pointer: UnsafeMutablePointer<CChar>?,
    _ size: Int,
    _ count: Int,
    _ userData: UnsafeMutableRawPointer?
) -> Int {
    let length = size * count
    guard let pointer, let userData else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(userData).takeUnretainedValue()
    switch transfer.receivedBody(UnsafeRawBufferPointer(start: pointer, count: length)) {
    case .accepted: return length
    case .pause: return memproxy_curl_writefunc_pause()
    case .abort: return 0
    }
}

