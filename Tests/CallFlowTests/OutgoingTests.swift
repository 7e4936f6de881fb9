import CallFlow
import Testing

@Suite("Calling the centrale")
struct OutgoingTests {
    @Test("a short press in idle rings every post at once")
    func shortPressRingsAll() {
        var h = Harness(config())
        h.run([
            .on(
                .shortPress,
                startsCalling(rec(1)) + [
                    .sendInvite(out(1), postA), .sendInvite(out(2), postB), .sendInvite(out(3), postC),
                ],
                phase: .callingCentrale
            )
        ])
        #expect(h.flow.status.legsInFlight == [out(1), out(2), out(3)])
    }

    @Test("a long press in idle calls the centrale too")
    func longPressInIdleCalls() {
        var h = Harness(config())
        h.run([
            .on(
                .longPress,
                startsCalling(rec(1)) + [
                    .sendInvite(out(1), postA), .sendInvite(out(2), postB), .sendInvite(out(3), postC),
                ],
                phase: .callingCentrale
            )
        ])
    }

    @Test("180 starts ringback once; 100 and 183 after it change nothing")
    func ringingOut() {
        var h = Harness(config())
        h.send(.shortPress)
        h.run([
            .on(.provisional(out(2), code: 100), [], phase: .callingCentrale),
            .on(.provisional(out(2), code: 180), [.playTone(.ringback)], phase: .ringingOut),
            .on(.provisional(out(1), code: 183), [], phase: .ringingOut),
            .on(.provisional(out(2), code: 180), [], phase: .ringingOut),
            // A provisional for a leg that is not ours is ignored.
            .on(.provisional(out(99), code: 180), [], phase: .ringingOut),
        ])
    }

    @Test("ring-all: the first 2xx wins, the others are cancelled, a late 2xx is BYE'd")
    func ringAllFirstAnswerWins() {
        var h = Harness(config())
        h.send(.shortPress)
        h.run([
            .on(.provisional(out(1), code: 180), [.playTone(.ringback)]),
            .on(
                .answered(out(2)),
                [
                    .cancelInvite(out(1)), .cancelInvite(out(3)),
                    .callLog(.answered(rec(1), peer: "b")),
                    .startMedia(out(2)),
                    .cancelTimer(.overallDeadline(rec(1))), .cancelTimer(.reassurance(rec(1))),
                    .stopTone,
                    .playPrompt(.connected),
                    .setIndicator(.inCall),
                ],
                phase: .inCall
            ),
            // Post c answered while our CANCEL was on its way: the SIP layer ACKs, we BYE.
            .on(.answered(out(3)), [.sendBye(out(3))], phase: .inCall),
            // Post a's 487 for the CANCEL: nothing to do.
            .on(.failed(out(1), code: 487, reason: "Request Terminated"), [], phase: .inCall),
            // A retransmitted 2xx for the call itself is not a second call.
            .on(.answered(out(2)), [], phase: .inCall),
        ])
        #expect(h.flow.status.peerName == "b")
        #expect(h.flow.status.legsInFlight == [out(2)])
    }

    @Test("a late 2xx after the attempt was cancelled is BYE'd in any state")
    func lateAnswerAfterCancel() {
        var h = Harness(config())
        h.send(.shortPress)
        h.send(.longPress)
        h.run([.on(.answered(out(1)), [.sendBye(out(1))], phase: .ending)])
        h.fire(.screenTimeout(rec(1)))
        h.run([.on(.answered(out(2)), [.sendBye(out(2))], phase: .idle)])
    }

