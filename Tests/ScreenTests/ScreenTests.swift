import CallFlow
import Devices
import Foundation
import Screen
import Synchronization
import Testing

@Suite struct ScreenModelTests {
    let texts: ScreenTexts
    init() throws { texts = try loadTexts() }

    func model(_ status: CallFlowStatus, now: Date = fixedNow, lastActivity: Date? = nil, autoAnswerAt: Date? = nil) -> ScreenModel {
        ScreenModel(status: status, context: ScreenModel.Context(now: now, timeZone: dutchWinter, lastActivity: lastActivity,
                                                                  dimAfter: .seconds(300), autoAnswerAt: autoAnswerAt),
                    texts: texts)
    }

    @Test func idleShowsDutchClockDateAndWhatTheButtonDoes() {
        guard case .idle(let clock, let date, let sentence, let note, let missed, let dimmed) = model(CallFlowStatus(phase: .idle)) else {
            Issue.record("not idle")
            return
        }
        #expect(clock == "14:05")
        #expect(date == "maandag 30 november 2026")
        #expect(sentence == "Druk op de knop om de beeldzorgcentrale te bellen.")
        #expect(note == nil)
        #expect(missed.isEmpty)
        #expect(!dimmed)
    }

    /// Issue 20: who called and when, in the client's time zone; the day only when it was not
    /// today; the newest two; never on a screen other than the one at rest.
    @Test func idleSaysWhoCalledAndWhenNewestTwo() {
        func at(_ secondsBefore: Double) -> WallTime { WallTime(secondsSince1970: fixedNow.timeIntervalSince1970 - secondsBefore) }
        let missed = [
            MissedCallNote(name: "Anna", at: at(3 * 3600 + 63 * 60)),           // 10:02 today (CET)
            MissedCallNote(name: "Piet", at: at(14 * 3600 + 5 * 60 + 60)),       // 23:59 yesterday
            MissedCallNote(name: "Kees", at: at(3 * 86_400)),
        ]
        guard case .idle(_, _, _, _, let lines, _) = model(CallFlowStatus(phase: .idle, missedCalls: missed)) else {
            Issue.record("not idle")
            return
        }
        #expect(lines == ["Anna heeft gebeld om 10:02.", "Piet heeft gebeld op zondag om 23:59."])
        let lastWeek = MissedCallNote(name: "Kees", at: at(7 * 86_400))
        guard case .idle(_, _, _, _, let old, _) = model(CallFlowStatus(phase: .idle, missedCalls: [lastWeek])) else {
            Issue.record("not idle")
            return
        }
        #expect(old == ["Kees heeft gebeld op 23 november om 14:05."])
        let ringing = model(CallFlowStatus(phase: .incomingRinging, peerName: "Anna", missedCalls: missed))
        guard case .incoming = ringing else {
            Issue.record("not the incoming screen: \(ringing)")
            return
        }
    }

