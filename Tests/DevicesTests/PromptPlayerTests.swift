import Devices
import Glibc
import Synchronization
import Testing

/// A sink that records what it is given and takes a little time per frame, like a paced
/// speaker, so an interruption can land mid-clip.
private final class SlowSink: AudioSink {
    struct State { var samples: [Int16] = []; var writes = 0; var opens = 0; var closes = 0; var open = false }
    let state = Mutex(State())
    let perWrite: Duration
    init(perWrite: Duration = .milliseconds(2)) { self.perWrite = perWrite }
    func open(_ format: AudioFormat) throws {
        state.withLock { $0.opens += 1; $0.open = true }
    }
    func write(_ samples: [Int16]) throws {
        precondition(state.withLock { $0.open }, "write to a closed sink")
        state.withLock { $0.samples += samples; $0.writes += 1 }
        let (s, a) = perWrite.components
        var ts = timespec(tv_sec: Int(s), tv_nsec: Int(a / 1_000_000_000))
        nanosleep(&ts, nil)
    }
    func close() { state.withLock { $0.closes += 1; $0.open = false } }
    var snapshot: State { state.withLock { $0 } }
}

private final class FailingSink: AudioSink {
    func open(_ format: AudioFormat) throws {}
    func write(_ samples: [Int16]) throws { throw DeviceError(.vanished, device: "test speaker", detail: "unplugged") }
    func close() {}
}

@Suite("Prompt player")
struct PromptPlayerTests {
    @Test func playsTheWholeClipInFramesPaddedWithSilence() async throws {
        let sink = SlowSink(perWrite: .zero)
        let player = PromptPlayer(sink: sink)
        let clip = AudioClip(sampleRate: 48_000, samples: (0..<2000).map { Int16($0) })
        #expect(try await player.play(clip))
        let s = sink.snapshot
        #expect(s.writes == 3)
        #expect(s.samples.count == 2880)
        let exact = Array(s.samples[0..<2000]) == clip.samples && s.samples[2000...].allSatisfy { $0 == 0 }
        #expect(exact)
        #expect(s.opens == 1 && s.closes == 1 && !s.open, "the speaker is released after the prompt")
    }

    @Test func interruptStopsWithinAFrame() async throws {
        let sink = SlowSink()
        let player = PromptPlayer(sink: sink)
        let long = AudioClip(sampleRate: 48_000, samples: [Int16](repeating: 100, count: 48_000 * 10))
        let playing = Task { try await player.play(long) }
        #expect(await eventually { sink.snapshot.writes >= 3 })
        player.interrupt()
        let completed = try await playing.value
        #expect(!completed)
        let s = sink.snapshot
        #expect(s.writes < 500, "stopped long before the end")
        #expect(!s.open)
    }

    @Test func aNewPromptSupersedesThePlayingOne() async throws {
        let sink = SlowSink()
        let player = PromptPlayer(sink: sink)
        let first = AudioClip(sampleRate: 48_000, samples: [Int16](repeating: 1, count: 48_000 * 10))
        let second = AudioClip(sampleRate: 48_000, samples: [Int16](repeating: 2, count: 960 * 4))
        let playingFirst = Task { try await player.play(first) }
        #expect(await eventually { sink.snapshot.writes >= 2 })
        #expect(try await player.play(second))
        #expect(try await playingFirst.value == false)
        let tail = Array(sink.snapshot.samples.suffix(960 * 4))
        #expect(tail.allSatisfy { $0 == 2 }, "the newest prompt is heard in full")
    }

    @Test func sinkFailureAndWrongRateAreErrors() async {
        let player = PromptPlayer(sink: FailingSink())
        await #expect(throws: DeviceError.self) {
            try await player.play(AudioClip(sampleRate: 48_000, samples: [1, 2, 3]))
        }
        await #expect(throws: DeviceError.self) {
            try await PromptPlayer(sink: SlowSink()).play(AudioClip(sampleRate: 22_050, samples: [1]))
        }
    }
}
