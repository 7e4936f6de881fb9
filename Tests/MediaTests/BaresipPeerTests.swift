// Our media against a real peer: a baresip post (Debian baresip-core) that auto-answers with
// mandatory SRTP (SDES), records what it hears with `sndfile`, saves a received picture with
// `snapshot_recv` (ctrl_tcp), and sends a 440 Hz tone (`ausine`) and `fakevideo` pictures.
// The call is set up by our SIP user agent with our SDP offer, as the daemon does.
import Devices
import Foundation
import Logging
import NIOPosix
import SIP
import Synchronization
import Testing
@testable import Media

@Suite(.serialized) struct BaresipPeerTests {
    @Test func aBaresipPostDecodesOurToneAndPictureAndWeDecodeItsOwn() async throws {
        let post = try BaresipMediaPost()
        defer { post.stop() }
        try await post.start()

        var logger = Logger(label: "test.sip")
        logger.logLevel = .warning
        let agent = UserAgent(configuration: UserAgentConfiguration(user: "tablet-test", srtpRequired: true),
                              group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        _ = try await agent.start()
        let events = EventLog<UserAgentEvent>()
        let listener = Task { for await event in agent.events { events.append(event) } }
        let session = try MediaSession.bind(host: "127.0.0.1")
        let camera = TestPatternCamera()
        let microphone = ToneSource(frequency: 1_000, amplitude: 0.4)
        let speaker = RecordingAudioSink()
        let display = RecordingVideoSink(capacity: 10)
        var handle: CallHandle?
        defer {
            session.stop()
            listener.cancel()
        }

        let offer = agent.mediaNegotiator(audioPort: session.localAudioPort, videoPort: session.localVideoPort).makeOffer()
        handle = await agent.invite(to: post.uri, offer: offer.description)
        #expect(await eventually(timeout: .seconds(20)) { events.all.contains { if case .answered = $0 { true } else { false } } },
                "baresip did not answer: \(events.all)\n\(post.log.suffix(3000))")
        guard case .answered(_, let answer)? = events.all.first(where: { if case .answered = $0 { true } else { false } }) else { return }
        let media = try MediaNegotiator.readAnswer(answer, for: offer)
        #expect(media.isSecure, "baresip answered without SRTP")
        let audio = try #require(media.audio)
        let video = try #require(media.video, "baresip declined video")
        #expect(audio.codec == .opus && video.codec == .vp8)
        let parameters = MediaParameters(
            remoteHost: media.remoteAddress, remoteAudioPort: audio.remotePort, remoteAudioRTCPPort: audio.remoteRTCPPort,
            remoteVideoPort: video.remotePort, remoteVideoRTCPPort: video.remoteRTCPPort,
            audioCodec: .opus(payloadType: Int(audio.payloadType)), videoPayloadType: Int(video.payloadType),
            sendKey: audio.sendKey?.bytes, receiveKey: audio.receiveKey?.bytes,
            videoSendKey: video.sendKey?.bytes, videoReceiveKey: video.receiveKey?.bytes, rtcpMux: audio.rtcpMux,
            cameraFormat: CameraFormat(width: 640, height: 480, framesPerSecond: 25))
        try session.start(parameters, camera: camera, microphone: microphone, speaker: speaker, display: display,
                          onFailure: { _ in })

        // Both directions flow: 4 s of audio and 2 s of video decoded on our side.
        let flowing = await eventually(timeout: .seconds(40)) {
            let statistics = session.statistics
            return statistics.audio.framesDecoded >= 200 && statistics.video.framesDecoded >= 50
        }
        let statistics = session.statistics
        #expect(flowing, "from baresip: \(statistics)\n\(post.log.suffix(3000))")
        #expect(statistics.audio.authenticationFailures == 0 && statistics.video.authenticationFailures == 0)

        // baresip's picture of us.
        let snapshot = post.directory.appendingPathComponent("received.png").path
        try post.command("snapshot_recv", snapshot)
        #expect(await eventually(timeout: .seconds(20)) { (try? FileManager.default.attributesOfItem(atPath: snapshot)[.size] as? Int) ?? 0 > 1_000 },
                "no snapshot: \(post.log.suffix(3000))")

