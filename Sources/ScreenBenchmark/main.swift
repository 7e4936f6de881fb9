// Prints what the screen costs per frame on this machine (issue 9): I420 → XRGB8888
// conversion and scaling of a remote picture to a 1280×800 panel, and a whole in-call frame
// (remote video, self view, name label), and the draw loop of a call as the daemon runs it.
// Not a test: figures, not assertions.
//
//   swift run -c release screen-benchmark [FRAMES] [CALL-SECONDS]   (from the repository root)

import CallFlow
import Devices
import Foundation
import Screen

func pattern(width: Int, height: Int, seed: Int) -> VideoFrame {
    var planes = [UInt8](repeating: 0, count: width * height * 3 / 2)
    for y in 0..<height {
        for x in 0..<width { planes[y * width + x] = UInt8((x + y + seed) & 0xFF) }
    }
    for i in (width * height)..<planes.count { planes[i] = UInt8((i + seed) & 0xFF) }
    return VideoFrame(width: width, height: height, planes: planes, timestamp: .zero)
}

func measure(_ name: String, frames: Int, _ body: () -> Void) {
    for _ in 0..<10 { body() }  // warm-up: caches, page faults
    var times: [Double] = []
    for _ in 0..<frames {
        let start = ContinuousClock.now
        body()
        let elapsed = start.duration(to: .now)
        times.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
    }
    times.sort()
    let p50 = times[times.count / 2], p99 = times[min(times.count - 1, times.count * 99 / 100)]
    print(String(format: "%-44@ p50 %6.2f ms  p99 %6.2f ms  (%d frames; 25 fps budget 40 ms)", name as NSString, p50, p99, frames))
}

let frames = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 300 : 300
var image = ScreenImage(width: 1280, height: 800)
let full = Rect(x: 0, y: 0, width: 1280, height: 800)
for (w, h) in [(640, 480), (1280, 720), (320, 240)] {
    let frame = pattern(width: w, height: h, seed: 7)
    let rect = full.fitting(contentWidth: w, contentHeight: h)
    measure("I420 \(w)×\(h) → XRGB \(rect.width)×\(rect.height)", frames: frames) {
        I420Converter.draw(frame, into: &image, rect: rect)
    }
}
let fontPath = ProcessInfo.processInfo.environment["BEELDZORG_FONT"] ?? FontRenderer.defaultPath
if let font = try? FontRenderer(path: fontPath) {
    let renderer = ScreenRenderer(font: font)
    let remote = pattern(width: 640, height: 480, seed: 1), camera = pattern(width: 640, height: 480, seed: 2)
    let model = ScreenModel.inCall(label: "In gesprek met Post 1", remote: remote, selfView: camera)
    measure("whole in-call frame 1280×800 (video+self+label)", frames: frames) {
        renderer.render(model, into: &image)
    }
    let calling = ScreenModel.calling(headline: "Ik bel de beeldzorgcentrale.", detail: "De beeldzorgcentrale gaat over.",
                                      animationStep: 3)
    measure("calling screen 1280×800 (text cached)", frames: frames) {
        renderer.render(calling, into: &image)
    }
    callScreenFigure(renderer: renderer)
} else {
    print("font \(fontPath) not usable: whole-frame figures skipped")
}

/// CPU seconds the thread named `name` has used (from /proc/self/task/*/stat).
func threadCPUSeconds(named name: String) -> Double {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    var total = 0.0
    for task in tasks {
        guard let comm = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8),
              comm.trimmingCharacters(in: .whitespacesAndNewlines) == name,
              let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
        total += (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
    return total
}

/// The daemon's draw loop in a call (LiveScreen with an off-screen 1280×800 output): remote
/// and self-view frames arrive at 25 fps each, as from the decoder and the camera; prints the
/// screen thread's CPU seconds per call-minute.
func callScreenFigure(renderer: ScreenRenderer) {
    let seconds = CommandLine.arguments.count > 2 ? Int(CommandLine.arguments[2]) ?? 10 : 10
    guard let texts = try? ScreenTexts(promptsDirectory: "prompts") else {
        print("prompts/ not found (run from the repository root): call-screen figure skipped")
        return
    }
    let remotes = [pattern(width: 640, height: 480, seed: 1), pattern(width: 640, height: 480, seed: 3)]
    let selves = [pattern(width: 640, height: 480, seed: 2), pattern(width: 640, height: 480, seed: 4)]
    let screen = LiveScreen(output: OffscreenOutput(width: 1280, height: 800), renderer: renderer, texts: texts, dimAfter: nil)
    screen.start()
    screen.show(status: CallFlowStatus(phase: .inCall, peerName: "Post 1", registered: true))
    Thread.sleep(forTimeInterval: 0.5)
    let before = threadCPUSeconds(named: "screen")
    let start = ContinuousClock.now
    for index in 0..<(seconds * 25) {
        screen.remoteSink.show(remotes[index % 2])
        screen.selfViewSink.show(selves[index % 2])
        let due = start + .milliseconds(40 * (index + 1))
        let wait = ContinuousClock.now.duration(to: due)
        if wait > .zero { Thread.sleep(forTimeInterval: Double(wait.components.attoseconds) / 1e18 + Double(wait.components.seconds)) }
    }
    let elapsed = start.duration(to: .now)
    let used = threadCPUSeconds(named: "screen") - before
    screen.stop()
    let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    print(String(format: "call screen (draw loop, off-screen 1280×800, remote + self view at 25 fps each), %.0f s: "
                 + "%.2f CPU s per call-minute for the screen thread", wall, used / wall * 60))
}
