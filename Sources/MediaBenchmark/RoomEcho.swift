// Echo cancellation in a reverberant room, to show what the canceller's extended filter (on as
// shipped) buys for its CPU time. A model room, not a recording: the far end is speech-like
// noise (bursts at a syllable rate, a pause every fourth second) that reaches the microphone
// through an impulse response with a direct path after the speaker→microphone delay and an
// exponentially decaying diffuse tail of the given RT60. Runs at 16 kHz, the rate the
// canceller's adaptive filter works at anyway, so the convolution stays short.
//
// Figures per room: ERLE (energy into the canceller over energy out) after 20 s of
// convergence with nobody talking at the tablet; then with a near-end 700 Hz tone (double
// talk): how far the echo is reduced while both talk, and how much of the near-end tone
// is left when the far end pauses; and the canceller's CPU per call-minute.
import Foundation
import Media

private struct Noise {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    /// SplitMix64 → two uniforms → one standard normal (Box–Muller).
    mutating func normal() -> Double {
        func next() -> Double {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
        }
        let u = max(next(), 1e-12), v = next()
        return (-2 * log(u)).squareRoot() * cos(2 * .pi * v)
    }
}

func threadCPUTime() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

private struct Room {
    static let rate = 16_000
    static let seconds = 40
    let far: [Double]
    let echo: [Double]

    init(rt60: Double, delayMilliseconds: Int) {
        let total = Self.rate * Self.seconds
        var noise = Noise(seed: 7)
        var far = [Double](repeating: 0, count: total)
        var smoothed = 0.0
        for i in 0..<total {
            let second = i / Self.rate
            let envelope = second % 4 == 3 ? 0 : 0.5 + 0.5 * sin(2 * .pi * 4 * Double(i) / Double(Self.rate))
            smoothed = 0.7 * smoothed + 0.3 * noise.normal()
            far[i] = 6_000 * envelope * smoothed
        }
        // Direct path, then a diffuse tail: a tap every 4th sample (energy kept by doubling).
        let direct = delayMilliseconds * Self.rate / 1_000
        var taps: [(Int, Double)] = [(direct, 0.5)]
        for offset in stride(from: 4, to: Int(rt60 * Double(Self.rate)), by: 4) {
            let t = Double(offset) / Double(Self.rate)
            taps.append((direct + offset, 0.16 * noise.normal() * pow(10, -3 * t / rt60)))
        }
        var echo = [Double](repeating: 0, count: total)
        far.withUnsafeBufferPointer { far in
            echo.withUnsafeMutableBufferPointer { echo in
                for i in 0..<total where far[i] != 0 {
                    for (lag, gain) in taps where i + lag < total { echo[i + lag] += far[i] * gain }
                }
            }
        }
        self.far = far
        self.echo = echo
    }

    struct Result {
        var erle: Double
        var cpuPerMinute: Double
    }

    /// Runs the canceller over the whole room recording. With `nearTone`, returns the echo
    /// reduction while the far end talks and (second) the near end's level change in its pauses.
    func run(extendedFilter: Bool, nearTone: Bool) throws -> (Result, keptDecibels: Double?) {
        let canceller = try EchoCanceller(sampleRate: Self.rate, delayAgnostic: true, extendedFilter: extendedFilter,
                                          voice: .echoCancellationOnly)
        let block = canceller.blockSamples
        func clip(_ value: Double) -> Int16 { Int16(max(-32_768, min(32_767, value.rounded()))) }
        var energyIn = 0.0, energyOut = 0.0, toneIn = 0.0, toneOut = 0.0, cpu = 0.0
        for start in stride(from: 0, to: far.count - block + 1, by: block) {
            let render = (start..<start + block).map { clip(far[$0]) }
            var capture = (start..<start + block).map { index -> Int16 in
                let near = nearTone ? 2_000 * sin(2 * .pi * 700 * Double(index) / Double(Self.rate)) : 0
                return clip(echo[index] + near)
            }
            let input = capture.reduce(0.0) { $0 + Double($1) * Double($1) }
            let before = threadCPUTime()
            try canceller.render(render)
            try canceller.capture(&capture, delayMilliseconds: 40)
            cpu += threadCPUTime() - before
            guard start >= 20 * Self.rate else { continue }
            let output = capture.reduce(0.0) { $0 + Double($1) * Double($1) }
            // The far end's pauses, once the echo tail has died away, hold only the near end.
            let second = start / Self.rate, within = start % Self.rate
            if nearTone && second % 4 == 3 && within > Self.rate * 6 / 10 {
                toneIn += input
                toneOut += output
            } else {
                energyIn += input
                energyOut += output
            }
        }
        let erle = energyOut > 0 ? 10 * log10(energyIn / energyOut) : .infinity
        let result = Result(erle: erle, cpuPerMinute: cpu / Double(Self.seconds) * 60)
        return (result, nearTone && toneIn > 0 ? 10 * log10(max(toneOut, 1) / toneIn) : nil)
    }
}

private func decibels(_ value: Double) -> String { value >= 60 ? "≥ 60 dB" : String(format: "%.1f dB", value) }

func roomEchoFigures() throws {
    print("Echo in a model room (16 kHz, 40 ms speaker→microphone delay, speech-like far end; extended filter as shipped vs normal):")
    for rt60 in [0.15, 0.3, 0.5] {
        let room = Room(rt60: rt60, delayMilliseconds: 40)
        var parts: [String] = []
        for extended in [true, false] {
            let (alone, _) = try room.run(extendedFilter: extended, nearTone: false)
            let (talk, kept) = try room.run(extendedFilter: extended, nearTone: true)
            parts.append((extended ? "extended" : "normal") + ": ERLE \(decibels(alone.erle)), double talk \(decibels(talk.erle))"
                         + String(format: " with the near end %+.1f dB, %.2f CPU s per call-minute", kept ?? .nan, alone.cpuPerMinute))
        }
        print(String(format: "  RT60 %.2f s  ", rt60) + parts.joined(separator: "; "))
    }
}
