import CallFlow
import Devices
import Foundation
import Logging
import Synchronization

/// What the client hears and sees for each of CallFlow's feedback actions: the spoken Dutch
/// prompt (text from the translators' prompt file, audio rendered by `prompts/render.sh` or at
/// run time for sentences with a name), tones, the status light, and — until the DRM screen
/// lands — the console screen.
///
/// Nothing here blocks the call flow: audio plays on the prompt player's own thread, speech
/// for a name is rendered off the controller's loop, and a missing LED or prompt file is a
/// logged fault. One player carries prompts and tones, newest first; a tone that a prompt
/// interrupted (ringback, the incoming ring) resumes when the prompt is done.
final class TabletFeedback: ClientFeedback {
    private let screen: ConsoleScreen
    private let light: (any StatusLight)?
    private let prompts: PromptLibrary?
    private let player: PromptPlayer
    private let logger: Logger
    /// The tone that should be sounding when no prompt is.
    private let currentTone = Mutex<Tone?>(nil)

    init(devices: DeviceSet, screen: ConsoleScreen, promptsDirectory: String, language: String,
         statusLED: String?, logger: Logger) {
        self.screen = screen
        self.logger = logger
        light = statusLED.map { SysfsLED(name: $0, logger: logger) }
        // The daemon starts at rest: whatever the light showed before (udev's default blink
        // when the trigger was selected, a call that a restart cut off) goes now. CallFlow
        // sets it again from here on.
        light?.show(.idle)
        player = PromptPlayer(sink: devices.makeSpeaker())
        do {
            prompts = try PromptLibrary(promptsDirectory: promptsDirectory, language: language)
        } catch {
            logger.error("prompt texts unusable; the tablet will not speak", metadata: ["error": "\(error)"])
            prompts = nil
        }
        // Every fixed prompt into memory now, off the start path: later, out of descriptors,
        // they still play (issue 15, 3). Sentences with a name are rendered when needed and,
        // if that cannot be done then, the client reads the screen instead.
        if let prompts {
            Task.detached { [logger] in
                do {
                    try prompts.warmUp()
                    logger.debug("prompts in memory", metadata: ["count": "\(prompts.fixedPromptsInMemory)"])
                } catch {
                    logger.error("some prompts could not be loaded; they are rendered when needed",
                                 metadata: ["loaded": "\(prompts.fixedPromptsInMemory)", "error": "\(error)"])
                }
            }
        }
    }

    /// A sentence for the technician when something here is broken.
    var fault: String? {
        prompts == nil ? "prompt texts could not be loaded: the tablet cannot speak" : nil
    }

    func play(_ prompt: Prompt) async {
        let key = PromptTexts.key(for: prompt)
        logger.info("prompt", metadata: ["prompt": "\(key)"])
        screen.heard(prompt)
        guard let prompts else {
            screen.say("(\(key))")
            return
        }
        let values = PromptTexts.values(for: prompt)
        do {
            screen.say(try prompts.catalog.text(key, values: values))
        } catch {
            logger.error("prompt text missing", metadata: ["prompt": "\(key)", "error": "\(error)"])
            return
        }
        Task.detached { [player, logger] in
            do {
                let clip = try prompts.clip(key, values: values)
                player.start(clip) { [weak self] result in
                    if case .failure(let error) = result {
                        logger.warning("prompt could not play", metadata: ["prompt": "\(key)", "error": "\(error)"])
                    }
                    if case .success(true) = result { self?.resumeTone() }
                }
            } catch {
                // Nothing to play (espeak-ng could not run: no descriptor, no process): the
                // sentence is on the screen already, and the call flow goes on.
                logger.error("prompt audio unavailable; shown on the screen only",
                             metadata: ["prompt": "\(key)", "error": "\(error)"])
            }
        }
    }

    func play(_ tone: Tone) async {
        logger.debug("tone", metadata: ["tone": "\(tone.rawValue)"])
        if tone == .pressAck {
            player.start(FeedbackTones.pressAck()) { [weak self] result in
                if case .success(true) = result { self?.resumeTone() }
            }
            return
        }
        currentTone.withLock { $0 = tone }
        screen.note("♪ \(tone == .ringback ? "gaat over" : "belsignaal")")
        player.start(Self.clip(for: tone))
    }

    func stopTone() async {
        let wasPlaying = currentTone.withLock { tone in
            defer { tone = nil }
            return tone != nil
        }
        if wasPlaying { player.interrupt() }
    }

    private func resumeTone() {
        if let tone = currentTone.withLock({ $0 }) {
            player.start(Self.clip(for: tone))
        }
    }

    private static func clip(for tone: Tone) -> AudioClip {
        switch tone {
        case .ringback: FeedbackTones.ringback()
        case .incomingRing: FeedbackTones.incomingRing()
        case .pressAck: FeedbackTones.pressAck()
        }
    }

    func show(_ indicator: Indicator) async {
        logger.debug("indicator", metadata: ["indicator": "\(indicator.rawValue)"])
        guard let state = IndicatorState(rawValue: indicator.rawValue) else { return }
        light?.show(state)
    }

    func stateChanged(_ status: CallFlowStatus) async {
        screen.show(status: status)
    }
}