    @Test func idleDimsOnlyAfterTheConfiguredQuietTime() {
        let justBefore = model(CallFlowStatus(phase: .idle), lastActivity: fixedNow.addingTimeInterval(-299))
        let after = model(CallFlowStatus(phase: .idle), lastActivity: fixedNow.addingTimeInterval(-300))
        guard case .idle(_, _, _, _, _, let dimmedBefore) = justBefore, case .idle(_, _, _, _, _, let dimmedAfter) = after else {
            Issue.record("not idle")
            return
        }
        #expect(!dimmedBefore)
        #expect(dimmedAfter)
        let never = ScreenModel(status: CallFlowStatus(phase: .idle),
                                context: .init(now: fixedNow, lastActivity: .distantPast, dimAfter: nil), texts: texts)
        if case .idle(_, _, _, _, _, let dimmed) = never { #expect(!dimmed) }
    }

    @Test func callingUsesTheSpokenSentenceAndAnimates() {
        let a = model(CallFlowStatus(phase: .callingCentrale))
        let b = model(CallFlowStatus(phase: .callingCentrale), now: fixedNow.addingTimeInterval(0.5))
        guard case .calling(let headline, let detail, let stepA) = a, case .calling(_, _, let stepB) = b else {
            Issue.record("not calling")
            return
        }
        #expect(headline == "Ik bel de beeldzorgcentrale.")
        #expect(detail == nil)
        #expect(stepA != stepB)
        guard case .calling(_, let ringing, _) = model(CallFlowStatus(phase: .ringingOut)) else { return }
        #expect(ringing == "De beeldzorgcentrale gaat over.")
    }

    @Test func incomingShowsNameAndCountsDownInWholeSeconds() {
        let status = CallFlowStatus(phase: .incomingRinging, peerName: "Els")
        guard case .incoming(let name, let sentence, let countdown, _) = model(status, autoAnswerAt: fixedNow.addingTimeInterval(4.2)) else {
            Issue.record("not incoming")
            return
        }
        #expect(name == "Els")
        #expect(sentence == "Els belt u. Druk op de knop om op te nemen.")
        #expect(countdown == "Over 5 seconden neem ik automatisch op.")
        if case .incoming(_, _, let none, _) = model(status) { #expect(none == nil) }
    }

    @Test func troubleScreensSayWhatHappensNext() {
        if case .notice(let kind, let headline, let next) = model(CallFlowStatus(phase: .unreachable)) {
            #expect(kind == .unreachable)
            #expect(headline.contains("niet bereikbaar"))
            #expect(next != nil)
        } else { Issue.record("unreachable is not a notice") }
        if case .notice(let kind, let headline, _) = model(CallFlowStatus(phase: .idle, networkUp: false)) {
            #expect(kind == .noNetwork)
            #expect(headline.contains("blijf het proberen"))
        } else { Issue.record("no network is not a notice") }
        // Issue 16: the call flow's fault phase for a lost network (how it gets there at rest)
        // says "no internet", not the stuck button's sentence.
        if case .notice(let kind, let headline, _) = model(CallFlowStatus(phase: .fault, networkUp: false)) {
            #expect(kind == .noNetwork)
            #expect(headline.contains("blijf het proberen"))
        } else { Issue.record("no network in fault is not a notice") }
        if case .notice(let kind, _, _) = model(CallFlowStatus(phase: .fault, networkUp: false, buttonStuck: true)) {
            #expect(kind == .fault)
        } else { Issue.record("both faults is not a notice") }
        if case .notice(let kind, let headline, _) = model(CallFlowStatus(phase: .fault, buttonStuck: true)) {
            #expect(kind == .fault)
            #expect(headline.contains("Laat de knop los"))
        } else { Issue.record("fault is not a notice") }
    }

    @Test func screenTextsRefuseAFileWithoutThem() throws {
        let catalog = try PromptCatalog(parsing: "connected = Hallo.\n", source: "x.txt", required: [])
        #expect(throws: ScreenTextsError.self) { try ScreenTexts(catalog: catalog) }
    }
}

@Suite struct ConversionTests {
    func solid(_ y: UInt8, _ u: UInt8, _ v: UInt8, width: Int = 64, height: Int = 48) -> VideoFrame {
        let luma = [UInt8](repeating: y, count: width * height)
        let chroma = [UInt8](repeating: u, count: width * height / 4) + [UInt8](repeating: v, count: width * height / 4)
        return VideoFrame(width: width, height: height, planes: luma + chroma, timestamp: .zero)
    }

    func close(_ a: UInt32, _ b: UInt32, within tolerance: Int = 3) -> Bool {
        [16, 8, 0].allSatisfy { abs(Int((a >> $0) & 0xFF) - Int((b >> $0) & 0xFF)) <= tolerance }
    }

    @Test func bt601LimitedRangeColours() {
        #expect(I420Converter.colour(y: 235, u: 128, v: 128) == 0xFFFFFF)
        #expect(I420Converter.colour(y: 16, u: 128, v: 128) == 0x000000)
        #expect(close(I420Converter.colour(y: 81, u: 90, v: 240), 0xFF0000))
        #expect(close(I420Converter.colour(y: 145, u: 54, v: 34), 0x00FF00))
        #expect(close(I420Converter.colour(y: 41, u: 240, v: 110), 0x0000FF))
    }

    @Test func scalesToTheRectangleAndLeavesTheRestAlone() {
        var image = ScreenImage(width: 200, height: 100, fill: 0x123456)
        let rect = Rect(x: 0, y: 0, width: 200, height: 100).fitting(contentWidth: 64, contentHeight: 48)
        #expect(rect == Rect(x: 33, y: 0, width: 133, height: 100))
        I420Converter.draw(solid(235, 128, 128), into: &image, rect: rect)
        #expect(image[33, 0] == 0xFFFFFF && image[165, 99] == 0xFFFFFF)
        #expect(image[32, 50] == 0x123456 && image[166, 50] == 0x123456)
    }

    @Test func keepsTheTestPatternBarsInOrderWhenScaled() {
        let frame = TestPatternCamera.render(width: 640, height: 480, frameNumber: 0, timestamp: .zero)
        var image = ScreenImage(width: 1280, height: 800)
        let rect = Rect(x: 0, y: 0, width: 1280, height: 800).fitting(contentWidth: 640, contentHeight: 480)
        I420Converter.draw(frame, into: &image, rect: rect)
        // Eight bars: sample the middle of each at a third of the height.
        let expected: [UInt32] = [0xFFFFFF, 0xFFFF00, 0x00FFFF, 0x00FF00, 0xFF00FF, 0xFF0000, 0x0000FF, 0x000000]
        for (index, colour) in expected.enumerated() {
            let x = rect.x + rect.width * (2 * index + 1) / 16
            #expect(close(image[x, 260], colour, within: 6), "bar \(index) at x \(x): \(String(image[x, 260], radix: 16))")
        }
    }

    @Test func clipsARectangleOutsideTheImage() {
        var image = ScreenImage(width: 50, height: 50)
        I420Converter.draw(solid(235, 128, 128), into: &image, rect: Rect(x: 30, y: 30, width: 64, height: 48))
        #expect(image[49, 49] == 0xFFFFFF && image[29, 29] == 0)
    }

    /// Eight vertical bars of 16 pixels (SMPTE-like colours, limited range), each bar's chroma
    /// also split in two halves so that a pixel paired with its neighbour's chroma shows.
    static let bars: [(y: UInt8, u: UInt8, v: UInt8)] = [
        (180, 128, 128), (168, 44, 136), (145, 147, 44), (133, 63, 52),
        (63, 193, 204), (51, 109, 212), (28, 212, 120), (16, 128, 128),
    ]

    func barFrame(width: Int = 128, height: Int = 32, halves: Bool = false) -> VideoFrame {
        let barWidth = width / 8
        var planes = [UInt8](repeating: 0, count: width * height * 3 / 2)
        let chromaW = width / 2, uOffset = width * height, vOffset = uOffset + chromaW * height / 2
        for row in 0..<height {
            for x in 0..<width { planes[row * width + x] = Self.bars[x / barWidth].y }
        }
        for row in 0..<(height / 2) {
            for cx in 0..<chromaW {
                let bar = Self.bars[2 * cx / barWidth]
                // In the right half of a bar U and V move by 6 (still a colour of that bar).
                let shift: UInt8 = halves && (2 * cx) % barWidth >= barWidth / 2 ? 6 : 0
                planes[uOffset + row * chromaW + cx] = bar.u &+ shift
                planes[vOffset + row * chromaW + cx] = bar.v &- shift
            }
        }
        return VideoFrame(width: width, height: height, planes: planes, timestamp: .zero)
    }

    @Test func scaledColourBarsHaveTheirOwnColours() {
        var image = ScreenImage(width: 240, height: 100, fill: 0x123456)
        let rect = Rect(x: 7, y: 5, width: 221, height: 55)  // odd sizes and offsets, 1.73×
        I420Converter.draw(barFrame(), into: &image, rect: rect)
        for (index, bar) in Self.bars.enumerated() {
            let expected = I420Converter.colour(y: bar.y, u: bar.u, v: bar.v)
            let x = rect.x + rect.width * (2 * index + 1) / 16
            for y in [rect.y, rect.y + rect.height / 2, rect.y + rect.height - 1] {
                #expect(close(image[x, y], expected, within: 2),
                        "bar \(index) at (\(x), \(y)): \(String(image[x, y], radix: 16)), want \(String(expected, radix: 16))")
            }
        }
        #expect(image[6, 30] == 0x123456 && image[228, 30] == 0x123456 && image[100, 4] == 0x123456 && image[100, 60] == 0x123456)
        #expect(image.pixels.allSatisfy { $0 >> 24 == 0 }, "the top byte stays 0 (XRGB, as PNG and comparisons expect)")
    }

    @Test func unscaledPixelsKeepTheirOwnChromaWhenClippedAtAnOddOffset() {
        let frame = barFrame(width: 64, height: 16, halves: true)
        var image = ScreenImage(width: 40, height: 10)
        I420Converter.draw(frame, into: &image, rect: Rect(x: -3, y: -5, width: 64, height: 16))
        let uOffset = frame.lumaCount, vOffset = uOffset + frame.chromaCount
        for y in 0..<10 {
            for x in 0..<40 {
                let sx = x + 3, sy = y + 5, ci = (sy / 2) * 32 + sx / 2
                let expected = I420Converter.colour(y: frame.planes[sy * 64 + sx], u: frame.planes[uOffset + ci],
                                                    v: frame.planes[vOffset + ci])
                #expect(image[x, y] == expected, "(\(x), \(y)): \(String(image[x, y], radix: 16)), want \(String(expected, radix: 16))")
            }
        }
    }

    @Test func aClippedScaledRectangleShowsThePartOfTheWholeOne() {
        let frame = barFrame(halves: true)
        var whole = ScreenImage(width: 221, height: 55)
        I420Converter.draw(frame, into: &whole, rect: Rect(x: 0, y: 0, width: 221, height: 55))
        var clipped = ScreenImage(width: 150, height: 40)
        I420Converter.draw(frame, into: &clipped, rect: Rect(x: -13, y: -7, width: 221, height: 55))
        var differing = 0
        for y in 0..<40 {
            for x in 0..<150 where clipped[x, y] != whole[x + 13, y + 7] { differing += 1 }
        }
        #expect(differing == 0)
    }
}

@Suite struct PNGAndFontTests {
    @Test func pngRoundTripsExactly() throws {
        var image = ScreenImage(width: 31, height: 17, fill: 0x102030)
        image[3, 4] = 0xFFFFFF
        image[30, 16] = 0xABCDEF
        let decoded = try PNGCodec.decode(try PNGCodec.encode(image))
        #expect(decoded == image)
        let bytes = try PNGCodec.encode(image)
        #expect(Array(bytes.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
    }

