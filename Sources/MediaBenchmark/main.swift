// media-benchmark: prints figures for issue 4 (not a timed test).
//   - VP8 encode/decode and Opus encode/decode time per frame, p50/p99; VP8's rate on a
//     noisy moving picture at 25 and 12 fps against its 800 kbit/s target
//   - CPU seconds per minute of a 640×480@25 VP8 + Opus SRTP call, both ends in this
//     process on loopback, send and receive
//   - mouth-to-ear latency on loopback, including the jitter buffer
//   - the same call with a real baresip at the other end: CPU per call-minute of each end,
//     and the ratio (BaresipComparison.swift)
// Usage: media-benchmark [--seconds N] [--baresip-only] [--runs N]
//   --seconds: length of the loopback call and of the baresip window (default 20)
//   --baresip-only: only the baresip comparison (for profiling it, or repeating it)
//   --runs: repeat the baresip comparison N times (default 1), alternating canceller on/off
//   --room: only the echo canceller in a model reverberant room, extended filter on and off
//           (RoomEcho.swift)
//   --voice: only gain control, noise suppression and the high-pass filter on espeak-ng
//            Dutch speech, soft and loud: levels before and after, CPU per call-minute
//            (VoiceFigures.swift)
import Devices
import Foundation
import Media
import Synchronization

let arguments = CommandLine.arguments
let callSeconds = arguments.firstIndex(of: "--seconds").flatMap { Int(arguments[safe: $0 + 1] ?? "") } ?? 20

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

func percentile(_ values: [Duration], _ p: Double) -> Duration {
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]
}

func ms(_ duration: Duration) -> String { String(format: "%.2f ms", Double(duration.components.attoseconds) / 1e15 + Double(duration.components.seconds) * 1_000) }

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

// MARK: Codecs

