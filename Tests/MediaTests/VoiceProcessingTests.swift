// Gain control, noise suppression and the high-pass filter of webrtc-audio-processing
// (`VoiceProcessing`, configuration `media.voice.*`) with real signals: Dutch speech from
// espeak-ng at a soft and a loud level, stationary noise, mains hum. (The speech-like noise of
// the echo tests will not do for gain control: its voice activity detector does not take it
// for speech and leaves it nearly alone.) Each part is measured on its own (the
// others off) and compared with the same signal through the processor with it off.
import Devices
import Foundation
import Testing
@testable import Media

@Suite(.serialized) struct VoiceProcessingTests {
    static let rate = 48_000

    /// RMS level in dBFS (0 dBFS = RMS of a full-scale square wave, 32768).
    static func dBFS(_ samples: some Collection<Int16>) -> Double {
        let squares = samples.reduce(0.0) { $0 + Double($1) * Double($1) }
        return 10 * log10(max(squares / Double(max(1, samples.count)), 1e-9) / (32_768.0 * 32_768.0))
    }

    /// `samples` scaled so that its RMS is `level` dBFS.
    static func scaled(_ samples: [Int16], to level: Double) -> [Int16] {
        let factor = pow(10, (level - dBFS(samples)) / 20)
        return samples.map { Int16(clamping: Int((Double($0) * factor).rounded())) }
    }

    /// Runs `input` through a processor in 20 ms frames, as MediaSession does (silence as the
    /// far end: nobody talks from the speaker).
    static func process(_ input: [Int16], _ voice: VoiceProcessing) throws -> [Int16] {
        let processor = try EchoCanceller(voice: voice)
        let frame = audioFrameSamples
        var output: [Int16] = []
        output.reserveCapacity(input.count)
        let silence = [Int16](repeating: 0, count: frame)
        for start in stride(from: 0, to: input.count - frame + 1, by: frame) {
            var samples = Array(input[start..<(start + frame)])
            try processor.render(silence)
            try processor.capture(&samples)
            output += samples
        }
        return output
    }

    /// About 20 s of a client asking for help, synthesised once (espeak-ng, 48 kHz mono).
    static let speech: [Int16] = {
        let sentence = "Hallo, met mevrouw de Vries. Ik ben gevallen in de keuken en ik kan niet meer opstaan. "
            + "Kunt u iemand sturen? Mijn dochter is vandaag niet thuis, ze komt pas morgen terug. "
            + "De deur is op slot, maar de buurvrouw heeft een sleutel."
        do {
            return try SpeechRenderer().render(sentence).samples
        } catch {
            Issue.record("espeak-ng could not synthesise the test speech: \(error)")
            return []
        }
    }()

    static let only = (
        agc: VoiceProcessing(echoCancellation: false, gainControl: true, noiseSuppression: false, highPassFilter: false),
        ns: VoiceProcessing(echoCancellation: false, gainControl: false, noiseSuppression: true, highPassFilter: false),
        hpf: VoiceProcessing(echoCancellation: false, gainControl: false, noiseSuppression: false, highPassFilter: true)
    )

    /// The last `seconds` of a signal, after the processing has adapted.
    static func tail(_ samples: [Int16], seconds: Double) -> ArraySlice<Int16> {
        samples.suffix(Int(seconds * Double(rate)))
    }

    /// A client speaking softly from across the room: speech at -40 dBFS reaches the post
    /// above -30 dBFS with gain control on, and as it was with it off.
    @Test func softSpeechComesOutLouderWithGainControlAndUnchangedWithout() throws {
        let soft = Self.scaled(Self.speech, to: -40)
        try #require(soft.count > 8 * Self.rate)
        let on = try Self.process(soft, Self.only.agc)
        let off = try Self.process(soft, .none)
        let before = Self.dBFS(Self.tail(soft, seconds: 4))
        let withAGC = Self.dBFS(Self.tail(on, seconds: 4))
        let withoutAGC = Self.dBFS(Self.tail(off, seconds: 4))
        print(String(format: "AGC: soft speech %.1f dBFS → %.1f dBFS (on), %.1f dBFS (off)", before, withAGC, withoutAGC))
        #expect(withAGC > -30, "with gain control the soft voice is at \(withAGC) dBFS")
        #expect(abs(withoutAGC - before) < 0.5, "without gain control the level moved \(withoutAGC - before) dB")
        // The whole shipped chain (echo canceller, gain control, noise suppression, high-pass)
        // lifts it too.
        let all = try Self.process(soft, VoiceProcessing())
        #expect(Self.dBFS(Self.tail(all, seconds: 4)) > -30)
    }