    @Test("every post failing: unreachable, callback queued, logged, then idle by waiting")
    func everyPostFails() {
        var h = Harness(config())
        h.send(.shortPress)
        h.run([
            .on(.failed(out(1), code: 503, reason: "Service Unavailable"), [], phase: .callingCentrale),
            .on(.failed(out(3), code: nil, reason: "transport"), [], phase: .callingCentrale),
            .on(
                .failed(out(2), code: 486, reason: "Busy Here"),
                [
                    .cancelTimer(.overallDeadline(rec(1))), .cancelTimer(.reassurance(rec(1))),
                    .playPrompt(.centraleUnreachable),
                    .setIndicator(.unreachable),
                    .callLog(.ended(rec(1), outcome: .unreachable, postsTried: ["a", "b", "c"], reason: "every post failed")),
                    .queueCallbackRequest(rec(1), postsTried: ["a", "b", "c"], reason: "every post failed"),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(10)),
                ],
                phase: .unreachable
            ),
            .fire(.screenTimeout(rec(1)), [.setIndicator(.idle)], phase: .idle),
        ])
        #expect(h.flow.status.callbackPending)
    }

    @Test("no callback is queued when the deployment turned it off")
    func noCallbackWhenDisabled() {
        var h = Harness(config(posts: [postA], queueCallback: false))
        h.send(.shortPress)
        let actions = h.send(.failed(out(1), code: 500, reason: "Server Error"))
        #expect(h.phase == .unreachable)
        #expect(!actions.contains { if case .queueCallbackRequest = $0 { true } else { false } })
        #expect(!h.flow.status.callbackPending)
    }

    @Test("the overall deadline cancels everything and goes to unreachable")
    func deadlineReached() {
        var h = Harness(config())
        h.send(.shortPress)
        h.send(.failed(out(3), code: 480, reason: "Temporarily Unavailable"))
        h.run([
            .on(.provisional(out(1), code: 180), [.playTone(.ringback)]),
            .fire(.reassurance(rec(1)), [.playPrompt(.stillTrying), .scheduleTimer(.reassurance(rec(1)), after: .seconds(15))]),
            .fire(.reassurance(rec(1)), [.playPrompt(.stillTrying), .scheduleTimer(.reassurance(rec(1)), after: .seconds(15))]),
            .fire(.reassurance(rec(1)), [.playPrompt(.stillTrying), .scheduleTimer(.reassurance(rec(1)), after: .seconds(15))]),
        ])
        // 45 s in: the next timer due is the deadline (60 s), together with the 4th reassurance.
        #expect(h.pendingTimers == [.overallDeadline(rec(1)), .reassurance(rec(1))])
        h.run([
            .fire(
                .overallDeadline(rec(1)),
                [
                    .cancelInvite(out(1)), .cancelInvite(out(2)),
                    .cancelTimer(.reassurance(rec(1))),
                    .stopTone,
                    .playPrompt(.centraleUnreachable),
                    .setIndicator(.unreachable),
                    .callLog(.ended(rec(1), outcome: .unreachable, postsTried: ["a", "b", "c"], reason: "deadline reached")),
                    .queueCallbackRequest(rec(1), postsTried: ["a", "b", "c"], reason: "deadline reached"),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(10)),
                ],
                phase: .unreachable
            ),
            // The posts' 487s and a 2xx that crossed the CANCEL.
            .on(.failed(out(2), code: 487, reason: "Request Terminated"), [], phase: .unreachable),
            .on(.answered(out(1)), [.sendBye(out(1))], phase: .unreachable),
        ])
        #expect(h.now == .seconds(60))
    }

    @Test("a short press in unreachable calls again; a connected call clears the pending callback")
    func pressInUnreachableCallsAgain() {
        var h = Harness(config(posts: [postA]))
        h.send(.shortPress)
        h.send(.failed(out(1), code: 503, reason: "down"))
        #expect(h.flow.status.callbackPending)
        h.run([
            .on(
                .shortPress,
                [.cancelTimer(.screenTimeout(rec(1)))] + startsCalling(rec(2)) + [.sendInvite(out(2), postA)],
                phase: .callingCentrale
            )
        ])
        h.send(.answered(out(2)))
        #expect(!h.flow.status.callbackPending)
    }

    @Test("hunt: one post at a time; ring timeout and failure both move on; a new round after a ring-out")
    func huntMovesOn() {
        var h = Harness(config(.hunt(perPostTimeout: .seconds(8))))
        h.run([
            .on(
                .shortPress,
                startsCalling(rec(1)) + [.sendInvite(out(1), postA), .scheduleTimer(.postRingTimeout(out(1)), after: .seconds(8))],
                phase: .callingCentrale
            ),
            .on(.provisional(out(1), code: 180), [.playTone(.ringback)], phase: .ringingOut),
            .fire(
                .postRingTimeout(out(1)),
                [.cancelInvite(out(1)), .sendInvite(out(2), postB), .scheduleTimer(.postRingTimeout(out(2)), after: .seconds(8))],
                phase: .ringingOut
            ),
            .on(.failed(out(1), code: 487, reason: "Request Terminated"), []),
            .on(
                .failed(out(2), code: 503, reason: "Service Unavailable"),
                [.cancelTimer(.postRingTimeout(out(2))), .sendInvite(out(3), postC), .scheduleTimer(.postRingTimeout(out(3)), after: .seconds(8))]
            ),
            // c fails too, but a rang out earlier: posts are alive, so hunt again from the top.
            .on(
                .failed(out(3), code: 486, reason: "Busy Here"),
                [.cancelTimer(.postRingTimeout(out(3))), .sendInvite(out(4), postA), .scheduleTimer(.postRingTimeout(out(4)), after: .seconds(8))]
            ),
            .on(
                .answered(out(4)),
                [
                    .callLog(.answered(rec(1), peer: "a")),
                    .startMedia(out(4)),
                    .cancelTimer(.overallDeadline(rec(1))), .cancelTimer(.reassurance(rec(1))),
                    .cancelTimer(.postRingTimeout(out(4))),
                    .stopTone,
                    .playPrompt(.connected),
                    .setIndicator(.inCall),
                ],
                phase: .inCall
            ),
        ])
        #expect(h.now == .seconds(8))
    }

    @Test("hunt: every post failing outright ends in unreachable without a second round")
    func huntAllFail() {
        var h = Harness(config(.hunt(perPostTimeout: .seconds(8)), posts: [postA, postB]))
        h.send(.shortPress)
        h.send(.failed(out(1), code: 404, reason: "Not Found"))
        h.run([
            .on(
                .failed(out(2), code: 404, reason: "Not Found"),
                [
                    .cancelTimer(.postRingTimeout(out(2))),
                    .cancelTimer(.overallDeadline(rec(1))), .cancelTimer(.reassurance(rec(1))),
                    .playPrompt(.centraleUnreachable),
                    .setIndicator(.unreachable),
                    .callLog(.ended(rec(1), outcome: .unreachable, postsTried: ["a", "b"], reason: "every post failed")),
                    .queueCallbackRequest(rec(1), postsTried: ["a", "b"], reason: "every post failed"),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(10)),
                ],
                phase: .unreachable
            )
        ])
    }

    @Test("dead posts are skipped (ring-all), and come back when alive")
    func deadPostsSkippedRingAll() {
        var h = Harness(config())
        h.run([
            .on(.postAvailability(postID: "a", alive: false), [], phase: .idle),
            .on(.postAvailability(postID: "c", alive: false), [], phase: .idle),
            .on(.shortPress, startsCalling(rec(1)) + [.sendInvite(out(1), postB)]),
            .on(.longPress, [
                .cancelInvite(out(1)),
                .cancelTimer(.overallDeadline(rec(1))), .cancelTimer(.reassurance(rec(1))),
                .playPrompt(.callEnded),
                .setIndicator(.idle),
                .callLog(.ended(rec(1), outcome: .cancelled, postsTried: ["b"], reason: "cancelled by client")),
                .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
            ], phase: .ending),
            .fire(.screenTimeout(rec(1)), [.setIndicator(.idle)], phase: .idle),
            .on(.postAvailability(postID: "a", alive: true), []),
            .on(.shortPress, startsCalling(rec(2)) + [.sendInvite(out(2), postA), .sendInvite(out(3), postB)]),
        ])
    }

    @Test("dead posts are skipped (hunt)")
    func deadPostsSkippedHunt() {
        var h = Harness(config(.hunt(perPostTimeout: .seconds(5))))
        h.send(.postAvailability(postID: "a", alive: false))
        h.run([
            .on(.shortPress, startsCalling(rec(1)) + [.sendInvite(out(1), postB), .scheduleTimer(.postRingTimeout(out(1)), after: .seconds(5))]),
            .fire(.postRingTimeout(out(1)), [.cancelInvite(out(1)), .sendInvite(out(2), postC), .scheduleTimer(.postRingTimeout(out(2)), after: .seconds(5))]),
        ])
    }

    @Test("all posts known dead: try them all anyway")
    func allDeadTriesAll() {
        var h = Harness(config())
        for post in [postA, postB, postC] {
            h.send(.postAvailability(postID: post.id, alive: false))
        }
        h.run([
            .on(.shortPress, startsCalling(rec(1)) + [
                .sendInvite(out(1), postA), .sendInvite(out(2), postB), .sendInvite(out(3), postC),
            ])
        ])
    }

    @Test("nervous short presses while calling only blip; a long press cancels")
    func pressesWhileCalling() {
        var h = Harness(config(posts: [postA, postB]))
        h.send(.shortPress)
        h.send(.provisional(out(1), code: 180))
        h.run([
            .on(.shortPress, [.playTone(.pressAck)], phase: .ringingOut),
            .on(.shortPress, [.playTone(.pressAck)], phase: .ringingOut),
            .on(.shortPress, [.playTone(.pressAck)], phase: .ringingOut),
            .on(
                .longPress,
                [
                    .cancelInvite(out(1)), .cancelInvite(out(2)),
                    .cancelTimer(.overallDeadline(rec(1))), .cancelTimer(.reassurance(rec(1))),
                    .stopTone,
                    .playPrompt(.callEnded),
                    .setIndicator(.idle),
                    .callLog(.ended(rec(1), outcome: .cancelled, postsTried: ["a", "b"], reason: "cancelled by client")),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
                ],
                phase: .ending
            ),
        ])
    }

    @Test("a configuration without posts still gives the unreachable path")
    func noPosts() {
        var h = Harness(config(posts: []))
        h.run([
            .on(
                .shortPress,
                startsCalling(rec(1)) + [
                    .cancelTimer(.overallDeadline(rec(1))), .cancelTimer(.reassurance(rec(1))),
                    .playPrompt(.centraleUnreachable),
                    .setIndicator(.unreachable),
                    .callLog(.ended(rec(1), outcome: .unreachable, postsTried: [], reason: "no centrale posts configured")),
                    .queueCallbackRequest(rec(1), postsTried: [], reason: "no centrale posts configured"),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(10)),
                ],
                phase: .unreachable
            )
        ])
    }
}

