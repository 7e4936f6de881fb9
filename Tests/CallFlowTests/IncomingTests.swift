import CallFlow
import Testing

@Suite("Being called")
struct IncomingTests {
    /// What a contact without auto-answer calling an idle tablet produces.
    func rings(_ leg: CallLegID, _ record: CallRecordID, name: String, uri: String) -> [CallFlowAction] {
        [
            .playTone(.incomingRing),
            .playPrompt(.incomingCall(name: name)),
            .setIndicator(.ringing),
            .callLog(.started(record, direction: .incoming, peer: uri)),
            .scheduleTimer(.ringingTimeout(leg), after: .seconds(45)),
        ]
    }

    @Test("a contact rings; a short press answers")
    func pressAnswers() {
        var h = Harness(config())
        h.run([
            .on(.incomingCall(inc(1), marieke), rings(inc(1), rec(1), name: "Marieke", uri: marieke.uri), phase: .incomingRinging),
            .on(
                .shortPress,
                [
                    .answer(inc(1)),
                    .callLog(.answered(rec(1), peer: marieke.uri)),
                    .startMedia(inc(1)),
                    .cancelTimer(.ringingTimeout(inc(1))),
                    .stopTone,
                    .playPrompt(.connected),
                    .setIndicator(.inCall),
                ],
                phase: .inCall
            ),
            .on(.shortPress, [.playTone(.pressAck)], phase: .inCall),
            .on(
                .remoteHungUp(inc(1)),
                [
                    .stopMedia,
                    .playPrompt(.callEnded),
                    .setIndicator(.idle),
                    .callLog(.ended(rec(1), outcome: .completed, postsTried: [], reason: "hung up by other side")),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
                ],
                phase: .ending
            ),
        ])
        #expect(h.flow.status.peerName == nil)
    }

    @Test("status shows who is calling")
    func statusWhileRinging() {
        var h = Harness(config())
        h.send(.incomingCall(inc(3), marieke))
        #expect(h.flow.status == CallFlowStatus(phase: .incomingRinging, peerName: "Marieke", legsInFlight: [inc(3)]))
    }

    @Test("a long press declines a ringing call")
    func longPressDeclines() {
        var h = Harness(config())
        h.send(.incomingCall(inc(1), marieke))
        h.run([
            .on(
                .longPress,
                [
                    .reject(inc(1), .declined),
                    .cancelTimer(.ringingTimeout(inc(1))),
                    .stopTone,
                    .playPrompt(.callEnded),
                    .setIndicator(.idle),
                    .callLog(.ended(rec(1), outcome: .declined, postsTried: [], reason: "declined by client")),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
                ],
                phase: .ending
            ),
            .fire(.screenTimeout(rec(1)), [.setIndicator(.idle)], phase: .idle),
        ])
    }

    @Test("a caller not on the contact list is rejected and logged, and the client notices nothing")
    func strangerRejected() {
        var h = Harness(config())
        let rejected: (CallLegID, CallRecordID) -> [CallFlowAction] = { leg, record in
            [
                .reject(leg, .notAContact),
                .callLog(.started(record, direction: .incoming, peer: "sip:unknown@spam.test")),
                .callLog(.ended(record, outcome: .rejectedNotAContact, postsTried: [], reason: nil)),
            ]
        }
        h.run([.on(.incomingCall(inc(1), stranger), rejected(inc(1), rec(1)), phase: .idle)])
        // Not even "busy" while something else goes on: the same silent 403.
        h.send(.incomingCall(inc(2), marieke))
        h.run([.on(.incomingCall(inc(3), stranger), rejected(inc(3), rec(3)), phase: .incomingRinging)])
        #expect(h.flow.status.legsInFlight == [inc(2)])
    }

    @Test("calls while busy are rejected busy: while calling, and while another call rings")
    func busyRejections() {
        var h = Harness(config(posts: [postA]))
        h.send(.shortPress)
        h.run([
            .on(.incomingCall(inc(1), marieke), [
                .reject(inc(1), .busy),
                .callLog(.started(rec(2), direction: .incoming, peer: marieke.uri)),
                .callLog(.ended(rec(2), outcome: .rejectedBusy, postsTried: [], reason: nil)),
            ], phase: .callingCentrale)
        ])
        var g = Harness(config())
        g.send(.incomingCall(inc(1), marieke))
        g.run([
            .on(.incomingCall(inc(2), checkIn), [
                .reject(inc(2), .busy),
                .callLog(.started(rec(2), direction: .incoming, peer: checkIn.uri)),
                .callLog(.ended(rec(2), outcome: .rejectedBusy, postsTried: [], reason: nil)),
            ], phase: .incomingRinging)
        ])
    }

