import Devices
import Testing

/// Drives a recogniser with a hand-held clock, the way the device thread does: edges at
/// given times, and ticks at every deadline the recogniser asks for up to a given time.
private struct Script {
    var recognizer: ButtonRecognizer
    var now: Duration = .seconds(1000)
    var events: [(ButtonEvent, Duration)] = []

    init(timing: ButtonTiming = ButtonTiming()) {
        recognizer = ButtonRecognizer(keyCode: KeyCode.enter, timing: timing)
    }

    /// Lets time pass to `now + d`, ticking at each deadline on the way (as poll would).
    mutating func wait(_ d: Duration) {
        let end = now + d
        while let deadline = recognizer.nextDeadline, deadline <= end {
            precondition(deadline >= now, "deadline in the past: \(deadline) < \(now)")
            now = deadline
            record(recognizer.tick(now: now))
        }
        now = end
        record(recognizer.tick(now: now))
    }

    mutating func edge(_ value: Int32, code: UInt16 = KeyCode.enter) {
        record(recognizer.key(code: code, value: value, at: now))
    }

    mutating func down() { edge(1) }
    mutating func up() { edge(0) }

    /// A bounce train: `count` alternating edges `gap` apart, ending in `value`.
    mutating func bounce(endingIn value: Int32, edges count: Int, gap: Duration) {
        for i in 0..<count {
            let v: Int32 = (count - 1 - i) % 2 == 0 ? value : 1 - value
            edge(v)
            if i < count - 1 { wait(gap) }
        }
    }

    mutating func record(_ new: [ButtonEvent]) {
        events += new.map { ($0, now) }
    }

    var kinds: [ButtonEvent] { events.map(\.0) }
}

@Suite("Button press recognition")
struct ButtonRecognizerTests {
    @Test func shortPressIsReportedAfterTheReleaseSettles() {
        var s = Script()
        s.down()
        s.wait(.milliseconds(200))
        #expect(s.kinds.isEmpty)
        s.up()
        s.wait(.milliseconds(29))
        #expect(s.kinds.isEmpty, "release must settle for the debounce time first")
        s.wait(.milliseconds(1))
        #expect(s.kinds == [.shortPress])
    }

    @Test func longPressIsEmittedWhileHeldNotAtRelease() {
        var s = Script()
        let start = s.now
        s.down()
        s.wait(.milliseconds(1999))
        #expect(s.kinds.isEmpty)
        s.wait(.milliseconds(1))
        #expect(s.kinds == [.longPress])
        #expect(s.events.first?.1 == start + .seconds(2))
        s.wait(.seconds(1))
        s.up()
        s.wait(.seconds(1))
        #expect(s.kinds == [.longPress], "the release after a long press produces nothing")
    }

    @Test func releasedJustBeforeTheLongPressDurationIsShort() {
        var s = Script()
        s.down()
        s.wait(.milliseconds(1990))
        s.up()
        // The tick at 2.0 s falls inside the release's debounce window: still a short press.
        s.wait(.milliseconds(100))
        #expect(s.kinds == [.shortPress])
    }

    @Test func customLongPressDuration() {
        var s = Script(timing: ButtonTiming(longPress: .milliseconds(800)))
        s.down()
        s.wait(.milliseconds(799))
        #expect(s.kinds.isEmpty)
        s.wait(.milliseconds(1))
        #expect(s.kinds == [.longPress])
    }

    @Test func stuckButtonIsReportedThenIgnoredUntilReleased() {
        var s = Script()
        let start = s.now
        s.down()
        s.wait(.seconds(30))
        #expect(s.kinds == [.longPress, .stuck])
        #expect(s.events.last?.1 == start + .seconds(30))
        // Bounces and repeats while stuck change nothing.
        s.edge(2)
        s.bounce(endingIn: 1, edges: 5, gap: .milliseconds(3))
        s.wait(.seconds(60))
        #expect(s.kinds == [.longPress, .stuck])
        #expect(s.recognizer.nextDeadline == nil, "nothing left to time while stuck")
        s.up()
        s.wait(.milliseconds(30))
        #expect(s.kinds == [.longPress, .stuck, .released])
        // And afterwards the button works normally again.
        s.down(); s.wait(.milliseconds(100)); s.up(); s.wait(.milliseconds(100))
        #expect(s.kinds == [.longPress, .stuck, .released, .shortPress])
    }

