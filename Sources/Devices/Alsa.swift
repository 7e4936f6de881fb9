// Microphone and speaker through ALSA (libasound). This is the only file that imports CALSA.
//
// Shape after baresip's alsa_src.c/alsa_play.c: S16_LE 48 kHz mono interleaved, small
// periods for low capture latency, xruns recovered with snd_pcm_recover, device loss thrown
// as DeviceError (never fatal). The PCM is opened non-blocking and waited on with
// snd_pcm_wait in short slices, so `close()` from another thread ends a blocked read promptly.

private import CALSA
import Glibc
public import Logging
import Synchronization

/// Which PCM to open and how to size its buffers.
public struct AlsaConfiguration: Sendable, Equatable {
    /// The ALSA PCM name ("default", "plughw:0,0", a name from `configurationText`).
    public var pcm: String
    /// Optional private ALSA configuration in which `pcm` is looked up instead of the
    /// system's (snd_config_load + snd_pcm_open_lconf; nothing process-wide changes).
    public var configurationText: String?
    public var periodTime: Duration
    public var bufferTime: Duration

    public init(pcm: String = "default", configurationText: String? = nil,
                periodTime: Duration = .milliseconds(10), bufferTime: Duration = .milliseconds(40)) {
        self.pcm = pcm
        self.configurationText = configurationText
        self.periodTime = periodTime
        self.bufferTime = bufferTime
    }

    /// Microphone default: 10 ms periods in a 40 ms buffer, so capture latency stays ≤ 40 ms.
    public static func capture(pcm: String = "default") -> AlsaConfiguration {
        AlsaConfiguration(pcm: pcm)
    }

    /// Speaker default: 10 ms periods in a 60 ms buffer (headroom against scheduling hiccups).
    public static func playback(pcm: String = "default") -> AlsaConfiguration {
        AlsaConfiguration(pcm: pcm, bufferTime: .milliseconds(60))
    }
}

/// The microphone: reads exactly `frameSamples` samples per call.
public final class AlsaCapture: AudioSource {
    private let pcm: AlsaPCM

    public init(configuration: AlsaConfiguration = .capture(), logger: Logger = Logger(label: "beeldzorg.devices.alsa.capture")) {
        pcm = AlsaPCM(configuration: configuration, capture: true, logger: logger)
    }

    public func open(_ format: AudioFormat) throws { try pcm.open(format) }
    public func read() throws -> [Int16] { try pcm.read() }
    public func close() { pcm.close(drain: false) }
    /// Overruns recovered since `open` (for diagnostics).
    public var xruns: Int { pcm.xruns }
    /// The period and buffer sizes ALSA granted, in frames.
    public var granted: (period: Int, buffer: Int) { pcm.granted }
}

/// The speaker.
public final class AlsaPlayback: AudioSink {
    private let pcm: AlsaPCM

    public init(configuration: AlsaConfiguration = .playback(), logger: Logger = Logger(label: "beeldzorg.devices.alsa.playback")) {
        pcm = AlsaPCM(configuration: configuration, capture: false, logger: logger)
    }

    public func open(_ format: AudioFormat) throws { try pcm.open(format) }
    public func write(_ samples: [Int16]) throws { try pcm.write(samples) }
    /// Plays out what is buffered (at most the buffer time), then closes.
    public func close() { pcm.close(drain: true) }
    /// Underruns recovered since `open` (for diagnostics).
    public var xruns: Int { pcm.xruns }
    public var granted: (period: Int, buffer: Int) { pcm.granted }
}

private final class AlsaPCM: @unchecked Sendable {
    let configuration: AlsaConfiguration
    let capture: Bool
    let logger: Logger
    /// Guards `handle` and the format; held for a whole read/write so close waits for it.
    private let io = Mutex<State>(State())
    private let closing = Atomic<Bool>(false)
    private let xrunCount = Atomic<Int>(0)
    private let grantedSizes = Mutex<(period: Int, buffer: Int)>((0, 0))

    struct State {
        var handle: OpaquePointer?
        var format = AudioFormat()
    }

    init(configuration: AlsaConfiguration, capture: Bool, logger: Logger) {
        self.configuration = configuration
        self.capture = capture
        self.logger = logger
    }

    var xruns: Int { xrunCount.load(ordering: .relaxed) }
    var granted: (period: Int, buffer: Int) { grantedSizes.withLock { $0 } }
    private var device: String { "ALSA \(capture ? "capture" : "playback") \(configuration.pcm)" }