    @Test("a duplicate report of the ringing or answered call is not a second call")
    func duplicateIncoming() {
        var h = Harness(config())
        h.send(.incomingCall(inc(1), marieke))
        h.run([
            .on(.incomingCall(inc(1), marieke), [], phase: .incomingRinging),
            .on(.incomingCall(inc(1), stranger), [], phase: .incomingRinging),
        ])
        h.send(.shortPress)
        h.run([.on(.incomingCall(inc(1), marieke), [], phase: .inCall)])
    }

    @Test("the caller cancels: ringing stops, missed call logged, straight back to idle")
    func remoteCancel() {
        var h = Harness(config())
        h.send(.incomingCall(inc(1), marieke))
        h.run([
            .on(.remoteCancelled(inc(9)), [], phase: .incomingRinging),
            .on(
                .remoteCancelled(inc(1)),
                [
                    .cancelTimer(.ringingTimeout(inc(1))),
                    .stopTone,
                    .callLog(.ended(rec(1), outcome: .missed, postsTried: [], reason: "caller cancelled")),
                    .setIndicator(.idle),
                ],
                phase: .idle
            ),
        ])
    }

    @Test("nobody answers: after the ringing timeout a 480 and a missed call")
    func ringingTimeout() {
        var h = Harness(config())
        h.send(.incomingCall(inc(1), marieke))
        h.run([
            .fire(
                .ringingTimeout(inc(1)),
                [
                    .reject(inc(1), .noAnswer),
                    .stopTone,
                    .callLog(.ended(rec(1), outcome: .missed, postsTried: [], reason: "not answered")),
                    .setIndicator(.idle),
                ],
                phase: .idle
            )
        ])
        #expect(h.now == .seconds(45))
    }

    @Test("the incoming transaction failing stops the ringing")
    func incomingFails() {
        var h = Harness(config())
        h.send(.incomingCall(inc(1), marieke))
        h.run([
            .on(.failed(inc(1), code: nil, reason: "transport"), [
                .cancelTimer(.ringingTimeout(inc(1))),
                .stopTone,
                .callLog(.ended(rec(1), outcome: .missed, postsTried: [], reason: "caller gone: transport")),
                .setIndicator(.idle),
            ], phase: .idle)
        ])
    }

    @Test("network lost while ringing: the call is missed and the tablet shows the fault")
    func networkLostWhileRinging() {
        var h = Harness(config())
        h.send(.incomingCall(inc(1), marieke))
        h.run([
            .on(.network(up: false), [
                .reject(inc(1), .noAnswer),
                .cancelTimer(.ringingTimeout(inc(1))),
                .stopTone,
                .callLog(.ended(rec(1), outcome: .missed, postsTried: [], reason: "network lost")),
                .setIndicator(.fault),
            ], phase: .fault)
        ])
    }

    @Test("auto-answer: spoken countdown, answers by itself when the timer fires")
    func autoAnswerFires() {
        var h = Harness(config())
        h.run([
            .on(
                .incomingCall(inc(1), checkIn),
                [
                    .playTone(.incomingRing),
                    .playPrompt(.incomingCall(name: "Wijkteam")),
                    .playPrompt(.autoAnswerIn(seconds: 10)),
                    .setIndicator(.ringing),
                    .callLog(.started(rec(1), direction: .incoming, peer: checkIn.uri)),
                    .scheduleTimer(.ringingTimeout(inc(1)), after: .seconds(45)),
                    .scheduleTimer(.autoAnswer(inc(1)), after: .seconds(10)),
                ],
                phase: .incomingRinging
            ),
            .fire(
                .autoAnswer(inc(1)),
                [
                    .answer(inc(1)),
                    .callLog(.answered(rec(1), peer: checkIn.uri)),
                    .startMedia(inc(1)),
                    .cancelTimer(.ringingTimeout(inc(1))),
                    .stopTone,
                    .playPrompt(.connected),
                    .setIndicator(.inCall),
                ],
                phase: .inCall
            ),
        ])
        #expect(h.now == .seconds(10))
        #expect(h.flow.status.peerName == "Wijkteam")
    }

    @Test("auto-answer: a press answers at once; a long press declines")
    func autoAnswerPressOrDecline() {
        var h = Harness(config())
        h.send(.incomingCall(inc(1), checkIn))
        h.run([
            .on(.shortPress, [
                .answer(inc(1)),
                .callLog(.answered(rec(1), peer: checkIn.uri)),
                .startMedia(inc(1)),
                .cancelTimer(.ringingTimeout(inc(1))),
                .cancelTimer(.autoAnswer(inc(1))),
                .stopTone,
                .playPrompt(.connected),
                .setIndicator(.inCall),
            ], phase: .inCall),
            // The auto-answer timer firing late (cancel crossed it) answers nothing twice.
            .on(.timerFired(.autoAnswer(inc(1))), [], phase: .inCall),
        ])
        var g = Harness(config())
        g.send(.incomingCall(inc(1), checkIn))
        g.run([
            .on(.longPress, [
                .reject(inc(1), .declined),
                .cancelTimer(.ringingTimeout(inc(1))),
                .cancelTimer(.autoAnswer(inc(1))),
                .stopTone,
                .playPrompt(.callEnded),
                .setIndicator(.idle),
                .callLog(.ended(rec(1), outcome: .declined, postsTried: [], reason: "declined by client")),
                .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
            ], phase: .ending)
        ])
    }

