/// Delivering a callback request to the centrale until it is acknowledged: events in,
/// actions out, no I/O, no clock reads (the I/O layer stamps each event with the wall-clock
/// time it happened, and runs the timers this machine asks for).
///
/// A request is **trying** from the moment it exists (the client hears and sees that the
/// tablet keeps trying to reach the centrale) until a 2xx to its SIP MESSAGE makes it
/// **promised** ("De centrale belt u terug", since when). Each request goes
/// pending → sent → acknowledged, or sent → failed → retried after a backoff (at once when
/// the network returns); one not acknowledged `escalateAfter` after it was made goes to
/// the fallback URI from then on (logged as escalated). The centrale calling the tablet, or
/// the tablet reaching a post, clears every request: the promise was kept.
///
/// Requests are persisted by the I/O layer before they reach this machine, and every state
/// change it must keep comes out as a `mark…` action, so after a restart `restored` rebuilds
/// the same picture: unacknowledged requests are sent again (the centrale deduplicates by the
/// request's id), acknowledged ones keep their promise on screen.
public struct CallbackDelivery: Sendable {
    // MARK: State

    private enum Phase: Sendable, Equatable {
        /// A MESSAGE is in flight; its result is reported with this attempt number.
        case sending(attempt: Int)
        /// The last attempt failed; `retry` fires after the backoff.
        case waiting(attempt: Int)
        /// A 2xx came back at this time.
        case acknowledged(at: WallTime)
    }

    private struct Delivery: Sendable {
        var request: CallbackRequestInfo
        var phase: Phase
        /// Where new attempts go: the primary URI until the escalation time, then the fallback.
        var target: CallbackTarget
        /// Failed attempts in a row (for the backoff).
        var failures: Int
    }

    private let configuration: CallbackDeliveryConfiguration
    /// In the order the requests were made.
    private var deliveries: [Delivery] = []

    public init(configuration: CallbackDeliveryConfiguration) {
        self.configuration = configuration
    }

    public mutating func handle(_ event: CallbackDeliveryEvent) -> [CallbackDeliveryAction] {
        let before = promise
        var actions: [CallbackDeliveryAction]
        switch event {
        case .restored(let requests, let now): actions = restored(requests, now: now)
        case .requested(let request, let now): actions = requested(request, now: now)
        case .answered(let id, let attempt, let status, let now): actions = answered(id, attempt, status: status, now: now)
        case .timerFired(let timer, let now): actions = timerFired(timer, now: now)
        case .networkReturned: actions = networkReturned()
        case .centraleReached(let now): actions = centraleReached(now: now)
        }
        let after = promise
        if after != before { actions.append(.announce(after)) }
        return actions
    }

    /// What the client is told about callback requests now: trying while any request waits
    /// for its acknowledgement (since the oldest such request), else promised since the
    /// oldest acknowledgement, else nothing.
    public var promise: CallbackPromise {
        var trying: WallTime?
        var promised: WallTime?
        for delivery in deliveries {
            switch delivery.phase {
            case .sending, .waiting:
                trying = min(trying ?? delivery.request.createdAt, delivery.request.createdAt)
            case .acknowledged(let at):
                promised = min(promised ?? at, at)
            }
        }
        if let trying { return .trying(since: trying) }
        if let promised { return .promised(since: promised) }
        return .none
    }

    /// For status and tests: each request's id and where it stands.
    public var summary: [(id: String, state: String, target: CallbackTarget)] {
        deliveries.map { delivery in
            let state = switch delivery.phase {
            case .sending: "sent"
            case .waiting: "retrying"
            case .acknowledged: "acknowledged"
            }
            return (delivery.request.id, state, delivery.target)
        }
    }

    // MARK: Events

    private mutating func restored(_ requests: [CallbackRequestInfo], now: WallTime) -> [CallbackDeliveryAction] {
        var actions: [CallbackDeliveryAction] = []
        for request in requests where !deliveries.contains(where: { $0.request.id == request.id }) {
            if let at = request.acknowledgedAt {
                deliveries.append(Delivery(request: request, phase: .acknowledged(at: at),
                                           target: request.escalated ? .fallback : .primary, failures: 0))
            } else {
                actions += start(request, now: now)
            }
        }
        return actions
    }

    private mutating func requested(_ request: CallbackRequestInfo, now: WallTime) -> [CallbackDeliveryAction] {
        guard !deliveries.contains(where: { $0.request.id == request.id }) else { return [] }
        return start(request, now: now)
    }

