// The test and demo button: text commands from a FIFO or stdin, fed through the same
// ButtonRecognizer as the real button, so the daemon cannot tell the difference.

import Glibc
public import Logging
import Synchronization

/// One line of the test/demo button protocol.
public enum ButtonCommand: Sendable, Equatable {
    /// A complete short press ("press", or an empty line: Enter on stdin).
    case press
    /// A complete long press ("long", or "l").
    case long
    /// A raw edge, timed by when the line arrives ("down" / "up").
    case down, up

    public init?(line: Substring) {
        switch line.trimmingWhitespace().lowercased() {
        case "", "press", "p": self = .press
        case "long", "l": self = .long
        case "down", "d": self = .down
        case "up", "u": self = .up
        default: return nil
        }
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
        let last = lastIndex(where: { !isSpace($0) })!
        return self[first...last]
    }
}

/// Applies commands to a recogniser. Whole presses ("press", "long") are replayed on a
/// virtual timeline that runs ahead of the real clock by `offset`, so they complete at once
/// while still going through debounce and long-press timing exactly like a real button.
struct ButtonCommandFeeder: Sendable {
    private(set) var recognizer: ButtonRecognizer
    private(set) var offset: Duration = .zero

    init(recognizer: ButtonRecognizer) { self.recognizer = recognizer }

    var nextDeadline: Duration? { recognizer.nextDeadline.map { $0 - offset } }

    mutating func apply(_ command: ButtonCommand, realNow: Duration) -> [ButtonEvent] {
        let t = realNow + offset
        let code = recognizer.keyCode
        let timing = recognizer.timing
        var out: [ButtonEvent] = []
        switch command {
        case .down:
            out += recognizer.key(code: code, value: 1, at: t)
        case .up:
            out += recognizer.key(code: code, value: 0, at: t)
        case .press, .long:
            // Let any raw edge still settling finish first, so a whole press always counts
            // as one however closely it follows a "down"/"up".
            let start = t + timing.debounce
            out += recognizer.tick(now: start)
            let held = command == .press ? timing.debounce + .milliseconds(100) : timing.longPress + timing.debounce
            out += recognizer.key(code: code, value: 1, at: start)
            out += recognizer.tick(now: start + held)
            out += recognizer.key(code: code, value: 0, at: start + held)
            let settled = start + held + timing.debounce
            out += recognizer.tick(now: settled)
            offset += settled - t
        }
        return out
    }

    mutating func tick(realNow: Duration) -> [ButtonEvent] {
        recognizer.tick(now: realNow + offset)
    }
}

/// A button driven by lines of text: "press", "long", "down", "up" (one per line); on a
/// terminal, Enter is a press and "l" + Enter a long press.
public final class LineButtonSource: ButtonSource {
    private let fd: Int32
    private let name: String
    private let closeOnStop: Bool
    private let keyCode: UInt16
    private let timing: ButtonTiming
    private let logger: Logger
    private let thread = DeviceThread()
    private let stream: AsyncStream<ButtonEvent>
    private let continuation: AsyncStream<ButtonEvent>.Continuation
    private let started = Mutex(false)

    init(fileDescriptor: Int32, name: String, closeOnStop: Bool, keyCode: UInt16, timing: ButtonTiming, logger: Logger) {
        fd = fileDescriptor
        self.name = name
        self.closeOnStop = closeOnStop
        self.keyCode = keyCode
        self.timing = timing
        self.logger = logger
        (stream, continuation) = AsyncStream.makeStream(of: ButtonEvent.self)
    }

    /// Reads commands from a FIFO, creating it (mode 0660) if it does not exist. The FIFO is
    /// held open for writing too, so writers may come and go without ending the stream.
    public static func fifo(
        path: String,
        keyCode: UInt16 = KeyCode.enter,
        timing: ButtonTiming = ButtonTiming(),
        logger: Logger = Logger(label: "beeldzorg.devices.button.fifo")
    ) throws(DeviceError) -> LineButtonSource {
        if mkfifo(path, 0o660) != 0 && errno != EEXIST {
            throw DeviceError(.io, device: path, detail: "mkfifo: \(Posix.errorString(errno))")
        }
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFIFO else {
            throw DeviceError(.unsupported, device: path, detail: "exists and is not a FIFO")
        }
        let fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            throw DeviceError(.io, device: path, detail: "open: \(Posix.errorString(errno))")
        }
        return LineButtonSource(fileDescriptor: fd, name: path, closeOnStop: true, keyCode: keyCode, timing: timing, logger: logger)
    }

    /// Reads commands from standard input; the stream ends at end of input.
    public static func standardInput(
        keyCode: UInt16 = KeyCode.enter,
        timing: ButtonTiming = ButtonTiming(),
        logger: Logger = Logger(label: "beeldzorg.devices.button.stdin")
    ) -> LineButtonSource {
        LineButtonSource(fileDescriptor: STDIN_FILENO, name: "stdin", closeOnStop: false, keyCode: keyCode, timing: timing, logger: logger)
    }

    public func events() -> AsyncStream<ButtonEvent> {
        let first = started.withLock { started in
            defer { started = true }
            return !started
        }
        if first { thread.start { [self] in run() } }
        return stream
    }

    public func stop() {
        thread.stop()
        continuation.finish()
    }

    private func run() {
        var feeder = ButtonCommandFeeder(recognizer: ButtonRecognizer(keyCode: keyCode, timing: timing))
        var pending: [UInt8] = []
        var open = true
        defer {
            if closeOnStop { close(fd) }
            continuation.finish()
        }
        while !thread.isStopping && open {
            let timeout = Posix.pollTimeout(until: feeder.nextDeadline, now: Posix.monotonicNow())
            let ready = Posix.poll([thread.wakeup.readFD, fd], timeoutMilliseconds: timeout)
            if ready[0] { thread.wakeup.drain() }
            if ready[1] {
                var buf = [UInt8](repeating: 0, count: 512)
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    pending += buf[0..<n]
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    if n < 0 { logger.error("\(name): read: \(Posix.errorString(errno))") }
                    open = false
                }
            }
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeFirst(newline + 1)
                guard let command = ButtonCommand(line: line[...]) else {
                    logger.warning("\(name): unknown button command \"\(line)\" (press, long, down, up)")
                    continue
                }
                for event in feeder.apply(command, realNow: Posix.monotonicNow()) { continuation.yield(event) }
            }
            for event in feeder.tick(realNow: Posix.monotonicNow()) { continuation.yield(event) }
        }
    }
}
