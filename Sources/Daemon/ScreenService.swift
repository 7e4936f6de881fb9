import BeeldzorgConfig
import CallFlow
import Control
import Devices
import Foundation
import Logging
import Screen
import ServiceLifecycle
import Store

/// The screen in the running daemon: opens the configured display, feeds `LiveScreen` with
/// CallFlow's status (through `ConsoleScreen.show`), the auto-answer countdown, the decoded
/// remote video (`DeviceSet.makeDisplay`) and the camera's frames (`DeviceSet.makeCamera`
/// wraps the call's camera), and answers `screenshot`.
///
/// With a real display, `LiveScreen` draws on its own thread. Off-screen (`offscreen`, or
/// `auto` on a machine without a display) nothing is drawn until a screenshot asks for the
/// picture, which is then rendered from exactly the same inputs — so tests and the demo do not
/// spend a core converting video nobody sees.
final class ScreenService: Service, Sendable {
    let live: LiveScreen?
    private let draws: Bool
    /// A sentence for `status` when the configured screen cannot be used.
    let fault: String?
    private let logger: Logger

    private init(live: LiveScreen?, draws: Bool, fault: String?, logger: Logger) {
        self.live = live
        self.draws = draws
        self.fault = fault
        self.logger = logger
    }

    static func make(configuration: Configuration, store: BeeldzorgStore, logger: Logger) -> ScreenService {
        let photos = URL(fileURLWithPath: configuration.databasePath).deletingLastPathComponent().appendingPathComponent("photos")
        return make(settings: configuration.screen, promptsDirectory: configuration.promptsDirectory,
                    language: configuration.language, logger: logger,
                    photo: { name in Self.photo(of: name, store: store, directory: photos.path, logger: logger) })
    }

    /// The screen from its own settings alone: also for `NeedsServiceMode`, which may have no
    /// usable configuration (and no store) at all.
    static func make(settings: Configuration.Screen, promptsDirectory: String, language: String, logger: Logger,
                     photo: @escaping @Sendable (String) -> ScreenImage? = { _ in nil }) -> ScreenService {
        guard settings.device != "none" else {
            return ScreenService(live: nil, draws: false, fault: nil, logger: logger)
        }
        let font: FontRenderer
        let texts: ScreenTexts
        do {
            font = try FontRenderer(path: settings.font)
            texts = try ScreenTexts(promptsDirectory: promptsDirectory, language: language)
        } catch {
            logger.error("screen unusable: nothing will be shown", metadata: ["error": "\(error)"])
            return ScreenService(live: nil, draws: false, fault: "screen: \(error)", logger: logger)
        }
        var output: any ScreenOutput = OffscreenOutput()
        var draws = false
        var fault: String?
        if settings.device != "offscreen" {
            do {
                output = try KernelDisplay.open(settings.device)
                draws = true
                logger.info("screen", metadata: ["output": "\(output.description)"])
            } catch {
                if settings.device == "auto" && !Self.anyDisplayNode() {
                    // A development machine or a test: no panel, screenshots still work.
                    logger.warning("no display found; the screen is drawn off-screen only", metadata: ["error": "\(error)"])
                } else {
                    // A panel is there but cannot be used (permissions, the unit's DeviceAllow,
                    // another DRM master): the client sees nothing, so it is a fault.
                    logger.error("display unusable; the screen is drawn off-screen only", metadata: ["error": "\(error)"])
                    fault = "screen: \(error)"
                }
            }
        }
        let live = LiveScreen(
            output: output, renderer: ScreenRenderer(font: font), texts: texts,
            dimAfter: settings.dimAfterSeconds > 0 ? .seconds(settings.dimAfterSeconds) : nil,
            photo: photo,
            onError: { error in logger.error("display failed", metadata: ["error": "\(error)"]) }
        )
        return ScreenService(live: live, draws: draws, fault: fault, logger: logger)
    }

    /// Whether the machine has any display node at all (`auto` without one is a test or
    /// development machine, not a broken tablet).
    private static func anyDisplayNode() -> Bool {
        let cards = (try? FileManager.default.contentsOfDirectory(atPath: "/dev/dri"))?.contains { $0.hasPrefix("card") } ?? false
        return cards || FileManager.default.fileExists(atPath: "/dev/fb0")
    }

    /// A contact's photo: `photoRef` is a PNG file, absolute or relative to `photos/` next to
    /// the database. Anything else (a URL the provisioning server has not downloaded, a JPEG)
    /// shows the name without a photo.
    private static func photo(of name: String, store: BeeldzorgStore, directory: String, logger: Logger) -> ScreenImage? {
        guard let reference = (try? store.contacts())?.first(where: { $0.displayName == name })?.photoRef,
              !reference.contains("://") else { return nil }
        let path = reference.hasPrefix("/") ? reference : directory + "/" + reference
        do {
            return try PNGCodec.read(path)
        } catch {
            logger.warning("contact photo unusable", metadata: ["path": "\(path)", "error": "\(error)"])
            return nil
        }
    }

    func run() async throws {
        if draws { live?.start() }
        try? await gracefulShutdown()
        live?.stop()
    }

    func show(status: CallFlowStatus) {
        live?.show(status: status)
    }

    /// The daemon cannot start: the screen says so from now on.
    func showNeedsService() {
        live?.showNeedsService()
    }

    func heard(_ prompt: Prompt) {
        if case .autoAnswerIn(let seconds) = prompt { live?.autoAnswer(afterSeconds: seconds) }
    }

    /// The sink for decoded remote video; frames are dropped when there is no screen.
    func remoteVideo() -> (any VideoSink)? { live?.remoteSink }

    /// The call's camera with its frames also going to the self view.
    func withSelfView(_ camera: (any CameraSource)?) -> (any CameraSource)? {
        guard let camera, let live else { return camera }
        return SelfViewCamera(camera, sink: live.selfViewSink)
    }

    func screenshot(phase: String) -> ControlResponse {
        guard let live else {
            return .failure(ControlError(.unavailable, fault ?? "the screen is switched off (screen.device: none)"))
        }
        let image = live.snapshot()
        do {
            let png = try PNGCodec.encode(image)
            guard png.count <= ScreenshotResult.maximumPNGBytes else {
                return .failure(ControlError(.tooLarge, "the screenshot is \(png.count) bytes as PNG, more than the control socket carries"))
            }
            return try .success(ScreenshotResult(width: image.width, height: image.height, output: live.output.description,
                                                 phase: phase, png: Data(png)))
        } catch {
            return .failure(ControlError(.internal, "\(error)"))
        }
    }
}
