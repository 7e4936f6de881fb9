import CallFlow
import Control
import Foundation
import Logging
import Store
import Synchronization

/// Carries CallFlow's call-log events into the store, stamping the wall-clock time, and
/// answers the technician's questions about recent calls. A store that fails is logged and
/// never stops a call: the client's call matters more than its record.
final class CallLogWriter: Sendable {
    private let store: BeeldzorgStore
    private let logger: Logger
    /// CallFlow's per-process record counter → the record's durable, uploadable id.
    private let ids = Mutex<[CallRecordID: String]>([:])
    /// The record ended last, so the callback request that follows its end can refer to it.
    private let lastEnded = Mutex<(record: CallRecordID, id: String)?>(nil)
    /// Called after a record was queued for upload (a call ended, a callback request).
    private let queuedHook = Mutex<(@Sendable () -> Void)?>(nil)
    /// Writes the open records' heartbeat (`lastAliveAt`) while any is open; nil otherwise.
    private let heartbeat = Mutex<Task<Void, Never>?>(nil)
    /// How often the heartbeat of open calls is written: the most an interrupted call's
    /// `endedAt` can lie before the power cut (one durable commit per interval during a call).
    static let heartbeatInterval: Duration = .seconds(5)

    init(store: BeeldzorgStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// `hook` runs (on the caller's thread, so it must be quick) after each record is queued
    /// for upload: the uploader's kick.
    func onQueuedForUpload(_ hook: @escaping @Sendable () -> Void) {
        queuedHook.withLock { $0 = hook }
    }

    private func queuedForUpload() {
        queuedHook.withLock { $0 }?()
    }

    func write(_ event: CallLogEvent, at now: Date) {
        do {
            switch event {
            case .started(let record, let direction, let peer):
                let id = RandomIdentifier.string()
                ids.withLock { $0[record] = id }
                let name = direction == .outgoing ? "centrale" : (try? store.contact(forURI: peer))?.displayName
                try store.recordCallStarted(id: id, direction: Self.direction(direction), peerURI: peer, peerName: name, at: now)
                startHeartbeat()
            case .answered(let record, _):
                guard let id = ids.withLock({ $0[record] }) else { return }
                try store.recordAnswered(id: id, at: now)
            case .ended(let record, let outcome, let postsTried, let reason):
                guard let id = ids.withLock({ $0.removeValue(forKey: record) }) else { return }
                // A callback request for this attempt follows in the same batch of actions.
                lastEnded.withLock { $0 = (record, id) }
                try store.recordEnded(id: id, outcome: Self.outcome(outcome), postsTried: postsTried, failureReason: reason, at: now)
                queuedForUpload()
            }
        } catch {
            logger.error("call log write failed", metadata: ["event": "\(String(describing: event).prefix { $0 != "(" })", "error": "\(error)"])
        }
    }

    /// Starts the heartbeat task unless it runs. It stops itself once no record is open
    /// (checked under the same lock, so a record started meanwhile always has a heartbeat).
    private func startHeartbeat() {
        heartbeat.withLock { task in
            guard task == nil else { return }
            task = Task.detached { [weak self] in
                while true {
                    do {
                        try await Task.sleep(for: Self.heartbeatInterval)
                    } catch {
                        return
                    }
                    guard let self else { return }
                    let open = self.heartbeat.withLock { task -> [String]? in
                        let open = self.ids.withLock { Array($0.values) }
                        if open.isEmpty { task = nil }
                        return open.isEmpty ? nil : open
                    }
                    guard let open else { return }
                    do {
                        try self.store.recordAlive(ids: open, at: Date())
                    } catch {
                        self.logger.error("call heartbeat not written", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }

    /// Stores a callback request for `record` (durably, before the client is told anything
    /// about it) and queues it for the organisation's server; returns what its MESSAGE to the
    /// centrale carries, or nil when the store failed (logged).
    func queueCallback(record: CallRecordID, postsTried: [String], reason: String, at now: Date) -> CallbackRequestInfo? {
        let callID = ids.withLock { $0[record] } ?? lastEnded.withLock { $0?.record == record ? $0?.id : nil }
        let pressedAt = callID.flatMap { try? store.callStartedAt(id: $0) } ?? now
        do {
            let request = try store.enqueueCallbackRequest(reason: reason, callID: callID, pressedAt: pressedAt,
                                                           postsTried: postsTried, at: now)
            queuedForUpload()
            return CallbackRequestInfo(id: request.id, pressedAt: WallTime(pressedAt), createdAt: WallTime(now),
                                       postsTried: postsTried, reason: reason)
        } catch {
            logger.error("callback request could not be queued", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Callback requests not yet cleared, for `CallbackDelivery` after a start.
    func outstandingCallbacks() -> [CallbackRequestInfo] {
        do {
            return try store.outstandingCallbackRequests().map { record in
                CallbackRequestInfo(id: record.id, pressedAt: WallTime(record.pressedAt), createdAt: WallTime(record.createdAt),
                                    postsTried: record.postsTried, reason: record.reason,
                                    escalated: record.escalatedAt != nil, acknowledgedAt: record.acknowledgedAt.map(WallTime.init))
            }
        } catch {
            logger.error("callback requests could not be read", metadata: ["error": "\(error)"])
            return []
        }
    }

    /// Persists what `CallbackDelivery` decided; a store that fails is logged (the request
    /// is then delivered again after a restart, and the centrale deduplicates by its id).
    func callbackDelivery(_ action: CallbackDeliveryAction, clearedBy record: CallRecordID?) {
        do {
            switch action {
            case .markAcknowledged(let id, let at, let target):
                try store.markCallbackAcknowledged(id: id, at: at.date, by: target.rawValue)
            case .markEscalated(let id, let at):
                try store.markCallbackEscalated(id: id, at: at.date)
            case .markCleared(let requestIDs, let at):
                let callID = record.flatMap { record in ids.withLock { $0[record] } }
                try store.markCallbacksCleared(ids: requestIDs, at: at.date, callID: callID)
            case .send, .scheduleTimer, .cancelTimer, .announce:
                break
            }
        } catch {
            logger.error("callback request state not stored", metadata: ["error": "\(error)"])
        }
    }

    func recentCalls(limit: Int) throws -> [CallRecord] {
        try store.recentCalls(limit: max(1, min(limit, 500)))
    }

    func lastCall() -> StatusReport.LastCall? {
        guard let record = try? store.recentCalls(limit: 1).first else { return nil }
        let duration: Int? = if let answered = record.answeredAt, let ended = record.endedAt {
            Int(ended.timeIntervalSince(answered).rounded())
        } else {
            nil
        }
        return StatusReport.LastCall(
            direction: record.direction.rawValue,
            peer: record.peerName ?? record.peerURI,
            startedAt: record.startedAt,
            outcome: record.outcome?.rawValue ?? "in progress",
            durationSeconds: duration
        )
    }

    /// Contacts' calls nobody took and no call has followed yet, newest first, for the
    /// idle screen (at most `limit`). The name is the one the call was logged with, else the
    /// contact list's; a call without any name is left out (nothing to show the client).
    func missedCalls(limit: Int = 2) -> [MissedCallNote] {
        do {
            return try store.missedCallsNotReturned(limit: limit).compactMap { call in
                guard let name = call.peerName ?? contact(forURI: call.peerURI)?.displayName else { return nil }
                return MissedCallNote(name: name, at: WallTime(call.at))
            }
        } catch {
            logger.error("missed calls not read", metadata: ["error": "\(error)"])
            return []
        }
    }

    func contact(forURI uri: String) -> Contact? {
        do {
            return try store.contact(forURI: uri)
        } catch {
            logger.error("contact lookup failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    var health: StatusReport.Store {
        StatusReport.Store(healthy: store.openFault == nil, path: store.path ?? "(memory)", detail: store.openFault?.description)
    }

    static func direction(_ direction: FlowCallDirection) -> Store.CallDirection {
        switch direction {
        case .outgoing: .outgoing
        case .incoming: .incoming
        }
    }

    static func outcome(_ outcome: FlowCallOutcome) -> Store.CallOutcome {
        switch outcome {
        case .completed: .answered
        case .cancelled: .cancelled
        case .unreachable: .unreachable
        case .missed: .missed
        case .declined: .rejected
        case .rejectedNotAContact: .notAContact
        case .rejectedBusy: .busy
        case .connectionLost: .connectionLost
        }
    }
}

extension WallTime {
    init(_ date: Date) { self.init(secondsSince1970: date.timeIntervalSince1970) }
    var date: Date { Date(timeIntervalSince1970: secondsSince1970) }
}
