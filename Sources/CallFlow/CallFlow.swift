/// The tablet's call state machine: events in, actions out. No I/O, no clock reads.
/// Shaped after postgres-nio's ConnectionStateMachine; see docs/CALLFLOW.md.
public struct CallFlow: Sendable {
    private enum State: Sendable {
        case idle
    }

    private var state: State = .idle
    private let configuration: CallFlowConfiguration

    public init(configuration: CallFlowConfiguration) {
        self.configuration = configuration
    }

    public mutating func handle(_ event: CallFlowEvent) -> [CallFlowAction] {
        // Logic lands in the next commit; the API is fixed.
        []
    }

    public var status: CallFlowStatus {
        switch state {
        case .idle: CallFlowStatus(phase: .idle)
        }
    }
}
