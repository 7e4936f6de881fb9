import CallFlow
import Devices
import Foundation
import Logging

/// What the client hears and sees for each of CallFlow's feedback actions: the spoken
/// Dutch prompt (text from the translators' prompt file), tones, the status light, and —
/// until the DRM screen lands — the console screen. Nothing here may block the call flow:
/// audio is played on its own task and a missing LED or prompt file is a logged fault.
final class TabletFeedback: ClientFeedback {
    private let devices: DeviceSet
    private let screen: ConsoleScreen
    private let light: (any StatusLight)?
    private let prompts: PromptLibrary?
    private let logger: Logger

    init(devices: DeviceSet, screen: ConsoleScreen, promptsDirectory: String, language: String,
         statusLED: String?, logger: Logger) {
        self.devices = devices
        self.screen = screen
        self.logger = logger
        light = statusLED.map { SysfsLED(name: $0, logger: logger) }
        do {
            let catalog = try PromptCatalog(contentsOf: "\(promptsDirectory)/\(language).txt")
            prompts = PromptLibrary(catalog: catalog, wavDirectory: promptsDirectory)
        } catch {
            logger.error("prompt texts unusable; the tablet will not speak", metadata: ["error": "\(error)"])
            prompts = nil
        }
    }

    /// A sentence for the technician when something here is broken.
    var fault: String? {
        prompts == nil ? "prompt texts could not be loaded: the tablet cannot speak" : nil
    }

    func play(_ prompt: Prompt) async {
        let key = PromptTexts.key(for: prompt)
        logger.info("prompt", metadata: ["prompt": "\(key)"])
        guard let prompts else {
            screen.say("(\(key))")
            return
        }
        do {
            screen.say(try prompts.catalog.text(key, values: PromptTexts.values(for: prompt)))
        } catch {
            logger.error("prompt text missing", metadata: ["prompt": "\(key)", "error": "\(error)"])
        }
    }

    func play(_ tone: Tone) async {
        logger.debug("tone", metadata: ["tone": "\(tone.rawValue)"])
        if tone != .pressAck { screen.note("♪ \(tone.rawValue)") }
    }

    func stopTone() async {}

    func show(_ indicator: Indicator) async {
        logger.debug("indicator", metadata: ["indicator": "\(indicator.rawValue)"])
        guard let state = IndicatorState(rawValue: indicator.rawValue) else { return }
        light?.show(state)
    }

    func stateChanged(_ status: CallFlowStatus) async {
        screen.show(status: status)
    }
}