    /// Someone close to the tablet speaking loudly is not pushed into clipping.
    @Test func loudSpeechIsNotRaisedIntoClipping() throws {
        let loud = Self.scaled(Self.speech, to: -12)
        try #require(loud.count > 8 * Self.rate)
        let on = try Self.process(loud, Self.only.agc)
        let after = Self.dBFS(Self.tail(on, seconds: 4))
        let clipped = Self.tail(on, seconds: 4).filter { $0 == .max || $0 == .min }.count
        print(String(format: "AGC: loud speech -12.0 dBFS → %.1f dBFS, %d clipped samples", after, clipped))
        #expect(after < -3 && after > -20, "loud speech came out at \(after) dBFS")
        #expect(clipped < Self.rate / 100, "\(clipped) samples at full scale")
    }

    /// A fan or fridge: stationary noise is lower with noise suppression on, unchanged off.
    @Test func stationaryNoiseIsReducedWithNoiseSuppression() throws {
        var state: UInt64 = 3
        let noise = (0..<(8 * Self.rate)).map { _ -> Int16 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int16(truncatingIfNeeded: Int(state >> 33) % 2_001 - 1_000)
        }
        let on = try Self.process(noise, Self.only.ns)
        let off = try Self.process(noise, .none)
        let before = Self.dBFS(Self.tail(noise, seconds: 3))
        let reduced = before - Self.dBFS(Self.tail(on, seconds: 3))
        let unchanged = before - Self.dBFS(Self.tail(off, seconds: 3))
        print(String(format: "NS: stationary noise %.1f dBFS reduced by %.1f dB (on), %.1f dB (off)", before, reduced, unchanged))
        #expect(reduced >= 6, "noise suppression took \(reduced) dB off stationary noise")
        #expect(abs(unchanged) < 0.5)
    }

    /// Mains hum (50 Hz) picked up by the microphone is reduced by the high-pass filter, and
    /// the voice band (1 kHz) passes.
    @Test func humIsReducedByTheHighPassFilter() throws {
        let count = 6 * Self.rate
        let hum = Signal.tone(frequency: 50, amplitude: 0.1, count: count)
        let voiceBand = Signal.tone(frequency: 1_000, amplitude: 0.1, count: count)
        let mixed = zip(hum, voiceBand).map { Int16(clamping: Int($0) + Int($1)) }
        let on = Array(Self.tail(try Self.process(mixed, Self.only.hpf), seconds: 3))
        let off = Array(Self.tail(try Self.process(mixed, .none), seconds: 3))
        let input = Array(Self.tail(mixed, seconds: 3))
        let humReduction = Signal.decibels(Signal.goertzelPower(input, frequency: 50) / Signal.goertzelPower(on, frequency: 50))
        let voiceChange = Signal.decibels(Signal.goertzelPower(on, frequency: 1_000) / Signal.goertzelPower(input, frequency: 1_000))
        let humOff = Signal.decibels(Signal.goertzelPower(input, frequency: 50) / Signal.goertzelPower(off, frequency: 50))
        print(String(format: "HPF: 50 Hz hum reduced by %.1f dB (on), %.1f dB (off); 1 kHz changed %.1f dB", humReduction, humOff, voiceChange))
        #expect(humReduction >= 10, "the high-pass filter took \(humReduction) dB off 50 Hz")
        #expect(abs(voiceChange) < 1.5, "1 kHz changed by \(voiceChange) dB")
        #expect(abs(humOff) < 0.5)
    }

    @Test func everythingOffMeansNoProcessorInACall() {
        #expect(!VoiceProcessing.none.isActive)
        #expect(VoiceProcessing().isActive)
        let parameters = MediaParameters(remoteHost: "127.0.0.1", remoteAudioPort: 9, sendKey: nil, receiveKey: nil,
                                         echoCancellation: false)
        // `echoCancellation: false` alone leaves the rest of the voice processing on.
        #expect(parameters.voiceProcessing == VoiceProcessing(echoCancellation: false))
    }
}
