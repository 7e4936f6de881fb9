// Synthetic audio devices: a tone generator and silence for a microphone, and a recorder
// for a speaker. Used by tests, by the benchmark and by machines without a sound card.
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Waits until `deadline`, in short slices so a concurrent `close()` is noticed quickly.
func syntheticSleepUntil(_ deadline: ContinuousClock.Instant, unlessSet flag: borrowing Atomic<Bool>) {
    let clock = ContinuousClock()
    while !flag.load(ordering: .acquiring) {
        let remaining = clock.now.duration(to: deadline)
        if remaining <= .zero { return }
        let slice = min(remaining, .milliseconds(10))
        let (seconds, attoseconds) = slice.components
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
        _ = nanosleep(&request, nil)
    }
}

/// A microphone that produces a sine wave, paced like a real capture device (one period per
/// period length) unless `paced` is false.
public final class ToneSource: AudioSource {
    private struct State {
        var format = AudioFormat()
        var phase = 0.0
        var isOpen = false
        var start: ContinuousClock.Instant? = nil
        var periods = 0
    }

    public let frequency: Double
    public let amplitude: Double
    public let paced: Bool
    private let state = Mutex(State())
    private let closed = Atomic<Bool>(false)

    /// `amplitude` is a fraction of full scale.
    public init(frequency: Double = 1_000, amplitude: Double = 0.5, paced: Bool = true) {
        self.frequency = frequency
        self.amplitude = amplitude
        self.paced = paced
    }

    public var isOpen: Bool { state.withLock { $0.isOpen } }

    public func open(_ format: AudioFormat) throws {
        closed.store(false, ordering: .releasing)
        state.withLock {
            $0.format = format
            $0.isOpen = true
            $0.start = nil
            $0.periods = 0
        }
    }

    public func read() throws -> [Int16] {
        let (samples, deadline): ([Int16], ContinuousClock.Instant?) = try state.withLock { state in
            guard state.isOpen else { throw DeviceError(.io, device: "tone", detail: "read on a closed source") }
            let format = state.format
            let step = 2 * Double.pi * frequency / Double(format.sampleRate)
            var samples = [Int16](repeating: 0, count: format.frameSamples * format.channels)
            for frame in 0..<format.frameSamples {
                let value = Int16((amplitude * 32_767 * sin(state.phase)).rounded())
                for channel in 0..<format.channels { samples[frame * format.channels + channel] = value }
                state.phase += step
                if state.phase > 2 * Double.pi { state.phase -= 2 * Double.pi }
            }
            guard paced else { return (samples, nil) }
            let start = state.start ?? ContinuousClock.now
            state.start = start
            state.periods += 1
            let period = Duration.seconds(Double(format.frameSamples) / Double(format.sampleRate))
            return (samples, start + period * state.periods)
        }
        if let deadline { syntheticSleepUntil(deadline, unlessSet: closed) }
        return samples
    }

    public func close() {
        closed.store(true, ordering: .releasing)
        state.withLock { $0.isOpen = false }
    }
}

/// A microphone that produces silence, paced like ``ToneSource``.
public final class SilenceSource: AudioSource {
    private let tone: ToneSource

    public init(paced: Bool = true) { tone = ToneSource(frequency: 0, amplitude: 0, paced: paced) }

    public var isOpen: Bool { tone.isOpen }
    public func open(_ format: AudioFormat) throws { try tone.open(format) }
    public func read() throws -> [Int16] { try tone.read() }
    public func close() { tone.close() }
}

/// A speaker that keeps everything written to it (up to `capacity` samples, the newest).
public final class RecordingAudioSink: AudioSink {
    private struct State {
        var samples: [Int16] = []
        var writes = 0
        var isOpen = false
        var openCount = 0
    }

    public let capacity: Int
    private let state = Mutex(State())

    public init(capacity: Int = 48_000 * 60) { self.capacity = capacity }

    public func open(_ format: AudioFormat) throws {
        state.withLock {
            $0.isOpen = true
            $0.openCount += 1
        }
    }

    public func write(_ samples: [Int16]) throws {
        try state.withLock { state in
            guard state.isOpen else { throw DeviceError(.io, device: "recorder", detail: "write on a closed sink") }
            state.samples.append(contentsOf: samples)
            state.writes += 1
            if state.samples.count > capacity { state.samples.removeFirst(state.samples.count - capacity) }
        }
    }

    public func close() { state.withLock { $0.isOpen = false } }

    public var samples: [Int16] { state.withLock { $0.samples } }
    public var writeCount: Int { state.withLock { $0.writes } }
    public var isOpen: Bool { state.withLock { $0.isOpen } }
    public var openCount: Int { state.withLock { $0.openCount } }
}

/// A display that keeps the last `capacity` frames shown and counts all of them.
public final class RecordingVideoSink: VideoSink {
    private struct State {
        var frames: [VideoFrame] = []
        var count = 0
    }

    public let capacity: Int
    private let state = Mutex(State())

    public init(capacity: Int = 50) { self.capacity = capacity }

    public func show(_ frame: VideoFrame) {
        state.withLock { state in
            state.count += 1
            state.frames.append(frame)
            if state.frames.count > capacity { state.frames.removeFirst(state.frames.count - capacity) }
        }
    }

    public var frames: [VideoFrame] { state.withLock { $0.frames } }
    public var count: Int { state.withLock { $0.count } }
}
