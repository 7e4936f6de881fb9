import Devices
import Testing
@testable import Media

@Suite struct OpusTests {
    @Test func toneSurvivesRoundTripAtItsFrequency() throws {
        let encoder = try OpusFrameEncoder(bitrate: 32_000)
        let decoder = try OpusFrameDecoder()
        #expect(encoder.inbandFEC)
        #expect(encoder.bitrate == 32_000)
        let input = Signal.tone(frequency: 1_000, count: audioFrameSamples * 50)
        var output: [Int16] = []
        for frame in 0..<50 {
            let packet = try encoder.encode(Array(input[(frame * audioFrameSamples)..<((frame + 1) * audioFrameSamples)]))
            #expect(packet.count < 200)
            output += try decoder.decode(packet)
        }
        #expect(output.count == input.count)
        let frequency = Signal.zeroCrossingFrequency(output, sampleRate: 48_000, skip: 4_800)
        #expect(abs(frequency - 1_000) < 10, "decoded tone at \(frequency) Hz")
        #expect(Signal.goertzelShare(Array(output.dropFirst(4_800)), sampleRate: 48_000, frequency: 1_000) > 0.9)
        // A different tone must not pass the same check: the measurement can fail.
        let other = Signal.tone(frequency: 700, count: 48_000)
        #expect(Signal.goertzelShare(other, sampleRate: 48_000, frequency: 1_000) < 0.1)
        #expect(Signal.dominantFrequency(Array(output.dropFirst(4_800).prefix(12_000)), sampleRate: 48_000) == 1_000)
        #expect(Signal.dominantFrequency(Array(other.prefix(12_000)), sampleRate: 48_000) == 700)
    }

    @Test func lostPacketIsRecoveredFromFECOrConcealed() throws {
        let encoder = try OpusFrameEncoder(bitrate: 32_000, expectedLossPercent: 20)
        let decoder = try OpusFrameDecoder()
        let input = Signal.tone(frequency: 440, count: audioFrameSamples * 20)
        let packets = try (0..<20).map { try encoder.encode(Array(input[($0 * audioFrameSamples)..<(($0 + 1) * audioFrameSamples)])) }
        for packet in packets[0..<10] { _ = try decoder.decode(packet) }
        // Packet 10 is lost; 11 has arrived: recover from its FEC data.
        let recovered = try decoder.conceal(next: packets[11])
        #expect(recovered.count == audioFrameSamples)
        #expect(Signal.rms(recovered) > 1_000)
        _ = try decoder.decode(packets[11])
        // Packet 12 lost and nothing after it yet: plain concealment.
        let concealed = try decoder.conceal(next: nil)
        #expect(concealed.count == audioFrameSamples)
    }

    /// In-band FEC exists only in Opus's SILK layer: the default encoder (complexity 5,
    /// speech hint) must stay in SILK or hybrid mode even for a pure tone, which libopus's
    /// own music detector would otherwise send as CELT-only, without FEC.
    @Test func defaultEncoderStaysInAModeThatCarriesFEC() throws {
        let encoder = try OpusFrameEncoder(bitrate: 32_000)
        let input = Signal.tone(frequency: 1_000, count: audioFrameSamples * 25)
        for frame in 0..<25 {
            let packet = try encoder.encode(Array(input[(frame * audioFrameSamples)..<((frame + 1) * audioFrameSamples)]))
            // TOC configurations 0–11 are SILK-only, 12–15 hybrid, 16–31 CELT-only (RFC 6716 §3.1).
            let configuration = packet[0] >> 3
            #expect(configuration < 16, "frame \(frame): TOC configuration \(configuration) is CELT-only")
        }
    }

    @Test func bitrateChangesAtRunTime() throws {
        let encoder = try OpusFrameEncoder(bitrate: 16_000)
        try encoder.setBitrate(64_000)
        #expect(encoder.bitrate == 64_000)
        #expect(throws: MediaError.self) { try encoder.encode([0, 1, 2]) }
    }
}

@Suite struct G711Tests {
    /// Error bound from the segment step sizes: half a step, at most 1/32 of the value in
    /// the upper segments, a few units in the lowest ones.
    static func bound(_ value: Int16) -> Int { 8 + abs(Int(value)) / 30 }

