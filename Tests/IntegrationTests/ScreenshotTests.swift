import Control
import Foundation
import Screen
import Store
import Testing

/// `beeldzorgctl screenshot` against the built daemon with an off-screen screen: the idle
/// screen has its text, and in a demo call the remote picture is the demo centrale's echo of
/// our own test pattern (colour bars after a real VP8 + SRTP round trip).
@Suite(.serialized) struct ScreenshotTests {
    /// The saturated bars of `TestPatternCamera` as XRGB.
    static let bars: [(name: String, colour: UInt32)] = [
        ("yellow", 0xFFFF00), ("cyan", 0x00FFFF), ("green", 0x00FF00), ("magenta", 0xFF00FF), ("red", 0xFF0000),
        ("blue", 0x0000FF),
    ]

    static func near(_ a: UInt32, _ b: UInt32, within tolerance: Int) -> Bool {
        [16, 8, 0].allSatisfy { abs(Int((a >> $0) & 0xFF) - Int((b >> $0) & 0xFF)) <= tolerance }
    }

    func screenshot(_ daemon: DaemonUnderTest, name: String) throws -> ScreenImage {
        let file = daemon.directory.appendingPathComponent(name).path
        let result = try runCtl(["screenshot", file], socket: daemon.socketPath)
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("saved \(file): 1280×800, off-screen"), "\(result.output)")
        return try PNGCodec.read(file)
    }

    @Test func idleAndInCallScreenshotsShowTheTextAndTheEchoedTestPattern() async throws {
        let daemon = try DaemonUnderTest(extraConfig: "screen:\n  device: offscreen\n  dim_after_seconds: 0\n")
        try daemon.start()
        defer { Task { await daemon.stop() } }
        try await daemon.waitUntilReady()

        // Idle: the clock and sentences are white and yellow on the dark background.
        let idle = try screenshot(daemon, name: "idle.png")
        #expect(idle.width == 1280 && idle.height == 800)
        let background = idle[0, 0]
        let clockBand = (150..<350).flatMap { y in (0..<1280).map { idle[$0, y] } }
        #expect(clockBand.filter { $0 == 0xFFFFFF }.count > 5_000, "the clock region is blank")
        let sentenceBand = (600..<780).flatMap { y in (0..<1280).map { idle[$0, y] } }
        #expect(sentenceBand.filter { $0 != background }.count > 5_000, "the button sentence is missing")

        try daemon.button("press")
        try await daemon.waitForPhase("inCall", timeout: .seconds(20))
        try await daemon.waitFor("decoded video", timeout: .seconds(15)) {
            (try daemon.status().media?.videoFramesDecoded ?? 0) >= 10
        }
        let call = try screenshot(daemon, name: "call.png")
        // The remote picture fills the middle (4:3 into 16:10: x 107…1173); sample it away
        // from the self view (bottom right) and the name label (top left).
        var found: [String] = []
        let region = (150..<550).flatMap { y in stride(from: 120, to: 960, by: 2).map { call[$0, y] } }
        for bar in Self.bars {
            let share = Double(region.filter { Self.near($0, bar.colour, within: 48) }.count) / Double(region.count)
            if share > 0.04 { found.append(bar.name) }
        }
        #expect(found.count >= 5, "the remote video region shows only \(found) of the test pattern's bars")
        // The self view sits in the bottom-right corner inside a white border.
        #expect(call[1280 - 24 - 281 - 2, 800 - 24 - 100] == 0xFFFFFF, "no self-view border")

        try daemon.button("long")
        #expect(await daemon.stop() == 0)
    }

    /// The demo has no edge proxy, so nothing vouches for the caller (issue 15): a contact
    /// with auto-answer still rings with their photo, but the tablet never answers by itself
    /// and shows no countdown. (Auto-answer through an edge proxy: `ForgedCallerTests`.)
    @Test func anIncomingContactShowsTheirPhotoAndNoAutoAnswerWithoutAnEdgeProxy() async throws {
        let daemon = try DaemonUnderTest(extraConfig: "screen:\n  device: offscreen\n")
        // The contact's photo (a PNG next to the database, as photoRef names it) and an
        // auto-answer that, in a set-up with edge proxies, would count down on screen.
        let photos = daemon.directory.appendingPathComponent("photos")
        try FileManager.default.createDirectory(at: photos, withIntermediateDirectories: true)
        var photo = ScreenImage(width: 120, height: 150, fill: 0x2E_5C_8A)
        photo.fill(Rect(x: 30, y: 30, width: 60, height: 60), with: 0xE8_B8_94)
        try PNGCodec.write(photo, to: photos.appendingPathComponent("marieke.png").path)
        let store = try BeeldzorgStore(path: daemon.databasePath)
        try store.upsertContact(Contact(id: "demo-marieke", displayName: "Marieke", sipURI: "sip:marieke@127.0.0.1",
                                        role: .family, autoAnswerSeconds: 1, photoRef: "marieke.png", sortOrder: 1))
        try store.close()

        try daemon.start()
        defer { Task { await daemon.stop() } }
        try await daemon.waitUntilReady()
        #expect(daemon.log.contains("auto-answer is off"), "no start-up warning")
        let callIn = try runCtl(["demo", "call-in", "--from", "sip:marieke@127.0.0.1"], socket: daemon.socketPath)
        #expect(callIn.status == 0, "\(callIn.error)")
        try await daemon.waitForPhase("incomingRinging")
        // Every action of the ringing transition ran before the controller answered status:
        // the ring prompt was spoken, the auto-answer one was not.
        #expect(daemon.log.contains("Marieke belt u"), "\(daemon.log.suffix(3000))")
        #expect(!daemon.log.contains("automatisch op"), "\(daemon.log.suffix(3000))")
        let shot = try screenshot(daemon, name: "incoming.png")
        #expect(shot.pixels.filter { $0 == 0x2E_5C_8A }.count > 10_000, "the photo's background is missing")
        #expect(shot.pixels.filter { $0 == 0xE8_B8_94 }.count > 5_000, "the photo's face is missing")
        #expect(!shot.pixels.contains(Colour.accent), "a countdown is shown")
        #expect(try daemon.status().call.phase == "incomingRinging")
        try daemon.button("long")
        #expect(await daemon.stop() == 0)
    }

    @Test func aScreenSwitchedOffSaysSo() async throws {
        let daemon = try DaemonUnderTest(extraConfig: "screen:\n  device: none\n")
        try daemon.start()
        defer { Task { await daemon.stop() } }
        try await daemon.waitUntilReady()
        let file = daemon.directory.appendingPathComponent("none.png").path
        let result = try runCtl(["screenshot", file], socket: daemon.socketPath)
        #expect(result.status == 1)
        #expect(result.error.contains("screen.device: none"), "\(result.error)")
        #expect(!FileManager.default.fileExists(atPath: file))
        #expect(await daemon.stop() == 0)
    }
}
