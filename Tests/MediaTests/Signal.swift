// Measurements used by the media tests: frequency of a tone, PSNR of a picture.
import Devices
import Foundation

enum Signal {
    /// Frequency estimated from upward zero crossings, ignoring the first `skip` samples
    /// (codec start-up).
    static func zeroCrossingFrequency(_ samples: [Int16], sampleRate: Int, skip: Int = 0) -> Double {
        let body = Array(samples.dropFirst(skip))
        guard body.count > 1 else { return 0 }
        var first: Int? = nil
        var last = 0
        var crossings = 0
        for index in 1..<body.count where body[index - 1] < 0 && body[index] >= 0 {
            if first == nil { first = index } else { crossings += 1 }
            last = index
        }
        guard let first, crossings > 0 else { return 0 }
        return Double(crossings) * Double(sampleRate) / Double(last - first)
    }

    /// Relative power of `frequency` (Goertzel), normalised by total power: 1 for a pure tone
    /// at exactly that frequency, near 0 for anything else.
    static func goertzelShare(_ samples: [Int16], sampleRate: Int, frequency: Double) -> Double {
        let n = samples.count
        guard n > 0 else { return 0 }
        let k = (Double(n) * frequency / Double(sampleRate)).rounded()
        let omega = 2 * Double.pi * k / Double(n)
        let coefficient = 2 * cos(omega)
        var s1 = 0.0, s2 = 0.0, energy = 0.0
        for sample in samples {
            let x = Double(sample)
            energy += x * x
            let s0 = x + coefficient * s1 - s2
            s2 = s1
            s1 = s0
        }
        let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2
        guard energy > 0 else { return 0 }
        return 2 * power / (Double(n) * energy)
    }

    /// The frequency in `range` (stepped by `step`) with the most power, by Goertzel at each
    /// candidate. A spectral peak, unlike a zero-crossing count, shrugs off a few concealed
    /// frames on a loaded machine.
    static func dominantFrequency(_ samples: [Int16], sampleRate: Int, range: ClosedRange<Double> = 100...4_000,
                                  step: Double = 5) -> Double {
        let values = samples.map(Double.init)
        var best = (frequency: 0.0, power: -1.0)
        for frequency in stride(from: range.lowerBound, through: range.upperBound, by: step) {
            let coefficient = 2 * cos(2 * Double.pi * frequency / Double(sampleRate))
            var s1 = 0.0, s2 = 0.0
            for x in values {
                let s0 = x + coefficient * s1 - s2
                s2 = s1
                s1 = s0
            }
            let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2
            if power > best.power { best = (frequency, power) }
        }
        return best.frequency
    }

    static func rms(_ samples: [Int16]) -> Double {
        guard !samples.isEmpty else { return 0 }
        return sqrt(samples.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(samples.count))
    }

    static func tone(frequency: Double, amplitude: Double = 0.5, count: Int, sampleRate: Int = 48_000) -> [Int16] {
        (0..<count).map { Int16((amplitude * 32_767 * sin(2 * Double.pi * frequency * Double($0) / Double(sampleRate))).rounded()) }
    }

    /// PSNR of the luma planes in dB.
    static func lumaPSNR(_ a: VideoFrame, _ b: VideoFrame) -> Double {
        precondition(a.width == b.width && a.height == b.height)
        var squared = 0.0
        for index in 0..<a.lumaCount {
            let d = Double(a.planes[index]) - Double(b.planes[index])
            squared += d * d
        }
        let mse = squared / Double(a.lumaCount)
        return mse == 0 ? 99 : 10 * log10(255 * 255 / mse)
    }
}

extension Signal {
    /// Speech-like noise: low-passed noise (most energy below 2 kHz) with a 3 Hz syllable
    /// envelope, from a fixed seed so every run hears the same far end.
    static func speechLikeNoise(count: Int, sampleRate: Int = 48_000, seed: UInt64 = 7, amplitude: Double = 0.3) -> [Int16] {
        var state = seed
        func uniform() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) / Double(1 << 53) - 0.5
        }
        var low1 = 0.0, low2 = 0.0
        return (0..<count).map { index in
            let white = (uniform() + uniform() + uniform() + uniform()) * 1.7
            low1 += 0.25 * (white - low1)
            low2 += 0.25 * (low1 - low2)
            let envelope = 0.5 + 0.5 * sin(2 * Double.pi * 3 * Double(index) / Double(sampleRate))
            return Int16(clamping: Int((amplitude * 32_767 * low2 * envelope).rounded()))
        }
    }

    /// Power at `frequency` (Goertzel), not normalised: compare two signals of the same length.
    static func goertzelPower(_ samples: [Int16], sampleRate: Int = 48_000, frequency: Double) -> Double {
        let coefficient = 2 * cos(2 * Double.pi * frequency / Double(sampleRate))
        var s1 = 0.0, s2 = 0.0
        for sample in samples {
            let s0 = Double(sample) + coefficient * s1 - s2
            s2 = s1
            s1 = s0
        }
        return s1 * s1 + s2 * s2 - coefficient * s1 * s2
    }

    /// Energy left after a notch (Q = 5) at `frequency`: everything but a tone there. The
    /// first 100 ms of the filter's output are skipped while it settles.
    static func energyOutsideTone(_ samples: [Int16], sampleRate: Int = 48_000, frequency: Double) -> Double {
        let w0 = 2 * Double.pi * frequency / Double(sampleRate)
        let alpha = sin(w0) / (2 * 5)
        let a0 = 1 + alpha, a1 = -2 * cos(w0), a2 = 1 - alpha
        let b0 = 1.0, b1 = -2 * cos(w0), b2 = 1.0
        var x1 = 0.0, x2 = 0.0, y1 = 0.0, y2 = 0.0, energy = 0.0
        for (index, sample) in samples.enumerated() {
            let x = Double(sample)
            let y = (b0 * x + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2) / a0
            (x2, x1, y2, y1) = (x1, x, y1, y)
            if index >= sampleRate / 10 { energy += y * y }
        }
        return energy
    }

    static func decibels(_ ratio: Double) -> Double { 10 * log10(ratio) }
}
