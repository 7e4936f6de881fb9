public import CallFlow
public import Devices
import Dispatch
public import Foundation
import Synchronization

/// The running screen: takes CallFlow's status, the decoded remote frames and the camera's
/// frames, and redraws on its own thread — never on the SIP loop or a media thread, which
/// only hand over a frame and signal. Redraws when the model changes (a new frame, the
/// clock's minute, the pulse, the countdown), and keeps the last picture for screenshots.
public final class LiveScreen: Sendable {
    public let output: any ScreenOutput
    private let renderer: ScreenRenderer
    private let texts: ScreenTexts
    private let dimAfter: Duration?
    private let timeZone: TimeZone
    private let photo: @Sendable (String) -> ScreenImage?
    private let onError: @Sendable (ScreenOutputError) -> Void

    private struct Inputs {
        var status = CallFlowStatus(phase: .idle)
        var lastActivity = Date()
        var autoAnswerAt: Date?
        var photo: ScreenImage?
        var remote: VideoFrame?
        var selfView: VideoFrame?
        var needsService = false
        var stopped = false
    }
    private let inputs = Mutex(Inputs())
    private let lastPicture = Mutex<ScreenImage?>(nil)
    private let wakeUp = DispatchSemaphore(value: 0)
    private let started = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)

    /// Where the media session puts decoded remote video.
    public let remoteSink: any VideoSink
    /// Where the camera's frames (already captured for the encoder) go for the self view.
    public let selfViewSink: any VideoSink

    public init(output: any ScreenOutput, renderer: ScreenRenderer, texts: ScreenTexts, dimAfter: Duration?,
                timeZone: TimeZone = .current, photo: @escaping @Sendable (String) -> ScreenImage? = { _ in nil },
                onError: @escaping @Sendable (ScreenOutputError) -> Void = { _ in }) {
        self.output = output
        self.renderer = renderer
        self.texts = texts
        self.dimAfter = dimAfter
        self.timeZone = timeZone
        self.photo = photo
        self.onError = onError
        let box = WeakBox()
        remoteSink = FrameSink(box: box, remote: true)
        selfViewSink = FrameSink(box: box, remote: false)
        box.screen.withLock { $0 = Weak(self) }
    }

    /// Starts the drawing thread.
    public func start() {
        let thread = Thread { [self] in
            // Foundation's Thread.name does not reach the kernel here; /proc/thread-self/comm
            // does, so `top -H` and the benchmark see a "screen" thread.
            if let comm = FileHandle(forWritingAtPath: "/proc/thread-self/comm") {
                comm.write(Data("screen".utf8))
                try? comm.close()
            }
            drawLoop()
            finished.signal()
        }
        thread.name = "screen"
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else { return }
        thread.start()
    }

    /// Stops the drawing thread and gives the display back.
    public func stop() {
        let wasRunning = inputs.withLock { inputs in
            defer { inputs.stopped = true }
            return !inputs.stopped
        }
        guard wasRunning else { return }
        wakeUp.signal()
        if started.load(ordering: .acquiring) { finished.wait() }
        output.close()
    }

    /// CallFlow's status changed (the same call that drives the console screen).
    public func show(status: CallFlowStatus) {
        let needsPhoto: String? = inputs.withLock { inputs in
            let previous = inputs.status
            inputs.status = status
            if previous.phase != status.phase {
                inputs.lastActivity = Date()
                if status.phase != .incomingRinging {
                    inputs.autoAnswerAt = nil
                    inputs.photo = nil
                }
                if status.phase != .inCall {
                    inputs.remote = nil
                    inputs.selfView = nil
                }
                if status.phase == .incomingRinging { return status.peerName }
            }
            return nil
        }
        if let name = needsPhoto {
            let picture = photo(name)
            inputs.withLock { $0.photo = picture }
        }
        wakeUp.signal()
    }

    /// The daemon cannot start (a configuration fault): from now on the screen says so and
    /// nothing else.
    public func showNeedsService() {
        inputs.withLock { $0.needsService = true }
        wakeUp.signal()
    }

    /// The incoming call will be answered automatically after `seconds`: show the countdown.
    public func autoAnswer(afterSeconds seconds: Int) {
        inputs.withLock { $0.autoAnswerAt = Date().addingTimeInterval(TimeInterval(seconds)) }
        wakeUp.signal()
    }

    /// The client did something (a press): undim.
    public func wake() {
        inputs.withLock { $0.lastActivity = Date() }
        wakeUp.signal()
    }

    /// Exactly what is on the screen now (rendered now if nothing was drawn yet).
    public func snapshot() -> ScreenImage {
        if let picture = lastPicture.withLock({ $0 }) { return picture }
        return renderer.render(currentModel(now: Date()), width: output.width, height: output.height)
    }

    fileprivate func frame(_ frame: VideoFrame, remote: Bool) {
        let accepted = inputs.withLock { inputs in
            guard inputs.status.phase == .inCall else { return false }
            if remote { inputs.remote = frame } else { inputs.selfView = frame }
            return true
        }
        if accepted { wakeUp.signal() }
    }

    private func currentModel(now: Date) -> ScreenModel {
        let snapshot = inputs.withLock { $0 }
        if snapshot.needsService { return .needsService(texts: texts) }
        let context = ScreenModel.Context(now: now, timeZone: timeZone, lastActivity: snapshot.lastActivity,
                                          dimAfter: dimAfter, autoAnswerAt: snapshot.autoAnswerAt, photo: snapshot.photo,
                                          remote: snapshot.remote, selfView: snapshot.selfView)
        return ScreenModel(status: snapshot.status, context: context, texts: texts)
    }

    /// 25 frames a second at most: the rate of the post's video and of our camera. At 30, two
    /// 25 fps streams arriving out of step drew about 30 whole frames a second for no newer
    /// picture (`screen-benchmark`: 3.0–4.0 CPU s per call-minute at 30, 3.0–3.25 at 25).
    static let minimumFrameInterval: Duration = .milliseconds(40)

    private func drawLoop() {
        var last: ScreenModel?
        var image = ScreenImage(width: output.width, height: output.height, fill: Colour.background)
        var failing = false
        var lastDrawn = ContinuousClock.now - .seconds(1)
        while !inputs.withLock({ $0.stopped }) {
            var model = currentModel(now: Date())
            if case .inCall = model, model != last {
                // Remote and self-view frames each signal; draw at most 25 times a second
                // so two 25 fps streams cost one frame's work, not two.
                let since = lastDrawn.duration(to: .now)
                if since < Self.minimumFrameInterval {
                    Thread.sleep(forTimeInterval: Double((Self.minimumFrameInterval - since).components.attoseconds) / 1e18)
                    model = currentModel(now: Date())
                }
            }
            if model != last {
                lastDrawn = .now
                renderer.render(model, into: &image)
                do {
                    try output.present(image)
                    failing = false
                } catch {
                    // Reported once per run of failures; the picture is still kept for
                    // screenshots.
                    if !failing { onError(error) }
                    failing = true
                }
                lastPicture.withLock { $0 = image }
                last = model
            }
            let interval = model.refreshInterval.components
            let wait = Double(interval.seconds) + Double(interval.attoseconds) / 1e18
            _ = wakeUp.wait(timeout: .now() + wait)
        }
    }
}

private struct Weak: @unchecked Sendable {
    weak var screen: LiveScreen?
    init(_ screen: LiveScreen) { self.screen = screen }
}

private final class WeakBox: Sendable {
    let screen = Mutex<Weak?>(nil)
}

private final class FrameSink: VideoSink {
    private let box: WeakBox
    private let remote: Bool

    init(box: WeakBox, remote: Bool) {
        self.box = box
        self.remote = remote
    }

    func show(_ frame: VideoFrame) {
        box.screen.withLock { $0?.screen }?.frame(frame, remote: remote)
    }
}

/// A camera whose frames also go to the self view: the frames the encoder already gets, no
/// second capture. Wraps the call's camera; everything else passes straight through.
public final class SelfViewCamera: CameraSource {
    private let camera: any CameraSource
    private let sink: any VideoSink

    public init(_ camera: any CameraSource, sink: any VideoSink) {
        self.camera = camera
        self.sink = sink
    }

    public func open(_ requested: CameraFormat) throws -> CameraFormat { try camera.open(requested) }

    public func nextFrame() throws -> VideoFrame {
        let frame = try camera.nextFrame()
        sink.show(frame)
        return frame
    }

    public func close() { camera.close() }
}
