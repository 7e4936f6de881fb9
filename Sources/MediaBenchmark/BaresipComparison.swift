// The same call measured at both ends: our MediaSession (set up by our SIP user agent) and a
// baresip post (Debian baresip-core, auto-answer, srtp-mand) on the same machine in the same
// run, each sending and receiving 640×480@25 VP8 at 800 kbit/s and Opus over SRTP. CPU time
// is taken over the same window: getrusage for this process, /proc/PID/stat for baresip.
//
// baresip 1.0's `fakevideo` source sends one still picture, and a still picture costs VP8
// far less than a moving one, so our end sends a still picture here too (`StillCamera`);
// the moving test pattern is measured in the loopback call.
import Devices
import Foundation
import Logging
import Media
import NIOPosix
import SIP

/// A camera that shows the same test-pattern picture at 25 fps, like baresip's fakevideo.
final class StillCamera: CameraSource, @unchecked Sendable {
    private let pattern = TestPatternCamera()
    private var picture: VideoFrame?
    private var frames = 0
    private var start = ContinuousClock.now

    func open(_ requested: CameraFormat) throws -> CameraFormat {
        let format = try pattern.open(requested)
        picture = TestPatternCamera.render(width: format.width, height: format.height, frameNumber: 0, timestamp: .zero)
        frames = 0
        start = .now
        return format
    }

    func nextFrame() throws -> VideoFrame {
        guard var frame = picture, pattern.isOpen else {
            throw DeviceError(.vanished, device: "still", detail: "closed")
        }
        frames += 1
        let due = start + .milliseconds(40 * frames)
        let wait = ContinuousClock.now.duration(to: due)
        if wait > .zero { Thread.sleep(forTimeInterval: Double(wait.components.attoseconds) / 1e18 + Double(wait.components.seconds)) }
        frame.timestamp = .milliseconds(40 * frames)
        return frame
    }

