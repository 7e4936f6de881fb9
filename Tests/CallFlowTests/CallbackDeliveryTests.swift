import Testing

@testable import CallFlow

/// `CallbackDelivery` as event → action scripts on a test clock (`t(seconds)`).
@Suite("Callback delivery")
struct CallbackDeliveryTests {
    func t(_ seconds: Double) -> WallTime { WallTime(secondsSince1970: 1_000 + seconds) }

    func request(_ id: String = "r1", at seconds: Double = 0, escalated: Bool = false, acknowledgedAt: WallTime? = nil)
        -> CallbackRequestInfo
    {
        CallbackRequestInfo(id: id, pressedAt: t(seconds - 60), createdAt: t(seconds), postsTried: ["post-1", "post-2"],
                            reason: "every post failed", escalated: escalated, acknowledgedAt: acknowledgedAt)
    }

    let withFallback = CallbackDeliveryConfiguration(escalateAfter: .seconds(30))

    @Test("a new request is sent at once and the client hears that the tablet keeps trying; a 2xx promises")
    func sentThenAcknowledged() {
        var machine = CallbackDelivery(configuration: withFallback)
        let r = request()
        #expect(machine.handle(.requested(r, now: t(0))) == [
            .scheduleTimer(.escalate("r1"), after: .seconds(30)),
            .send(r, attempt: 1, to: .primary),
            .announce(.trying(since: t(0))),
        ])
        #expect(machine.promise == .trying(since: t(0)))
        #expect(machine.handle(.answered(id: "r1", attempt: 1, status: 200, now: t(0.1))) == [
            .cancelTimer(.escalate("r1")),
            .markAcknowledged(id: "r1", at: t(0.1), by: .primary),
            .announce(.promised(since: t(0.1))),
        ])
        // A late duplicate answer changes nothing.
        #expect(machine.handle(.answered(id: "r1", attempt: 1, status: 200, now: t(0.2))) == [])
    }

    @Test("failures back off 2, 4, 8 s up to the maximum; the network's return sends at once")
    func backoffAndNetworkReturn() {
        var machine = CallbackDelivery(configuration: CallbackDeliveryConfiguration(maxRetryInterval: .seconds(5)))
        let r = request()
        _ = machine.handle(.requested(r, now: t(0)))
        #expect(machine.handle(.answered(id: "r1", attempt: 1, status: nil, now: t(8))) == [.scheduleTimer(.retry("r1"), after: .seconds(2))])
        #expect(machine.handle(.timerFired(.retry("r1"), now: t(10))) == [.send(r, attempt: 2, to: .primary)])
        #expect(machine.handle(.answered(id: "r1", attempt: 2, status: 503, now: t(10.1))) == [.scheduleTimer(.retry("r1"), after: .seconds(4))])
        #expect(machine.handle(.timerFired(.retry("r1"), now: t(14))) == [.send(r, attempt: 3, to: .primary)])
        #expect(machine.handle(.answered(id: "r1", attempt: 3, status: 404, now: t(14.1))) == [.scheduleTimer(.retry("r1"), after: .seconds(5))])
        // Registration again: no waiting for the backoff.
        #expect(machine.handle(.networkReturned) == [.cancelTimer(.retry("r1")), .send(r, attempt: 4, to: .primary)])
        // A stale retry timer does nothing while the attempt is in flight.
        #expect(machine.handle(.timerFired(.retry("r1"), now: t(15))) == [])
        #expect(machine.promise == .trying(since: t(0)))
    }

    @Test("not acknowledged in time: escalated to the fallback at once; the primary's late failure is ignored, any 2xx counts")
    func escalation() {
        var machine = CallbackDelivery(configuration: withFallback)
        let r = request()
        _ = machine.handle(.requested(r, now: t(0)))
        var escalated = r
        escalated.escalated = true
        #expect(machine.handle(.timerFired(.escalate("r1"), now: t(30))) == [
            .markEscalated(id: "r1", at: t(30)),
            .send(escalated, attempt: 2, to: .fallback),
        ])
        #expect(machine.handle(.answered(id: "r1", attempt: 1, status: 408, now: t(31))) == [])
        #expect(machine.handle(.answered(id: "r1", attempt: 2, status: 202, now: t(31.5))) == [
            .markAcknowledged(id: "r1", at: t(31.5), by: .fallback),
            .announce(.promised(since: t(31.5))),
        ])
    }

    @Test("after a restart: pending requests go again (escalated if their time passed), promised ones stay promised")
    func restored() {
        var machine = CallbackDelivery(configuration: withFallback)
        let young = request("young", at: 100)
        let old = request("old", at: 0)
        let promised = request("done", at: 50, acknowledgedAt: t(51))
        var oldEscalated = old
        oldEscalated.escalated = true
        #expect(machine.handle(.restored([old, promised, young], now: t(110))) == [
            .markEscalated(id: "old", at: t(110)),
            .send(oldEscalated, attempt: 1, to: .fallback),
            .scheduleTimer(.escalate("young"), after: .seconds(20)),
            .send(young, attempt: 1, to: .primary),
            .announce(.trying(since: t(0))),
        ])
        // Restoring again (a second start in the same process) adds nothing.
        #expect(machine.handle(.restored([old, promised, young], now: t(111))) == [])
        _ = machine.handle(.answered(id: "old", attempt: 1, status: 200, now: t(112)))
        _ = machine.handle(.answered(id: "young", attempt: 1, status: 200, now: t(113)))
        #expect(machine.promise == .promised(since: t(51)))
    }

    @Test("the centrale calling clears every request, cancels their timers and ignores late answers")
    func clearedByTheCentrale() {
        var machine = CallbackDelivery(configuration: withFallback)
        let r = request()
        _ = machine.handle(.requested(r, now: t(0)))
        _ = machine.handle(.answered(id: "r1", attempt: 1, status: nil, now: t(8)))
        #expect(machine.handle(.centraleReached(now: t(9))) == [
            .cancelTimer(.retry("r1")),
            .cancelTimer(.escalate("r1")),
            .markCleared(ids: ["r1"], at: t(9)),
            .announce(.none),
        ])
        #expect(machine.handle(.answered(id: "r1", attempt: 1, status: 200, now: t(10))) == [])
        #expect(machine.handle(.timerFired(.escalate("r1"), now: t(30))) == [])
        #expect(machine.handle(.centraleReached(now: t(31))) == [])
        #expect(machine.promise == .none)
    }

    @Test("without a fallback nothing escalates; a request made twice is delivered once")
    func noFallback() {
        var machine = CallbackDelivery(configuration: CallbackDeliveryConfiguration())
        let r = request()
        #expect(machine.handle(.requested(r, now: t(0))) == [.send(r, attempt: 1, to: .primary), .announce(.trying(since: t(0)))])
        #expect(machine.handle(.requested(r, now: t(1))) == [])
        #expect(machine.handle(.timerFired(.escalate("r1"), now: t(500))) == [])
    }
}
