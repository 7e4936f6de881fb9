// The real button: an evdev input device read through libevdev. This is the only file that
// imports CEvdev.

private import CEvdev
import Glibc
public import Logging

/// Where to find the button and how to read it.
public struct EvdevButtonConfiguration: Sendable, Equatable {
    /// The udev-provided stable name; used when it exists.
    public var devicePath: String
    /// Otherwise the first `event*` device here that reports `keyCode` is used.
    public var inputDirectory: String
    /// The key the tablet's button sends (KEY_ENTER by default, so a keyboard and qemu's
    /// `sendkey ret` work as the button too).
    public var keyCode: UInt16
    public var timing: ButtonTiming

    public init(
        devicePath: String = "/dev/beeldzorg/button",
        inputDirectory: String = "/dev/input",
        keyCode: UInt16 = KeyCode.enter,
        timing: ButtonTiming = ButtonTiming()
    ) {
        self.devicePath = devicePath
        self.inputDirectory = inputDirectory
        self.keyCode = keyCode
        self.timing = timing
    }
}

/// The tablet's one button through libevdev: grabbed exclusively (EVIOCGRAB), timed by the
/// kernel's monotonic event timestamps, read on its own thread, and reopened within a
/// moment of the device node coming back after it disappeared (inotify on the device
/// directories, no polling).
public final class EvdevButton: ButtonSource {
    private let source: InputButtonSource

    public init(
        configuration: EvdevButtonConfiguration = EvdevButtonConfiguration(),
        logger: Logger = Logger(label: "beeldzorg.devices.button"),
        onStatus: @escaping @Sendable (ButtonDeviceStatus) -> Void = { _ in }
    ) {
        let locator = EvdevLocator(
            devicePath: configuration.devicePath,
            inputDirectory: configuration.inputDirectory,
            keyCode: configuration.keyCode,
            logger: logger)
        source = InputButtonSource(
            locator: locator, keyCode: configuration.keyCode, timing: configuration.timing,
            logger: logger, onStatus: onStatus)
    }

    public func events() -> AsyncStream<ButtonEvent> { source.events() }
    public func stop() { source.stop() }
}

struct EvdevLocator: InputDeviceLocator {
    let devicePath: String
    let inputDirectory: String
    let keyCode: UInt16
    let logger: Logger

    var watchDirectories: [String] {
        [Self.directory(of: devicePath), inputDirectory]
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    func open() throws(DeviceError) -> any InputDevice {
        if access(devicePath, F_OK) == 0 {
            let device = try EvdevDevice.open(path: devicePath)
            if !device.hasKey(keyCode) {
                logger.warning("\(devicePath) does not report key \(keyCode); using it anyway")
            }
            try device.grab()
            return device
        }
        var problems: [String] = []
        for path in Self.eventNodes(in: inputDirectory) {
            let device: EvdevDevice
            do throws(DeviceError) {
                device = try EvdevDevice.open(path: path)
            } catch {
                problems.append("\(path): \(error.detail)")
                continue
            }
            if device.hasKey(keyCode) {
                try device.grab()
                return device
            }
            device.close()
        }
        var detail = "no \(devicePath) and no input device with key \(keyCode) in \(inputDirectory)"
        if !problems.isEmpty { detail += " (" + problems.joined(separator: "; ") + ")" }
        throw DeviceError(.notFound, device: devicePath, detail: detail)
    }

    /// `event*` entries, in numeric order so the choice is stable across runs.
    static func eventNodes(in directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var numbers: [Int] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasPrefix("event"), let n = Int(name.dropFirst(5)) { numbers.append(n) }
        }
        return numbers.sorted().map { "\(directory)/event\($0)" }
    }
}

final class EvdevDevice: InputDevice {
    let name: String
    let fileDescriptor: Int32
    private let dev: OpaquePointer

    private init(name: String, fileDescriptor: Int32, dev: OpaquePointer) {
        self.name = name
        self.fileDescriptor = fileDescriptor
        self.dev = dev
    }

    static func open(path: String) throws(DeviceError) -> EvdevDevice {
        let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let err = errno
            throw DeviceError(err == ENOENT || err == ENODEV ? .notFound : .io,
                              device: path, detail: "open: \(Posix.errorString(err))")
        }
        var dev: OpaquePointer?
        let rc = libevdev_new_from_fd(fd, &dev)
        guard rc == 0, let dev else {
            Glibc.close(fd)
            throw DeviceError(.unsupported, device: path, detail: "libevdev_new_from_fd: \(Posix.errorString(-rc))")
        }
        let device = EvdevDevice(name: path, fileDescriptor: fd, dev: dev)
        let clockRC = cevdev_use_monotonic_clock(dev)
        if clockRC != 0 {
            // Without it timestamps are wall-clock time and ticks would not line up.
            device.close()
            throw DeviceError(.unsupported, device: path, detail: "EVIOCSCLOCKID: \(Posix.errorString(-clockRC))")
        }
        return device
    }

    func hasKey(_ code: UInt16) -> Bool {
        libevdev_has_event_code(dev, UInt32(EV_KEY), UInt32(code)) == 1
    }

    func keyIsDown(_ code: UInt16) -> Bool {
        libevdev_get_event_value(dev, UInt32(EV_KEY), UInt32(code)) == 1
    }

    func grab() throws(DeviceError) {
        let rc = cevdev_grab(dev)
        if rc != 0 {
            close()
            throw DeviceError(rc == -EBUSY ? .busy : .io, device: name, detail: "EVIOCGRAB: \(Posix.errorString(-rc))")
        }
    }

    func readAvailable() -> InputRead {
        var events: [InputEvent] = []
        var flags = cevdev_read_flag_normal()
        var ev = input_event()
        while true {
            let rc = libevdev_next_event(dev, flags, &ev)
            if rc == cevdev_read_status_success() || rc == cevdev_read_status_sync() {
                if rc == cevdev_read_status_sync() && flags == cevdev_read_flag_normal() {
                    // SYN_DROPPED: the kernel buffer overflowed; replay the current state.
                    flags = cevdev_read_flag_sync()
                    continue
                }
                events.append(InputEvent(
                    time: .seconds(Int64(ev.time.tv_sec)) + .microseconds(Int64(ev.time.tv_usec)),
                    type: ev.type, code: ev.code, value: ev.value))
                continue
            }
            if rc == -EAGAIN {
                if flags == cevdev_read_flag_sync() {
                    flags = cevdev_read_flag_normal()
                    continue
                }
                return .events(events)
            }
            if rc == -EINTR { continue }
            let kind: DeviceError.Kind = rc == -ENODEV ? .vanished : .io
            return .gone(DeviceError(kind, device: name, detail: "read: \(Posix.errorString(-rc))"))
        }
    }

    func close() {
        libevdev_free(dev)
        Glibc.close(fileDescriptor)
    }
}
