import CallFlow
import Testing

// A small harness so each test reads as a script of (event → exact actions expected).
// It also plays the I/O layer's timer wheel: it records scheduleTimer/cancelTimer with a
// virtual clock, so `.fire(timer)` only works for a timer that is really pending, and
// `waitUntilRest()` proves a state leaves by waiting alone.

struct Step {
    enum Kind {
        case event(CallFlowEvent)
        /// Fire a pending timer (fails the test if it is not pending).
        case fire(CallFlowTimer)
    }

    var kind: Kind
    var expected: [CallFlowAction]
    var phase: CallFlowStatus.Phase?
    var sourceLocation: SourceLocation

    static func on(
        _ event: CallFlowEvent,
        _ expected: [CallFlowAction],
        phase: CallFlowStatus.Phase? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> Step {
        Step(kind: .event(event), expected: expected, phase: phase, sourceLocation: sourceLocation)
    }

    static func fire(
        _ timer: CallFlowTimer,
        _ expected: [CallFlowAction],
        phase: CallFlowStatus.Phase? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> Step {
        Step(kind: .fire(timer), expected: expected, phase: phase, sourceLocation: sourceLocation)
    }
}

struct Harness {
    var flow: CallFlow
    private(set) var now: Duration = .zero
    /// Pending timers: due time, and a sequence number to break ties in scheduling order.
    private(set) var pending: [CallFlowTimer: (due: Duration, seq: Int)] = [:]
    private var seq = 0

    init(_ configuration: CallFlowConfiguration) {
        flow = CallFlow(configuration: configuration)
    }

    var phase: CallFlowStatus.Phase { flow.status.phase }

    @discardableResult
    mutating func send(_ event: CallFlowEvent, sourceLocation: SourceLocation = #_sourceLocation) -> [CallFlowAction] {
        let actions = flow.handle(event)
        apply(actions, sourceLocation: sourceLocation)
        return actions
    }

    @discardableResult
    mutating func fire(_ timer: CallFlowTimer, sourceLocation: SourceLocation = #_sourceLocation) -> [CallFlowAction] {
        guard let entry = pending.removeValue(forKey: timer) else {
            Issue.record("timer \(timer) is not pending; pending: \(pendingTimers)", sourceLocation: sourceLocation)
            return []
        }
        now = max(now, entry.due)
        return send(.timerFired(timer), sourceLocation: sourceLocation)
    }

    var pendingTimers: [CallFlowTimer] {
        pending.sorted { ($0.value.due, $0.value.seq) < ($1.value.due, $1.value.seq) }.map(\.key)
    }

    /// Fires the earliest pending timer, as the I/O layer's clock would.
    @discardableResult
    mutating func fireNext(sourceLocation: SourceLocation = #_sourceLocation) -> CallFlowTimer? {
        guard let next = pendingTimers.first else { return nil }
        fire(next, sourceLocation: sourceLocation)
        return next
    }

    /// Waits (fires timers, nothing else) until the flow is at rest; false if it never gets there.
    mutating func waitUntilRest(maxTimers: Int = 50) -> Bool {
        for _ in 0..<maxTimers {
            if phase == .idle || phase == .fault { return true }
            if fireNext() == nil { return false }
        }
        return phase == .idle || phase == .fault
    }

    mutating func run(_ steps: [Step]) {
        for step in steps {
            let actions: [CallFlowAction]
            switch step.kind {
            case .event(let event):
                actions = send(event, sourceLocation: step.sourceLocation)
            case .fire(let timer):
                actions = fire(timer, sourceLocation: step.sourceLocation)
            }
            if actions != step.expected {
                Issue.record(
                    """
                    after \(step.kind):
                      expected \(step.expected)
                           got \(actions)
                    """,
                    sourceLocation: step.sourceLocation
                )
            }
            if let phase = step.phase, phase != self.phase {
                Issue.record("after \(step.kind): phase \(self.phase), expected \(phase)", sourceLocation: step.sourceLocation)
            }
        }
    }

    private mutating func apply(_ actions: [CallFlowAction], sourceLocation: SourceLocation) {
        for action in actions {
            switch action {
            case .scheduleTimer(let timer, let after):
                if pending[timer] != nil {
                    Issue.record("timer \(timer) scheduled twice", sourceLocation: sourceLocation)
                }
                seq += 1
                pending[timer] = (now + after, seq)
            case .cancelTimer(let timer):
                if pending.removeValue(forKey: timer) == nil {
                    Issue.record("cancelled timer \(timer) that was not pending", sourceLocation: sourceLocation)
                }
            default:
                break
            }
        }
        // At rest nothing may still be ticking: a forgotten timer is a forgotten transition.
        if phase == .idle || phase == .fault, !pending.isEmpty {
            Issue.record("at rest with timers pending: \(pendingTimers)", sourceLocation: sourceLocation)
        }
    }
}

// MARK: Fixtures

let postA = CentralePost(id: "a", uri: "sip:post-a@centrale.test")
let postB = CentralePost(id: "b", uri: "sip:post-b@centrale.test")
let postC = CentralePost(id: "c", uri: "sip:post-c@centrale.test")

func config(
    _ policy: RingPolicy = .ringAll,
    posts: [CentralePost] = [postA, postB, postC],
    queueCallback: Bool = true
) -> CallFlowConfiguration {
    CallFlowConfiguration(posts: posts, policy: policy, queueCallbackWhenUnreachable: queueCallback)
}

func out(_ n: UInt64) -> CallLegID { .outgoing(n) }
func inc(_ n: UInt64) -> CallLegID { .incoming(n) }
func rec(_ n: UInt64) -> CallRecordID { CallRecordID(n) }

let marieke = Caller(uri: "sip:marieke@family.test", displayName: "Marieke", contact: KnownContact(name: "Marieke"))
let checkIn = Caller(
    uri: "sip:zorg@team.test",
    displayName: "Wijkteam",
    contact: KnownContact(name: "Wijkteam", autoAnswerAfter: .seconds(10))
)
let stranger = Caller(uri: "sip:unknown@spam.test", displayName: "Verkoper", contact: nil)

/// The feedback and timers of a press that starts calling the centrale (default durations).
func startsCalling(_ record: CallRecordID, prompt: Prompt = .callingCentrale) -> [CallFlowAction] {
    [
        .playPrompt(prompt),
        .setIndicator(.calling),
        .callLog(.started(record, direction: .outgoing, peer: "centrale")),
        .scheduleTimer(.overallDeadline(record), after: .seconds(60)),
        .scheduleTimer(.reassurance(record), after: .seconds(15)),
    ]
}

/// Ring-all from idle to connected with post a on leg 1: returns a harness in call.
func inCallWithPostA(_ configuration: CallFlowConfiguration = config()) -> Harness {
    var h = Harness(configuration)
    h.send(.shortPress)
    h.send(.answered(out(1)))
    #expect(h.phase == .inCall)
    return h
}