    func close() { pattern.close() }
}

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
func processCPUSeconds(_ pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the command name: state is field 3; utime and stime are fields 14 and 15.
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// CPU seconds per thread name of this process (names from /proc/self/task/*/comm; threads
/// with the same name are added up), to show where our end's time goes.
func threadCPUSeconds() -> [String: Double] {
    var result: [String: Double] = [:]
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return result }
    for task in tasks {
        guard let comm = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8),
              let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { continue }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
        let name = comm.trimmingCharacters(in: .whitespacesAndNewlines)
        result[name, default: 0] += (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
    return result
}

func baresipComparison(seconds: Int, echoCancellation: Bool) async throws {
    let binary = "/usr/bin/baresip"
    guard FileManager.default.isExecutableFile(atPath: binary) else {
        print("baresip comparison: baresip is not installed (apt-get install baresip-core)")
        return
    }
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("media-benchmark-baresip-\(getpid())")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let sipPort = 20_000 + Int(getpid() % 5_000) * 2
    try """
    poll_method\t\tepoll
    sip_listen\t\t127.0.0.1:\(sipPort)
    net_interface\t\t127.0.0.1
    audio_player\t\taubridge,nil
    audio_source\t\tausine,440
    audio_alert\t\taubridge,nil
    audio_srate\t\t48000
    video_source\t\tfakevideo,nil
    video_display\t\tfakevideo,nil
    video_size\t\t640x480
    video_fps\t\t25
    video_bitrate\t\t800000
    opus_bitrate\t\t32000
    module_path\t\t/usr/lib/baresip/modules
    module\t\t\topus.so
    module\t\t\tvp8.so
    module\t\t\tausine.so
    module\t\t\taubridge.so
    module\t\t\tfakevideo.so
    module\t\t\tsrtp.so
    module_app\t\taccount.so
    module_app\t\tmenu.so
    rtp_ports\t\t40000-49999

    """.write(to: directory.appendingPathComponent("config"), atomically: true, encoding: .utf8)
    try "<sip:centrale@127.0.0.1>;regint=0;answermode=auto;mediaenc=srtp-mand;audio_codecs=opus;video_codecs=vp8\n"
        .write(to: directory.appendingPathComponent("accounts"), atomically: true, encoding: .utf8)
    try "".write(to: directory.appendingPathComponent("contacts"), atomically: true, encoding: .utf8)
    let baresip = Process()
    baresip.executableURL = URL(fileURLWithPath: binary)
    baresip.arguments = ["-f", directory.path]
    baresip.standardInput = FileHandle.nullDevice
    baresip.standardOutput = FileHandle.nullDevice
    baresip.standardError = FileHandle.nullDevice
    try baresip.run()
    defer {
        if baresip.isRunning {
            kill(baresip.processIdentifier, SIGTERM)
            for _ in 0..<300 where baresip.isRunning { usleep(10_000) }
            if baresip.isRunning { kill(baresip.processIdentifier, SIGKILL) }
        }
        baresip.waitUntilExit()
    }
    try await Task.sleep(for: .milliseconds(500))

    var logger = Logger(label: "media-benchmark.sip")
    logger.logLevel = .error
    let agent = UserAgent(configuration: UserAgentConfiguration(user: "tablet-benchmark", srtpRequired: true),
                          group: MultiThreadedEventLoopGroup.singleton, logger: logger)
    _ = try await agent.start()
    let session = try MediaSession.bind(host: "127.0.0.1")
    defer { session.stop() }
    let offer = agent.mediaNegotiator(audioPort: session.localAudioPort, videoPort: session.localVideoPort).makeOffer()
    var answer: SessionDescription?
    var handle: CallHandle?
    for attempt in 0..<5 where answer == nil {
        if attempt > 0 { try await Task.sleep(for: .seconds(1)) }
        handle = await agent.invite(to: "sip:centrale@127.0.0.1:\(sipPort)", offer: offer.description, ringTimeout: .seconds(5))
        for await event in agent.events {
            if case .answered(let h, let remote) = event, h == handle { answer = remote; break }
            if case .failed(let h, _, _) = event, h == handle { break }
        }
    }
    guard let answer, let handle else {
        print("baresip comparison: baresip did not answer")
        await agent.shutdown()
        return
    }
    let media = try MediaNegotiator.readAnswer(answer, for: offer)
    guard let audio = media.audio, let video = media.video, media.isSecure else {
        print("baresip comparison: baresip's answer lacks SRTP audio or video")
        return
    }
    let parameters = MediaParameters(
        remoteHost: media.remoteAddress, remoteAudioPort: audio.remotePort, remoteAudioRTCPPort: audio.remoteRTCPPort,
        remoteVideoPort: video.remotePort, remoteVideoRTCPPort: video.remoteRTCPPort,
        audioCodec: .opus(payloadType: Int(audio.payloadType)), videoPayloadType: Int(video.payloadType),
        sendKey: audio.sendKey?.bytes, receiveKey: audio.receiveKey?.bytes,
        videoSendKey: video.sendKey?.bytes, videoReceiveKey: video.receiveKey?.bytes, rtcpMux: audio.rtcpMux,
        audioBitrate: 32_000, videoBitrate: 800_000, cameraFormat: CameraFormat(width: 640, height: 480, framesPerSecond: 25),
        voiceProcessing: echoCancellation ? VoiceProcessing() : .none)
    let display = NullDisplay()
    try session.start(parameters, camera: StillCamera(), microphone: ToneSource(frequency: 1_000), speaker: RecordingAudioSink(capacity: 0),
                      display: display, onFailure: { print("our end: \($0)") })
    // Let both ends settle (keyframes, jitter buffers), then measure the same window.
    try await Task.sleep(for: .seconds(3))
    let threadsBefore = threadCPUSeconds()
    let oursBefore = cpuSeconds(), theirsBefore = processCPUSeconds(baresip.processIdentifier) ?? 0
    let statisticsBefore = session.statistics
    let wallBefore = ContinuousClock.now
    try await Task.sleep(for: .seconds(seconds))
    let wall = wallBefore.duration(to: .now)
    let ours = cpuSeconds() - oursBefore
    let theirs = (processCPUSeconds(baresip.processIdentifier) ?? 0) - theirsBefore
    let statistics = session.statistics
    let threadsAfter = threadCPUSeconds()
    await agent.hangUp(handle)
    session.stop()
    await agent.shutdown()

    let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
    let oursPerMinute = ours / wallSeconds * 60, theirsPerMinute = theirs / wallSeconds * 60
    let mode = echoCancellation ? "on (with gain control, noise suppression, high-pass)" : "off (baresip runs none)"
    print("Same call at both ends (640x480@25 VP8 800 kbit/s + Opus 32 kbit/s, SRTP, still picture both ways, our echo canceller \(mode)), "
          + String(format: "%.0f s: beeldzorg %.2f CPU s per call-minute, baresip %.2f; ratio %.2f (goal <= 1.0)",
                   wallSeconds, oursPerMinute, theirsPerMinute, theirsPerMinute > 0 ? oursPerMinute / theirsPerMinute : .infinity))
    print("  in that window we sent \(statistics.video.framesSent - statisticsBefore.video.framesSent) video frames and decoded "
          + "\(statistics.video.framesDecoded - statisticsBefore.video.framesDecoded) from baresip, "
          + "\(statistics.audio.framesDecoded - statisticsBefore.audio.framesDecoded) audio frames; auth failures "
          + "\(statistics.audio.authenticationFailures + statistics.video.authenticationFailures)")
    // Per thread; a thread that ended during the window is missing, one that started in it counts whole.
    let perThread = threadsAfter.map { ($0.key, ($0.value - (threadsBefore[$0.key] ?? 0)) / wallSeconds * 60) }
        .filter { $0.1 >= 0.01 }.sorted { $0.1 > $1.1 }
    print("  our end by thread (CPU s per call-minute): "
          + perThread.map { "\($0.0) " + String(format: "%.2f", $0.1) }.joined(separator: ", "))
}
