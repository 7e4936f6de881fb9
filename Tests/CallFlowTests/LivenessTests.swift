import CallFlow
import Testing

/// `connectionLost(leg)`: nothing (no RTP, no RTCP) came from the other side of a call for the
/// configured time — a post killed, a power cut, a BYE lost behind a broken NAT (issue 15,
/// problem 4). The call ends as if hung up, but the client is told the connection dropped,
/// the log says so, and a call to the centrale queues a callback request.
@Suite("Liveness: the other side went silent")
struct LivenessTests {
    func rings(_ leg: CallLegID, _ record: CallRecordID, name: String, uri: String) -> [CallFlowAction] {
        IncomingTests().rings(leg, record, name: name, uri: uri)
    }

    /// What a silent post ends in: BYE (never awaited), media off, the prompt, the log, the
    /// callback request, the screen's timer.
    static func lost(_ leg: CallLegID, _ record: CallRecordID, postsTried: [String], callback: Bool,
                     indicator: Indicator = .idle) -> [CallFlowAction] {
        var actions: [CallFlowAction] = [
            .sendBye(leg),
            .stopMedia,
            .playPrompt(.connectionLost),
            .setIndicator(indicator),
            .callLog(.ended(record, outcome: .connectionLost, postsTried: postsTried,
                            reason: "connection lost: nothing received from the other side")),
        ]
        if callback { actions.append(.queueCallbackRequest(record, postsTried: postsTried, reason: "connection lost during a call")) }
        actions.append(.scheduleTimer(.screenTimeout(record), after: .seconds(10)))
        return actions
    }

    @Test("a silent post ends the centrale call: BYE, media off, told, logged, callback queued, then idle")
    func silentPostEndsTheCall() {
        var h = inCallWithPostA()
        h.run([
            // A report for another leg (an old session's) is stale.
            .on(.connectionLost(out(2)), [], phase: .inCall),
            .on(.connectionLost(out(1)), Self.lost(out(1), rec(1), postsTried: ["a", "b", "c"], callback: true),
                phase: .connectionLost),
            // Reported once; a second report changes nothing.
            .on(.connectionLost(out(1)), [], phase: .connectionLost),
            .fire(.screenTimeout(rec(1)), [.setIndicator(.idle)], phase: .idle),
        ])
        #expect(h.flow.status.callbackPending, "the callback request shows until the centrale answers again")
    }

    @Test("without callback requests configured, none is queued")
    func noCallbackWhenOff() {
        var h = inCallWithPostA(config(queueCallback: false))
        h.run([
            .on(.connectionLost(out(1)), Self.lost(out(1), rec(1), postsTried: ["a", "b", "c"], callback: false),
                phase: .connectionLost)
        ])
        #expect(!h.flow.status.callbackPending)
    }

    @Test("a family call that goes silent ends the same way, without a callback request")
    func silentContact() {
        var h = Harness(config())
        h.send(.incomingCall(inc(1), marieke))
        h.send(.shortPress)
        #expect(h.phase == .inCall)
        h.run([
            .on(.connectionLost(inc(1)), Self.lost(inc(1), rec(1), postsTried: [], callback: false), phase: .connectionLost),
            .fire(.screenTimeout(rec(1)), [.setIndicator(.idle)], phase: .idle),
        ])
        #expect(!h.flow.status.callbackPending)
    }

    @Test("lost with the network down: the light shows the fault, rest is fault")
    func lostWithoutNetwork() {
        var h = inCallWithPostA()
        // The network flag drops in a call only through `network(up: false)`, which ends the
        // call itself; a stuck button is the other condition that outlives the call.
        h.send(.buttonStuck)
        h.run([
            .on(.connectionLost(out(1)), Self.lost(out(1), rec(1), postsTried: ["a", "b", "c"], callback: true,
                                                   indicator: .fault), phase: .connectionLost),
            .fire(.screenTimeout(rec(1)), [.setIndicator(.fault)], phase: .fault),
        ])
    }

    @Test("on the connection-lost screen: a short press calls again, a contact rings, a long press rests")
    func onTheScreen() {
        var h = inCallWithPostA()
        h.send(.connectionLost(out(1)))
        h.run([
            .on(.network(up: true), [], phase: .connectionLost),
            .on(.registration(up: false), [], phase: .connectionLost),
            .on(.postAvailability(postID: "a", alive: false), [], phase: .connectionLost),
            .on(.mediaFailed(.transport), [], phase: .connectionLost),
            .on(.remoteHungUp(out(1)), [], phase: .connectionLost),  // the BYE's answer crossing
            .on(.failed(out(1), code: 408, reason: "BYE timed out"), [], phase: .connectionLost),
            .on(.timerFired(.overallDeadline(rec(1))), [], phase: .connectionLost),  // stale
            // Post a was reported dead just above: the new round leaves it out.
            .on(.shortPress, [.cancelTimer(.screenTimeout(rec(1)))] + startsCalling(rec(2)) + [
                .sendInvite(out(4), postB), .sendInvite(out(5), postC),
            ], phase: .callingCentrale),
        ])
        // The centrale answering again clears the pending callback.
        h.send(.answered(out(5)))
        #expect(h.phase == .inCall)
        #expect(!h.flow.status.callbackPending)

        var ringing = inCallWithPostA()
        ringing.send(.connectionLost(out(1)))
        ringing.run([
            .on(.incomingCall(inc(1), marieke),
                [.cancelTimer(.screenTimeout(rec(1)))] + rings(inc(1), rec(2), name: "Marieke", uri: marieke.uri),
                phase: .incomingRinging)
        ])

        var resting = inCallWithPostA()
        resting.send(.connectionLost(out(1)))
        resting.run([.on(.longPress, [.cancelTimer(.screenTimeout(rec(1))), .setIndicator(.idle)], phase: .idle)])
    }

    @Test("connectionLost is ignored wherever no media runs", arguments: NeverStuckTests.Situation.allCases.filter { $0 != .inCall })
    func ignoredWithoutMedia(_ situation: NeverStuckTests.Situation) {
        var h = situation.reach()
        let phase = h.phase
        let status = h.flow.status
        // Every leg the flow knows (ringing, in flight) and one it does not.
        for leg in status.legsInFlight + [out(1), inc(1), out(99)] {
            h.run([.on(.connectionLost(leg), [], phase: phase)])
        }
        #expect(h.flow.status == status)
    }
}
