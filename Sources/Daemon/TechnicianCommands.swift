import CallFlow
import Control
import Devices
import Foundation
import Logging

/// The technician's device tests (`beeldzorgctl test camera|mic|speaker`, and `doctor`), run
/// by the daemon because it owns the devices: the CLI never opens the camera or microphone
/// behind a running daemon's back.
///
/// CallController calls `run` from its own loop and waits for it. That is deliberate: while a
/// test holds the camera or microphone no call can start (its events wait in the loop's
/// queue), so a device is never opened twice; each test is capped at `maximumSeconds` so a
/// press or an incoming call waits at most that long. During a call every test is refused —
/// the client's call comes first, and nothing may record without it.
enum TechnicianCommands {
    static let maximumSeconds = 4.0

    /// Answer of `test-camera` (with one I420 frame, base64, when `includeFrame` was asked).
    typealias CameraResult = DeviceCheck.CameraReport
    /// Answer of `test-mic`.
    typealias MicrophoneResult = DeviceCheck.MicrophoneReport

    /// Answer of `test-speaker`.
    struct SpeakerResult: Codable, Sendable {
        var device: String
        var prompt: String
    }

    /// - Parameters:
    ///   - phase: CallFlow's phase now; anything but idle refuses the test.
    ///   - devices: the daemon's own device list (`DeviceSet.report()`), for the configured
    ///     sources (`test-pattern`, `tone:440` and the other stand-ins included).
    static func run(_ request: ControlRequest, phase: String, devices: [StatusReport.Device],
                    feedback: any ClientFeedback, peer: ControlPeer?, logger: Logger) async throws -> ControlResponse {
        guard phase == "idle" else {
            return .failure(ControlError(.unavailable, "a call is in progress (\(phase)); device tests wait until the tablet is idle"))
        }
        func source(_ name: String) -> String? { devices.first { $0.name == name }?.source }
        let seconds = min(max(request.seconds ?? 2, 0.1), maximumSeconds)
        logger.notice("device test", metadata: ["test": "\(request.cmd.rawValue)", "peer": "\(peer?.description ?? "?")"])
        switch request.cmd {
        case .testCamera:
            guard let device = source("camera") else { throw ControlError(.unavailable, "no camera configured") }
            let includeFrame = request.includeFrame ?? false
            var (result, frame) = try await onDeviceThread("camera test") {
                do {
                    return try DeviceCheck.grab(ConfiguredDevice.camera(device), device: device, format: CameraFormat(), seconds: seconds)
                } catch {
                    throw ControlError(.unavailable, "\(error)")
                }
            }
            if includeFrame { result.frame = Data(frame.planes).base64EncodedString() }
            return try .success(result)
        case .testMicrophone:
            guard let device = source("microphone") else { throw ControlError(.unavailable, "no microphone configured") }
            let result = try await onDeviceThread("microphone test") {
                do {
                    return try DeviceCheck.record(ConfiguredDevice.microphone(device), device: device, seconds: seconds)
                } catch {
                    throw ControlError(.unavailable, "\(error)")
                }
            }
            return try .success(result)
        case .testSpeaker:
            await feedback.play(Prompt.connected)
            return try .success(SpeakerResult(device: source("speaker") ?? "?", prompt: PromptCatalog.Key.connected))
        case .status, .press, .demoCallIn, .calls, .contacts, .testButton, .provisionStatus, .provisionSync, .screenshot,
             .volume:
            preconditionFailure("TechnicianCommands.run called for \(request.cmd)")
        }
    }

    /// Runs blocking device I/O on its own thread, off the cooperative pool.
    static func onDeviceThread<T: Sendable>(_ name: String, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try work() })
            }
            thread.name = name
            thread.start()
        }
    }
}