    @Test func bounceTrainOnPressAndReleaseIsOnePress() {
        var s = Script()
        s.bounce(endingIn: 1, edges: 7, gap: .milliseconds(4))
        s.wait(.milliseconds(150))
        s.bounce(endingIn: 0, edges: 5, gap: .milliseconds(5))
        s.wait(.milliseconds(100))
        #expect(s.kinds == [.shortPress])
    }

    @Test func pressIsTimedFromTheStartOfTheStableRun() {
        var s = Script()
        s.bounce(endingIn: 1, edges: 5, gap: .milliseconds(5))
        let stableFrom = s.now
        s.wait(.seconds(3))
        #expect(s.kinds == [.longPress])
        #expect(s.events.first?.1 == stableFrom + .seconds(2))
    }

    @Test func glitchShorterThanDebounceIsIgnored() {
        var s = Script()
        s.down()
        s.wait(.milliseconds(10))
        s.up()
        s.wait(.seconds(1))
        #expect(s.kinds.isEmpty)
    }

    @Test func releaseGlitchDuringAHoldDoesNotSplitThePress() {
        var s = Script()
        s.down()
        s.wait(.milliseconds(500))
        s.up()
        s.wait(.milliseconds(15))
        s.down()
        s.wait(.seconds(2))
        #expect(s.kinds == [.longPress], "a 15 ms dropout is bounce, not a release")
    }

    @Test func keyRepeatAndOtherKeysAreIgnored() {
        var s = Script()
        s.edge(1, code: 30)
        s.wait(.milliseconds(100))
        s.edge(0, code: 30)
        s.wait(.milliseconds(100))
        #expect(s.kinds.isEmpty)
        // Repeat without a down first does not start a press.
        s.edge(2)
        s.wait(.seconds(3))
        #expect(s.kinds.isEmpty)
        // Repeats during a short press do not extend or duplicate it.
        s.down()
        for _ in 0..<5 { s.wait(.milliseconds(33)); s.edge(2) }
        s.up()
        s.wait(.milliseconds(50))
        #expect(s.kinds == [.shortPress])
    }

    @Test func eventsWithoutTicksStillResolve() {
        // A driver that only feeds events (no timer) still gets a short press at the next edge.
        var r = ButtonRecognizer()
        #expect(r.key(code: KeyCode.enter, value: 1, at: .seconds(10)).isEmpty)
        #expect(r.key(code: KeyCode.enter, value: 0, at: .seconds(10) + .milliseconds(120)).isEmpty)
        #expect(r.key(code: KeyCode.enter, value: 1, at: .seconds(11)) == [.shortPress])
    }

    @Test func lateTickCatchesUpInOrder() {
        // The device thread was descheduled: one late tick must still give long then stuck.
        var r = ButtonRecognizer()
        _ = r.key(code: KeyCode.enter, value: 1, at: .seconds(5))
        #expect(r.tick(now: .seconds(40)) == [.longPress, .stuck])
        #expect(r.isHeld)
    }

    @Test func timestampGoingBackwardsDoesNotUndoAPress() {
        var r = ButtonRecognizer()
        _ = r.key(code: KeyCode.enter, value: 1, at: .seconds(5))
        #expect(r.tick(now: .seconds(5) + .milliseconds(40)).isEmpty)
        #expect(r.isHeld)
        _ = r.key(code: KeyCode.enter, value: 0, at: .seconds(4))
        #expect(r.tick(now: .seconds(5) + .milliseconds(80)) == [.shortPress])
    }

    @Test func inconsistentTimingIsMadeConsistentNotFatal() {
        let t = ButtonTiming(debounce: .milliseconds(-5), longPress: .zero, stuckAfter: .milliseconds(1))
        #expect(t.debounce == .zero)
        #expect(t.longPress > t.debounce)
        #expect(t.stuckAfter > t.longPress)
        let sane = ButtonTiming(debounce: .milliseconds(20), longPress: .seconds(3), stuckAfter: .seconds(40))
        #expect(sane == ButtonTiming(debounce: .milliseconds(20), longPress: .seconds(3), stuckAfter: .seconds(40)))
        #expect(sane.longPress == .seconds(3) && sane.stuckAfter == .seconds(40))
    }

    @Test func deadlinesFollowThePressLifecycle() {
        var r = ButtonRecognizer()
        #expect(r.nextDeadline == nil)
        _ = r.key(code: KeyCode.enter, value: 1, at: .seconds(1))
        #expect(r.nextDeadline == .seconds(1) + .milliseconds(30))
        _ = r.tick(now: .seconds(1) + .milliseconds(30))
        #expect(r.nextDeadline == .seconds(3))
        _ = r.tick(now: .seconds(3))
        #expect(r.nextDeadline == .seconds(31))
    }
}