func codecFigures() throws {
    let width = 640, height = 480, frames = 250
    let encoder = try VP8Encoder(width: width, height: height, framesPerSecond: 25, bitrate: 800_000)
    let decoder = try VP8Decoder()
    var encodeTimes: [Duration] = [], decodeTimes: [Duration] = [], renderTimes: [Duration] = [], bytes = 0
    let clock = ContinuousClock()
    for number in 0..<frames {
        var rendered: VideoFrame? = nil
        renderTimes.append(clock.measure {
            rendered = TestPatternCamera.render(width: width, height: height, frameNumber: number, timestamp: .milliseconds(40 * number))
        })
        let frame = rendered!
        var encoded: [EncodedVideoFrame] = []
        encodeTimes.append(try clock.measure { encoded = try encoder.encode(frame) })
        for packet in encoded {
            bytes += packet.data.count
            decodeTimes.append(try clock.measure { _ = try decoder.decode(packet.data) })
        }
    }
    print("VP8 640x480 @ 800 kbit/s, \(frames) frames: encode p50 \(ms(percentile(encodeTimes, 0.5))) p99 \(ms(percentile(encodeTimes, 0.99))); "
          + "decode p50 \(ms(percentile(decodeTimes, 0.5))) p99 \(ms(percentile(decodeTimes, 0.99))); "
          + String(format: "%.0f kbit/s actual", Double(bytes * 8) / (Double(frames) / 25) / 1_000)
          + "; test-pattern render p50 \(ms(percentile(renderTimes, 0.5)))")

    // Rate control on a picture that needs every bit (issue 21.4): a moving pattern with
    // sensor noise, from a camera at the opened 25 fps and one that delivers only 12.
    for fps in [25, 12] {
        let noisyEncoder = try VP8Encoder(width: width, height: height, framesPerSecond: 25, bitrate: 800_000)
        var noisyBytes = 0, noisyTimes: [Duration] = []
        for number in 0..<(fps * 10) {
            let frame = NoisyPicture.render(width: width, height: height, frameNumber: number,
                                            timestamp: .milliseconds(1_000 * number / fps))
            var encoded: [EncodedVideoFrame] = []
            noisyTimes.append(try clock.measure { encoded = try noisyEncoder.encode(frame) })
            // Seconds 2–10: after the first keyframe has been paid for.
            if number >= fps { noisyBytes += encoded.reduce(0) { $0 + $1.data.count } }
        }
        print("VP8 640x480 noisy moving picture at \(fps) fps, 800 kbit/s target: "
              + String(format: "%.0f kbit/s actual", Double(noisyBytes * 8) / 9 / 1_000)
              + "; encode p50 \(ms(percentile(noisyTimes, 0.5))) p99 \(ms(percentile(noisyTimes, 0.99)))")
    }

    let opusEncoder = try OpusFrameEncoder(bitrate: 32_000)
    // libopus's own default complexity, for comparison with ours (OpusFrameEncoder.defaultComplexity).
    let opusEncoderAt10 = try OpusFrameEncoder(bitrate: 32_000, complexity: 10)
    let opusDecoder = try OpusFrameDecoder()
    var opusEncode: [Duration] = [], opusEncodeAt10: [Duration] = [], opusDecode: [Duration] = []
    let tone = ToneSource(frequency: 440, paced: false)
    try tone.open(AudioFormat())
    for _ in 0..<500 {
        let samples = try tone.read()
        var packet: [UInt8] = []
        opusEncode.append(try clock.measure { packet = try opusEncoder.encode(samples) })
        opusEncodeAt10.append(try clock.measure { _ = try opusEncoderAt10.encode(samples) })
        opusDecode.append(try clock.measure { _ = try opusDecoder.decode(packet) })
    }
    tone.close()
    let canceller = try EchoCanceller()
    let far = ToneSource(frequency: 440, paced: false), near = ToneSource(frequency: 1_000, paced: false)
    try far.open(AudioFormat())
    try near.open(AudioFormat())
    var echoTimes: [Duration] = []
    for _ in 0..<500 {
        let played = try far.read()
        var heard = try near.read()
        echoTimes.append(try clock.measure {
            try canceller.render(played)
            try canceller.capture(&heard)
        })
    }
    print("Echo canceller 48 kHz mono, per 20 ms frame (far end + microphone): p50 \(ms(percentile(echoTimes, 0.5))) p99 \(ms(percentile(echoTimes, 0.99)))")
    print("Opus 48 kHz mono 20 ms @ 32 kbit/s, FEC, complexity \(OpusFrameEncoder.defaultComplexity): encode p50 \(ms(percentile(opusEncode, 0.5))) p99 \(ms(percentile(opusEncode, 0.99))) "
          + "(complexity 10: p50 \(ms(percentile(opusEncodeAt10, 0.5)))); "
          + "decode p50 \(ms(percentile(opusDecode, 0.5))) p99 \(ms(percentile(opusDecode, 0.99)))")
}

// MARK: Latency probes

/// A microphone that is silent except for a 20 ms burst once a second; remembers when each
/// burst left "the mouth" (when read() handed it over).
final class BurstSource: AudioSource {
    private let tone = ToneSource(frequency: 1_000, amplitude: 0.5)
    private let state = Mutex<(periods: Int, sent: [ContinuousClock.Instant])>((0, []))
    func open(_ format: AudioFormat) throws { try tone.open(format) }
    func read() throws -> [Int16] {
        let samples = try tone.read()
        return state.withLock { state in
            state.periods += 1
            guard state.periods % 50 == 25 else { return [Int16](repeating: 0, count: samples.count) }
            state.sent.append(.now)
            return samples
        }
    }
    func close() { tone.close() }
    var sent: [ContinuousClock.Instant] { state.withLock { $0.sent } }
}

/// A speaker that notes when a burst reaches it ("the ear").
final class BurstDetector: AudioSink {
    private let state = Mutex<(inBurst: Bool, heard: [ContinuousClock.Instant])>((false, []))
    func open(_ format: AudioFormat) throws {}
    func write(_ samples: [Int16]) throws {
        let loud = samples.contains { abs(Int($0)) > 4_000 }
        state.withLock { state in
            if loud && !state.inBurst { state.heard.append(.now) }
            state.inBurst = loud
        }
    }
    func close() {}
    var heard: [ContinuousClock.Instant] { state.withLock { $0.heard } }
}