@Suite("In a call")
struct InCallTests {
    @Test("nervous repeated short presses never end a call")
    func nervousPresses() {
        var h = inCallWithPostA()
        for _ in 0..<20 {
            h.run([.on(.shortPress, [.playTone(.pressAck)], phase: .inCall)])
        }
        #expect(h.flow.status.legsInFlight == [out(1)])
    }

    @Test("a long press hangs up, the ended screen shows, then idle")
    func longPressHangsUp() {
        var h = inCallWithPostA()
        h.run([
            .on(
                .longPress,
                [
                    .sendBye(out(1)),
                    .stopMedia,
                    .playPrompt(.callEnded),
                    .setIndicator(.idle),
                    .callLog(.ended(rec(1), outcome: .completed, postsTried: ["a", "b", "c"], reason: "hung up by client")),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
                ],
                phase: .ending
            ),
            // Pressing again on the "ended" screen: a short press is a new call for help,
            // a long press goes straight back to idle.
            .on(.longPress, [.cancelTimer(.screenTimeout(rec(1))), .setIndicator(.idle)], phase: .idle),
        ])
    }

    @Test("the other side hangs up")
    func remoteHangUp() {
        var h = inCallWithPostA()
        h.run([
            .on(.remoteHungUp(out(2)), [], phase: .inCall),  // not our call
            .on(
                .remoteHungUp(out(1)),
                [
                    .stopMedia,
                    .playPrompt(.callEnded),
                    .setIndicator(.idle),
                    .callLog(.ended(rec(1), outcome: .completed, postsTried: ["a", "b", "c"], reason: "hung up by other side")),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
                ],
                phase: .ending
            ),
            .on(.shortPress, [.cancelTimer(.screenTimeout(rec(1)))] + startsCalling(rec(2)) + [
                .sendInvite(out(4), postA), .sendInvite(out(5), postB), .sendInvite(out(6), postC),
            ], phase: .callingCentrale),
        ])
    }

