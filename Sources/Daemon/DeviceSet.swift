import BeeldzorgConfig
import Control
import Devices
import Foundation
import Logging
import Synchronization

/// Builds the tablet's devices from the configuration: real hardware by default, the
/// stand-ins (`stdin`, `fifo:PATH`, `test-pattern`, `tone:HZ`, `silence`, `null`) for the
/// demo and tests. Camera and microphone objects are made per call and opened only by the
/// media session, so nothing records outside a call.
final class DeviceSet: Sendable {
    private let configuration: Configuration
    private let logger: Logger
    private let buttonStatus = Mutex<String?>(nil)
    private let screen: ScreenService?

    init(configuration: Configuration, logger: Logger, screen: ScreenService? = nil) {
        self.configuration = configuration
        self.logger = logger
        self.screen = screen
    }

    var cameraFormat: CameraFormat {
        CameraFormat(width: configuration.camera.width, height: configuration.camera.height,
                     framesPerSecond: configuration.camera.framesPerSecond)
    }

    func makeButton() -> any ButtonSource {
        let button = configuration.button
        let keyCode = UInt16(button.keyCode)
        let timing = ButtonTiming(
            debounce: .milliseconds(button.debounceMilliseconds),
            longPress: .milliseconds(button.longPressMilliseconds)
        )
        if button.device == "stdin" {
            buttonStatus.withLock { $0 = "keyboard: Enter = press, l + Enter = long press" }
            return LineButtonSource.standardInput(keyCode: keyCode, timing: timing, logger: logger)
        }
        if button.device.hasPrefix("fifo:") {
            let path = String(button.device.dropFirst(5))
            do {
                let source = try LineButtonSource.fifo(path: path, keyCode: keyCode, timing: timing, logger: logger)
                buttonStatus.withLock { $0 = "FIFO \(path)" }
                return source
            } catch {
                // The tablet keeps running; the technician sees the fault in `status`.
                logger.error("button FIFO unusable", metadata: ["error": "\(error)"])
                buttonStatus.withLock { $0 = "unusable: \(error)" }
                return LineButtonSource.standardInput(keyCode: keyCode, timing: timing, logger: logger)
            }
        }
        return EvdevButton(
            configuration: EvdevButtonConfiguration(devicePath: button.device, keyCode: keyCode, timing: timing),
            logger: logger,
            onStatus: { [self] update in
                buttonStatus.withLock { $0 = Self.describe(update) }
            }
        )
    }

    private static func describe(_ status: ButtonDeviceStatus) -> String {
        switch status {
        case .searching: "searching"
        case .opened(let device): "open: \(device)"
        case .missing(let error): "missing: \(error)"
        case .lost(let error): "lost: \(error)"
        }
    }

    /// The call's camera; its frames also feed the screen's self view (no second capture).
    func makeCamera() -> (any CameraSource)? {
        let camera = ConfiguredDevice.camera(configuration.camera.device)
        return screen?.withSelfView(camera) ?? camera
    }

    func makeMicrophone() -> any AudioSource {
        ConfiguredDevice.microphone(configuration.audio.capture)
    }

    func makeSpeaker() -> any AudioSink {
        ConfiguredDevice.speaker(configuration.audio.playback)
    }

    /// Where decoded remote video goes: the screen, or (with `screen.device: none`) nowhere.
    func makeDisplay() -> any VideoSink {
        screen?.remoteVideo() ?? RecordingVideoSink(capacity: 1)
    }

    /// What `beeldzorgctl status` lists under Devices.
    func report() -> [StatusReport.Device] {
        let button = configuration.button.device
        let camera = configuration.camera.device
        return [
            StatusReport.Device(name: "button", source: button, present: Self.present(button), detail: buttonStatus.withLock { $0 }),
            StatusReport.Device(name: "camera", source: camera, present: Self.present(camera), detail: nil),
            StatusReport.Device(name: "microphone", source: configuration.audio.capture, present: true,
                                detail: "opened only during a call"),
            StatusReport.Device(name: "speaker", source: configuration.audio.playback, present: true, detail: nil),
        ]
    }

    func faults() -> [String] {
        report().filter { !$0.present }.map { "\($0.name) not found at \($0.source)" }
    }

    private static func present(_ source: String) -> Bool {
        switch source {
        case "stdin", "test-pattern", "silence", "null", "default": return true
        default:
            if source.hasPrefix("fifo:") { return FileManager.default.fileExists(atPath: String(source.dropFirst(5))) }
            return FileManager.default.fileExists(atPath: source)
        }
    }
}
