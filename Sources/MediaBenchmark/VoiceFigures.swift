// media-benchmark --voice: what gain control, noise suppression and the high-pass filter do
// to recorded (synthesised) Dutch speech, and what they cost.
import Devices
import Foundation
import Media

/// RMS level in dBFS (0 dBFS = RMS of a full-scale square wave).
private func dBFS(_ samples: some Collection<Int16>) -> Double {
    let squares = samples.reduce(0.0) { $0 + Double($1) * Double($1) }
    return 10 * log10(max(squares / Double(max(1, samples.count)), 1e-9) / (32_768.0 * 32_768.0))
}

private func scaled(_ samples: [Int16], to level: Double) -> [Int16] {
    let factor = pow(10, (level - dBFS(samples)) / 20)
    return samples.map { Int16(clamping: Int((Double($0) * factor).rounded())) }
}

/// The microphone's audio through one processor in 20 ms frames (far end silent), and the
/// thread's CPU seconds spent in the processor.
private func process(_ input: [Int16], _ voice: VoiceProcessing) throws -> (output: [Int16], cpu: Double) {
    let processor = try EchoCanceller(voice: voice)
    let frame = audioFrameSamples
    let silence = [Int16](repeating: 0, count: frame)
    var output: [Int16] = []
    output.reserveCapacity(input.count)
    var cpu = 0.0
    for start in stride(from: 0, to: input.count - frame + 1, by: frame) {
        var samples = Array(input[start..<(start + frame)])
        let before = threadCPUTime()
        try processor.render(silence)
        try processor.capture(&samples)
        cpu += threadCPUTime() - before
        output += samples
    }
    return (output, cpu)
}

func voiceFigures() throws {
    let sentence = "Hallo, met mevrouw de Vries. Ik ben gevallen in de keuken en ik kan niet meer opstaan. "
        + "Kunt u iemand sturen? Mijn dochter is vandaag niet thuis, ze komt pas morgen terug. "
        + "De deur is op slot, maar de buurvrouw heeft een sleutel."
    // Three times the sentence (about a minute), so the figures are for a call, not a start-up.
    let one = try SpeechRenderer().render(sentence).samples
    let speech = one + one + one
    let seconds = Double(speech.count) / 48_000
    // Stationary noise (a fan) at -50 dBFS and 50 Hz mains hum at -40 dBFS under the voice.
    var state: UInt64 = 3
    let noise = (0..<speech.count).map { index -> Double in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        let white = Double(Int(state >> 33) % 2_001 - 1_000) / 1_000
        return white * 32_768 * pow(10, -50.0 / 20) * sqrt(3) + sin(2 * .pi * 50 * Double(index) / 48_000) * 32_768 * pow(10, -40.0 / 20) * sqrt(2)
    }
    let settings: [(String, VoiceProcessing)] = [
        ("nothing", .none),
        ("AGC", VoiceProcessing(echoCancellation: false, gainControl: true, noiseSuppression: false, highPassFilter: false)),
        ("AGC+NS+HPF", VoiceProcessing(echoCancellation: false)),
        ("AEC only", .echoCancellationOnly),
        ("AEC+AGC+NS+HPF (shipped)", VoiceProcessing()),
    ]
    print(String(format: "Voice processing on %.0f s of espeak-ng Dutch speech, 48 kHz mono, 20 ms frames; levels are RMS dBFS over the last 20 s:", seconds))
    let tail = 20 * 48_000
    for (name, level) in [("soft (across the room)", -40.0), ("loud (close to the tablet)", -12.0)] {
        let clean = scaled(speech, to: level)
        let noisy = zip(clean, noise).map { Int16(clamping: Int((Double($0) + $1).rounded())) }
        var parts: [String] = []
        for (label, voice) in settings {
            let (out, _) = try process(noisy, voice)
            parts.append(String(format: "%@ %.1f", label, dBFS(out.suffix(tail))))
        }
        print(String(format: "  %@ speech at %.1f dBFS with a fan at -50 and hum at -40 (%.1f dBFS in all) → ", name, dBFS(clean.suffix(tail)),
                     dBFS(noisy.suffix(tail))) + parts.joined(separator: ", "))
    }
    // What noise suppression and the high-pass filter leave of the noise and hum in pauses:
    // the same noise without speech.
    let pausesOnly = noise.map { Int16(clamping: Int($0.rounded())) }
    var parts: [String] = []
    for (label, voice) in settings {
        let (out, _) = try process(pausesOnly, voice)
        parts.append(String(format: "%@ %.1f", label, dBFS(out.suffix(tail))))
    }
    print(String(format: "  fan + hum alone (%.1f dBFS) → ", dBFS(pausesOnly.suffix(tail))) + parts.joined(separator: ", "))
    var costs: [String] = []
    let loud = zip(scaled(speech, to: -20), noise).map { Int16(clamping: Int((Double($0) + $1).rounded())) }
    for (label, voice) in settings where voice.isActive {
        let (_, cpu) = try process(loud, voice)
        costs.append(String(format: "%@ %.2f", label, cpu / seconds * 60))
    }
    print("  CPU s per call-minute (one thread, render + capture): nothing 0 (no processor), " + costs.joined(separator: ", "))
}
