import CallFlow
import Devices
import Foundation
import Screen
import Testing

// Every screen rendered at a fixed time into an off-screen buffer and compared with the
// reviewed PNGs in References/. To regenerate after a deliberate change (then LOOK at every
// changed PNG before committing it):
//
//   BEELDZORG_UPDATE_REFERENCES=1 swift test --filter ScreenTests.ReferenceImageTests

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let referencesDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("References").path

func loadTexts() throws -> ScreenTexts {
    try ScreenTexts(promptsDirectory: repoRoot.appendingPathComponent("prompts").path)
}

/// Monday 30 November 2026, 14:05:00 in the Netherlands (CET, UTC+1).
let fixedNow = Date(timeIntervalSince1970: 1_796_043_900)
let dutchWinter = TimeZone(secondsFromGMT: 3600)!

func testPhoto() -> ScreenImage {
    // A simple drawn "photo": a face-coloured disc on blue, so the reference shows where and
    // how big the photo goes without shipping a real person's picture.
    var photo = ScreenImage(width: 240, height: 300, fill: 0x2E_5C_8A)
    photo.fillCircle(centreX: 120, centreY: 130, radius: 80, colour: 0xE8_B8_94)
    photo.fill(Rect(x: 40, y: 230, width: 160, height: 70), with: 0x3A_3A_3A)
    return photo
}

struct Scene: Sendable, CustomStringConvertible {
    var name: String
    var status: CallFlowStatus
    var context: ScreenModel.Context
    /// The daemon's needs-service screen, which does not come from CallFlow's status.
    var needsService = false
    var description: String { name }
}

func scenes() -> [Scene] {
    let remote = TestPatternCamera.render(width: 640, height: 480, frameNumber: 0, timestamp: .zero)
    let camera = TestPatternCamera.render(width: 320, height: 240, frameNumber: 40, timestamp: .zero)
    func context(lastActivity: Date? = nil, autoAnswerAt: Date? = nil, photo: ScreenImage? = nil,
                 remote: VideoFrame? = nil, selfView: VideoFrame? = nil) -> ScreenModel.Context {
        ScreenModel.Context(now: fixedNow, timeZone: dutchWinter, lastActivity: lastActivity ?? fixedNow,
                            dimAfter: .seconds(300), autoAnswerAt: autoAnswerAt, photo: photo, remote: remote, selfView: selfView)
    }
    return [
        Scene(name: "idle", status: CallFlowStatus(phase: .idle, registered: true), context: context()),
        Scene(name: "idle-dimmed", status: CallFlowStatus(phase: .idle, registered: true),
              context: context(lastActivity: fixedNow.addingTimeInterval(-600))),
        // Issue 19: "De centrale belt u terug" only once the centrale acknowledged, with since when.
        Scene(name: "idle-callback-pending",
              status: CallFlowStatus(phase: .idle, callbackPending: true,
                                     callback: .promised(since: WallTime(secondsSince1970: fixedNow.timeIntervalSince1970 - 1500))),
              context: context()),
        Scene(name: "idle-callback-trying",
              status: CallFlowStatus(phase: .idle, callbackPending: true,
                                     callback: .trying(since: WallTime(secondsSince1970: fixedNow.timeIntervalSince1970 - 60))),
              context: context()),
        // Issue 20: contacts' calls nobody took, until the next call with them (the newest two).
        Scene(name: "idle-missed-calls",
              status: CallFlowStatus(phase: .idle, registered: true, missedCalls: [
                  MissedCallNote(name: "Anna", at: WallTime(secondsSince1970: fixedNow.timeIntervalSince1970 - 7380)),
                  MissedCallNote(name: "Marieke de Vries",
                                 at: WallTime(secondsSince1970: fixedNow.timeIntervalSince1970 - 86_400 - 3600)),
              ]),
              context: context()),
        // Both at once: missed calls below the date, the callback request above the sentence.
        Scene(name: "idle-missed-and-callback",
              status: CallFlowStatus(phase: .idle, callbackPending: true,
                                     callback: .trying(since: WallTime(secondsSince1970: fixedNow.timeIntervalSince1970 - 60)),
                                     missedCalls: [
                                         MissedCallNote(name: "Anna", at: WallTime(secondsSince1970: fixedNow.timeIntervalSince1970 - 7380)),
                                         MissedCallNote(name: "Marieke de Vries",
                                                        at: WallTime(secondsSince1970: fixedNow.timeIntervalSince1970 - 86_400 - 3600)),
                                     ]),
              context: context()),
        Scene(name: "calling", status: CallFlowStatus(phase: .callingCentrale), context: context()),
        Scene(name: "ringing-out", status: CallFlowStatus(phase: .ringingOut), context: context()),
        Scene(name: "incoming", status: CallFlowStatus(phase: .incomingRinging, peerName: "Marieke de Vries"), context: context()),
        Scene(name: "incoming-photo-countdown", status: CallFlowStatus(phase: .incomingRinging, peerName: "Jan"),
              context: context(autoAnswerAt: fixedNow.addingTimeInterval(9.2), photo: testPhoto())),
        Scene(name: "in-call", status: CallFlowStatus(phase: .inCall, peerName: "Post Utrecht"),
              context: context(remote: remote, selfView: camera)),
        Scene(name: "in-call-no-video", status: CallFlowStatus(phase: .inCall, peerName: "Post Utrecht"), context: context()),
        Scene(name: "ended", status: CallFlowStatus(phase: .ending), context: context()),
        Scene(name: "unreachable",
              status: CallFlowStatus(phase: .unreachable, callbackPending: true,
                                     callback: .trying(since: WallTime(secondsSince1970: fixedNow.timeIntervalSince1970))),
              context: context()),
        Scene(name: "connection-lost", status: CallFlowStatus(phase: .connectionLost, callbackPending: true), context: context()),
        Scene(name: "no-network", status: CallFlowStatus(phase: .idle, networkUp: false), context: context()),
        Scene(name: "fault-button-stuck", status: CallFlowStatus(phase: .fault, buttonStuck: true), context: context()),
        Scene(name: "needs-service", status: CallFlowStatus(phase: .idle), context: context(), needsService: true),
    ]
}