final class NullDisplay: VideoSink {
    let frames = Atomic<Int>(0)
    func show(_ frame: VideoFrame) { frames.add(1, ordering: .relaxed) }
}

// MARK: A call on loopback

func callFigures() throws {
    let keyA = (0..<30).map { _ in UInt8.random(in: 0...255) }
    let keyB = (0..<30).map { _ in UInt8.random(in: 0...255) }
    let alice = try MediaSession.bind(host: "127.0.0.1")
    let bob = try MediaSession.bind(host: "127.0.0.1")
    func parameters(to peer: MediaSession, send: [UInt8], receive: [UInt8]) -> MediaParameters {
        MediaParameters(remoteHost: "127.0.0.1", remoteAudioPort: peer.localAudioPort, remoteVideoPort: peer.localVideoPort,
                        videoPayloadType: 96, sendKey: send, receiveKey: receive, videoBitrate: 800_000,
                        cameraFormat: CameraFormat(width: 640, height: 480, framesPerSecond: 25))
    }
    let mouth = BurstSource()
    let ear = BurstDetector()
    let aliceDisplay = NullDisplay(), bobDisplay = NullDisplay()
    let cpuBefore = cpuSeconds()
    let wallBefore = ContinuousClock.now
    try alice.start(parameters(to: bob, send: keyA, receive: keyB), camera: TestPatternCamera(), microphone: mouth,
                    speaker: RecordingAudioSink(capacity: 0), display: aliceDisplay, onFailure: { print("alice: \($0)") })
    try bob.start(parameters(to: alice, send: keyB, receive: keyA), camera: TestPatternCamera(),
                  microphone: ToneSource(frequency: 600), speaker: ear, display: bobDisplay, onFailure: { print("bob: \($0)") })
    Thread.sleep(forTimeInterval: Double(callSeconds))
    alice.stop()
    bob.stop()
    let cpu = cpuSeconds() - cpuBefore
    let wall = Double(wallBefore.duration(to: .now).components.seconds) + Double(wallBefore.duration(to: .now).components.attoseconds) / 1e18
    let perMinute = cpu / wall * 60
    let a = alice.statistics, b = bob.statistics
    print(String(format: "Call 640x480@25 VP8 + Opus over SRTP, both ends in one process, %.1f s: %.1f CPU s per minute for both ends, %.1f per end (send + receive)",
                 wall, perMinute, perMinute / 2))
    print("  alice sent \(a.video.framesSent) video / \(a.audio.framesSent) audio frames; bob decoded \(b.video.framesDecoded) video / \(b.audio.framesDecoded) audio; "
          + "auth failures \(a.audio.authenticationFailures + a.video.authenticationFailures + b.audio.authenticationFailures + b.video.authenticationFailures)")
    let sent = mouth.sent, heard = ear.heard
    let latencies = zip(sent, heard).map { $0.duration(to: $1) }.filter { $0 > .zero && $0 < .seconds(1) }
    if latencies.isEmpty {
        print("Mouth-to-ear: no bursts detected")
    } else {
        print("Mouth-to-ear on loopback (capture → speaker write, jitter buffer included), \(latencies.count) bursts: "
              + "p50 \(ms(percentile(latencies, 0.5))) max \(ms(latencies.max()!))")
    }
}

if arguments.contains("--voice") {
    try voiceFigures()
    exit(0)
}
if arguments.contains("--room") {
    try roomEchoFigures()
    exit(0)
}
let baresipOnly = arguments.contains("--baresip-only")
let runs = arguments.firstIndex(of: "--runs").flatMap { Int(arguments[safe: $0 + 1] ?? "") } ?? 1
if !baresipOnly {
    try codecFigures()
    try callFigures()
}
for _ in 0..<max(1, runs) {
    try await baresipComparison(seconds: callSeconds, echoCancellation: true)
    try await baresipComparison(seconds: callSeconds, echoCancellation: false)
}
