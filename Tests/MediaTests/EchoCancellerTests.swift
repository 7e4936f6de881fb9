// Echo cancellation with real signals: a speech-like far end played into a simulated room,
// its delayed and attenuated copy mixed into the microphone with a near-end tone.
import Devices
import Foundation
import Synchronization
import Testing
@testable import Media

/// What the room does to one call: the far end as the speaker played it, the near end as the
/// microphone heard it (echo + tone), and what the canceller made of the microphone.
private struct RoomRun {
    var far: [Int16]
    var echo: [Int16]
    var tone: [Int16]
    var microphone: [Int16]
    var output: [Int16]

    static let sampleRate = 48_000

    /// `echoDelay` between speaker and microphone, the echo at `echoGain`; the far end talks
    /// from 0 to `farEndUntil`, the near-end 1 kHz tone from `toneFrom` to the end.
    static func run(
        canceller: EchoCanceller?, seconds: Int = 10, echoDelayMilliseconds: Int, echoGain: Double = 0.3,
        delayHint: Int = EchoCanceller.defaultDelayMilliseconds, farEndUntil: Int = 8, toneFrom: Int = 4
    ) throws -> RoomRun {
        let count = seconds * sampleRate
        var far = Signal.speechLikeNoise(count: count)
        for index in (farEndUntil * sampleRate)..<count { far[index] = 0 }
        let delay = echoDelayMilliseconds * sampleRate / 1_000
        let echo = (0..<count).map { $0 >= delay ? Int16((echoGain * Double(far[$0 - delay])).rounded()) : 0 }
        var tone = Signal.tone(frequency: 1_000, amplitude: 0.1, count: count)
        for index in 0..<(toneFrom * sampleRate) { tone[index] = 0 }
        let microphone = (0..<count).map { Int16(clamping: Int(echo[$0]) + Int(tone[$0])) }
        var output: [Int16] = []
        output.reserveCapacity(count)
        // 20 ms frames, as MediaSession hands them over: play one, then capture one.
        for start in stride(from: 0, to: count, by: audioFrameSamples) {
            var frame = Array(microphone[start..<(start + audioFrameSamples)])
            if let canceller {
                try canceller.render(Array(far[start..<(start + audioFrameSamples)]))
                try canceller.capture(&frame, delayMilliseconds: delayHint)
            }
            output += frame
        }
        return RoomRun(far: far, echo: echo, tone: tone, microphone: microphone, output: output)
    }

    func seconds(_ range: Range<Double>, of samples: [Int16]) -> [Int16] {
        Array(samples[Int(range.lowerBound * Double(Self.sampleRate))..<Int(range.upperBound * Double(Self.sampleRate))])
    }

    /// How much quieter everything but the tone is after the canceller, in dB.
    func echoReduction(_ range: Range<Double>) -> Double {
        Signal.decibels(Signal.energyOutsideTone(seconds(range, of: microphone), frequency: 1_000)
            / max(1, Signal.energyOutsideTone(seconds(range, of: output), frequency: 1_000)))
    }

    /// The near-end tone after the canceller relative to before, in dB (0 = untouched).
    func toneChange(_ range: Range<Double>) -> Double {
        Signal.decibels(Signal.goertzelPower(seconds(range, of: output), frequency: 1_000)
            / Signal.goertzelPower(seconds(range, of: microphone), frequency: 1_000))
    }
}

@Suite(.serialized) struct EchoCancellerTests {
    /// 0–4 s far end alone (the canceller converges, then ERLE is measured over 2–4 s);
    /// 4–8 s far end and near-end tone together; 8–10 s the tone alone.
    @Test(arguments: [(40, 40), (120, 40), (120, 0)])
    func cancelsAnEchoAfterConvergenceAndKeepsTheNearEndTone(delay: Int, hint: Int) throws {
        // The echo canceller alone: gain control would lift the near-end tone on purpose.
        let canceller = try EchoCanceller(voice: .echoCancellationOnly)
        let run = try RoomRun.run(canceller: canceller, echoDelayMilliseconds: delay, delayHint: hint)
        let erle = run.echoReduction(2..<4)
        let doubleTalkReduction = run.echoReduction(4.5..<8)
        let doubleTalkTone = run.toneChange(4.5..<8)
        let toneAlone = run.toneChange(8.5..<10)
        let metrics = canceller.metrics
        print("echo canceller, echo delay \(delay) ms (hint \(hint) ms): ERLE \(rounded(erle)) dB after convergence; "
              + "double talk: echo −\(rounded(doubleTalkReduction)) dB, tone \(rounded(doubleTalkTone)) dB; "
              + "tone alone \(rounded(toneAlone)) dB; canceller's own ERLE average \(metrics.erleAverage.map(String.init) ?? "–") dB, "
              + "estimated delay \(metrics.delayMilliseconds.map(String.init) ?? "–") ms")
        #expect(erle >= 12, "far end alone: echo reduced by \(erle) dB")
        #expect(doubleTalkReduction >= 6, "double talk: echo reduced by \(doubleTalkReduction) dB")
        // During double talk the canceller's suppressor also dips the near end a little;
        // the tone must stay well audible, and come back whole once the far end is quiet.
        #expect(doubleTalkTone >= -12, "double talk: tone changed by \(doubleTalkTone) dB")
        #expect(abs(toneAlone) <= 3, "tone alone changed by \(toneAlone) dB")
    }

