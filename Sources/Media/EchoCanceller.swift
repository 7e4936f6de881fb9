// The one file that imports the echo canceller (webrtc-audio-processing through the
// extern "C" face in Sources/CEchoCanceller). 48 kHz mono S16, 10 ms frames.
private import CEchoCanceller
import Synchronization

/// Which parts of webrtc-audio-processing run on what the microphone sends (configuration
/// `audio.echo_cancellation` and `media.voice.*`). All on by default: nobody wears a headset,
/// and clients speak softly or from across the room, often with a television on.
public struct VoiceProcessing: Sendable, Equatable {
    /// Removes the speaker's echo (needs the far end through `render`).
    public var echoCancellation: Bool
    /// Adaptive digital gain control: soft speech is raised towards -3 dBFS, loud speech is
    /// left alone (limiter on). Digital, because the tablet has no analogue microphone gain
    /// the library could steer.
    public var gainControl: Bool
    /// Stationary noise (fans, a fridge, hiss) suppressed, moderately.
    public var noiseSuppression: Bool
    /// Removes hum and rumble below about 80 Hz (mains hum, a table knocked).
    public var highPassFilter: Bool

    public init(echoCancellation: Bool = true, gainControl: Bool = true, noiseSuppression: Bool = true,
                highPassFilter: Bool = true) {
        self.echoCancellation = echoCancellation
        self.gainControl = gainControl
        self.noiseSuppression = noiseSuppression
        self.highPassFilter = highPassFilter
    }

    /// Everything off: the microphone is sent as it is, and no processor is created.
    public static let none = VoiceProcessing(echoCancellation: false, gainControl: false, noiseSuppression: false,
                                             highPassFilter: false)

    /// The echo canceller alone (what the echo figures and tests measure).
    public static let echoCancellationOnly = VoiceProcessing(gainControl: false, noiseSuppression: false, highPassFilter: false)

    /// Whether anything runs at all.
    public var isActive: Bool { echoCancellation || gainControl || noiseSuppression || highPassFilter }
}

/// Acoustic echo cancellation between what the speaker plays (the far end, `render`) and
/// what the microphone hears (`capture`), so the post does not hear itself back from the
/// tablet's loudspeaker. Frames may be any whole number of 10 ms blocks (a 20 ms Opus frame
/// is two). Render and capture come from different threads; calls are serialised here, so
/// the C state is only ever touched under `lock`. Gain control, noise suppression and the
/// high-pass filter run in the same `capture` call, as `VoiceProcessing` says.
public final class EchoCanceller: @unchecked Sendable {
    public enum Suppression: Int32, Sendable {
        case low = 0, moderate = 1, high = 2
    }

    /// The canceller's own figures, in dB (nil until it has measured something).
    public struct Metrics: Sendable, Equatable {
        /// Echo return loss enhancement: how much the echo was reduced, last block and average.
        public var erle: Int?
        public var erleAverage: Int?
        /// Echo return loss: how much quieter the echo is than the far end before cancelling.
        public var echoReturnLoss: Int?
        /// The delay the canceller estimated between render and capture, in ms.
        public var delayMilliseconds: Int?
        public var hasEcho: Bool
    }

    /// Speaker-to-microphone delay the canceller is told when nothing better is known: an
    /// ALSA period or two each way. In delay-agnostic mode (the default) this is only a hint.
    public static let defaultDelayMilliseconds = 40

    public let sampleRate: Int
    public let voice: VoiceProcessing
    /// Samples in one 10 ms block.
    public let blockSamples: Int
    private let lock = Mutex<Void>(())
    private let canceller: OpaquePointer

    /// `extendedFilter` (the default, as shipped) lets the adaptive filter cover 128 ms of echo
    /// tail instead of 48 ms: in a reverberant room it removes much more echo for about
    /// 0.1 CPU s per call-minute (`media-benchmark --room`).
    public init(sampleRate: Int = 48_000, suppression: Suppression = .moderate, delayAgnostic: Bool = true,
                extendedFilter: Bool = true, voice: VoiceProcessing = VoiceProcessing()) throws {
        var options = bz_voice_options(echo_cancellation: voice.echoCancellation ? 1 : 0, gain_control: voice.gainControl ? 1 : 0,
                                       noise_suppression: voice.noiseSuppression ? 1 : 0,
                                       high_pass_filter: voice.highPassFilter ? 1 : 0)
        guard let canceller = bz_voice_processor_create(Int32(sampleRate), suppression.rawValue, delayAgnostic ? 1 : 0,
                                                        extendedFilter ? 1 : 0, &options) else {
            throw MediaError.echoCanceller("webrtc-audio-processing refused \(sampleRate) Hz mono with \(suppression) suppression and \(voice)")
        }
        self.voice = voice
        self.canceller = canceller
        self.sampleRate = sampleRate
        self.blockSamples = Int(bz_echo_canceller_frame_samples(canceller))
    }

    deinit { bz_echo_canceller_destroy(canceller) }

    /// Tells the canceller what is about to be played. `samples.count` must be a multiple of
    /// `blockSamples`.
    public func render(_ samples: [Int16]) throws {
        try checkLength(samples.count)
        try lock.withLock { _ in
            try samples.withUnsafeBufferPointer { buffer in
                for start in stride(from: 0, to: buffer.count, by: blockSamples) {
                    try check(bz_echo_canceller_render(canceller, buffer.baseAddress! + start), "render")
                }
            }
        }
    }

    /// Removes the echo of what was rendered from a microphone frame, in place.
    /// `samples.count` must be a multiple of `blockSamples`.
    public func capture(_ samples: inout [Int16], delayMilliseconds: Int = EchoCanceller.defaultDelayMilliseconds) throws {
        try checkLength(samples.count)
        try lock.withLock { _ in
            try samples.withUnsafeMutableBufferPointer { buffer in
                for start in stride(from: 0, to: buffer.count, by: blockSamples) {
                    try check(bz_echo_canceller_capture(canceller, buffer.baseAddress! + start, Int32(delayMilliseconds)), "capture")
                }
            }
        }
    }

    public var metrics: Metrics {
        var raw = bz_echo_canceller_metrics()
        let status = lock.withLock { _ in bz_echo_canceller_get_metrics(canceller, &raw) }
        // The library reports -100 for "no figure yet".
        func figure(_ value: Int32) -> Int? { status == 0 && value > -100 ? Int(value) : nil }
        return Metrics(erle: figure(raw.erle_db), erleAverage: figure(raw.erle_average_db),
                       echoReturnLoss: figure(raw.echo_return_loss_db),
                       delayMilliseconds: status == 0 && raw.delay_median_ms >= 0 ? Int(raw.delay_median_ms) : nil,
                       hasEcho: status == 0 && raw.has_echo != 0)
    }

    private func checkLength(_ count: Int) throws {
        guard count % blockSamples == 0 else {
            throw MediaError.echoCanceller("frames must be whole 10 ms blocks of \(blockSamples) samples, got \(count)")
        }
    }

    private func check(_ status: Int32, _ what: String) throws {
        // -13 is kBadStreamParameterWarning (a delay hint out of range): processed anyway.
        guard status == 0 || status == -13 else { throw MediaError.echoCanceller("\(what) failed with error \(status)") }
    }
}
