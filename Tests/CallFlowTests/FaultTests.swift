import CallFlow
import Foundation
import Testing

@Suite("Faults: no network, stuck button")
struct FaultTests {
    @Test("no network in idle: fault shown without a sound; a press still tries and says so")
    func noNetworkPressStillTries() {
        var h = Harness(config(posts: [postA, postB]))
        h.run([
            .on(.network(up: false), [.setIndicator(.fault)], phase: .fault),
            .on(.network(up: false), [], phase: .fault),
            .on(
                .shortPress,
                startsCalling(rec(1), prompt: .noNetwork) + [.queueCallbackRequest(rec(1), postsTried: [], reason: "pressed without network"),
                                                              .sendInvite(out(1), postA), .sendInvite(out(2), postB)],
                phase: .callingCentrale
            ),
            // The SIP layer fails both at once; without a network that proves nothing about the
            // centrale, so the flow keeps trying instead of declaring it unreachable.
            .on(.failed(out(1), code: nil, reason: "no route"), [], phase: .callingCentrale),
            .on(.failed(out(2), code: nil, reason: "no route"), [], phase: .callingCentrale),
            .fire(.reassurance(rec(1)), [.playPrompt(.stillTrying), .scheduleTimer(.reassurance(rec(1)), after: .seconds(15))]),
            .on(.network(up: true), [.sendInvite(out(3), postA), .sendInvite(out(4), postB)], phase: .callingCentrale),
            .on(.answered(out(4)), [
                .cancelInvite(out(3)),
                .callLog(.answered(rec(1), peer: "b")),
                .startMedia(out(4)),
                .cancelTimer(.overallDeadline(rec(1))), .cancelTimer(.reassurance(rec(1))),
                .playPrompt(.connected),
                .setIndicator(.inCall),
                .centraleReached(rec(1)),  // the request the press queued is cleared
            ], phase: .inCall),
        ])
        #expect(h.flow.status.legsInFlight == [out(4)])
    }

    @Test("issue 16: a press offline queues the callback request at once; the network returns before the deadline and the tablet calls by itself")
    func offlinePressQueuesCallbackAndCallsWhenTheNetworkReturns() {
        var h = Harness(config(posts: [postA]))
        h.run([
            .on(.network(up: false), [.setIndicator(.fault)], phase: .fault),
            .on(.shortPress, startsCalling(rec(1), prompt: .noNetwork)
                + [.queueCallbackRequest(rec(1), postsTried: [], reason: "pressed without network"), .sendInvite(out(1), postA)],
                phase: .callingCentrale),
            .on(.failed(out(1), code: nil, reason: "no route"), [], phase: .callingCentrale),
        ])
        #expect(h.flow.status.callbackPending)
        h.run([
            .on(.network(up: true), [.sendInvite(out(2), postA)], phase: .callingCentrale),
            .on(.answered(out(2)), [
                .callLog(.answered(rec(1), peer: "a")),
                .startMedia(out(2)),
                .cancelTimer(.overallDeadline(rec(1))), .cancelTimer(.reassurance(rec(1))),
                .playPrompt(.connected),
                .setIndicator(.inCall),
                .centraleReached(rec(1)),  // the request the press queued is cleared
            ], phase: .inCall),
        ])
    }