        if let handle { await agent.hangUp(handle) }
        session.stop()
        // baresip closes its recording when the call ends.
        #expect(await eventually(timeout: .seconds(15)) { post.events.contains { $0.contains("CALL_CLOSED") } })
        post.stop()
        await agent.shutdown()

        // 1. Our 1 kHz tone, as baresip decoded it (sndfile's "dec" file).
        let recording = try #require(post.decodedRecording(), "no sndfile recording in \(post.directory.path)")
        let clip = try WAVFile.read(path: recording)
        #expect(clip.samples.count >= clip.sampleRate * 2, "baresip recorded only \(clip.samples.count) samples")
        let heard = Array(clip.samples.dropFirst(clip.sampleRate).prefix(clip.sampleRate * 2))
        let toneAtPost = Signal.dominantFrequency(heard, sampleRate: clip.sampleRate, range: 200...3_000, step: 5)
        print("baresip heard \(toneAtPost) Hz (we sent 1000 Hz), rms \(Int(Signal.rms(heard))), \(clip.sampleRate) Hz, \(clip.samples.count) samples")
        #expect(abs(toneAtPost - 1_000) <= 10)
        #expect(Signal.rms(heard) > 1_000)

        // 2. Our test pattern in baresip's snapshot: all eight colour bars, grey counter strip.
        let bars = try Self.barColours(in: snapshot)
        print("baresip snapshot: bars found \(bars.found.sorted()), grey strip \(bars.greyStrip)")
        #expect(bars.found.count == 8, "bars seen: \(bars.found.sorted())")
        #expect(bars.greyStrip)

        // 3. baresip's 440 Hz tone and fakevideo pictures, decoded on our side.
        let ours = Array(speaker.samples.suffix(48_000 * 2))
        let toneHere = Signal.dominantFrequency(ours, sampleRate: 48_000, range: 200...3_000, step: 5)
        print("we heard \(toneHere) Hz (baresip's ausine 440 Hz); decoded \(statistics.video.framesDecoded) pictures from baresip")
        #expect(abs(toneHere - 440) <= 10)
        let picture = try #require(display.frames.last)
        #expect(picture.width == 640 && picture.height == 480, "baresip sent \(picture.width)×\(picture.height)")
        func mean(_ plane: ArraySlice<UInt8>) -> Int { plane.reduce(0) { $0 + Int($1) } / plane.count }
        let y = mean(picture.planes[0..<picture.lumaCount])
        let u = mean(picture.planes[picture.lumaCount..<(picture.lumaCount + picture.chromaCount)])
        let v = mean(picture.planes[(picture.lumaCount + picture.chromaCount)...])
        let luma = picture.planes[0..<picture.lumaCount]
        print("baresip's picture: mean Y \(y) (\(luma.min()!)…\(luma.max()!)) U \(u) V \(v)")
        // baresip 1.0's fakevideo sends a flat grey picture (here: Y 88, U 128, V 127): a
        // decoded frame of the right size and colour is what we can check.
        #expect(abs(u - 128) <= 8 && abs(v - 128) <= 8, "fakevideo's grey came out coloured: U \(u) V \(v)")
        #expect((40...140).contains(y), "fakevideo's grey came out with mean luma \(y)")
    }

    /// Which of the test pattern's eight bars (white, yellow, cyan, green, magenta, red, blue,
    /// black) appear in a row through the middle of the picture, and whether the strip above
    /// the counter is grey. The PNG is turned into RGB by ffmpeg.
    static func barColours(in png: String) throws -> (found: Set<String>, greyStrip: Bool) {
        let width = 640, height = 480
        let rgb = try runCapturing("/usr/bin/ffmpeg", ["-v", "error", "-i", png, "-f", "rawvideo", "-pix_fmt", "rgb24",
                                                       "-s", "\(width)x\(height)", "-"])
        #expect(rgb.count == width * height * 3, "snapshot is not 640×480 (\(rgb.count) bytes of RGB)")
        guard rgb.count == width * height * 3 else { return ([], false) }
        let colours: [(String, (Int, Int, Int))] = [
            ("white", (235, 235, 235)), ("yellow", (235, 235, 16)), ("cyan", (16, 235, 235)), ("green", (16, 235, 16)),
            ("magenta", (235, 16, 235)), ("red", (235, 16, 16)), ("blue", (16, 16, 235)), ("black", (16, 16, 16)),
        ]
        func pixel(_ x: Int, _ y: Int) -> (Int, Int, Int) {
            let i = (y * width + x) * 3
            return (Int(rgb[i]), Int(rgb[i + 1]), Int(rgb[i + 2]))
        }
        func near(_ a: (Int, Int, Int), _ b: (Int, Int, Int), _ tolerance: Int) -> Bool {
            abs(a.0 - b.0) <= tolerance && abs(a.1 - b.1) <= tolerance && abs(a.2 - b.2) <= tolerance
        }
        var counts: [String: Int] = [:]
        for x in 0..<width {
            let p = pixel(x, height / 3)
            if let match = colours.first(where: { near(p, $0.1, 45) }) { counts[match.0, default: 0] += 1 }
        }
        // A bar is 80 px wide; most of it must be there (edges blur, the bars scroll).
        let found = Set(counts.filter { $0.value >= 40 }.map(\.key))
        let block = TestPatternCamera.counterBlockSize(width: width)
        let stripY = height - 2 * block - block / 4
        let greyStrip = (0..<width).allSatisfy { near(pixel($0, stripY), (128, 128, 128), 30) }
        return (found, greyStrip)
    }
}

