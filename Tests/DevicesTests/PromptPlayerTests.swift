import Devices
import Glibc
import Synchronization
import Testing

/// A sink that records what it is given. With `holdAt`, the write with that number blocks
/// until `release()`, so a test can act "mid-clip" however loaded the machine is.
private final class GatedSink: AudioSink {
    struct State { var samples: [Int16] = []; var writes = 0; var opens = 0; var closes = 0; var open = false }
    let state = Mutex(State())
    let holdAt: Int?
    private let released = Atomic<Bool>(false)
    init(holdAt: Int? = nil) { self.holdAt = holdAt }
    func open(_ format: AudioFormat) throws {
        state.withLock { $0.opens += 1; $0.open = true }
    }
    func write(_ samples: [Int16]) throws {
        precondition(state.withLock { $0.open }, "write to a closed sink")
        let n = state.withLock { $0.samples += samples; $0.writes += 1; return $0.writes }
        if let holdAt, n >= holdAt {
            while !released.load(ordering: .acquiring) { usleep(1000) }
        }
    }
    func close() { state.withLock { $0.closes += 1; $0.open = false } }
    func release() { released.store(true, ordering: .releasing) }
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
        let sink = GatedSink()
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
        let sink = GatedSink(holdAt: 3)
        let player = PromptPlayer(sink: sink)
        let long = AudioClip(sampleRate: 48_000, samples: [Int16](repeating: 100, count: 48_000 * 10))
        let outcome = Recorder<Bool>()
        player.start(long) { outcome.append((try? $0.get()) ?? true) }
        #expect(await eventually { sink.snapshot.writes == 3 })
        player.interrupt()
        sink.release()
        #expect(await eventually { outcome.count == 1 })
        #expect(outcome.all == [false], "reported as interrupted")
        let s = sink.snapshot
        #expect(s.writes == 3, "not one more frame after the interruption")
        #expect(!s.open)
    }

    @Test func aNewPromptSupersedesThePlayingOne() async throws {
        let sink = GatedSink(holdAt: 2)
        let player = PromptPlayer(sink: sink)
        let first = AudioClip(sampleRate: 48_000, samples: [Int16](repeating: 1, count: 48_000 * 10))
        let second = AudioClip(sampleRate: 48_000, samples: [Int16](repeating: 2, count: 960 * 4))
        let outcomes = Recorder<String>()
        player.start(first) { outcomes.append("first \((try? $0.get()) ?? true)") }
        #expect(await eventually { sink.snapshot.writes == 2 })
        player.start(second) { outcomes.append("second \((try? $0.get()) ?? false)") }
        sink.release()
        #expect(await eventually { outcomes.count == 2 })
        #expect(Set(outcomes.all) == ["first false", "second true"])
        let s = sink.snapshot
        #expect(s.writes == 2 + 4, "two frames of the first, then all four of the second")
        #expect(s.samples.suffix(960 * 4).allSatisfy { $0 == 2 }, "the newest prompt is heard in full")
    }

    @Test func sinkFailureAndWrongRateAreErrors() async {
        let player = PromptPlayer(sink: FailingSink())
        await #expect(throws: DeviceError.self) {
            try await player.play(AudioClip(sampleRate: 48_000, samples: [1, 2, 3]))
        }
        await #expect(throws: DeviceError.self) {
            try await PromptPlayer(sink: GatedSink()).play(AudioClip(sampleRate: 22_050, samples: [1]))
        }
    }
}
