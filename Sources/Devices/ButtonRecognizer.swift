// Press recognition for the one button: raw key edges with kernel timestamps in, button
// events out. Pure and clock-free: whoever drives it passes the time of every edge and calls
// `tick(now:)` at `nextDeadline` (or later), so tests run it with a hand-driven clock.

/// What the client did with the button, after debouncing.
public enum ButtonEvent: String, Sendable, Equatable, Codable {
    /// Pressed and released before the long-press duration.
    case shortPress
    /// Held for the long-press duration. Emitted while still held, so feedback is immediate;
    /// the release that follows produces nothing.
    case longPress
    /// Held longer than the stuck threshold; the button is ignored until it is released.
    case stuck
    /// A stuck button was finally released.
    case released
}

/// Timing policy for press recognition.
public struct ButtonTiming: Sendable, Equatable {
    /// An edge counts only once the contact has stayed in the new state this long.
    public var debounce: Duration
    /// Holding this long is a long press.
    public var longPress: Duration
    /// Holding longer than this is reported as a stuck button.
    public var stuckAfter: Duration

    public init(
        debounce: Duration = .milliseconds(30),
        longPress: Duration = .seconds(2),
        stuckAfter: Duration = .seconds(30)
    ) {
        // Values come from a configuration file; an inconsistent one must not stop the
        // daemon, so it is made consistent (debounce ≥ 0 < longPress < stuckAfter) here and
        // configuration validation is where it gets reported.
        self.debounce = max(debounce, .zero)
        self.longPress = max(longPress, self.debounce + .milliseconds(1))
        self.stuckAfter = max(stuckAfter, self.longPress + .milliseconds(1))
    }
}

/// Linux input key codes that matter to us (linux/input-event-codes.h).
public enum KeyCode {
    /// KEY_ENTER: a keyboard's Enter and qemu's `sendkey ret`; the default button key.
    public static let enter: UInt16 = 28
}

/// Turns debounced edges of one key into `ButtonEvent`s.
///
/// Debouncing is "stable for `debounce`": an edge is accepted only when no opposite edge
/// follows within `debounce`, and the press is timed from the first edge of the stable run.
/// This costs `debounce` of latency on the release (30 ms by default) but rejects both
/// contact bounce and short glitches. Key-repeat events (value 2) are ignored.
public struct ButtonRecognizer: Sendable {
    public let keyCode: UInt16
    public let timing: ButtonTiming

    private enum Stable: Sendable, Equatable {
        case up
        /// Held since `since`; which of the held-time events have been emitted already.
        case down(since: Duration, longSent: Bool, stuckSent: Bool)
    }

    private var stable: Stable = .up
    /// The raw contact state and when it last changed (the start of a possible stable run).
    private var rawDown = false
    private var rawChangedAt: Duration = .zero
    /// Latest time seen, so a timestamp that goes backwards cannot undo a decision.
    private var latest: Duration = .zero

    public init(keyCode: UInt16 = KeyCode.enter, timing: ButtonTiming = ButtonTiming()) {
        self.keyCode = keyCode
        self.timing = timing
    }

    /// True while a debounced press is in progress (including a stuck button).
    public var isHeld: Bool {
        if case .down = stable { return true }
        return false
    }

    /// True while a press that was reported as `.stuck` is still held.
    public var isStuck: Bool {
        if case .down(_, _, true) = stable { return true }
        return false
    }

    /// One key event from the device: `value` 1 = down, 0 = up, 2 = autorepeat (ignored).
    /// `time` is the kernel's timestamp for the event, on the same clock as `tick(now:)`.
    public mutating func key(code: UInt16, value: Int32, at time: Duration) -> [ButtonEvent] {
        guard code == keyCode, value == 0 || value == 1 else { return [] }
        let now = max(time, latest)
        var out = advance(to: now)
        let down = value == 1
        if down != rawDown {
            rawDown = down
            rawChangedAt = now
        }
        out += advance(to: now)
        return out
    }

    /// The clock moved on without an event; emits whatever became due by `now`.
    public mutating func tick(now: Duration) -> [ButtonEvent] {
        advance(to: max(now, latest))
    }

    /// When `tick(now:)` should be called next, or nil when nothing is pending.
    public var nextDeadline: Duration? {
        var deadlines: [Duration] = []
        if rawDown != isHeld { deadlines.append(rawChangedAt + timing.debounce) }
        if case .down(let since, let longSent, let stuckSent) = stable, rawDown {
            if !longSent { deadlines.append(since + timing.longPress) }
            if !stuckSent { deadlines.append(since + timing.stuckAfter) }
        }
        return deadlines.min()
    }

    private mutating func advance(to now: Duration) -> [ButtonEvent] {
        latest = now
        var out: [ButtonEvent] = []
        // A pending release that has not been confirmed yet still means "held until it
        // started": a press released at 1.99 s must not become a long press at 2.01 s.
        let heldUntil = (isHeld && !rawDown) ? rawChangedAt : now
        out += heldTimeEvents(upTo: heldUntil)

        let pending = rawDown != isHeld
        if pending && now - rawChangedAt >= timing.debounce {
            switch stable {
            case .up:
                stable = .down(since: rawChangedAt, longSent: false, stuckSent: false)
                out += heldTimeEvents(upTo: now)
            case .down(_, let longSent, let stuckSent):
                stable = .up
                if stuckSent {
                    out.append(.released)
                } else if !longSent {
                    out.append(.shortPress)
                }
            }
        }
        return out
    }

    private mutating func heldTimeEvents(upTo time: Duration) -> [ButtonEvent] {
        guard case .down(let since, var longSent, var stuckSent) = stable else { return [] }
        var out: [ButtonEvent] = []
        let held = time - since
        if !longSent && held >= timing.longPress {
            longSent = true
            out.append(.longPress)
        }
        if !stuckSent && held >= timing.stuckAfter {
            stuckSent = true
            out.append(.stuck)
        }
        stable = .down(since: since, longSent: longSent, stuckSent: stuckSent)
        return out
    }
}