    private func failure(_ call: String, _ err: Int32, kind: DeviceError.Kind? = nil) -> DeviceError {
        let message = "\(call): \(String(cString: snd_strerror(err)))"
        logger.error("\(device): \(message)")
        let inferred: DeviceError.Kind
        switch -err {
        case ENOENT, ENXIO: inferred = .notFound
        case EBUSY: inferred = .busy
        case ENODEV, EBADFD, ENOTTY, EIO: inferred = .vanished
        case EINVAL: inferred = .unsupported
        default: inferred = .io
        }
        return DeviceError(kind ?? inferred, device: device, detail: message)
    }

    func open(_ format: AudioFormat) throws(DeviceError) {
        try io.withLock { (state: inout State) throws(DeviceError) in
            if state.handle != nil { closeHandle(&state, drain: false) }
            closing.store(false, ordering: .relaxed)
            xrunCount.store(0, ordering: .relaxed)
            state.handle = try openHandle(format)
            state.format = format
        }
    }

    private func openHandle(_ format: AudioFormat) throws(DeviceError) -> OpaquePointer {
        var handle: OpaquePointer?
        let stream = capture ? SND_PCM_STREAM_CAPTURE : SND_PCM_STREAM_PLAYBACK
        let mode = calsa_nonblock_mode()
        var err: Int32
        if let text = configuration.configurationText {
            var config: OpaquePointer?
            err = text.withCString { calsa_config_from_text($0, strlen($0), &config) }
            guard err >= 0, let config else { throw failure("snd_config_load", err, kind: .unsupported) }
            defer { snd_config_delete(config) }
            err = snd_pcm_open_lconf(&handle, configuration.pcm, stream, mode, config)
        } else {
            err = snd_pcm_open(&handle, configuration.pcm, stream, mode)
        }
        guard err >= 0, let handle else { throw failure("snd_pcm_open", err) }
        do {
            try configure(handle, format)
        } catch {
            snd_pcm_close(handle)
            throw error
        }
        return handle
    }

    private func configure(_ pcm: OpaquePointer, _ format: AudioFormat) throws(DeviceError) {
        var hwp: OpaquePointer?
        guard snd_pcm_hw_params_malloc(&hwp) >= 0, let hw = hwp else { throw failure("snd_pcm_hw_params_malloc", -ENOMEM) }
        defer { snd_pcm_hw_params_free(hw) }
        func check(_ call: String, _ err: Int32) throws(DeviceError) {
            if err < 0 { throw failure(call, err) }
        }
        try check("snd_pcm_hw_params_any", snd_pcm_hw_params_any(pcm, hw))
        try check("snd_pcm_hw_params_set_access", snd_pcm_hw_params_set_access(pcm, hw, SND_PCM_ACCESS_RW_INTERLEAVED))
        try check("snd_pcm_hw_params_set_format S16_LE", snd_pcm_hw_params_set_format(pcm, hw, SND_PCM_FORMAT_S16_LE))
        try check("snd_pcm_hw_params_set_channels \(format.channels)", snd_pcm_hw_params_set_channels(pcm, hw, UInt32(format.channels)))
        try check("snd_pcm_hw_params_set_rate \(format.sampleRate)", snd_pcm_hw_params_set_rate(pcm, hw, UInt32(format.sampleRate), 0))
        var period = UInt32(configuration.periodTime.milliseconds * 1000)
        var dir: Int32 = 0
        try check("snd_pcm_hw_params_set_period_time_near", snd_pcm_hw_params_set_period_time_near(pcm, hw, &period, &dir))
        var buffer = UInt32(configuration.bufferTime.milliseconds * 1000)
        dir = 0
        try check("snd_pcm_hw_params_set_buffer_time_near", snd_pcm_hw_params_set_buffer_time_near(pcm, hw, &buffer, &dir))
        try check("snd_pcm_hw_params", snd_pcm_hw_params(pcm, hw))

        var periodFrames: snd_pcm_uframes_t = 0
        var bufferFrames: snd_pcm_uframes_t = 0
        dir = 0
        _ = snd_pcm_hw_params_get_period_size(hw, &periodFrames, &dir)
        _ = snd_pcm_hw_params_get_buffer_size(hw, &bufferFrames)
        grantedSizes.withLock { $0 = (Int(periodFrames), Int(bufferFrames)) }

        var swp: OpaquePointer?
        guard snd_pcm_sw_params_malloc(&swp) >= 0, let sw = swp else { throw failure("snd_pcm_sw_params_malloc", -ENOMEM) }
        defer { snd_pcm_sw_params_free(sw) }
        try check("snd_pcm_sw_params_current", snd_pcm_sw_params_current(pcm, sw))
        try check("snd_pcm_sw_params_set_avail_min", snd_pcm_sw_params_set_avail_min(pcm, sw, periodFrames))
        // Capture starts with the first read; playback once two periods are queued, so a
        // prompt starts quickly but not on a single period that would underrun at once.
        let start = capture ? 1 : min(periodFrames * 2, bufferFrames)
        try check("snd_pcm_sw_params_set_start_threshold", snd_pcm_sw_params_set_start_threshold(pcm, sw, start))
        try check("snd_pcm_sw_params", snd_pcm_sw_params(pcm, sw))
        try check("snd_pcm_prepare", snd_pcm_prepare(pcm))
    }

