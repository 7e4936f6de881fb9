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

// MARK: The mixer (simple mixer API, snd_mixer_selem_*)

/// Playback and capture levels in percent of each element's range, as amixer shows them
/// (linear in the element's raw range); nil where no element is managed or found. Read from
/// a mixer, an element whose switch is off (muted) reads 0: that is what the client hears.
public struct MixerLevels: Sendable, Equatable, Codable {
    public var playback: Int?
    public var capture: Int?
    public init(playback: Int? = nil, capture: Int? = nil) {
        self.playback = playback
        self.capture = capture
    }
}

/// Something that holds the tablet's playback and capture levels (the ALSA mixer, or a
/// stand-in in tests).
public protocol VolumeMixer: Sendable {
    /// The levels now, read from the mixer.
    func levels() throws(DeviceError) -> MixerLevels
    /// Sets the given levels (nil leaves one alone) and turns the element's switch on where
    /// it has one, so nothing is left muted.
    func apply(_ levels: MixerLevels) throws(DeviceError)
}

/// The ALSA simple mixer: one element for the speaker (`playbackElement`, e.g. "Master") and
/// one for the microphone (`captureElement`, e.g. "Capture") on the control device `device`
/// ("default", "hw:0", "pulse"). The mixer is opened for each call and closed again: levels
/// change rarely, and a card that went away and came back is simply found again.
public final class AlsaMixer: VolumeMixer {
    public let device: String
    public let playbackElement: String?
    public let captureElement: String?
    /// Optional private ALSA configuration in which `device` is looked up (as for PCMs).
    public let configurationText: String?
    private let logger: Logger

    public init(device: String, playbackElement: String?, captureElement: String?, configurationText: String? = nil,
                logger: Logger = Logger(label: "beeldzorg.devices.alsa.mixer")) {
        self.device = device
        self.playbackElement = playbackElement
        self.captureElement = captureElement
        self.configurationText = configurationText
        self.logger = logger
    }

    private var name: String { "ALSA mixer \(device)" }

    private func failure(_ call: String, _ err: Int32) -> DeviceError {
        let message = "\(call): \(String(cString: snd_strerror(err)))"
        // Debug only: the daemon retries every 10 s and logs a failure once, when it changes.
        logger.debug("\(name): \(message)")
        let kind: DeviceError.Kind
        switch -err {
        case ENOENT, ENXIO: kind = .notFound
        case EBUSY: kind = .busy
        case ENODEV, EBADFD, EIO: kind = .vanished
        case EINVAL: kind = .unsupported
        default: kind = .io
        }
        return DeviceError(kind, device: name, detail: message)
    }

    /// Opens the mixer, loads its elements, runs `body`, closes it.
    private func withMixer<T>(_ body: (OpaquePointer) throws(DeviceError) -> T) throws(DeviceError) -> T {
        var mixerPointer: OpaquePointer?
        var err = snd_mixer_open(&mixerPointer, 0)
        guard err >= 0, let mixer = mixerPointer else { throw failure("snd_mixer_open", err) }
        defer { snd_mixer_close(mixer) }
        if let text = configurationText {
            var config: OpaquePointer?
            err = text.withCString { calsa_config_from_text($0, strlen($0), &config) }
            guard err >= 0, let config else { throw failure("snd_config_load", err) }
            defer { snd_config_delete(config) }
            var ctl: OpaquePointer?
            err = snd_ctl_open_lconf(&ctl, device, 0, config)
            guard err >= 0, let ctl else { throw failure("snd_ctl_open \(device)", err) }
            var hctl: OpaquePointer?
            err = snd_hctl_open_ctl(&hctl, ctl)
            guard err >= 0, let hctl else {
                snd_ctl_close(ctl)
                throw failure("snd_hctl_open_ctl", err)
            }
            err = snd_mixer_attach_hctl(mixer, hctl)  // the mixer closes it
            guard err >= 0 else { throw failure("snd_mixer_attach_hctl", err) }
        } else {
            err = snd_mixer_attach(mixer, device)
            guard err >= 0 else { throw failure("snd_mixer_attach \(device)", err) }
        }
        err = snd_mixer_selem_register(mixer, nil, nil)
        guard err >= 0 else { throw failure("snd_mixer_selem_register", err) }
        err = snd_mixer_load(mixer)
        guard err >= 0 else { throw failure("snd_mixer_load", err) }
        return try body(mixer)
    }

    private func element(_ mixer: OpaquePointer, _ elementName: String) throws(DeviceError) -> OpaquePointer {
        var idPointer: OpaquePointer?
        guard snd_mixer_selem_id_malloc(&idPointer) >= 0, let id = idPointer else { throw failure("snd_mixer_selem_id_malloc", -ENOMEM) }
        defer { snd_mixer_selem_id_free(id) }
        snd_mixer_selem_id_set_index(id, 0)
        snd_mixer_selem_id_set_name(id, elementName)
        guard let element = snd_mixer_find_selem(mixer, id) else {
            let error = DeviceError(.notFound, device: name, detail: "no simple mixer element '\(elementName)'")
            logger.debug("\(name): no simple mixer element '\(elementName)'")
            throw error
        }
        return element
    }

