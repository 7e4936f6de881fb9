@testable import Devices
import Foundation
import Logging
import Testing

/// Stands in for evdev: the "device node" is a marker file in a temp directory, and each
/// open hands out the read end of a fresh pipe whose write end the test uses as the kernel.
private final class PipeLocator: InputDeviceLocator, @unchecked Sendable {
    let dir: TempDir
    let kernels = Recorder<Int32>()
    let openAttempts = Recorder<Duration>()
    let heldOnOpen: Bool

    init(dir: TempDir, heldOnOpen: Bool = false) {
        self.dir = dir
        self.heldOnOpen = heldOnOpen
    }

    var node: String { dir.file("button") }
    var watchDirectories: [String] { [dir.path] }

    func open() throws(DeviceError) -> any InputDevice {
        openAttempts.append(monotonicNow())
        guard access(node, F_OK) == 0 else {
            throw DeviceError(.notFound, device: node, detail: "no such file")
        }
        var fds: [Int32] = [-1, -1]
        _ = fds.withUnsafeMutableBufferPointer { pipe($0.baseAddress) }
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        kernels.append(fds[1])
        return RawInputDevice(name: node, fileDescriptor: fds[0], initiallyDown: heldOnOpen)
    }

    func appear() { _ = FileManager.default.createFile(atPath: node, contents: Data()) }
    func disappear() { unlink(node) }
}

private func send(_ fd: Int32, _ events: [InputEvent]) {
    let bytes = events.flatMap(\.encoded)
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    precondition(n == bytes.count)
}

private func key(_ value: Int32, at time: Duration, code: UInt16 = KeyCode.enter) -> [InputEvent] {
    [InputEvent(time: time, type: InputEvent.evKey, code: code, value: value),
     InputEvent(time: time, type: 0, code: 0, value: 0)]  // SYN_REPORT
}