    @Test("issue 16: offline from press to deadline: one callback request, at the press")
    func offlineUntilDeadlineQueuesOneCallbackRequest() {
        var h = Harness(config(posts: [postA]))
        h.run([
            .on(.network(up: false), [.setIndicator(.fault)], phase: .fault),
            .on(.shortPress, startsCalling(rec(1), prompt: .noNetwork)
                + [.queueCallbackRequest(rec(1), postsTried: [], reason: "pressed without network"), .sendInvite(out(1), postA)],
                phase: .callingCentrale),
            .on(.failed(out(1), code: nil, reason: "no route"), [], phase: .callingCentrale),
        ])
        while h.pendingTimers.first == .reassurance(rec(1)) { h.fireNext() }
        h.run([
            .fire(.overallDeadline(rec(1)), [
                .cancelTimer(.reassurance(rec(1))),
                .playPrompt(.centraleUnreachable),
                .setIndicator(.unreachable),
                .callLog(.ended(rec(1), outcome: .unreachable, postsTried: ["a"], reason: "deadline reached")),
                .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(10)),
            ], phase: .unreachable),
        ])
        #expect(h.flow.status.callbackPending)
    }

    @Test("no network for the whole attempt: the deadline gives unreachable and a queued callback")
    func noNetworkUntilDeadline() {
        var h = Harness(config(posts: [postA]))
        h.send(.shortPress)
        h.run([
            .on(.network(up: false), [.playPrompt(.noNetwork)], phase: .callingCentrale),
            .on(.network(up: false), [], phase: .callingCentrale),
            .on(.failed(out(1), code: nil, reason: "no route"), [], phase: .callingCentrale),
        ])
        #expect(h.flow.status.legsInFlight == [])
        while h.pendingTimers.first == .reassurance(rec(1)) { h.fireNext() }
        h.run([
            .fire(.overallDeadline(rec(1)), [
                .cancelTimer(.reassurance(rec(1))),
                .playPrompt(.centraleUnreachable),
                .setIndicator(.unreachable),
                .callLog(.ended(rec(1), outcome: .unreachable, postsTried: ["a"], reason: "deadline reached")),
                .queueCallbackRequest(rec(1), postsTried: ["a"], reason: "deadline reached"),
                .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(10)),
            ], phase: .unreachable),
            .fire(.screenTimeout(rec(1)), [.setIndicator(.fault)], phase: .fault),
        ])
        #expect(h.flow.status.callbackPending)
    }

    @Test("waiting for the network stops the ringback; the next round starts when it returns")
    func ringbackStopsWhileWaiting() {
        var h = Harness(config(posts: [postA]))
        h.send(.shortPress)
        h.run([
            .on(.provisional(out(1), code: 180), [.playTone(.ringback)], phase: .ringingOut),
            .on(.network(up: false), [.playPrompt(.noNetwork)], phase: .ringingOut),
            .on(.failed(out(1), code: nil, reason: "no route"), [.stopTone], phase: .callingCentrale),
            .on(.network(up: true), [.sendInvite(out(2), postA)], phase: .callingCentrale),
            .on(.provisional(out(2), code: 180), [.playTone(.ringback)], phase: .ringingOut),
        ])
    }

    @Test("the network blipping during a round: its failures lead to another round, not to unreachable")
    func blipDuringRound() {
        var h = Harness(config(posts: [postA]))
        h.send(.shortPress)
        h.run([
            .on(.network(up: false), [.playPrompt(.noNetwork)]),
            .on(.network(up: true), [], phase: .callingCentrale),
            .on(.failed(out(1), code: nil, reason: "connection reset"), [.sendInvite(out(2), postA)], phase: .callingCentrale),
            // That second round fails with the network up all along: now it is unreachable.
            .on(.failed(out(2), code: 503, reason: "down"), [
                .cancelTimer(.overallDeadline(rec(1))), .cancelTimer(.reassurance(rec(1))),
                .playPrompt(.centraleUnreachable),
                .setIndicator(.unreachable),
                .callLog(.ended(rec(1), outcome: .unreachable, postsTried: ["a"], reason: "every post failed")),
                .queueCallbackRequest(rec(1), postsTried: ["a"], reason: "every post failed"),
                .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(10)),
            ], phase: .unreachable),
        ])
    }

    @Test("a stuck button: fault and prompt; its presses are ignored until released")
    func stuckButtonInIdle() {
        var h = Harness(config())
        h.run([
            .on(.buttonStuck, [.playPrompt(.buttonStuck), .setIndicator(.fault)], phase: .fault),
            .on(.buttonStuck, [], phase: .fault),
            .on(.shortPress, [], phase: .fault),
            .on(.longPress, [], phase: .fault),
            .on(.buttonReleased, [.setIndicator(.idle)], phase: .idle),
            .on(.shortPress, startsCalling(rec(1)) + [
                .sendInvite(out(1), postA), .sendInvite(out(2), postB), .sendInvite(out(3), postC),
            ], phase: .callingCentrale),
        ])
        #expect(!h.flow.status.buttonStuck)
    }

    @Test("a stuck button: calls still ring in, only auto-answer can answer them")
    func stuckButtonIncoming() {
        var h = Harness(config())
        h.send(.buttonStuck)
        h.send(.incomingCall(inc(1), marieke))
        h.run([
            .on(.shortPress, [], phase: .incomingRinging),
            .on(.longPress, [], phase: .incomingRinging),
            .on(.remoteCancelled(inc(1)), [
                .cancelTimer(.ringingTimeout(inc(1))),
                .stopTone,
                .callLog(.ended(rec(1), outcome: .missed, postsTried: [], reason: "caller cancelled")),
                .setIndicator(.fault),
            ], phase: .fault),
        ])
        h.send(.incomingCall(inc(2), checkIn))
        h.fire(.autoAnswer(inc(2)))
        #expect(h.phase == .inCall)
        h.run([
            .on(.shortPress, [], phase: .inCall),
            .on(.longPress, [], phase: .inCall),
            .on(.buttonReleased, [], phase: .inCall),
            // Released: the button works again, and a short press still never hangs up.
            .on(.shortPress, [.playTone(.pressAck)], phase: .inCall),
        ])
        let restedByWaiting = h.waitUntilRest()
        #expect(!restedByWaiting)  // a call has no timer; it lasts until someone hangs up
        h.send(.longPress)
        let rested = h.waitUntilRest()
        #expect(rested)
        #expect(h.phase == .idle)
    }

    @Test("stuck during a call: the call goes on, the fault shows once at rest")
    func stuckDuringCall() {
        var h = inCallWithPostA()
        h.run([
            .on(.buttonStuck, [], phase: .inCall),
            .on(.longPress, [], phase: .inCall),
            .on(.remoteHungUp(out(1)), [
                .stopMedia,
                .playPrompt(.callEnded),
                .setIndicator(.fault),
                .callLog(.ended(rec(1), outcome: .completed, postsTried: ["a", "b", "c"], reason: "hung up by other side")),
                .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
            ], phase: .ending),
            .on(.shortPress, [], phase: .ending),
            .fire(.screenTimeout(rec(1)), [.setIndicator(.fault)], phase: .fault),
            .on(.buttonReleased, [.setIndicator(.idle)], phase: .idle),
        ])
    }

    @Test("both faults: releasing the button keeps the no-network fault; the network coming back clears it")
    func bothFaults() {
        var h = Harness(config())
        h.run([
            .on(.network(up: false), [.setIndicator(.fault)], phase: .fault),
            .on(.buttonStuck, [.playPrompt(.buttonStuck)], phase: .fault),
            .on(.network(up: true), [], phase: .fault),
            .on(.network(up: false), [], phase: .fault),
            .on(.buttonReleased, [], phase: .fault),
            .on(.network(up: true), [.setIndicator(.idle)], phase: .idle),
        ])
    }

    @Test("idle ignores what does not concern it, and BYEs a stray 2xx")
    func idleIgnores() {
        var h = Harness(config())
        h.run([
            .on(.registration(up: true), [], phase: .idle),
            .on(.network(up: true), [], phase: .idle),
            .on(.buttonReleased, [], phase: .idle),
            .on(.provisional(out(4), code: 180), [], phase: .idle),
            .on(.failed(out(4), code: 487, reason: "x"), [], phase: .idle),
            .on(.remoteCancelled(inc(4)), [], phase: .idle),
            .on(.remoteHungUp(inc(4)), [], phase: .idle),
            .on(.mediaFailed(.transport), [], phase: .idle),
            .on(.mediaFailed(.camera), [], phase: .idle),
            .on(.timerFired(.overallDeadline(rec(1))), [], phase: .idle),
            .on(.timerFired(.screenTimeout(rec(1))), [], phase: .idle),
            .on(.answered(out(4)), [.sendBye(out(4))], phase: .idle),
            .on(.answered(inc(4)), [], phase: .idle),
        ])
        #expect(h.flow.status == CallFlowStatus(phase: .idle, registered: true))
    }

    @Test("stale timers from an earlier attempt do nothing to a later one")
    func staleTimers() {
        var h = Harness(config(posts: [postA]))
        h.send(.shortPress)
        h.send(.longPress)
        h.send(.longPress)
        h.send(.shortPress)  // attempt 2, record 2
        h.run([
            .on(.timerFired(.overallDeadline(rec(1))), [], phase: .callingCentrale),
            .on(.timerFired(.reassurance(rec(1))), [], phase: .callingCentrale),
            .on(.timerFired(.postRingTimeout(out(1))), [], phase: .callingCentrale),
            .on(.timerFired(.screenTimeout(rec(1))), [], phase: .callingCentrale),
            .on(.timerFired(.ringingTimeout(inc(1))), [], phase: .callingCentrale),
            .on(.timerFired(.autoAnswer(inc(1))), [], phase: .callingCentrale),
            .on(.shortPress, [.playTone(.pressAck)], phase: .callingCentrale),
        ])
        #expect(h.flow.status.legsInFlight == [out(2)])
    }

    @Test("status is Codable for the control socket")
    func statusJSONRoundTrip() throws {
        var h = Harness(config())
        h.send(.incomingCall(inc(3), marieke))
        let status = h.flow.status
        let data = try JSONEncoder().encode(status)
        #expect(try JSONDecoder().decode(CallFlowStatus.self, from: data) == status)
        #expect(String(decoding: data, as: UTF8.self).contains("\"incomingRinging\""))
    }
}