    @Test("the dialog dying under the call ends it without a BYE")
    func dialogFails() {
        var h = inCallWithPostA()
        h.run([
            .on(.failed(out(1), code: 408, reason: "timeout"), [
                .stopMedia,
                .playPrompt(.callEnded),
                .setIndicator(.idle),
                .callLog(.ended(rec(1), outcome: .completed, postsTried: ["a", "b", "c"], reason: "call failed (408): timeout")),
                .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
            ], phase: .ending)
        ])
    }

    @Test("network lost during a call: BYE, media off, logged, prompt; fault once at rest")
    func networkLostInCall() {
        var h = inCallWithPostA()
        h.run([
            .on(
                .network(up: false),
                [
                    .sendBye(out(1)),
                    .stopMedia,
                    .playPrompt(.callEnded),
                    .setIndicator(.fault),
                    .callLog(.ended(rec(1), outcome: .completed, postsTried: ["a", "b", "c"], reason: "network lost")),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
                ],
                phase: .ending
            ),
            .fire(.screenTimeout(rec(1)), [.setIndicator(.fault)], phase: .fault),
            .on(.network(up: true), [.setIndicator(.idle)], phase: .idle),
        ])
        #expect(h.flow.status.networkUp)
    }

    @Test("losing the camera keeps the audio; losing the media transport ends the call")
    func mediaFailures() {
        var h = inCallWithPostA()
        h.run([
            .on(.mediaFailed(.camera), [.stopVideo], phase: .inCall),
            .on(.mediaFailed(.microphone), [], phase: .inCall),
            .on(.mediaFailed(.speaker), [], phase: .inCall),
            .on(
                .mediaFailed(.transport),
                [
                    .sendBye(out(1)),
                    .stopMedia,
                    .playPrompt(.callEnded),
                    .setIndicator(.idle),
                    .callLog(.ended(rec(1), outcome: .completed, postsTried: ["a", "b", "c"], reason: "media transport failed")),
                    .scheduleTimer(.screenTimeout(rec(1)), after: .seconds(5)),
                ],
                phase: .ending
            ),
        ])
    }