    /// Without a canceller (`audio.echo_cancellation: false`) the microphone is untouched,
    /// so the full echo stays in: the same room measured the same way shows no reduction.
    @Test func offLeavesTheMicrophoneUnchanged() throws {
        let run = try RoomRun.run(canceller: nil, echoDelayMilliseconds: 40)
        #expect(run.output == run.microphone)
        #expect(abs(run.echoReduction(2..<4)) < 0.01)
    }

    @Test func framesMustBeWholeTenMillisecondBlocks() throws {
        let canceller = try EchoCanceller()
        #expect(canceller.blockSamples == 480)
        #expect(throws: MediaError.self) { try canceller.render([Int16](repeating: 0, count: 500)) }
        var odd = [Int16](repeating: 0, count: 700)
        #expect(throws: MediaError.self) { try canceller.capture(&odd) }
        #expect(throws: MediaError.self) { try EchoCanceller(sampleRate: 44_100) }
    }

    /// A whole call on loopback: the post (B) talks speech-like noise; on the tablet (A) the
    /// speaker's output leaks into the microphone at -10 dB with a 1 kHz near-end tone. With
    /// the canceller on, what B hears back from A holds far less of B's own voice than with
    /// it off, and the tone comes through both times.
    @Test func aCallWithTheCancellerOnSendsMuchLessEchoThanWithItOff() async throws {
        let on = try await Self.roomCall(echoCancellation: true)
        let off = try await Self.roomCall(echoCancellation: false)
        let echoDrop = Signal.decibels(off.echoEnergy / max(1, on.echoEnergy))
        let toneChange = Signal.decibels(on.tonePower / off.tonePower)
        let offEchoLevel = Signal.decibels(off.echoEnergy / off.farEnergy)
        print("room call over Opus/SRTP: echo heard back at the post −\(rounded(echoDrop)) dB with the canceller on; "
              + "tone \(rounded(toneChange)) dB; with it off the echo arrives at \(rounded(offEchoLevel)) dB of the far end "
              + "(room: −10.5 dB); canceller's ERLE average \(on.metrics?.erleAverage.map(String.init) ?? "–") dB")
        // 10–11 dB on a quiet machine; 5.6 dB was seen once with both cores busy with other
        // builds (the room's timing, and so the echo path, jitters then). 4 dB still means
        // less than half the echo energy, which no pass-through could produce.
        #expect(echoDrop >= 4, "echo heard back: on vs off \(echoDrop) dB")
        #expect(toneChange >= -12, "near-end tone: on vs off \(toneChange) dB")
        // Off sends the microphone as it is: the echo reaches the post at the room's level
        // (Opus keeps band energies, so within a few dB).
        #expect(abs(offEchoLevel - Signal.decibels(0.3 * 0.3)) <= 4, "echo level with the canceller off: \(offEchoLevel) dB")
        #expect(off.metrics == nil)
    }

    private struct RoomCallResult {
        var echoEnergy: Double
        var tonePower: Double
        var farEnergy: Double
        var metrics: EchoCanceller.Metrics?
    }