    private mutating func answered(_ id: String, _ attempt: Int, status: Int?, now: WallTime) -> [CallbackDeliveryAction] {
        guard let index = deliveries.firstIndex(where: { $0.request.id == id }) else {
            // Cleared meanwhile (the centrale called): nothing left to deliver.
            return []
        }
        var delivery = deliveries[index]
        let acknowledged = status.map { (200..<300).contains($0) } ?? false
        switch delivery.phase {
        case .acknowledged:
            return []
        case .sending(let current), .waiting(let current):
            if acknowledged {
                // Any attempt's 2xx counts, also one overtaken by an escalation: the request
                // reached a centrale.
                var actions: [CallbackDeliveryAction] = []
                if case .waiting = delivery.phase { actions.append(.cancelTimer(.retry(id))) }
                if !delivery.request.escalated, configuration.escalateAfter != nil {
                    actions.append(.cancelTimer(.escalate(id)))
                }
                delivery.phase = .acknowledged(at: now)
                delivery.request.acknowledgedAt = now
                deliveries[index] = delivery
                return actions + [.markAcknowledged(id: id, at: now, by: delivery.target)]
            }
            // A failure of an attempt that has been overtaken says nothing about the current one.
            guard attempt == current, case .sending = delivery.phase else { return [] }
            delivery.failures += 1
            delivery.phase = .waiting(attempt: current)
            deliveries[index] = delivery
            return [.scheduleTimer(.retry(id), after: backoff(afterFailures: delivery.failures))]
        }
    }

    private mutating func timerFired(_ timer: CallbackDeliveryTimer, now: WallTime) -> [CallbackDeliveryAction] {
        switch timer {
        case .retry(let id):
            guard let index = deliveries.firstIndex(where: { $0.request.id == id }),
                  case .waiting(let attempt) = deliveries[index].phase
            else { return [] }  // stale: acknowledged, cleared or already re-sent
            return send(index, attempt: attempt + 1)
        case .escalate(let id):
            guard let index = deliveries.firstIndex(where: { $0.request.id == id }) else { return [] }
            return escalate(index, now: now)
        }
    }

    private mutating func networkReturned() -> [CallbackDeliveryAction] {
        var actions: [CallbackDeliveryAction] = []
        for index in deliveries.indices {
            switch deliveries[index].phase {
            case .waiting(let attempt):
                actions.append(.cancelTimer(.retry(deliveries[index].request.id)))
                deliveries[index].failures = 0
                actions += send(index, attempt: attempt + 1)
            case .sending, .acknowledged:
                break
            }
        }
        return actions
    }

    private mutating func centraleReached(now: WallTime) -> [CallbackDeliveryAction] {
        guard !deliveries.isEmpty else { return [] }
        var actions: [CallbackDeliveryAction] = []
        for delivery in deliveries {
            let id = delivery.request.id
            switch delivery.phase {
            case .waiting:
                actions.append(.cancelTimer(.retry(id)))
            case .sending, .acknowledged:
                break
            }
            if !delivery.request.escalated, delivery.request.acknowledgedAt == nil, configuration.escalateAfter != nil {
                actions.append(.cancelTimer(.escalate(id)))
            }
        }
        actions.append(.markCleared(ids: deliveries.map(\.request.id), at: now))
        deliveries.removeAll()
        return actions
    }

    // MARK: Transitions

    private mutating func start(_ request: CallbackRequestInfo, now: WallTime) -> [CallbackDeliveryAction] {
        let target: CallbackTarget = request.escalated && configuration.escalateAfter != nil ? .fallback : .primary
        deliveries.append(Delivery(request: request, phase: .waiting(attempt: 0), target: target, failures: 0))
        var actions: [CallbackDeliveryAction] = []
        if let escalateAfter = configuration.escalateAfter, !request.escalated {
            // Counted from when the request was made, so a restart does not reset it.
            let due = request.createdAt.adding(escalateAfter)
            if due <= now {
                actions += escalate(deliveries.count - 1, now: now)
                return actions
            }
            actions.append(.scheduleTimer(.escalate(request.id), after: due.duration(since: now)))
        }
        return actions + send(deliveries.count - 1, attempt: 1)
    }

    private mutating func send(_ index: Int, attempt: Int) -> [CallbackDeliveryAction] {
        deliveries[index].phase = .sending(attempt: attempt)
        return [.send(deliveries[index].request, attempt: attempt, to: deliveries[index].target)]
    }

    private mutating func escalate(_ index: Int, now: WallTime) -> [CallbackDeliveryAction] {
        var delivery = deliveries[index]
        guard configuration.escalateAfter != nil, !delivery.request.escalated else { return [] }
        switch delivery.phase {
        case .acknowledged:
            return []
        case .sending(let attempt), .waiting(let attempt):
            var actions: [CallbackDeliveryAction] = []
            if case .waiting = delivery.phase, attempt > 0 { actions.append(.cancelTimer(.retry(delivery.request.id))) }
            delivery.request.escalated = true
            delivery.target = .fallback
            delivery.failures = 0
            deliveries[index] = delivery
            // At once to the fallback; an attempt still in flight to the primary may yet be
            // acknowledged, which counts as well.
            return actions + [.markEscalated(id: delivery.request.id, at: now)] + send(index, attempt: attempt + 1)
        }
    }

    /// 2 s, 4 s, 8 s … up to `maxRetryInterval`.
    private func backoff(afterFailures failures: Int) -> Duration {
        var delay = configuration.firstRetryInterval
        for _ in 1..<max(1, failures) {
            delay *= 2
            if delay >= configuration.maxRetryInterval { return configuration.maxRetryInterval }
        }
        return min(delay, configuration.maxRetryInterval)
    }
}

// MARK: - Vocabulary