@Suite("Input events and the device loop")
struct InputDeviceTests {
    @Test func decodesNativeInputEventRecords() {
        // struct input_event { struct timeval time; __u16 type; __u16 code; __s32 value; }
        var bytes: [UInt8] = []
        bytes += withUnsafeBytes(of: Int64(12)) { Array($0) }
        bytes += withUnsafeBytes(of: Int64(345_678)) { Array($0) }
        bytes += withUnsafeBytes(of: UInt16(1)) { Array($0) }
        bytes += withUnsafeBytes(of: UInt16(28)) { Array($0) }
        bytes += withUnsafeBytes(of: Int32(2)) { Array($0) }
        #expect(bytes.count == InputEvent.rawSize)
        let second = InputEvent(time: .seconds(13), type: 0, code: 0, value: 0).encoded
        bytes += second + second[0..<10]  // and a partial third record

        let events = InputEvent.decode(&bytes)
        #expect(events == [
            InputEvent(time: .seconds(12) + .microseconds(345_678), type: 1, code: 28, value: 2),
            InputEvent(time: .seconds(13), type: 0, code: 0, value: 0),
        ])
        #expect(bytes == Array(second[0..<10]), "a partial record waits for the rest")
        bytes += second[10...]
        #expect(InputEvent.decode(&bytes) == [InputEvent(time: .seconds(13), type: 0, code: 0, value: 0)])
        #expect(bytes.isEmpty)
    }

    @Test func readsPressesAndReopensWhenTheDeviceComesBack() async throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let locator = PipeLocator(dir: dir)
        let statuses = Recorder<String>()
        let source = InputButtonSource(
            locator: locator, keyCode: KeyCode.enter,
            timing: ButtonTiming(longPress: .milliseconds(300), stuckAfter: .seconds(30)),
            logger: Logger(label: "test.button"),
            onStatus: { statuses.append("\($0)") })
        let received = Recorder<ButtonEvent>()
        let stream = source.events()
        let consumer = Task { for await e in stream { received.append(e) } }

        // Missing at first: the loop reports it and waits without spinning.
        #expect(await eventually { statuses.all.contains { $0.hasPrefix("missing") } })
        let attemptsWhileMissing = locator.openAttempts.count
        try await Task.sleep(for: .milliseconds(300))
        #expect(locator.openAttempts.count == attemptsWhileMissing, "no polling while the node is absent")

        locator.appear()
        #expect(await eventually { locator.kernels.count == 1 })
        let k1 = locator.kernels.all[0]
        let t = monotonicNow()
        send(k1, key(1, at: t) + key(2, at: t + .milliseconds(40)) + key(0, at: t + .milliseconds(80)))
        #expect(await eventually { received.all == [.shortPress] })

        // Unplug: end of file on the stand-in, like ENODEV on evdev.
        locator.disappear()
        close(k1)
        #expect(await eventually { statuses.all.contains { $0.hasPrefix("lost") } })

        // Plug back in: reopened well within a second, through inotify. The time is taken
        // by the device thread itself (the open attempt's timestamp), not by this test task.
        let attemptsBefore = locator.openAttempts.count
        let back = monotonicNow()
        locator.appear()
        #expect(await eventually { locator.kernels.count == 2 })
        let reopenedAt = locator.openAttempts.all[attemptsBefore...].last!
        #expect(reopenedAt - back < .seconds(1))

        let k2 = locator.kernels.all[1]
        send(k2, key(1, at: monotonicNow()))
        #expect(await eventually { received.all == [.shortPress, .longPress] },
                "the long press comes from a tick while held, not from another event")

        source.stop()
        await consumer.value
        close(k2)
        #expect(received.all == [.shortPress, .longPress])
    }

    /// A source on `locator` with short timings (long press 50 ms, stuck after 150 ms) and a
    /// task recording its events; `source.stop()` then `await consumer.value` ends both.
    fileprivate func startFastSource(_ locator: PipeLocator) -> (InputButtonSource, Recorder<ButtonEvent>, Task<Void, Never>) {
        let source = InputButtonSource(
            locator: locator, keyCode: KeyCode.enter,
            timing: ButtonTiming(debounce: .milliseconds(10), longPress: .milliseconds(50), stuckAfter: .milliseconds(150)),
            logger: Logger(label: "test.button"), onStatus: { _ in })
        let received = Recorder<ButtonEvent>()
        let stream = source.events()
        let consumer = Task { for await e in stream { received.append(e) } }
        return (source, received, consumer)
    }

    @Test func stuckButtonOnAVanishingDeviceIsReleased() async throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let locator = PipeLocator(dir: dir)
        locator.appear()
        let (source, received, consumer) = startFastSource(locator)

        #expect(await eventually { locator.kernels.count == 1 })
        send(locator.kernels.all[0], key(1, at: monotonicNow()))
        #expect(await eventually { received.all == [.longPress, .stuck] })
        close(locator.kernels.all[0])
        #expect(await eventually { received.all == [.longPress, .stuck, .released] })
        source.stop()
        await consumer.value
    }

    @Test func aButtonHeldWhenTheDeviceOpensIsTimedToo() async throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let locator = PipeLocator(dir: dir, heldOnOpen: true)
        locator.appear()
        let (source, received, consumer) = startFastSource(locator)
        #expect(await eventually { received.all == [.longPress, .stuck] }, "stuck since boot is still a fault")
        send(locator.kernels.all[0], key(0, at: monotonicNow()))
        #expect(await eventually { received.all == [.longPress, .stuck, .released] })
        source.stop()
        await consumer.value
        close(locator.kernels.all[0])
    }

    @Test func stoppingASourceThatNeverStartedReturnsAtOnce() {
        let dir = TempDir()
        defer { dir.cleanup() }
        let source = InputButtonSource(locator: PipeLocator(dir: dir), keyCode: KeyCode.enter, timing: ButtonTiming(),
                                       logger: Logger(label: "test.button"), onStatus: { _ in })
        let before = monotonicNow()
        source.stop()
        #expect(monotonicNow() - before < .milliseconds(500))
    }

    @Test func evdevLocatorListsEventNodesInNumericOrder() {
        let dir = TempDir()
        defer { dir.cleanup() }
        for name in ["event10", "event2", "mouse0", "event0", "eventx"] {
            _ = FileManager.default.createFile(atPath: dir.file(name), contents: Data())
        }
        #expect(EvdevLocator.eventNodes(in: dir.path) == ["event0", "event2", "event10"].map(dir.file))
        #expect(EvdevLocator.directory(of: "/dev/beeldzorg/button") == "/dev/beeldzorg")
    }

    @Test func aFileThatIsNotAnInputDeviceIsReportedThroughLibevdev() async {
        let dir = TempDir()
        defer { dir.cleanup() }
        _ = FileManager.default.createFile(atPath: dir.file("button"), contents: Data("no evdev here".utf8))
        let statuses = Recorder<String>()
        let button = EvdevButton(
            configuration: EvdevButtonConfiguration(devicePath: dir.file("button"), inputDirectory: dir.path),
            onStatus: { statuses.append("\($0)") })
        _ = button.events()
        #expect(await eventually { statuses.all.contains { $0.contains("libevdev_new_from_fd") } })
        button.stop()
    }

    @Test func evdevButtonWithoutADeviceReportsMissing() async {
        let dir = TempDir()
        defer { dir.cleanup() }
        let statuses = Recorder<String>()
        let button = EvdevButton(
            configuration: EvdevButtonConfiguration(devicePath: dir.file("button"), inputDirectory: dir.path),
            onStatus: { statuses.append("\($0)") })
        _ = button.events()
        #expect(await eventually { statuses.all.contains { $0.contains("notFound") } })
        button.stop()
    }
}
