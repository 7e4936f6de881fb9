// The contract every button source meets (the real evdev button, the FIFO and stdin demo
// sources), and the device-independent loop that turns input events into ButtonEvents:
// open the device, read it on its own thread, tick the recogniser at its deadlines, and
// when the device vanishes wait for it to come back (inotify, not polling).

import Glibc
import Logging
import Synchronization

/// A source of button events. `events()` starts the source and may be called once; the
/// stream finishes after `stop()`.
public protocol ButtonSource: Sendable {
    func events() -> AsyncStream<ButtonEvent>
    func stop()
}

/// What a device-backed button source is doing, for logs and the technician's status view.
public enum ButtonDeviceStatus: Sendable {
    case searching
    case opened(device: String)
    /// Not there (yet); waiting for it to appear.
    case missing(DeviceError)
    /// Was open and went away; waiting for it to come back.
    case lost(DeviceError)
}

/// One event as read from an input device, its kernel timestamp on the monotonic clock.
struct InputEvent: Sendable, Equatable {
    static let evKey: UInt16 = 0x01
    /// `struct input_event` on 64-bit Linux: timeval (2 × 8 bytes), type, code, value.
    static let rawSize = 24

    var time: Duration
    var type: UInt16
    var code: UInt16
    var value: Int32

    /// Decodes consecutive native `struct input_event`s; a trailing partial record is left
    /// in `bytes`.
    static func decode(_ bytes: inout [UInt8]) -> [InputEvent] {
        var events: [InputEvent] = []
        var offset = 0
        bytes.withUnsafeBytes { raw in
            while raw.count - offset >= rawSize {
                let sec = raw.loadUnaligned(fromByteOffset: offset, as: Int64.self)
                let usec = raw.loadUnaligned(fromByteOffset: offset + 8, as: Int64.self)
                events.append(InputEvent(
                    time: .seconds(sec) + .microseconds(usec),
                    type: raw.loadUnaligned(fromByteOffset: offset + 16, as: UInt16.self),
                    code: raw.loadUnaligned(fromByteOffset: offset + 18, as: UInt16.self),
                    value: raw.loadUnaligned(fromByteOffset: offset + 20, as: Int32.self)))
                offset += rawSize
            }
        }
        bytes.removeFirst(offset)
        return events
    }

    /// The native encoding (for stand-in devices in tests).
    var encoded: [UInt8] {
        let (sec, attos) = time.components
        var out = [UInt8]()
        out.reserveCapacity(Self.rawSize)
        withUnsafeBytes(of: Int64(sec)) { out += $0 }
        withUnsafeBytes(of: Int64(attos / 1_000_000_000_000)) { out += $0 }
        withUnsafeBytes(of: type) { out += $0 }
        withUnsafeBytes(of: code) { out += $0 }
        withUnsafeBytes(of: value) { out += $0 }
        return out
    }
}

enum InputRead {
    case events([InputEvent])
    /// The device went away (ENODEV, end of file, or another read error).
    case gone(DeviceError)
}

/// An open input device that a device thread polls and reads without blocking.
protocol InputDevice: AnyObject {
    var name: String { get }
    var fileDescriptor: Int32 { get }
    /// Whether the key is already held when the device is opened (a button stuck since
    /// boot, or held through a reconnect), so it is timed and reported like any other.
    func keyIsDown(_ code: UInt16) -> Bool
    func readAvailable() -> InputRead
    func close()
}

/// Finds and opens the button's input device.
protocol InputDeviceLocator: Sendable {
    /// Directories where the device node appears; watched while the device is missing.
    var watchDirectories: [String] { get }
    func open() throws(DeviceError) -> any InputDevice
}

/// Reads native `struct input_event` records from a descriptor: the stand-in for evdev in
/// tests (a pipe), and a decoder for anything that speaks the raw format.
final class RawInputDevice: InputDevice {
    let name: String
    let fileDescriptor: Int32
    private var pending: [UInt8] = []

    private let initiallyDown: Bool

    init(name: String, fileDescriptor: Int32, initiallyDown: Bool = false) {
        self.name = name
        self.fileDescriptor = fileDescriptor
        self.initiallyDown = initiallyDown
    }

    func keyIsDown(_ code: UInt16) -> Bool { initiallyDown }