    /// Handles a negative result from readi/writei/wait: recovers xruns and suspends,
    /// throws on anything that means the device is gone.
    private func recover(_ pcm: OpaquePointer, _ err: Int32, _ call: String) throws(DeviceError) {
        if err == -EAGAIN || err == -EINTR { return }
        if err == -EPIPE || err == -ESTRPIPE {
            xrunCount.add(1, ordering: .relaxed)
            logger.warning("\(device): \(call): \(String(cString: snd_strerror(err))); recovering")
        }
        let rc = snd_pcm_recover(pcm, err, 1)
        if rc < 0 { throw failure(call, err) }
        if err != -EPIPE && err != -ESTRPIPE {
            logger.warning("\(device): \(call): \(String(cString: snd_strerror(err))); recovered")
        }
    }

    /// Waits up to 100 ms for the PCM; false when the caller should look at `closing`.
    private func wait(_ pcm: OpaquePointer) throws(DeviceError) {
        let rc = snd_pcm_wait(pcm, 100)
        if rc < 0 { try recover(pcm, rc, "snd_pcm_wait") }
    }

    func read() throws(DeviceError) -> [Int16] {
        try io.withLock { (state: inout State) throws(DeviceError) -> [Int16] in
            guard let pcm = state.handle else { throw DeviceError(.io, device: device, detail: "not open") }
            let channels = state.format.channels
            let frames = state.format.frameSamples
            var out = [Int16](repeating: 0, count: frames * channels)
            var got = 0
            while got < frames {
                if closing.load(ordering: .relaxed) { throw DeviceError(.io, device: device, detail: "closed") }
                let n = out.withUnsafeMutableBufferPointer { buf in
                    snd_pcm_readi(pcm, buf.baseAddress! + got * channels, snd_pcm_uframes_t(frames - got))
                }
                if n > 0 {
                    got += n
                } else if n == -Int(EAGAIN) || n == 0 {
                    try wait(pcm)
                } else {
                    try recover(pcm, Int32(n), "snd_pcm_readi")
                }
            }
            return out
        }
    }

    func write(_ samples: [Int16]) throws(DeviceError) {
        try io.withLock { (state: inout State) throws(DeviceError) in
            guard let pcm = state.handle else { throw DeviceError(.io, device: device, detail: "not open") }
            let channels = state.format.channels
            let frames = samples.count / channels
            var done = 0
            while done < frames {
                if closing.load(ordering: .relaxed) { throw DeviceError(.io, device: device, detail: "closed") }
                let n = samples.withUnsafeBufferPointer { buf in
                    snd_pcm_writei(pcm, buf.baseAddress! + done * channels, snd_pcm_uframes_t(frames - done))
                }
                if n > 0 {
                    done += n
                } else if n == -Int(EAGAIN) || n == 0 {
                    try wait(pcm)
                } else {
                    try recover(pcm, Int32(n), "snd_pcm_writei")
                }
            }
        }
    }

    func close(drain: Bool) {
        closing.store(true, ordering: .relaxed)
        io.withLock { state in closeHandle(&state, drain: drain) }
    }

    private func closeHandle(_ state: inout State, drain: Bool) {
        guard let pcm = state.handle else { return }
        let current = snd_pcm_state(pcm)
        if drain && (current == SND_PCM_STATE_RUNNING || current == SND_PCM_STATE_PREPARED) {
            // Non-blocking drain returns -EAGAIN; switch to blocking for the last few periods.
            // (A prepared stream with fewer frames than the start threshold is started by drain.)
            _ = snd_pcm_nonblock(pcm, 0)
            let err = snd_pcm_drain(pcm)
            if err < 0 { logger.warning("\(device): snd_pcm_drain: \(String(cString: snd_strerror(err)))") }
        } else {
            _ = snd_pcm_drop(pcm)
        }
        snd_pcm_close(pcm)
        state.handle = nil
    }
}
