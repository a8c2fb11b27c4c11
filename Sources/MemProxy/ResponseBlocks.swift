import Foundation
import MemProxyCore
import MemProxyStore
import Synchronization

/// The injection records of the most recent responses that a later request can continue by id (Responses'
/// `previous_response_id`), per session, so that a continuation arriving before the writer has committed the
/// record still finds it. Bounded: the oldest are forgotten first (the injection log still has them).
final class ResponseBlocks: Sendable {
    static let capacity = 4096

    private struct State {
        var records: [String: InjectionRecord] = [:]
        var order: [String] = []
        var head = 0
    }

    private let state = Mutex(State())

    private static func key(_ session: String, _ responseID: String) -> String { session + "\u{0}" + responseID }

    func remember(_ record: InjectionRecord) {
        guard let responseID = record.responseID else { return }
        let key = Self.key(record.sessionID, responseID)
        self.state.withLock { state in
            if state.records.updateValue(record, forKey: key) != nil { return }
            if state.order.count < Self.capacity {
                state.order.append(key)
            } else {
                state.records[state.order[state.head]] = nil
                state.order[state.head] = key
                state.head = (state.head + 1) % Self.capacity
            }
        }
    }

    func record(session: String, responseID: String) -> InjectionRecord? {
        self.state.withLock { $0.records[Self.key(session, responseID)] }
    }
}