    @Test(arguments: [G711Law.aLaw, .muLaw])
    func everySampleRoundTripsWithinTheQuantisationBound(law: G711Law) {
        var worst = 0
        for raw in stride(from: -32_000, through: 32_000, by: 7) {
            let sample = Int16(raw)
            let decoded = law == .aLaw ? G711.decodeALaw(G711.encodeALaw(sample)) : G711.decodeMuLaw(G711.encodeMuLaw(sample))
            let error = abs(Int(decoded) - Int(sample))
            #expect(error <= Self.bound(sample), "\(law) \(sample) → \(decoded)")
            worst = max(worst, error)
            // Sign is kept.
            if abs(raw) > 64 { #expect((decoded < 0) == (sample < 0)) }
        }
        #expect(worst > 0, "G.711 is lossy; zero error means nothing was quantised")
    }

    @Test func knownCodesMatchTheStandard() {
        // Silence: µ-law 0xFF, A-law 0xD5 (positive zero).
        #expect(G711.encodeMuLaw(0) == 0xFF)
        #expect(G711.encodeALaw(0) == 0xD5)
        #expect(G711.decodeMuLaw(0x80) == 32_124)
        #expect(G711.decodeMuLaw(0x00) == -32_124)
        #expect(G711.decodeALaw(0xAA) == 32_256)
        #expect(G711.decodeALaw(0x2A) == -32_256)
        #expect(G711.decodeALaw(0xD5) == 8)
        #expect(G711.encodeALaw(32_767) == 0xAA)
        #expect(G711.encodeMuLaw(32_767) == 0x80)
    }

    @Test(arguments: [AudioCodec.pcma, .pcmu])
    func frameCoderKeepsATone(codec: AudioCodec) throws {
        let encoder = try makeAudioEncoder(codec, bitrate: 64_000)
        let decoder = try makeAudioDecoder(codec)
        let input = Signal.tone(frequency: 1_000, count: audioFrameSamples * 25)
        var output: [Int16] = []
        for frame in 0..<25 {
            let payload = try encoder.encode(Array(input[(frame * audioFrameSamples)..<((frame + 1) * audioFrameSamples)]))
            #expect(payload.count == 160)
            output += try decoder.decode(payload)
        }
        let frequency = Signal.zeroCrossingFrequency(output, sampleRate: 48_000, skip: 960)
        #expect(abs(frequency - 1_000) < 10, "decoded tone at \(frequency) Hz")
    }
}

@Suite struct VP8Tests {
    @Test func testPatternRoundTripKeepsThePicture() throws {
        let width = 320, height = 240
        let encoder = try VP8Encoder(width: width, height: height, framesPerSecond: 25, bitrate: 600_000)
        let decoder = try VP8Decoder()
        var psnrs: [Double] = []
        var keyframes = 0
        for number in 0..<30 {
            let frame = TestPatternCamera.render(width: width, height: height, frameNumber: number, timestamp: .milliseconds(40 * number))
            let encoded = try encoder.encode(frame, forceKeyframe: number == 20)
            #expect(encoded.count == 1)
            for packet in encoded {
                if packet.isKeyframe { keyframes += 1 }
                let decoded = try #require(try decoder.decode(packet.data, timestamp: packet.timestamp))
                #expect(decoded.width == width && decoded.height == height)
                psnrs.append(Signal.lumaPSNR(frame, decoded))
                #expect(TestPatternCamera.frameNumber(in: decoded) == number)
            }
        }
        #expect(keyframes == 2, "first frame and the requested one")
        #expect(psnrs.min()! > 30, "PSNR \(psnrs)")
        // PSNR can tell pictures apart: two different pattern frames score low.
        let a = TestPatternCamera.render(width: width, height: height, frameNumber: 0, timestamp: .zero)
        let b = TestPatternCamera.render(width: width, height: height, frameNumber: 20, timestamp: .zero)
        #expect(Signal.lumaPSNR(a, b) < 20)
    }

    @Test func bitrateCanChangeBetweenFrames() throws {
        let encoder = try VP8Encoder(width: 160, height: 120, framesPerSecond: 25, bitrate: 300_000)
        try encoder.setBitrate(100_000)
        #expect(encoder.bitrate == 100_000)
        let frame = TestPatternCamera.render(width: 160, height: 120, frameNumber: 1, timestamp: .zero)
        #expect(try encoder.encode(frame).count == 1)
    }

    @Test func garbageDoesNotDecode() throws {
        let decoder = try VP8Decoder()
        #expect(throws: MediaError.self) { try decoder.decode([UInt8](repeating: 0x5A, count: 100)) }
    }
}