/// Events kept for polling.
final class EventLog<Event: Sendable>: Sendable {
    private let events = Mutex<[Event]>([])
    func append(_ event: Event) { events.withLock { $0.append(event) } }
    var all: [Event] { events.withLock { $0 } }
}

func runCapturing(_ executable: String, _ arguments: [String]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return [UInt8](data)
}

/// A baresip centrale post for media: auto-answer, `srtp-mand`, Opus and VP8, `ausine` 440 Hz
/// and `fakevideo` as its sources, `sndfile` recording both directions into its directory,
/// `snapshot` for pictures, `ctrl_tcp` for commands. Its own directory and ports; started
/// through perl with an empty signal mask (the test process blocks signals in its threads and
/// a child would inherit that) and stopped by its PID.
final class BaresipMediaPost: @unchecked Sendable {
    static let binary = "/usr/bin/baresip"

    let directory: URL
    let sipPort: Int
    let controlPort: Int
    private let process = Process()
    private let received = EventLog<String>()
    private let controlSocket = Mutex<Int32>(-1)
    private var reader: Thread?

    init(extraConfig: String = "") throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary), "baresip is not installed: apt-get install baresip-core")
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("baresip-media-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var sip = try freeLocalPort()
        // baresip listens on UDP and TCP at the SIP port and TLS on the next one.
        while !portIsFree(sip, udp: true) || !portIsFree(sip + 1, udp: false) { sip = try freeLocalPort() }
        sipPort = sip
        var control = try freeLocalPort()
        while control == sip || control == sip + 1 { control = try freeLocalPort() }
        controlPort = control
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
        snd_path\t\t\(directory.path)
        module_path\t\t/usr/lib/baresip/modules
        module\t\t\topus.so
        module\t\t\tvp8.so
        module\t\t\tausine.so
        module\t\t\taubridge.so
        module\t\t\tfakevideo.so
        module\t\t\tsndfile.so
        module\t\t\tsnapshot.so
        module\t\t\tsrtp.so
        module_app\t\taccount.so
        module_app\t\tmenu.so
        module_app\t\tctrl_tcp.so
        ctrl_tcp_listen\t\t127.0.0.1:\(controlPort)
        rtp_ports\t\t40000-49999
        \(extraConfig)

        """.write(to: directory.appendingPathComponent("config"), atomically: true, encoding: .utf8)
        try "<sip:centrale@127.0.0.1>;regint=0;answermode=auto;mediaenc=srtp-mand;audio_codecs=opus;video_codecs=vp8\n"
            .write(to: directory.appendingPathComponent("accounts"), atomically: true, encoding: .utf8)
        try "".write(to: directory.appendingPathComponent("contacts"), atomically: true, encoding: .utf8)
        let log = directory.appendingPathComponent("baresip.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/perl")
        process.arguments = ["-MPOSIX", "-e", "sigprocmask(SIG_SETMASK, POSIX::SigSet->new); exec @ARGV or die",
                             Self.binary, "-f", directory.path]
        process.currentDirectoryURL = directory
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = handle
        process.standardError = handle
    }

    var uri: String { "sip:centrale@127.0.0.1:\(sipPort)" }
    var log: String { (try? String(contentsOf: directory.appendingPathComponent("baresip.log"), encoding: .utf8)) ?? "" }
    var events: [String] { received.all }
    var pid: Int32 { process.processIdentifier }

    /// Starts baresip and connects to ctrl_tcp, which is also how we know it is ready.
    func start() async throws {
        try process.run()
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw BaresipFailure("baresip exited:\n\(log)") }
            if let fd = connectLocal(controlPort) {
                controlSocket.withLock { $0 = fd }
                let thread = Thread { [received] in
                    var pending: [UInt8] = []
                    var buffer = [UInt8](repeating: 0, count: 4_096)
                    while true {
                        let count = recv(fd, &buffer, buffer.count, 0)
                        if count <= 0 { return }
                        pending += buffer[0..<count]
                        while let colon = pending.firstIndex(of: UInt8(ascii: ":")),
                              let length = Int(String(decoding: pending[..<colon], as: UTF8.self)),
                              pending.count >= colon + 2 + length {
                            let text = String(decoding: pending[(colon + 1)..<(colon + 1 + length)], as: UTF8.self)
                            pending.removeFirst(colon + 2 + length)
                            received.append(text)
                        }
                    }
                }
                thread.start()
                reader = thread
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BaresipFailure("ctrl_tcp never answered:\n\(log)")
    }

    /// Sends a ctrl_tcp command (netstring-framed JSON).
    func command(_ name: String, _ parameters: String = "") throws {
        let json = try JSONSerialization.data(withJSONObject: ["command": name, "params": parameters, "token": "t\(UInt32.random(in: 0...UInt32.max))"])
        let frame = Array("\(json.count):".utf8) + [UInt8](json) + Array(",".utf8)
        let fd = controlSocket.withLock { $0 }
        guard fd >= 0, frame.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == frame.count else {
            throw BaresipFailure("ctrl_tcp send failed")
        }
    }

    /// The WAV sndfile wrote for what baresip decoded (received) in the call.
    func decodedRecording() -> String? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix("-dec.wav") }.sorted().last.map { directory.appendingPathComponent($0).path }
    }

    /// SIGTERM by PID, SIGKILL after 3 s; joins the process. Idempotent.
    func stop() {
        let fd = controlSocket.withLock { fd -> Int32 in
            defer { fd = -1 }
            return fd
        }
        if fd >= 0 {
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
        }
        guard process.processIdentifier > 0, process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        for _ in 0..<300 where process.isRunning { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit {
        stop()
        if ProcessInfo.processInfo.environment["BEELDZORG_KEEP_PEER_DIRS"] == nil {
            try? FileManager.default.removeItem(at: directory)
        }
    }
}

struct BaresipFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A TCP port the kernel had free a moment ago on 127.0.0.1.
func freeLocalPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = loopback(0)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw BaresipFailure("bind: errno \(errno)") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

func portIsFree(_ port: Int, udp: Bool) -> Bool {
    for type in udp ? [SOCK_DGRAM, SOCK_STREAM] : [SOCK_STREAM] {
        let fd = socket(AF_INET, Int32(type.rawValue), 0)
        defer { close(fd) }
        var address = loopback(port)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if bound != 0 { return false }
    }
    return true
}

func connectLocal(_ port: Int) -> Int32? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = loopback(port)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if connected == 0 { return fd }
    close(fd)
    return nil
}

private func loopback(_ port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    return address
}
