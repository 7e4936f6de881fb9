/// When the tablet sends a health report to the organisation, and in which order: a pure
/// machine (events in, actions out, no I/O, no clock reads). The daemon's `HealthService`
/// samples the tablet's state every few seconds and feeds each sample in as
/// ``observed(_:at:)``; it executes the actions (build a report, persist the queue, send one
/// report) and reports the outcome of each send back.
///
/// - A report is made at the first sample (`start`), whenever the set of faults differs
///   from the last report's (`faultsChanged`: a fault appears or clears), and otherwise when
///   `interval` has passed since the last report (`periodic`).
/// - "Not registered with an edge proxy for longer than `notRegisteredLimit`" is a fault the
///   machine derives itself from how long each proxy has been seen unregistered.
/// - Every report goes into a bounded queue (oldest dropped beyond `queueLimit`), persisted
///   by the executor after each change. One report is in flight at a time, always the newest
///   queued: after a failed send nothing is sent until the retry delay (doubling from
///   `retryInitial` up to `retryMaximum`) has passed; after a success the next newest goes
///   at once, so a server that comes back gets the current state first, then the history.
///
/// Time is a `Duration` since any fixed origin (the executor uses its start; tests a script).
public struct HealthSchedule<Report: Sendable & Equatable>: Sendable {
    public struct Settings: Sendable, Equatable {
        public var interval: Duration
        public var notRegisteredLimit: Duration
        public var queueLimit: Int
        public var retryInitial: Duration
        public var retryMaximum: Duration

        public init(interval: Duration, notRegisteredLimit: Duration = .seconds(300), queueLimit: Int = 24,
                    retryInitial: Duration = .seconds(5), retryMaximum: Duration? = nil) {
            precondition(interval > .zero && queueLimit > 0 && retryInitial > .zero, "health schedule settings must be positive")
            self.interval = interval
            self.notRegisteredLimit = notRegisteredLimit
            self.queueLimit = queueLimit
            self.retryInitial = retryInitial
            self.retryMaximum = max(retryInitial, retryMaximum ?? min(interval, .seconds(60)))
        }
    }

    /// One sample of the tablet, reduced to what the schedule decides on.
    public struct Observation: Sendable, Equatable {
        /// Stable keys of the faults seen now (`device:camera`, `store`, …), not sentences:
        /// a detail that changes wording must not count as a new fault.
        public var faults: Set<String>
        /// Edge proxies not registered at this moment (trying or failed).
        public var unregisteredProxies: Set<String>

        public init(faults: Set<String>, unregisteredProxies: Set<String>) {
            self.faults = faults
            self.unregisteredProxies = unregisteredProxies
        }
    }

    public enum Reason: String, Sendable, Equatable, Codable {
        case start, periodic, faultsChanged
    }

    public enum Action: Sendable, Equatable {
        /// Build a report of the state just observed, carrying `faults` (keys, including the
        /// derived `notRegistered:PROXY` ones), and hand it back with ``enqueue(_:at:)``.
        case compose(reason: Reason, faults: Set<String>)
        /// Store the queue (oldest first) so a restart keeps it.
        case persist([Report])
        /// Send this report; answer with ``sendSucceeded(at:)``, ``sendFailed(at:)`` or
        /// ``sendRejected(at:)``.
        case send(Report)
        /// The queue was full: this many of the oldest reports were dropped unsent.
        case dropped(Int)
    }

    /// The key of the derived registration fault for `proxy`.
    public static func notRegisteredKey(_ proxy: String) -> String { "notRegistered:" + proxy }

    public let settings: Settings
    /// Reports not yet acknowledged by the server, oldest first.
    public private(set) var queue: [Report] = []
    /// Since when each currently unregistered proxy has been seen unregistered.
    public private(set) var unregisteredSince: [String: Duration] = [:]
    private var lastFaults: Set<String>?
    private var lastReportAt: Duration?
    private var inFlight: Report?
    /// Set after a failed send: nothing is sent before this moment.
    private var retryAt: Duration?
    private var failures = 0

    public init(settings: Settings) {
        self.settings = settings
    }

    /// Unsent reports found in the store at start (oldest first).
    public mutating func restored(_ reports: [Report]) -> [Action] {
        queue = Array(reports.suffix(settings.queueLimit))
        return []
    }

    /// Whether the last send failed and the machine is waiting to try again.
    public var isBackingOff: Bool { retryAt != nil }

    /// A sample of the tablet's state at `now`.
    public mutating func observed(_ observation: Observation, at now: Duration) -> [Action] {
        for proxy in observation.unregisteredProxies where unregisteredSince[proxy] == nil {
            unregisteredSince[proxy] = now
        }
        for proxy in unregisteredSince.keys where !observation.unregisteredProxies.contains(proxy) {
            unregisteredSince[proxy] = nil
        }
        var faults = observation.faults
        for (proxy, since) in unregisteredSince where now - since >= settings.notRegisteredLimit {
            faults.insert(Self.notRegisteredKey(proxy))
        }

        let reason: Reason?
        if let lastReportAt, let lastFaults {
            if faults != lastFaults {
                reason = .faultsChanged
            } else if now - lastReportAt >= settings.interval {
                reason = .periodic
            } else {
                reason = nil
            }
        } else {
            reason = .start
        }
        if let reason {
            lastFaults = faults
            lastReportAt = now
            return [.compose(reason: reason, faults: faults)]
        }
        return sendNext(at: now)
    }

    /// The report asked for by `.compose`.
    public mutating func enqueue(_ report: Report, at now: Duration) -> [Action] {
        queue.append(report)
        var actions: [Action] = []
        let excess = queue.count - settings.queueLimit
        if excess > 0 {
            queue.removeFirst(excess)
            actions.append(.dropped(excess))
        }
        actions.append(.persist(queue))
        return actions + sendNext(at: now)
    }

    /// The server acknowledged the report in flight (2xx).
    public mutating func sendSucceeded(at now: Duration) -> [Action] {
        let sent = takeInFlight()
        retryAt = nil
        failures = 0
        var actions: [Action] = []
        if let index = queue.firstIndex(where: { $0 == sent }) {
            queue.remove(at: index)
            actions.append(.persist(queue))
        }
        return actions + sendNext(at: now)
    }

    /// The report in flight did not arrive (network, TLS, timeout, 5xx, 408, 429): it stays
    /// queued; nothing is sent until the retry delay has passed.
    public mutating func sendFailed(at now: Duration) -> [Action] {
        _ = takeInFlight()
        failures += 1
        var delay = settings.retryInitial
        for _ in 1..<min(failures, 30) where delay < settings.retryMaximum {
            delay *= 2
        }
        retryAt = now + min(delay, settings.retryMaximum)
        return []
    }

    /// The server refused the report in flight (a 4xx other than 408/429): sending it again
    /// will not help, so it leaves the queue; the server is reachable, so the next goes now.
    public mutating func sendRejected(at now: Duration) -> [Action] {
        let sent = takeInFlight()
        retryAt = nil
        failures = 0
        var actions: [Action] = []
        if let index = queue.firstIndex(where: { $0 == sent }) {
            queue.remove(at: index)
            actions.append(.persist(queue))
        }
        return actions + sendNext(at: now)
    }

    private mutating func takeInFlight() -> Report {
        guard let report = inFlight else {
            preconditionFailure("a send outcome without a report in flight")
        }
        inFlight = nil
        return report
    }

    private mutating func sendNext(at now: Duration) -> [Action] {
        guard inFlight == nil, let newest = queue.last else { return [] }
        if let retryAt, now < retryAt { return [] }
        inFlight = newest
        return [.send(newest)]
    }
}
