import ArgumentParser
import BeeldzorgConfig
import Control
import Devices
import Foundation

/// Options of the technician's commands (doctor, test, factory-reset) that need the
/// configuration as well as the daemon: which devices, which store, which socket.
struct TechnicianOptions: ParsableArguments {
    @Option(name: .long, help: "The daemon's configuration file.")
    var config: String = ProcessInfo.processInfo.environment["BEELDZORG_CONFIG"] ?? Configuration.defaultPath

    @Option(name: .long, help: "The daemon's control socket (default: the one the configuration names).")
    var socket: String?

    @Flag(name: .long, help: "Print machine-readable JSON instead of text.")
    var json = false

    func loadConfiguration() -> Result<Configuration, ConfigError> {
        do {
            return .success(try Configuration.load(path: config))
        } catch {
            return .failure(error)
        }
    }

    /// `--socket`, then `BEELDZORG_CONTROL_SOCKET`, then the configuration's, then the default.
    func socketPath(_ configuration: Configuration?) -> String {
        socket ?? ProcessInfo.processInfo.environment["BEELDZORG_CONTROL_SOCKET"]
            ?? configuration?.controlSocket ?? ControlProtocol.defaultSocketPath
    }

    /// Prints a result as pretty JSON on standard output.
    func printJSON<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        if let data = try? encoder.encode(value) {
            print(String(decoding: data, as: UTF8.self))
        }
    }

    /// One sentence on standard error, or `{"ok":false,"error":{…}}` with `--json`.
    func report(error message: String, code: String) {
        if json {
            printJSON(ErrorAnswer(ok: false, error: .init(code: code, message: message)))
        } else {
            var standardError = FileHandle.standardError
            print("beeldzorgctl: \(message)", to: &standardError)
        }
    }

    struct ErrorAnswer: Encodable {
        struct Detail: Encodable {
            var code: String
            var message: String
        }
        var ok: Bool
        var error: Detail
    }
}

/// Exit statuses of the technician's commands beyond the shared ones (0, 1, 3, 4, 64).
enum TechnicianExit {
    /// The daemon refused: a call is in progress (the test would disturb the client).
    static let busy = ExitCode(5)
    /// factory-reset was not confirmed.
    static let notConfirmed = ExitCode(2)
}

/// What the daemon is doing, as far as the control socket tells.
enum DaemonState {
    case running(StatusReport)
    case notRunning(String)
    case noPermission(String)
    case broken(String)

    static func query(socket: String) -> DaemonState {
        do {
            let response = try ControlClient(socketPath: socket, timeout: .seconds(5)).send(ControlRequest(cmd: .status))
            guard response.ok else {
                return .broken(response.error?.message ?? "the daemon refused the status request")
            }
            return .running(try response.decodeResult(StatusReport.self))
        } catch let failure as ControlClient.Failure {
            switch failure {
            case .daemonNotRunning: return .notRunning(failure.description)
            case .permissionDenied: return .noPermission(failure.description)
            case .io: return .broken(failure.description)
            }
        } catch {
            return .broken("\(error)")
        }
    }
}

/// Device tests for when beeldzorgd is NOT running: the CLI opens the devices itself, the
/// same way the daemon's `DeviceSet` would (stand-ins `test-pattern`, `tone:HZ`, `silence`,
/// `null` included). The JSON keys match the daemon's `TechnicianCommands` answers.
enum LocalDevices {
    typealias CameraResult = DeviceCheck.CameraReport
    typealias MicrophoneResult = DeviceCheck.MicrophoneReport

    static func speaker(_ device: String) -> any AudioSink {
        ConfiguredDevice.speaker(device)
    }

    static func grab(_ configuration: Configuration, seconds: Double, keepFrame: Bool) throws -> (CameraResult, VideoFrame?) {
        let camera = configuration.camera
        let (result, frame) = try DeviceCheck.grab(
            ConfiguredDevice.camera(camera.device), device: camera.device,
            format: CameraFormat(width: camera.width, height: camera.height, framesPerSecond: camera.framesPerSecond),
            seconds: seconds)
        return (result, keepFrame ? frame : nil)
    }

    static func record(_ device: String, seconds: Double) throws -> MicrophoneResult {
        try DeviceCheck.record(ConfiguredDevice.microphone(device), device: device, seconds: seconds)
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// Binary PPM (P6) from an I420 frame, BT.601 limited range — any image viewer opens it.
enum PPMImage {
    static func encode(_ frame: VideoFrame) -> Data {
        let width = frame.width, height = frame.height
        var out = Data("P6\n\(width) \(height)\n255\n".utf8)
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        let planes = frame.planes
        let uBase = frame.lumaCount
        let vBase = uBase + frame.chromaCount
        for row in 0..<height {
            for column in 0..<width {
                let y = Double(planes[row * width + column]) - 16
                let chroma = (row / 2) * (width / 2) + column / 2
                let u = Double(planes[uBase + chroma]) - 128
                let v = Double(planes[vBase + chroma]) - 128
                let index = (row * width + column) * 3
                rgb[index] = clamp(1.164 * y + 1.596 * v)
                rgb[index + 1] = clamp(1.164 * y - 0.392 * u - 0.813 * v)
                rgb[index + 2] = clamp(1.164 * y + 2.017 * u)
            }
        }
        out.append(contentsOf: rgb)
        return out
    }

    private static func clamp(_ value: Double) -> UInt8 {
        UInt8(max(0, min(255, value.rounded())))
    }
}

/// A check mark or cross, coloured on a terminal.
func mark(_ ok: Bool) -> String {
    ok ? Terminal.good("✓") : Terminal.bad("✗")
}