    func readAvailable() -> InputRead {
        var buf = [UInt8](repeating: 0, count: InputEvent.rawSize * 64)
        let n = buf.withUnsafeMutableBytes { read(fileDescriptor, $0.baseAddress, $0.count) }
        if n > 0 {
            pending += buf[0..<n]
            return .events(InputEvent.decode(&pending))
        }
        if n == 0 { return .gone(DeviceError(.vanished, device: name, detail: "end of file")) }
        let err = errno
        if err == EAGAIN || err == EINTR { return .events([]) }
        return .gone(DeviceError(err == ENODEV ? .vanished : .io, device: name, detail: Posix.errorString(err)))
    }

    func close() { Glibc.close(fileDescriptor) }
}

/// A `ButtonSource` over any `InputDeviceLocator`: one thread, reopen on loss.
final class InputButtonSource: ButtonSource {
    private let locator: any InputDeviceLocator
    private let keyCode: UInt16
    private let timing: ButtonTiming
    private let logger: Logger
    private let onStatus: @Sendable (ButtonDeviceStatus) -> Void
    private let thread = DeviceThread()
    private let stream: AsyncStream<ButtonEvent>
    private let continuation: AsyncStream<ButtonEvent>.Continuation
    private let started = Mutex(false)

    init(
        locator: any InputDeviceLocator,
        keyCode: UInt16,
        timing: ButtonTiming,
        logger: Logger,
        onStatus: @escaping @Sendable (ButtonDeviceStatus) -> Void
    ) {
        self.locator = locator
        self.keyCode = keyCode
        self.timing = timing
        self.logger = logger
        self.onStatus = onStatus
        (stream, continuation) = AsyncStream.makeStream(of: ButtonEvent.self)
    }

    func events() -> AsyncStream<ButtonEvent> {
        let first = started.withLock { started in
            defer { started = true }
            return !started
        }
        if first {
            thread.start { [self] in run() }
        }
        return stream
    }

    func stop() {
        thread.stop()
        continuation.finish()
    }

    private func run() {
        var recognizer = ButtonRecognizer(keyCode: keyCode, timing: timing)
        var device: (any InputDevice)?
        var lastProblem: DeviceError?
        let watcher = DirectoryWatcher(directories: locator.watchDirectories)
        if watcher == nil {
            logger.error("inotify unavailable (\(Posix.errorString(errno))); retrying the button device every second")
        }
        onStatus(.searching)

        func emit(_ events: [ButtonEvent]) {
            for event in events { continuation.yield(event) }
        }

        while !thread.isStopping {
            if device == nil {
                do throws(DeviceError) {
                    let opened = try locator.open()
                    device = opened
                    recognizer = ButtonRecognizer(keyCode: keyCode, timing: timing)
                    if opened.keyIsDown(keyCode) {
                        emit(recognizer.key(code: keyCode, value: 1, at: Posix.monotonicNow()))
                    }
                    lastProblem = nil
                    logger.info("button device opened", metadata: ["device": "\(opened.name)"])
                    onStatus(.opened(device: opened.name))
                } catch {
                    if error.description != lastProblem?.description {
                        logger.warning("button device not available: \(error)")
                        onStatus(.missing(error))
                    }
                    lastProblem = error
                }
            }

            var fds = [thread.wakeup.readFD]
            if let watcher { fds.append(watcher.fd) }
            if let device { fds.append(device.fileDescriptor) }
            var timeout = Posix.pollTimeout(until: recognizer.nextDeadline, now: Posix.monotonicNow())
            // Without inotify, retry every second. A device another process has grabbed
            // (EBUSY) changes nothing on disk when it is let go, so retry that every 2 s.
            let retry: Int32? = device != nil ? nil : watcher == nil ? 1000 : lastProblem?.kind == .busy ? 2000 : nil
            if let retry, timeout < 0 || timeout > retry { timeout = retry }
            let ready = Posix.poll(fds, timeoutMilliseconds: timeout)

            if ready[0] { thread.wakeup.drain() }
            if let watcher, ready[1] { watcher.drain() }
            if let open = device, ready[fds.count - 1] {
                switch open.readAvailable() {
                case .events(let events):
                    for e in events where e.type == InputEvent.evKey {
                        emit(recognizer.key(code: e.code, value: e.value, at: e.time))
                    }
                case .gone(let error):
                    open.close()
                    device = nil
                    lastProblem = error
                    logger.error("button device lost: \(error)")
                    onStatus(.lost(error))
                    // A press in progress died with the device; a stuck button must not
                    // leave the call flow in its fault state forever.
                    if recognizer.isStuck { emit([.released]) }
                    recognizer = ButtonRecognizer(keyCode: keyCode, timing: timing)
                }
            }
            emit(recognizer.tick(now: Posix.monotonicNow()))
        }
        device?.close()
        continuation.finish()
    }
}