    private static func percent(_ raw: Int, _ low: Int, _ high: Int) -> Int {
        high > low ? Int((Double(raw - low) * 100 / Double(high - low)).rounded()) : 0
    }

    private static func raw(_ percent: Int, _ low: Int, _ high: Int) -> Int {
        low + Int((Double(max(0, min(100, percent))) * Double(high - low) / 100).rounded())
    }

    public func levels() throws(DeviceError) -> MixerLevels {
        try withMixer { (mixer) throws(DeviceError) -> MixerLevels in
            var result = MixerLevels()
            if let playbackElement {
                let element = try element(mixer, playbackElement)
                var low = 0, high = 0, value = 0
                guard snd_mixer_selem_has_playback_volume(element) != 0 else {
                    throw DeviceError(.unsupported, device: name, detail: "'\(playbackElement)' has no playback volume")
                }
                _ = snd_mixer_selem_get_playback_volume_range(element, &low, &high)
                let err = snd_mixer_selem_get_playback_volume(element, SND_MIXER_SCHN_FRONT_LEFT, &value)
                guard err >= 0 else { throw failure("snd_mixer_selem_get_playback_volume", err) }
                var on: Int32 = 1
                if snd_mixer_selem_has_playback_switch(element) != 0 {
                    _ = snd_mixer_selem_get_playback_switch(element, SND_MIXER_SCHN_FRONT_LEFT, &on)
                }
                result.playback = on != 0 ? Self.percent(value, low, high) : 0
            }
            if let captureElement {
                let element = try element(mixer, captureElement)
                var low = 0, high = 0, value = 0
                guard snd_mixer_selem_has_capture_volume(element) != 0 else {
                    throw DeviceError(.unsupported, device: name, detail: "'\(captureElement)' has no capture volume")
                }
                _ = snd_mixer_selem_get_capture_volume_range(element, &low, &high)
                let err = snd_mixer_selem_get_capture_volume(element, SND_MIXER_SCHN_FRONT_LEFT, &value)
                guard err >= 0 else { throw failure("snd_mixer_selem_get_capture_volume", err) }
                var on: Int32 = 1
                if snd_mixer_selem_has_capture_switch(element) != 0 {
                    _ = snd_mixer_selem_get_capture_switch(element, SND_MIXER_SCHN_FRONT_LEFT, &on)
                }
                result.capture = on != 0 ? Self.percent(value, low, high) : 0
            }
            return result
        }
    }

    public func apply(_ levels: MixerLevels) throws(DeviceError) {
        try withMixer { (mixer) throws(DeviceError) in
            if let level = levels.playback, let playbackElement {
                let element = try element(mixer, playbackElement)
                var low = 0, high = 0
                _ = snd_mixer_selem_get_playback_volume_range(element, &low, &high)
                var err = snd_mixer_selem_set_playback_volume_all(element, Self.raw(level, low, high))
                guard err >= 0 else { throw failure("snd_mixer_selem_set_playback_volume_all \(playbackElement)", err) }
                if snd_mixer_selem_has_playback_switch(element) != 0 {
                    err = snd_mixer_selem_set_playback_switch_all(element, 1)
                    guard err >= 0 else { throw failure("snd_mixer_selem_set_playback_switch_all \(playbackElement)", err) }
                }
            }
            if let level = levels.capture, let captureElement {
                let element = try element(mixer, captureElement)
                var low = 0, high = 0
                _ = snd_mixer_selem_get_capture_volume_range(element, &low, &high)
                var err = snd_mixer_selem_set_capture_volume_all(element, Self.raw(level, low, high))
                guard err >= 0 else { throw failure("snd_mixer_selem_set_capture_volume_all \(captureElement)", err) }
                if snd_mixer_selem_has_capture_switch(element) != 0 {
                    err = snd_mixer_selem_set_capture_switch_all(element, 1)
                    guard err >= 0 else { throw failure("snd_mixer_selem_set_capture_switch_all \(captureElement)", err) }
                }
            }
        }
    }
}

/// The range every level is kept in (`audio.volume_floor`, `audio.volume_ceiling`): a level
/// below the floor is raised to it, so no path leaves the client without sound or unheard.
public struct VolumeLimits: Sendable, Equatable {
    public var floor: Int
    public var ceiling: Int
    public init(floor: Int, ceiling: Int) {
        self.floor = floor
        self.ceiling = max(floor, ceiling)
    }
    public func clamp(_ level: Int) -> Int { max(floor, min(ceiling, level)) }
    public func clamp(_ levels: MixerLevels) -> MixerLevels {
        MixerLevels(playback: levels.playback.map(clamp), capture: levels.capture.map(clamp))
    }
}
