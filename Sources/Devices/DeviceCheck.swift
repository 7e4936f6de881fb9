// What the configuration's device names mean, and the technician's checks of a camera and a
// microphone — one copy, used by the daemon (DeviceSet, the control socket's device tests)
// and by beeldzorgctl when the daemon is not running.

import Glibc

/// The configuration's device names → adapters: real hardware, or the stand-ins
/// `test-pattern` (camera), `tone:HZ` and `silence` (microphone), `null` (speaker).
public enum ConfiguredDevice {
    public static func camera(_ name: String) -> any CameraSource {
        name == "test-pattern" ? TestPatternCamera() : V4L2Camera(configuration: V4L2CameraConfiguration(devicePath: name))
    }

    public static func microphone(_ name: String) -> any AudioSource {
        if name == "silence" { return SilenceSource() }
        if name.hasPrefix("tone:"), let hertz = Double(name.dropFirst(5)) {
            return ToneSource(frequency: hertz, amplitude: 0.3)
        }
        return AlsaCapture(configuration: .capture(pcm: name))
    }

    /// `null`: nothing to hear (the demo, tests); a recorder that keeps nothing.
    public static func speaker(_ name: String) -> any AudioSink {
        name == "null" ? RecordingAudioSink(capacity: 0) : AlsaPlayback(configuration: .playback(pcm: name))
    }
}

/// Grabs frames or records sound for a few seconds and says what came out.
public enum DeviceCheck {
    /// What a camera delivered. `frame` (one I420 frame, base64) is filled in by callers that want it.
    public struct CameraReport: Codable, Sendable {
        public var device: String
        public var width: Int
        public var height: Int
        public var pixelFormat: String
        public var requestedFramesPerSecond: Int
        public var frames: Int
        public var seconds: Double
        /// Frames per second as measured over the grab (the first frame excluded).
        public var measuredFramesPerSecond: Double
        public var frame: String?
    }

    /// What a microphone heard. Levels in dBFS (0 = full scale); silence is −120.
    public struct MicrophoneReport: Codable, Sendable {
        public var device: String
        public var sampleRate: Int
        public var samples: Int
        public var seconds: Double
        public var rmsDBFS: Double
        public var peakDBFS: Double
        /// Samples at full scale: the input is too loud.
        public var clippedSamples: Int
    }

    /// One sentence for the technician.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Opens the camera, reads frames for `seconds`, closes it; returns the report and the last frame.
    public static func grab(_ camera: any CameraSource, device: String, format requested: CameraFormat,
                            seconds: Double) throws(Failure) -> (CameraReport, VideoFrame) {
        let format: CameraFormat
        do {
            format = try camera.open(requested)
        } catch {
            throw Failure(description: "camera \(device) cannot be opened: \(error)")
        }
        defer { camera.close() }
        let clock = ContinuousClock()
        let start = clock.now
        var first: ContinuousClock.Instant?
        var last = start
        var frames = 0
        var kept: VideoFrame?
        while clock.now - start < .milliseconds(Int(seconds * 1000)) {
            do {
                kept = try camera.nextFrame()
            } catch {
                throw Failure(description: "camera \(device) stopped delivering frames after \(frames): \(error)")
            }
            last = clock.now
            if first == nil { first = last }
            frames += 1
        }
        guard let frame = kept, let first else { throw Failure(description: "camera \(device) delivered no frame") }
        let span = Double((last - first).components.seconds) + Double((last - first).components.attoseconds) / 1e18
        let report = CameraReport(
            device: device, width: frame.width, height: frame.height, pixelFormat: "I420",
            requestedFramesPerSecond: format.framesPerSecond, frames: frames, seconds: seconds,
            measuredFramesPerSecond: frames > 1 && span > 0 ? Double(frames - 1) / span : 0, frame: nil)
        return (report, frame)
    }

    /// Opens the microphone, records `seconds`, closes it. A device that delivers nothing
    /// fails after `seconds` + 2 s instead of holding the caller.
    public static func record(_ microphone: any AudioSource, device: String, seconds: Double) throws(Failure) -> MicrophoneReport {
        let format = AudioFormat()
        do {
            try microphone.open(format)
        } catch {
            throw Failure(description: "microphone \(device) cannot be opened: \(error)")
        }
        defer { microphone.close() }
        let wanted = Int(seconds * Double(format.sampleRate))
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000) + 2000)
        var samples: [Int16] = []
        samples.reserveCapacity(wanted)
        while samples.count < wanted {
            guard ContinuousClock.now < deadline else {
                throw Failure(description: "microphone \(device) delivered only \(samples.count) of \(wanted) samples in time")
            }
            do {
                samples += try microphone.read().prefix(wanted - samples.count)
            } catch {
                throw Failure(description: "microphone \(device) failed after \(samples.count) samples: \(error)")
            }
        }
        let level = AudioLevel(samples)
        return MicrophoneReport(device: device, sampleRate: format.sampleRate, samples: samples.count, seconds: seconds,
                                rmsDBFS: level.rmsDBFS, peakDBFS: level.peakDBFS, clippedSamples: level.clipped)
    }
}

/// RMS and peak of 16-bit samples in dBFS (relative to 32768; silence is −120).
public struct AudioLevel: Sendable {
    public var rmsDBFS: Double
    public var peakDBFS: Double
    public var clipped: Int

    public init(_ samples: [Int16]) {
        var sumOfSquares = 0.0
        var peak = 0
        var clipped = 0
        for sample in samples {
            let magnitude = abs(Int(sample))
            peak = max(peak, magnitude)
            if magnitude >= 32767 { clipped += 1 }
            sumOfSquares += Double(sample) * Double(sample)
        }
        let rms = samples.isEmpty ? 0 : (sumOfSquares / Double(samples.count)).squareRoot()
        rmsDBFS = Self.dBFS(rms)
        peakDBFS = Self.dBFS(Double(peak))
        self.clipped = clipped
    }

    public static func dBFS(_ level: Double) -> Double {
        guard level > 0 else { return -120 }
        return max(-120, 20 * log10(level / 32768))
    }
}