    @Test("an incoming call during a call is rejected busy and logged")
    func busyInCall() {
        var h = inCallWithPostA()
        h.run([
            .on(
                .incomingCall(inc(7), marieke),
                [
                    .reject(inc(7), .busy),
                    .callLog(.started(rec(2), direction: .incoming, peer: "sip:marieke@family.test")),
                    .callLog(.ended(rec(2), outcome: .rejectedBusy, postsTried: [], reason: nil)),
                ],
                phase: .inCall
            )
        ])
    }

    @Test("events that do not concern the call are ignored in a call")
    func ignoredInCall() {
        var h = inCallWithPostA()
        h.run([
            .on(.provisional(out(1), code: 180), [], phase: .inCall),
            .on(.remoteCancelled(out(1)), [], phase: .inCall),
            .on(.registration(up: false), [], phase: .inCall),
            .on(.registration(up: true), [], phase: .inCall),
            .on(.network(up: true), [], phase: .inCall),
            .on(.postAvailability(postID: "b", alive: false), [], phase: .inCall),
            .on(.timerFired(.overallDeadline(rec(1))), [], phase: .inCall),  // stale
            .on(.timerFired(.reassurance(rec(1))), [], phase: .inCall),  // stale
            .on(.buttonReleased, [], phase: .inCall),
        ])
        #expect(h.flow.status.registered)
    }
}