    @Test func pngRefusesGarbage() {
        #expect(throws: PNGError.self) { try PNGCodec.decode([1, 2, 3, 4, 5]) }
    }

    @Test func missingFontNamesThePath() {
        do {
            _ = try FontRenderer(path: "/nonexistent/font.ttf")
            Issue.record("a missing font loaded")
        } catch {
            #expect(error.description.contains("/nonexistent/font.ttf"))
        }
    }

    @Test func textIsRasterisedAndWrapped() throws {
        let font = try FontRenderer()
        let mask = font.render("Beëindigd 14:05", pixelSize: 48)
        #expect(mask.height >= 48 && mask.width > 200)
        #expect(mask.coverage.contains(255))
        let lines = font.wrap("De beeldzorgcentrale is nu niet bereikbaar. We bellen u zo snel mogelijk terug.", pixelSize: 64, maxWidth: 1160)
        #expect(lines.count >= 2)
        #expect(lines.allSatisfy { font.measure($0, pixelSize: 64) <= 1160 })
    }
}

@Suite struct OutputTests {
    @Test func drmOnAMissingDeviceSaysSo() {
        #expect(throws: ScreenOutputError(device: "/nonexistent/card0", detail: "cannot open: No such file or directory (errno 2)")) {
            _ = try DRMOutput(path: "/nonexistent/card0")
        }
    }

