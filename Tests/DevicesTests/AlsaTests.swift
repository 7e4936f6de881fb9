import Devices
import Foundation
import Testing

/// A 1 kHz tone at 48 kHz: 48 samples per cycle, so it is easy to check by eye too.
private func tone(samples: Int, amplitude: Double = 8000) -> [Int16] {
    (0..<samples).map { Int16((sin(2 * Double.pi * 1000 * Double($0) / 48_000) * amplitude).rounded()) }
}

private func rawBytes(_ samples: [Int16]) -> Data {
    samples.withUnsafeBytes { Data($0) }
}

private func samples(of data: Data) -> [Int16] {
    data.withUnsafeBytes { Array($0.bindMemory(to: Int16.self)) }
}

/// The `file` plugin over `null`, in a private configuration: nothing process-wide changes.
private func fileConfiguration(name: String, output: String, input: String? = nil) -> String {
    var conf = """
    pcm.\(name) {
        type file
        slave.pcm { type null }
        file "\(output)"
        format "raw"
    """
    if let input { conf += "\n    infile \"\(input)\"" }
    return conf + "\n}\n"
}

@Suite("ALSA through a private configuration")
struct AlsaTests {
    @Test func captureReadsAKnownToneExactly() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let sent = tone(samples: 960 * 5)
        try rawBytes(sent).write(to: URL(fileURLWithPath: dir.file("tone.raw")))
        let mic = AlsaCapture(configuration: AlsaConfiguration(
            pcm: "tone",
            configurationText: fileConfiguration(name: "tone", output: dir.file("capture-copy.raw"), input: dir.file("tone.raw"))))
        try mic.open(AudioFormat())
        var received: [Int16] = []
        for _ in 0..<5 {
            let frame = try mic.read()
            #expect(frame.count == 960)
            received += frame
        }
        mic.close()
        let exact = received == sent  // compared outside #expect: no sample dump on failure
        #expect(exact, "first mismatch at \(received.indices.first { $0 >= sent.count || received[$0] != sent[$0] } ?? -1)")
        #expect(mic.granted.period <= 480, "period ≤ 10 ms")
        #expect(mic.granted.buffer <= 1920, "capture buffer ≤ 40 ms: \(mic.granted.buffer) frames")
    }

    @Test func playbackWritesSamplesToTheFile() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let out = dir.file("played.raw")
        let speaker = AlsaPlayback(configuration: AlsaConfiguration(
            pcm: "speaker", configurationText: fileConfiguration(name: "speaker", output: out)))
        try speaker.open(AudioFormat())
        let played = tone(samples: 960 * 7 + 123, amplitude: 12000)
        var offset = 0
        while offset < played.count {
            let end = min(offset + 960, played.count)
            try speaker.write(Array(played[offset..<end]))
            offset = end
        }
        speaker.close()
        let written = samples(of: try Data(contentsOf: URL(fileURLWithPath: out)))
        #expect(written.count == played.count)
        let exact = written == played
        #expect(exact)
    }

    @Test func reopeningWorksAndAMissingPCMIsADeviceError() throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let speaker = AlsaPlayback(configuration: AlsaConfiguration(
            pcm: "nosuchpcm", configurationText: fileConfiguration(name: "speaker", output: dir.file("x.raw"))))
        #expect(throws: DeviceError.self) { try speaker.open(AudioFormat()) }
        #expect(throws: DeviceError.self) { try speaker.write([0, 0]) }

        let ok = AlsaPlayback(configuration: AlsaConfiguration(
            pcm: "speaker", configurationText: fileConfiguration(name: "speaker", output: dir.file("y.raw"))))
        for round in 1...2 {
            try ok.open(AudioFormat())
            try ok.write([Int16](repeating: Int16(round), count: 960))
            ok.close()
        }
        let written = samples(of: try Data(contentsOf: URL(fileURLWithPath: dir.file("y.raw"))))
        #expect(written == [Int16](repeating: 2, count: 960), "second open starts a fresh file")
    }

    @Test func promptPlayerPlaysThroughAlsa() async throws {
        let dir = TempDir()
        defer { dir.cleanup() }
        let out = dir.file("prompt.raw")
        let speaker = AlsaPlayback(configuration: AlsaConfiguration(
            pcm: "speaker", configurationText: fileConfiguration(name: "speaker", output: out)))
        let clip = AudioClip(sampleRate: 48_000, samples: tone(samples: 960 * 3))
        #expect(try await PromptPlayer(sink: speaker).play(clip))
        let written = samples(of: try Data(contentsOf: URL(fileURLWithPath: out)))
        let exact = written == clip.samples
        #expect(exact)
    }

    @Test func brokenConfigurationTextIsADeviceError() {
        let mic = AlsaCapture(configuration: AlsaConfiguration(pcm: "x", configurationText: "pcm.x { type file"))
        do {
            try mic.open(AudioFormat())
            Issue.record("opened a PCM from a broken configuration")
        } catch let error as DeviceError {
            #expect(error.detail.contains("snd_config_load"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