    private static func roomCall(echoCancellation: Bool) async throws -> RoomCallResult {
        let far = Signal.speechLikeNoise(count: 48_000 * 4)
        let room = Room(echoGain: 0.3, toneAmplitude: 0.1, toneFrequency: 1_000)
        let tablet = try MediaSession.bind(host: "127.0.0.1")
        let post = try MediaSession.bind(host: "127.0.0.1")
        let postSpeaker = RecordingAudioSink()
        defer {
            tablet.stop()
            post.stop()
        }
        func parameters(to peer: MediaSession, send: [UInt8], receive: [UInt8], echo: Bool) -> MediaParameters {
            MediaParameters(remoteHost: "127.0.0.1", remoteAudioPort: peer.localAudioPort, sendKey: send, receiveKey: receive,
                            rtcpInterval: .milliseconds(500), voiceProcessing: echo ? .echoCancellationOnly : VoiceProcessing.none)
        }
        try tablet.start(parameters(to: post, send: MediaSessionTests.keyA, receive: MediaSessionTests.keyB, echo: echoCancellation),
                         camera: nil, microphone: room.microphone, speaker: room.speaker, display: RecordingVideoSink(),
                         onFailure: { _ in })
        try post.start(parameters(to: tablet, send: MediaSessionTests.keyB, receive: MediaSessionTests.keyA, echo: false),
                       camera: nil, microphone: LoopingSource(far), speaker: postSpeaker, display: RecordingVideoSink(),
                       onFailure: { _ in })
        // 8 s of call: the canceller converges in the first few, the last 4 s are measured.
        #expect(await eventually(timeout: .seconds(60)) { postSpeaker.samples.count >= 48_000 * 8 })
        let metrics = tablet.statistics.echoCanceller
        let heard = Array(postSpeaker.samples.suffix(48_000 * 4))
        return RoomCallResult(
            echoEnergy: Signal.energyOutsideTone(heard, frequency: 1_000),
            tonePower: Signal.goertzelPower(heard, frequency: 1_000),
            farEnergy: Signal.energyOutsideTone(far, frequency: 1_000),
            metrics: metrics)
    }

    private static func rounded(_ value: Double) -> String { String(format: "%.1f", value) }
    private func rounded(_ value: Double) -> String { Self.rounded(value) }
}

/// A tablet in a room: what its speaker plays comes back into its microphone, attenuated,
/// one or two 20 ms periods later, on top of a near-end tone. Both sides are paced in real
/// time like sound cards.
private final class Room: Sendable {
    let speaker: RoomSpeaker
    let microphone: RoomMicrophone

    init(echoGain: Double, toneAmplitude: Double, toneFrequency: Double) {
        let air = Air()
        speaker = RoomSpeaker(air: air)
        microphone = RoomMicrophone(air: air, echoGain: echoGain, tone: ToneSource(frequency: toneFrequency, amplitude: toneAmplitude))
    }
}

/// Sound on its way from the speaker to the microphone (one period to start with).
private final class Air: Sendable {
    let samples = Mutex<[Int16]>([Int16](repeating: 0, count: audioFrameSamples))
}

private final class RoomSpeaker: AudioSink {
    private let air: Air
    init(air: Air) { self.air = air }
    func open(_ format: AudioFormat) throws {}
    func write(_ samples: [Int16]) throws {
        air.samples.withLock { air in
            air += samples
            // A sound card's buffer is bounded: drop the oldest if the capture side lags.
            if air.count > 8 * audioFrameSamples { air.removeFirst(air.count - 8 * audioFrameSamples) }
        }
    }
    func close() {}
}

private final class RoomMicrophone: AudioSource {
    private let air: Air
    private let echoGain: Double
    private let tone: ToneSource

    init(air: Air, echoGain: Double, tone: ToneSource) {
        self.air = air
        self.echoGain = echoGain
        self.tone = tone
    }

    func open(_ format: AudioFormat) throws { try tone.open(format) }
    func read() throws -> [Int16] {
        let near = try tone.read()  // paces the capture
        let echo = air.samples.withLock { air -> [Int16] in
            let taken = Array(air.prefix(near.count))
            air.removeFirst(taken.count)
            return taken
        }
        return near.indices.map { index in
            Int16(clamping: Int(near[index]) + Int((echoGain * Double(index < echo.count ? echo[index] : 0)).rounded()))
        }
    }
    func close() { tone.close() }
}

/// A microphone that plays `samples` over and over, paced like a sound card.
private final class LoopingSource: AudioSource {
    private let samples: [Int16]
    private let position = Mutex(0)
    private let pacer = SilenceSource()

    init(_ samples: [Int16]) { self.samples = samples }

    func open(_ format: AudioFormat) throws { try pacer.open(format) }
    func read() throws -> [Int16] {
        let count = try pacer.read().count
        return position.withLock { position in
            (0..<count).map { _ in
                defer { position = (position + 1) % samples.count }
                return samples[position]
            }
        }
    }
    func close() { pacer.close() }
}
