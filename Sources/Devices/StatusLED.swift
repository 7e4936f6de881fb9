// The button's (or a status) LED through the kernel LED class: the `timer` trigger's
// delay_on/delay_off for every pattern (off, steady, blinking), so the kernel does the
// blinking and a busy or stalled daemon never leaves the light frozen half-way.

import Glibc
public import Logging
import Synchronization

/// What the client should be able to tell from the light. The raw values match the case
/// names of CallFlow's `Indicator`, so the daemon maps one to the other by name.
/// `needsService` has no CallFlow twin: the daemon shows it when it cannot start for a
/// configuration fault and stays up only to say so (`NeedsServiceMode`).
public enum IndicatorState: String, Sendable, CaseIterable, Codable {
    case idle, calling, ringing, inCall, fault, unreachable, needsService
}

/// A light pattern the LED class can show without help from us.
public enum LEDPattern: Sendable, Equatable, CustomStringConvertible {
    case off
    case on
    case blink(on: Duration, off: Duration)

    /// The one place that decides what each state looks like:
    /// idle dark; calling a calm 1 Hz blink; ringing a fast 4 Hz blink that draws the eye;
    /// in call steady on; fault a short wink every 2 s; unreachable a short wink every second
    /// (both "something is not right", distinguishable by the technician, and neither
    /// mistakable for calling or ringing); needs service (the daemon cannot start, the button
    /// does nothing) a short wink twice a second, busier than any fault so it is noticed.
    public init(_ indicator: IndicatorState) {
        switch indicator {
        case .idle: self = .off
        case .calling: self = .blink(on: .milliseconds(500), off: .milliseconds(500))
        case .ringing: self = .blink(on: .milliseconds(125), off: .milliseconds(125))
        case .inCall: self = .on
        case .fault: self = .blink(on: .milliseconds(100), off: .milliseconds(1900))
        case .unreachable: self = .blink(on: .milliseconds(100), off: .milliseconds(900))
        case .needsService: self = .blink(on: .milliseconds(100), off: .milliseconds(400))
        }
    }

    public var description: String {
        switch self {
        case .off: "off"
        case .on: "on"
        case .blink(let on, let off): "blink \(on.milliseconds)/\(off.milliseconds) ms"
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (s, a) = components
        return s * 1000 + a / 1_000_000_000_000_000
    }
}

/// Something that shows an `LEDPattern`: the sysfs LED, or a recorder in tests.
public protocol StatusLight: Sendable {
    func show(_ pattern: LEDPattern)
}

extension StatusLight {
    public func show(_ indicator: IndicatorState) { show(LEDPattern(indicator)) }
}

/// An LED of the kernel LED class, `/sys/class/leds/NAME`. A missing LED is not an error:
/// the tablet works without one, so it is logged once and otherwise ignored.
///
/// Every pattern is written as the `timer` trigger's `delay_on`/`delay_off` only: off is
/// `delay_on` 0, steady on is `delay_off` 0, anything else blinks (the kernel's
/// `led_set_software_blink`). The daemon runs without privileges under a read-only `/sys`
/// (`ProtectKernelTunables=`), so it can write exactly the two attributes that udev gave its
/// group when the LED appeared (`udev/70-beeldzorg.rules` selects the trigger then) and that
/// the unit makes writable (`ReadWritePaths=`). Writing `brightness` or `trigger` would need
/// more: a `brightness` write even removes the trigger and its two attributes with it. Where
/// the trigger is not selected yet (a tablet without the udev rule, a test's fake directory)
/// it is selected once here, which works when the daemon may.
public final class SysfsLED: StatusLight {
    public let name: String
    private let directory: String
    private let logger: Logger
    private let state = Mutex<(shown: LEDPattern?, reported: Set<String>)>((nil, []))

    public init(name: String, classDirectory: String = "/sys/class/leds",
                logger: Logger = Logger(label: "beeldzorg.devices.led")) {
        self.name = name
        self.directory = classDirectory + "/" + name
        self.logger = logger
    }

    /// Whether the LED exists at all.
    public var isPresent: Bool { access(directory + "/brightness", F_OK) == 0 }

    public func show(_ pattern: LEDPattern) {
        state.withLock { state in
            guard isPresent else {
                report("missing", "status LED \(directory) not present; continuing without it", in: &state.reported)
                state.shown = nil
                return
            }
            guard state.shown != pattern else { return }
            guard timerTriggerSelected(&state.reported) else {
                state.shown = nil
                return
            }
            // The order of the two writes never passes through delay_on = delay_off = 0,
            // which the kernel takes as "blink at 1 Hz".
            let ok: Bool
            switch pattern {
            case .off:
                ok = write("delay_off", "1000", &state.reported) && write("delay_on", "0", &state.reported)
            case .on:
                ok = write("delay_on", "1000", &state.reported) && write("delay_off", "0", &state.reported)
            case .blink(let on, let off):
                ok = write("delay_on", "\(max(on.milliseconds, 1))", &state.reported)
                    && write("delay_off", "\(max(off.milliseconds, 1))", &state.reported)
            }
            state.shown = ok ? pattern : nil
        }
    }

    /// The `timer` trigger is active (sysfs lists it as `[timer]`), or was made so now.
    private func timerTriggerSelected(_ reported: inout Set<String>) -> Bool {
        let current = readAttribute("trigger") ?? ""
        if current.contains("[timer]") || current.split(whereSeparator: \.isWhitespace) == ["timer"] {
            return true
        }
        return write("trigger", "timer", &reported)
    }

    private func readAttribute(_ attribute: String) -> String? {
        let fd = open(directory + "/" + attribute, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    private func write(_ attribute: String, _ value: String, _ reported: inout Set<String>) -> Bool {
        let path = directory + "/" + attribute
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else {
            report(path, "\(path): open: \(Posix.errorString(errno))", in: &reported)
            return false
        }
        defer { close(fd) }
        let bytes = Array((value + "\n").utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else {
            report(path, "\(path): write \"\(value)\": \(Posix.errorString(errno))", in: &reported)
            return false
        }
        return true
    }

    private func report(_ key: String, _ message: String, in reported: inout Set<String>) {
        guard reported.insert(key).inserted else { return }
        logger.warning("\(message)")
    }
}

/// A light that remembers what it was asked to show; for tests and for the demo's console.
public final class RecordingLight: StatusLight {
    private let shown = Mutex<[LEDPattern]>([])
    public init() {}
    public func show(_ pattern: LEDPattern) { shown.withLock { $0.append(pattern) } }
    public var patterns: [LEDPattern] { shown.withLock { $0 } }
}
