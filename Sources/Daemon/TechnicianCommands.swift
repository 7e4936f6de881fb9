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

    /// Answer of `test-camera`.
    struct CameraResult: Codable, Sendable {
        var device: String
        var width: Int
        var height: Int
        var pixelFormat: String
        var requestedFramesPerSecond: Int
        var frames: Int
        var seconds: Double
        /// Frames per second as measured over the grab (the first frame excluded).
        var measuredFramesPerSecond: Double
        /// One I420 frame, base64, when `includeFrame` was asked.
        var frame: String?
    }

    /// Answer of `test-mic`. Levels in dBFS (0 = full scale); −inf is sent as −120.
    struct MicrophoneResult: Codable, Sendable {
        var device: String
        var sampleRate: Int
        var samples: Int
        var seconds: Double
        var rmsDBFS: Double
        var peakDBFS: Double
        /// Samples at full scale: the input is too loud.
        var clippedSamples: Int
    }

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
            let result = try await onDeviceThread("camera test") {
                try DeviceProbe.grab(camera: DeviceProbe.camera(device), device: device, seconds: seconds, includeFrame: includeFrame)
            }
            return try .success(result)
        case .testMicrophone:
            guard let device = source("microphone") else { throw ControlError(.unavailable, "no microphone configured") }
            let result = try await onDeviceThread("microphone test") {
                try DeviceProbe.record(microphone: DeviceProbe.microphone(device), device: device, seconds: seconds)
            }
            return try .success(result)
        case .testSpeaker:
            await feedback.play(Prompt.connected)
            return try .success(SpeakerResult(device: source("speaker") ?? "?", prompt: PromptCatalog.Key.connected))
        case .status, .press, .demoCallIn, .calls, .testButton, .provisionStatus, .provisionSync:
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

/// Opens a device the way `DeviceSet` does, grabs or records for a while and measures.
/// A device error becomes a ControlError whose message the technician reads.
enum DeviceProbe {
    static func camera(_ device: String) -> any CameraSource {
        device == "test-pattern" ? TestPatternCamera() : V4L2Camera(configuration: V4L2CameraConfiguration(devicePath: device))
    }

    static func microphone(_ device: String) -> any AudioSource {
        if device == "silence" { return SilenceSource() }
        if device.hasPrefix("tone:"), let hertz = Double(device.dropFirst(5)) {
            return ToneSource(frequency: hertz, amplitude: 0.3)
        }
        return AlsaCapture(configuration: .capture(pcm: device))
    }

    static func grab(camera: any CameraSource, device: String, seconds: Double,
                     includeFrame: Bool) throws -> TechnicianCommands.CameraResult {
        let requested = CameraFormat()
        let format: CameraFormat
        do {
            format = try camera.open(requested)
        } catch {
            throw ControlError(.unavailable, "camera \(device) cannot be opened: \(error)")
        }
        defer { camera.close() }
        let clock = ContinuousClock()
        let start = clock.now
        var first: ContinuousClock.Instant?
        var last = start
        var frames = 0
        var kept: VideoFrame?
        while clock.now - start < .milliseconds(Int(seconds * 1000)) {
            let frame: VideoFrame
            do {
                frame = try camera.nextFrame()
            } catch {
                throw ControlError(.unavailable, "camera \(device) stopped delivering frames after \(frames): \(error)")
            }
            last = clock.now
            if first == nil { first = last }
            frames += 1
            kept = frame
        }
        guard let kept, let first else { throw ControlError(.unavailable, "camera \(device) delivered no frame") }
        let span = Double((last - first).components.attoseconds) / 1e18 + Double((last - first).components.seconds)
        return TechnicianCommands.CameraResult(
            device: device, width: kept.width, height: kept.height, pixelFormat: "I420",
            requestedFramesPerSecond: format.framesPerSecond, frames: frames, seconds: seconds,
            measuredFramesPerSecond: frames > 1 && span > 0 ? Double(frames - 1) / span : 0,
            frame: includeFrame ? Data(kept.planes).base64EncodedString() : nil)
    }

    static func record(microphone: any AudioSource, device: String, seconds: Double) throws -> TechnicianCommands.MicrophoneResult {
        let format = AudioFormat()
        do {
            try microphone.open(format)
        } catch {
            throw ControlError(.unavailable, "microphone \(device) cannot be opened: \(error)")
        }
        defer { microphone.close() }
        let wanted = Int(seconds * Double(format.sampleRate))
        // A device that returns nothing must not hold the caller forever.
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000) + 2000)
        var count = 0
        var sumOfSquares = 0.0
        var peak = 0
        var clipped = 0
        while count < wanted {
            guard ContinuousClock.now < deadline else {
                throw ControlError(.unavailable, "microphone \(device) delivered only \(count) of \(wanted) samples in time")
            }
            let block: [Int16]
            do {
                block = try microphone.read()
            } catch {
                throw ControlError(.unavailable, "microphone \(device) failed after \(count) samples: \(error)")
            }
            for sample in block.prefix(wanted - count) {
                let magnitude = abs(Int(sample))
                peak = max(peak, magnitude)
                if magnitude >= 32767 { clipped += 1 }
                sumOfSquares += Double(sample) * Double(sample)
            }
            count += min(block.count, wanted - count)
        }
        let rms = count > 0 ? (sumOfSquares / Double(count)).squareRoot() : 0
        return TechnicianCommands.MicrophoneResult(
            device: device, sampleRate: format.sampleRate, samples: count, seconds: seconds,
            rmsDBFS: dBFS(rms), peakDBFS: dBFS(Double(peak)), clippedSamples: clipped)
    }

    /// Relative to 32768 (full scale of a 16-bit sample); silence is reported as −120.
    static func dBFS(_ level: Double) -> Double {
        guard level > 0 else { return -120 }
        return max(-120, 20 * log10(level / 32768))
    }
}