    @Test func drmOnSomethingThatIsNotKMSSaysSo() {
        do {
            _ = try DRMOutput(path: "/dev/null")
            Issue.record("/dev/null accepted as a DRM device")
        } catch {
            #expect(error.detail.hasPrefix("not a DRM/KMS device"), "\(error)")
        }
    }

    @Test func framebufferOnARegularFileIsRefused() throws {
        let path = NSTemporaryDirectory() + "/not-a-framebuffer-\(getpid())"
        FileManager.default.createFile(atPath: path, contents: Data(count: 4096))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try FramebufferOutput(path: path)
            Issue.record("a regular file accepted as a framebuffer")
        } catch {
            #expect(error.device == path)
            #expect(error.detail.hasPrefix("not a framebuffer device"), "\(error)")
        }
    }

    @Test func autoExplainsEveryDeviceItTried() throws {
        // Only meaningful on a machine without a display (CI, this build host).
        try #require(!FileManager.default.fileExists(atPath: "/dev/dri/card0") && !FileManager.default.fileExists(atPath: "/dev/fb0"))
        do {
            _ = try KernelDisplay.open("auto")
            Issue.record("auto found a display")
        } catch {
            #expect(error.description.contains("/dev/dri/card0") && error.description.contains("/dev/fb0"))
        }
    }
}

