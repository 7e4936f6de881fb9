import CallFlow
import Testing

/// "Never stuck": from every state the client gets back to idle by waiting, and by one long
/// press (after which waiting suffices). A call is the one state that waits for a person:
/// it lasts until either side hangs up, so only the long press is checked there.
@Suite("Never stuck")
struct NeverStuckTests {
    enum Situation: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case callingRingAll, ringingOut, callingHunt, callingWithoutNetwork, incomingRinging,
            incomingAutoAnswer, inCall, ending, unreachable, connectionLost, faultNoNetwork

        var testDescription: String { rawValue }

        /// Drives a fresh flow into this situation through events only.
        func reach() -> Harness {
            switch self {
            case .callingRingAll:
                var h = Harness(config())
                h.send(.shortPress)
                return h
            case .ringingOut:
                var h = Harness(config())
                h.send(.shortPress)
                h.send(.provisional(out(2), code: 180))
                return h
            case .callingHunt:
                var h = Harness(config(.hunt(perPostTimeout: .seconds(7))))
                h.send(.shortPress)
                h.send(.provisional(out(1), code: 180))
                return h
            case .callingWithoutNetwork:
                var h = Harness(config(posts: [postA]))
                h.send(.network(up: false))
                h.send(.shortPress)
                h.send(.failed(out(1), code: nil, reason: "no route"))
                return h
            case .incomingRinging:
                var h = Harness(config())
                h.send(.incomingCall(inc(1), marieke))
                return h
            case .incomingAutoAnswer:
                var h = Harness(config())
                h.send(.incomingCall(inc(1), checkIn))
                return h
            case .inCall:
                return inCallWithPostA()
            case .ending:
                var h = inCallWithPostA()
                h.send(.remoteHungUp(out(1)))
                return h
            case .unreachable:
                var h = Harness(config(posts: [postA]))
                h.send(.shortPress)
                h.send(.failed(out(1), code: 503, reason: "down"))
                return h
            case .connectionLost:
                var h = inCallWithPostA()
                h.send(.connectionLost(out(1)))
                return h
            case .faultNoNetwork:
                var h = Harness(config())
                h.send(.network(up: false))
                return h
            }
        }

        var expectedPhase: CallFlowStatus.Phase {
            switch self {
            case .callingRingAll, .callingWithoutNetwork: .callingCentrale
            case .ringingOut, .callingHunt: .ringingOut
            case .incomingRinging, .incomingAutoAnswer: .incomingRinging
            case .inCall: .inCall
            case .ending: .ending
            case .unreachable: .unreachable
            case .connectionLost: .connectionLost
            case .faultNoNetwork: .fault
            }
        }
    }

    @Test("each situation is reached", arguments: Situation.allCases)
    func reached(_ situation: Situation) {
        #expect(situation.reach().phase == situation.expectedPhase)
    }

    @Test("waiting alone leads back to rest", arguments: Situation.allCases.filter { $0 != .inCall && $0 != .incomingAutoAnswer })
    func waitingLeadsToRest(_ situation: Situation) {
        var h = situation.reach()
        let rested = h.waitUntilRest()
        #expect(rested)
        #expect(h.pendingTimers.isEmpty)
    }

    @Test("waiting on an arranged check-in answers it (then the call waits for a person)")
    func waitingOnAutoAnswer() {
        var h = Situation.incomingAutoAnswer.reach()
        let fired = h.fireNext()
        #expect(fired == .autoAnswer(inc(1)))
        #expect(h.phase == .inCall)
    }

    @Test("one long press, then waiting, leads back to rest", arguments: Situation.allCases)
    func longPressLeadsToRest(_ situation: Situation) {
        var h = situation.reach()
        let before = h.phase
        h.send(.longPress)
        if before == .fault {
            // At rest a long press calls for help, like a short one; that attempt ends by waiting.
            #expect(h.phase == .callingCentrale)
        } else {
            #expect(h.phase == .ending || h.phase == .idle || h.phase == .fault)
        }
        let rested = h.waitUntilRest()
        #expect(rested)
    }
}
