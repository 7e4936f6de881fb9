// The non-spoken feedback sounds, generated rather than shipped: ringback while the centrale
// is being called, the ring of an incoming call, and the short acknowledgement of a press.

import Foundation

/// Generates the tablet's tones as clips for `PromptPlayer`. Long tones are made as clips of
/// a given length (default one minute) and ended with `PromptPlayer.interrupt()`.
public enum FeedbackTones {
    /// The Dutch ringback tone (425 Hz, 1 s on, 4 s off), so the client hears what a
    /// telephone sounds like while the centrale is ringing.
    public static func ringback(duration: Duration = .seconds(60), sampleRate: Int = 48_000) -> AudioClip {
        cadence(frequencies: [425], on: .seconds(1), off: .seconds(4), duration: duration, sampleRate: sampleRate, level: 0.25)
    }

    /// An incoming call: two short, friendly two-note rings (660 Hz + 880 Hz) every 3 s —
    /// clearly different from ringback, and not the shrill bell that startles people.
    public static func incomingRing(duration: Duration = .seconds(60), sampleRate: Int = 48_000) -> AudioClip {
        let ring = cadence(frequencies: [660, 880], on: .milliseconds(400), off: .milliseconds(200),
                           duration: .milliseconds(1200), sampleRate: sampleRate, level: 0.35)
        let silence = [Int16](repeating: 0, count: sampleRate * 18 / 10)
        let period = ring.samples + silence
        let total = samples(duration, sampleRate)
        var out: [Int16] = []
        out.reserveCapacity(total)
        while out.count < total { out += period.prefix(total - out.count) }
        return AudioClip(sampleRate: sampleRate, samples: out)
    }

    /// A short soft beep: "I felt your press".
    public static func pressAck(sampleRate: Int = 48_000) -> AudioClip {
        AudioClip(sampleRate: sampleRate, samples: burst(frequencies: [1000], count: samples(.milliseconds(80), sampleRate),
                                                         sampleRate: sampleRate, level: 0.2))
    }

    static func samples(_ d: Duration, _ rate: Int) -> Int {
        let (s, a) = d.components
        return Int(s) * rate + Int(a / 1_000_000_000_000) * rate / 1_000_000
    }

    /// A sine (or sum of sines) with 5 ms raised-cosine edges, so it starts and stops without clicks.
    static func burst(frequencies: [Double], count: Int, sampleRate: Int, level: Double) -> [Int16] {
        let ramp = max(1, sampleRate / 200)
        return (0..<count).map { i in
            let t = Double(i) / Double(sampleRate)
            var v = frequencies.reduce(0.0) { $0 + sin(2 * .pi * $1 * t) } / Double(frequencies.count)
            let edge = min(i, count - 1 - i)
            if edge < ramp { v *= 0.5 - 0.5 * cos(.pi * Double(edge) / Double(ramp)) }
            return Int16((v * level * 32767).rounded())
        }
    }

    static func cadence(frequencies: [Double], on: Duration, off: Duration, duration: Duration,
                        sampleRate: Int, level: Double) -> AudioClip {
        let period = burst(frequencies: frequencies, count: samples(on, sampleRate), sampleRate: sampleRate, level: level)
            + [Int16](repeating: 0, count: samples(off, sampleRate))
        let total = samples(duration, sampleRate)
        var out: [Int16] = []
        out.reserveCapacity(total)
        while out.count < total { out += period.prefix(total - out.count) }
        return AudioClip(sampleRate: sampleRate, samples: out)
    }
}