    @Test("a countdown that is not whole seconds is announced rounded up")
    func countdownRoundsUp() {
        var h = Harness(config())
        let caller = Caller(uri: "sip:x@y.test", contact: KnownContact(name: "X", autoAnswerAfter: .milliseconds(2500)))
        let actions = h.send(.incomingCall(inc(1), caller))
        #expect(actions.contains(.playPrompt(.autoAnswerIn(seconds: 3))))
    }

    @Test("a contact calling while the ended or unreachable screen shows rings normally")
    func ringsOverScreens() {
        var h = inCallWithPostA()
        h.send(.remoteHungUp(out(1)))
        h.run([
            .on(.incomingCall(inc(1), marieke), [.cancelTimer(.screenTimeout(rec(1)))] + rings(inc(1), rec(2), name: "Marieke", uri: marieke.uri), phase: .incomingRinging)
        ])
        var g = Harness(config(posts: [postA]))
        g.send(.shortPress)
        g.send(.failed(out(1), code: 503, reason: "down"))
        g.run([
            .on(.incomingCall(inc(1), marieke), [.cancelTimer(.screenTimeout(rec(1)))] + rings(inc(1), rec(2), name: "Marieke", uri: marieke.uri), phase: .incomingRinging)
        ])
        // The callback request stays pending: a family call is not the centrale calling back.
        #expect(g.flow.status.callbackPending)
    }

    @Test("events that do not concern the ringing call are ignored")
    func ignoredWhileRinging() {
        var h = Harness(config())
        h.send(.incomingCall(inc(1), marieke))
        h.run([
            .on(.answered(inc(1)), [], phase: .incomingRinging),
            .on(.provisional(out(1), code: 180), [], phase: .incomingRinging),
            .on(.remoteHungUp(inc(1)), [], phase: .incomingRinging),
            .on(.failed(out(5), code: 487, reason: "x"), [], phase: .incomingRinging),
            .on(.mediaFailed(.camera), [], phase: .incomingRinging),
            .on(.network(up: true), [], phase: .incomingRinging),
            .on(.buttonStuck, [], phase: .incomingRinging),
            .on(.buttonReleased, [], phase: .incomingRinging),
            .on(.timerFired(.screenTimeout(rec(1))), [], phase: .incomingRinging),
            .on(.timerFired(.autoAnswer(inc(1))), [], phase: .incomingRinging),  // no auto-answer for her
        ])
    }
}

/// Issue 19: the centrale calling back clears an outstanding callback request; a family call
/// does not; after a restart the I/O layer's `callbackOutstanding` restores the same view.
@Suite("Callback requests and the centrale calling")
struct CentraleCallsBackTests {
    let post = Caller(uri: "sip:post-a@centrale.test", contact: KnownContact(name: "Beeldzorgcentrale", isCentralePost: true))

    @Test("a post ringing in reports centraleReached with its record, after the record started")
    func postCallClears() {
        var h = Harness(config(posts: [postA]))
        h.send(.shortPress)
        h.send(.failed(out(1), code: 486, reason: "Busy"))
        #expect(h.flow.status.callbackPending)
        let actions = h.send(.incomingCall(inc(1), post))
        #expect(actions.last == .centraleReached(rec(2)))
        #expect(actions.firstIndex(of: .callLog(.started(rec(2), direction: .incoming, peer: post.uri)))! < actions.count - 1)
        #expect(!h.flow.status.callbackPending)
    }

    @Test("nothing outstanding: a post's call reports nothing; after a restart the outstanding flag counts")
    func onlyWhenOutstanding() {
        var h = Harness(config(posts: [postA]))
        var actions = h.send(.incomingCall(inc(1), post))
        #expect(!actions.contains(.centraleReached(rec(1))))
        h.send(.longPress)
        h.send(.callbackOutstanding(true))
        _ = h.waitUntilRest()
        actions = h.send(.incomingCall(inc(2), post))
        #expect(actions.contains(.centraleReached(rec(2))))
    }

    @Test("a post answering the client's next press clears it too")
    func answeredPressClears() {
        var h = Harness(config(posts: [postA]))
        h.send(.callbackOutstanding(true))
        h.send(.shortPress)
        let actions = h.send(.answered(out(1)))
        #expect(actions.contains(.centraleReached(rec(1))))
        #expect(!h.flow.status.callbackPending)
    }
}