/// A moment on the wall clock (seconds since 1970, UTC). The machines never read a clock:
/// the I/O layer stamps events with it, tests pass whatever moments they like.
public struct WallTime: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public var secondsSince1970: Double

    public init(secondsSince1970: Double) {
        self.secondsSince1970 = secondsSince1970
    }

    public static func < (lhs: WallTime, rhs: WallTime) -> Bool { lhs.secondsSince1970 < rhs.secondsSince1970 }

    public func adding(_ duration: Duration) -> WallTime {
        let (seconds, attoseconds) = duration.components
        return WallTime(secondsSince1970: secondsSince1970 + Double(seconds) + Double(attoseconds) / 1e18)
    }

    /// How long after `earlier` this is (zero if it is not later).
    public func duration(since earlier: WallTime) -> Duration {
        .milliseconds(Int64((max(0, secondsSince1970 - earlier.secondsSince1970) * 1000).rounded(.up)))
    }

    public var description: String { "t=\(secondsSince1970)" }
}

/// How callback requests are delivered.
public struct CallbackDeliveryConfiguration: Sendable, Equatable {
    /// A request not acknowledged this long after it was made goes to the fallback URI; nil
    /// when no fallback is configured.
    public var escalateAfter: Duration?
    public var firstRetryInterval: Duration
    public var maxRetryInterval: Duration

    public init(escalateAfter: Duration? = nil, firstRetryInterval: Duration = .seconds(2),
                maxRetryInterval: Duration = .seconds(60)) {
        self.escalateAfter = escalateAfter
        self.firstRetryInterval = firstRetryInterval
        self.maxRetryInterval = maxRetryInterval
    }
}

/// Where a MESSAGE goes: the configured callback URI, or its fallback after escalation.
public enum CallbackTarget: String, Sendable, Equatable, Codable {
    case primary
    case fallback
}

/// One callback request as the store keeps it and the MESSAGE carries it.
public struct CallbackRequestInfo: Sendable, Equatable, Codable {
    /// The request's durable id; the centrale deduplicates retries by it.
    public var id: String
    /// When the client pressed the button (the attempt that reached nobody started).
    public var pressedAt: WallTime
    /// When the request was made (the attempt gave up, or the call was lost).
    public var createdAt: WallTime
    /// The posts tried, in order (their configured ids).
    public var postsTried: [String]
    public var reason: String
    public var escalated: Bool
    public var acknowledgedAt: WallTime?

    public init(id: String, pressedAt: WallTime, createdAt: WallTime, postsTried: [String], reason: String,
                escalated: Bool = false, acknowledgedAt: WallTime? = nil) {
        self.id = id
        self.pressedAt = pressedAt
        self.createdAt = createdAt
        self.postsTried = postsTried
        self.reason = reason
        self.escalated = escalated
        self.acknowledgedAt = acknowledgedAt
    }
}

/// What the client is told about callback requests.
public enum CallbackPromise: Sendable, Equatable, Hashable, Codable {
    case none
    /// Not yet acknowledged: "Ik blijf proberen de centrale te bereiken."
    case trying(since: WallTime)
    /// Acknowledged by the centrale: "De centrale belt u terug", since then.
    case promised(since: WallTime)
}

public enum CallbackDeliveryTimer: Sendable, Hashable {
    /// The backoff after a failed attempt is over.
    case retry(String)
    /// `escalateAfter` has passed since the request was made.
    case escalate(String)
}

/// Everything that can happen to callback delivery; `now` is the wall-clock time of the event.
public enum CallbackDeliveryEvent: Sendable, Equatable {
    /// At start-up: the requests the store holds that were not cleared.
    case restored([CallbackRequestInfo], now: WallTime)
    /// A new request, already stored.
    case requested(CallbackRequestInfo, now: WallTime)
    /// The final answer to attempt `attempt` of request `id`: a SIP status, or nil when
    /// nothing answered (timeout, no route, transport error).
    case answered(id: String, attempt: Int, status: Int?, now: WallTime)
    case timerFired(CallbackDeliveryTimer, now: WallTime)
    /// The network is back (a flow registered again): waiting requests go at once.
    case networkReturned
    /// The centrale called the tablet, or a post answered the client: requests are done.
    case centraleReached(now: WallTime)
}

/// What the I/O layer must do, in order.
public enum CallbackDeliveryAction: Sendable, Equatable {
    /// Send the request's MESSAGE to the target's URI; report the result with `attempt`.
    case send(CallbackRequestInfo, attempt: Int, to: CallbackTarget)
    case scheduleTimer(CallbackDeliveryTimer, after: Duration)
    case cancelTimer(CallbackDeliveryTimer)
    /// Persist: the centrale acknowledged the request (a 2xx from that target).
    case markAcknowledged(id: String, at: WallTime, by: CallbackTarget)
    /// Persist and log: not acknowledged in time, sent to the fallback from now on.
    case markEscalated(id: String, at: WallTime)
    /// Persist: these requests are done (the centrale called or was reached).
    case markCleared(ids: [String], at: WallTime)
    /// What the client is told changed (screen, and a prompt when it becomes promised).
    case announce(CallbackPromise)
}