/// Pixels may differ a little between FreeType builds (hinting, rounding); a changed layout,
/// text or colour changes far more than this.
struct Difference {
    var differing = 0
    var worst: UInt32 = 0
    init(_ a: ScreenImage, _ b: ScreenImage, channelTolerance: UInt32 = 24) {
        for (p, q) in zip(a.pixels, b.pixels) {
            var delta: UInt32 = 0
            for shift in [16 as UInt32, 8, 0] {
                let x = (p >> shift) & 0xFF, y = (q >> shift) & 0xFF
                delta = max(delta, x > y ? x - y : y - x)
            }
            worst = max(worst, delta)
            if delta > channelTolerance { differing += 1 }
        }
    }
}

@Suite(.serialized) struct ReferenceImageTests {
    let renderer: ScreenRenderer
    let texts: ScreenTexts

    init() throws {
        renderer = ScreenRenderer(font: try FontRenderer())
        texts = try loadTexts()
    }

    /// `scene` at the reference panel size, 1280×800.
    func render(_ scene: Scene) -> ScreenImage {
        let model = scene.needsService ? ScreenModel.needsService(texts: texts)
            : ScreenModel(status: scene.status, context: scene.context, texts: texts)
        return renderer.render(model, width: 1280, height: 800)
    }

    @Test(arguments: scenes())
    func screenMatchesItsReviewedReference(_ scene: Scene) throws {
        let image = render(scene)
        let path = "\(referencesDir)/\(scene.name).png"
        if ProcessInfo.processInfo.environment["BEELDZORG_UPDATE_REFERENCES"] == "1" {
            try FileManager.default.createDirectory(atPath: referencesDir, withIntermediateDirectories: true)
            try PNGCodec.write(image, to: path)
            return
        }
        let reference = try PNGCodec.read(path)
        #expect(reference.width == image.width && reference.height == image.height)
        guard reference.width == image.width, reference.height == image.height else { return }
        let difference = Difference(image, reference)
        // At most 0.2 % of the pixels (about 2,000 of 1,024,000) beyond the tolerance.
        #expect(difference.differing <= image.pixels.count / 500,
                "\(scene.name): \(difference.differing) pixels differ (worst channel delta \(difference.worst)); see the comment at the top to regenerate")
        if difference.differing > image.pixels.count / 500 {
            try? PNGCodec.write(image, to: NSTemporaryDirectory() + "/screen-\(scene.name)-actual.png")
        }
    }

    @Test func everyScreenHasLargeHighContrastText() throws {
        // Not blank, and the brightest text is white or yellow on a dark background.
        for scene in scenes() where !scene.name.hasPrefix("in-call") {
            let image = render(scene)
            let background = image[0, 0]
            let textPixels = image.pixels.filter { $0 != background }.count
            #expect(textPixels > 5_000, "\(scene.name) looks blank (\(textPixels) pixels differ from the background)")
            let luminance = { (p: UInt32) -> Int in
                Int((p >> 16) & 0xFF) * 299 / 1000 + Int((p >> 8) & 0xFF) * 587 / 1000 + Int(p & 0xFF) * 114 / 1000
            }
            let brightest = image.pixels.map(luminance).max() ?? 0
            if scene.name == "idle-dimmed" {
                #expect(brightest < 100, "dimmed screen still bright")
            } else {
                #expect(brightest > 200 && luminance(background) < 60, "\(scene.name): low contrast")
            }
        }
    }

    @Test func rendersAtOtherPanelSizes() throws {
        let model = ScreenModel(status: CallFlowStatus(phase: .idle), context: scenes()[0].context, texts: texts)
        for (w, h) in [(800, 480), (1920, 1080), (1024, 768)] {
            let image = renderer.render(model, width: w, height: h)
            #expect(image.pixels.contains(Colour.text), "\(w)×\(h) has no text")
        }
    }
}
