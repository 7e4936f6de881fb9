import BeeldzorgConfig
import Control
import Devices
import Foundation
import Logging
import ServiceLifecycle
import Store
import Synchronization

/// Owns the tablet's playback and capture levels: one level for prompts, ringing and calls
/// alike (they all play through the same PCM, so one mixer element governs them all), kept
/// in the store (settings `volume.playback`, `volume.capture`, `volume.source`), set from the
/// organisation's provisioning (settings `volume`, `capture_volume` in the document) or by a
/// technician (`beeldzorgctl volume`), always within `audio.volume_floor`…`volume_ceiling`.
/// Every 10 s it reads the mixer back and sets it again if anything else changed or muted it,
/// and takes a new provisioned level (the last of the organisation and the technician wins).
final class VolumeService: Service, Sendable {
    static let playbackKey = "volume.playback"
    static let captureKey = "volume.capture"
    static let sourceKey = "volume.source"
    /// The provisioned values last taken, so that a technician's level stands until the
    /// organisation changes the client's level.
    static let provisionedKey = "volume.provisioned"

    private let mixer: (any VolumeMixer)?
    private let limits: VolumeLimits
    private let defaults: MixerLevels
    private let store: BeeldzorgStore
    private let logger: Logger
    private let lastProblem = Mutex<String?>(nil)
    private let interval: Duration

    init(configuration: Configuration.Audio, store: BeeldzorgStore, logger: Logger, interval: Duration = .seconds(10),
         mixer: (any VolumeMixer)? = nil) {
        // `playback: null` (tests, a tablet without a speaker) has no card to set unless a
        // mixer is named.
        let managed = (configuration.playbackMixer != nil || configuration.captureMixer != nil)
            && (configuration.mixer != nil || configuration.playback != "null")
        self.mixer = mixer ?? (managed
            ? AlsaMixer(device: configuration.mixerDevice, playbackElement: configuration.playbackMixer,
                        captureElement: configuration.captureMixer, logger: logger)
            : nil)
        self.limits = VolumeLimits(floor: configuration.volumeFloor, ceiling: configuration.volumeCeiling)
        self.defaults = MixerLevels(playback: configuration.volume, capture: configuration.captureVolume)
        self.store = store
        self.logger = logger
        self.interval = interval
    }

    /// The kept levels (clamped) and where they came from.
    func kept() -> (levels: MixerLevels, source: String) {
        let settings = (try? store.allSettings()) ?? [:]
        let playback = settings[Self.playbackKey].flatMap(Int.init) ?? defaults.playback ?? limits.ceiling
        let capture = settings[Self.captureKey].flatMap(Int.init) ?? defaults.capture ?? limits.ceiling
        return (limits.clamp(MixerLevels(playback: playback, capture: capture)), settings[Self.sourceKey] ?? "configuration")
    }

    /// Keeps `levels` (clamped; nil leaves one as it is) and sets them on the mixer.
    @discardableResult
    func set(_ levels: MixerLevels, source: String) throws -> MixerLevels {
        let current = kept().levels
        let wanted = limits.clamp(MixerLevels(playback: levels.playback ?? current.playback,
                                              capture: levels.capture ?? current.capture))
        if levels.playback.map(limits.clamp) != levels.playback || levels.capture.map(limits.clamp) != levels.capture {
            logger.notice("volume outside the limits held at them", metadata: [
                "floor": "\(limits.floor)", "ceiling": "\(limits.ceiling)", "source": "\(source)",
            ])
        }
        try store.setSetting(Self.playbackKey, to: wanted.playback.map(String.init))
        try store.setSetting(Self.captureKey, to: wanted.capture.map(String.init))
        try store.setSetting(Self.sourceKey, to: source)
        logger.info("volume set", metadata: [
            "playback": "\(wanted.playback ?? 0)", "capture": "\(wanted.capture ?? 0)", "source": "\(source)",
        ])
        enforce()
        return wanted
    }

    /// Sets the mixer to the kept levels if it is not there (or muted: the switches are
    /// turned on with every set).
    func enforce(force: Bool = true) {
        guard let mixer else { return }
        let wanted = kept().levels
        do {
            if !force, try mixer.levels() == wanted { return }
            try mixer.apply(wanted)
            report(nil)
        } catch {
            report("\(error)")
        }
    }

    private func report(_ problem: String?) {
        let changed = lastProblem.withLock { last -> Bool in
            defer { last = problem }
            return last != problem
        }
        guard changed else { return }
        if let problem {
            logger.error("the mixer cannot be set; levels kept for when it can", metadata: ["error": "\(problem)"])
        } else {
            logger.info("mixer levels set")
        }
    }

    /// A provisioned level the tablet has not taken yet.
    func takeProvisioned() {
        guard let settings = try? store.provisionedSettings() else { return }
        let playback = settings["volume"].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let capture = settings["capture_volume"].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard playback != nil || capture != nil else { return }
        let fingerprint = "\(playback.map(String.init) ?? "-")/\(capture.map(String.init) ?? "-")"
        guard (try? store.setting(Self.provisionedKey)) != fingerprint else { return }
        do {
            try set(MixerLevels(playback: playback, capture: capture), source: "provisioning")
            try store.setSetting(Self.provisionedKey, to: fingerprint)
        } catch {
            logger.error("provisioned volume not kept", metadata: ["error": "\(error)"])
        }
    }

    func run() async throws {
        takeProvisioned()
        enforce()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: self.interval)
                if Task.isCancelled { break }
                self.takeProvisioned()
                self.enforce(force: false)
            }
        }
    }

    /// `volume` on the control socket: without levels shows them, with levels sets them.
    func control(_ request: ControlRequest) -> ControlResponse {
        do {
            if request.level != nil || request.captureLevel != nil {
                for level in [request.level, request.captureLevel].compactMap({ $0 }) where !(0...100).contains(level) {
                    return .failure(ControlError(.badArgument, "a level is 0…100 percent, got \(level)"))
                }
                try set(MixerLevels(playback: request.level, capture: request.captureLevel), source: "technician")
            }
            let (levels, source) = kept()
            var problem: String?
            var read = MixerLevels()
            if let mixer {
                do { read = try mixer.levels() } catch { problem = "\(error)" }
            } else {
                problem = "no mixer element configured (audio.playback_mixer, audio.capture_mixer)"
            }
            return try .success(VolumeReport(playback: levels.playback ?? 0, capture: levels.capture ?? 0,
                                             mixerPlayback: read.playback, mixerCapture: read.capture,
                                             floor: limits.floor, ceiling: limits.ceiling, source: source, problem: problem))
        } catch let error as ControlError {
            return .failure(error)
        } catch {
            return .failure(ControlError(.internal, "\(error)"))
        }
    }
}