/// Waits for a rendered frame to meet `condition`; records an issue (and returns) after `timeout`.
func waitFor(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting for \(what)")
            return
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// A started `LiveScreen` on `output` with the real font and the prompts' texts.
func startLiveScreen(output: any ScreenOutput, dimAfter: Duration?,
                     onError: @escaping @Sendable (ScreenOutputError) -> Void = { _ in }) throws -> LiveScreen {
    let screen = LiveScreen(output: output, renderer: ScreenRenderer(font: try FontRenderer()), texts: try loadTexts(),
                            dimAfter: dimAfter, onError: onError)
    screen.start()
    return screen
}

@Suite(.serialized) struct LiveScreenTests {
    @Test func followsTheCallAndShowsRemoteVideoAndSelfView() async throws {
        let output = OffscreenOutput(width: 640, height: 400)
        let screen = try startLiveScreen(output: output, dimAfter: .seconds(60))
        defer { screen.stop() }
        screen.show(status: CallFlowStatus(phase: .idle))
        try await waitFor("the idle screen") { output.lastImage?.pixels.contains(Colour.text) == true }

        // Frames outside a call are ignored (a late frame after hang-up must not reappear).
        screen.remoteSink.show(TestPatternCamera.render(width: 128, height: 96, frameNumber: 0, timestamp: .zero))
        screen.show(status: CallFlowStatus(phase: .inCall, peerName: "Post 1"))
        var remote = VideoFrame(width: 64, height: 48, planes: [UInt8](repeating: 81, count: 64 * 48)
                                    + [UInt8](repeating: 90, count: 64 * 12) + [UInt8](repeating: 240, count: 64 * 12),
                                timestamp: .zero)
        screen.remoteSink.show(remote)
        try await waitFor("remote video") { output.lastImage.map { ($0[320, 100] >> 16) > 0xF0 && ($0[320, 100] & 0xFF) < 0x10 } == true }
        // The camera's frames reach the self view through the wrapper, unchanged for the encoder.
        let camera = SelfViewCamera(TestPatternCamera(paced: false), sink: screen.selfViewSink)
        _ = try camera.open(CameraFormat(width: 160, height: 120, framesPerSecond: 25))
        let captured = try camera.nextFrame()
        camera.close()
        #expect(captured.width == 160)
        // Self view: 22 % of the width (140 px), 12 px from the bottom-right corner at this size;
        // its left edge shows the pattern's white bar where the remote picture is red.
        try await waitFor("the self view") { output.lastImage.map { $0[640 - 12 - 140 + 2, 400 - 12 - 50] == 0xFFFFFF } == true }
        let snapshot = screen.snapshot()
        #expect(snapshot == output.lastImage)

        remote.planes[0] = 16
        screen.show(status: CallFlowStatus(phase: .ending))
        screen.remoteSink.show(remote)
        try await waitFor("the ended screen") { output.lastImage.map { $0[320, 100] == Colour.background } == true }
    }

    @Test func countsDownToAutoAnswer() async throws {
        let output = OffscreenOutput(width: 640, height: 400)
        let screen = try startLiveScreen(output: output, dimAfter: nil)
        defer { screen.stop() }
        screen.show(status: CallFlowStatus(phase: .incomingRinging, peerName: "Els"))
        try await waitFor("the incoming screen") { output.lastImage?.pixels.contains(Colour.text) == true }
        #expect(output.lastImage?.pixels.contains(Colour.accent) == false)
        screen.autoAnswer(afterSeconds: 5)
        try await waitFor("the countdown") { output.lastImage?.pixels.contains(Colour.accent) == true }
    }
}

/// An output that fails every frame, to check the screen reports it once and keeps the
/// picture for screenshots.
final class BrokenOutput: ScreenOutput {
    let width = 320
    let height = 200
    let description = "broken"
    let failures = Mutex(0)
    func present(_ image: ScreenImage) throws(ScreenOutputError) {
        failures.withLock { $0 += 1 }
        throw ScreenOutputError(device: "broken", detail: "gone")
    }
    func close() {}
}

@Suite(.serialized) struct LiveScreenBehaviourTests {
    @Test func dimsWhenIdleAndWakesOnACall() async throws {
        let output = OffscreenOutput(width: 320, height: 200)
        let screen = try startLiveScreen(output: output, dimAfter: .seconds(3))
        defer { screen.stop() }
        screen.show(status: CallFlowStatus(phase: .idle))
        try await waitFor("the bright idle screen") { output.lastImage?.pixels.contains(Colour.text) == true }
        try await waitFor("dimming", timeout: .seconds(10)) {
            guard let image = output.lastImage else { return false }
            return !image.pixels.contains(Colour.text) && image[0, 0] != Colour.background
        }
        screen.show(status: CallFlowStatus(phase: .incomingRinging, peerName: "Els"))
        try await waitFor("the incoming screen, bright") { output.lastImage?.pixels.contains(Colour.text) == true }
        screen.show(status: CallFlowStatus(phase: .idle))
        try await waitFor("idle again, bright") { output.lastImage.map { $0.pixels.contains(Colour.accent) } == true }
    }

    @Test func aFailingDisplayIsReportedOnceAndScreenshotsStillWork() async throws {
        let output = BrokenOutput()
        let reports = Mutex(0)
        let screen = try startLiveScreen(output: output, dimAfter: nil, onError: { _ in reports.withLock { $0 += 1 } })
        defer { screen.stop() }
        screen.show(status: CallFlowStatus(phase: .callingCentrale))
        try await waitFor("several failed frames") { output.failures.withLock { $0 } >= 3 }
        #expect(reports.withLock { $0 } == 1)
        #expect(screen.snapshot().pixels.contains(Colour.text))
    }
}
