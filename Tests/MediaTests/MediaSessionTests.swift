import Foundation
import Devices
import Synchronization
import Testing
@testable import Media

/// Polls `condition` until it holds or `timeout` passes. The assertion is on the condition,
/// not on the time: a slow machine only waits longer.
func eventually(timeout: Duration = .seconds(15), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

final class FailureLog: Sendable {
    private let reports = Mutex<[MediaFailureReport]>([])
    func record(_ report: MediaFailureReport) { reports.withLock { $0.append(report) } }
    var all: [MediaFailureReport] { reports.withLock { $0 } }
}

/// One side of a loopback call: its session and its devices.
final class Endpoint {
    let session: MediaSession
    let camera: TestPatternCamera
    let microphone: ToneSource
    let speaker = RecordingAudioSink()
    let display = RecordingVideoSink(capacity: 5)
    let failures = FailureLog()

    init(tone: Double, camera: TestPatternCamera = TestPatternCamera()) throws {
        session = try MediaSession.bind(host: "127.0.0.1")
        self.camera = camera
        microphone = ToneSource(frequency: tone, amplitude: 0.4)
    }

    func start(peer: Endpoint, sendKey: [UInt8]?, receiveKey: [UInt8]?, codec: AudioCodec = .opus(payloadType: 111),
               rtcpMux: Bool = true, video: Bool = true, allowPlain: Bool = false) throws {
        let parameters = MediaParameters(
            remoteHost: "127.0.0.1", remoteAudioPort: peer.session.localAudioPort,
            remoteVideoPort: video ? peer.session.localVideoPort : nil, audioCodec: codec, videoPayloadType: video ? 96 : nil,
            sendKey: sendKey, receiveKey: receiveKey, allowPlainRTP: allowPlain, rtcpMux: rtcpMux, videoBitrate: 400_000,
            cameraFormat: CameraFormat(width: 320, height: 240, framesPerSecond: 25), rtcpInterval: .milliseconds(500))
        let failures = self.failures
        try session.start(parameters, camera: camera, microphone: microphone, speaker: speaker, display: display,
                          onFailure: { failures.record($0) })
    }
}

@Suite(.serialized) struct MediaSessionTests {
    static let keyA: [UInt8] = (0..<30).map { UInt8(($0 * 13 + 1) & 0xFF) }
    static let keyB: [UInt8] = (0..<30).map { UInt8(($0 * 17 + 9) & 0xFF) }

    @Test func bindAllocatesDistinctEvenPortsBeforeTheOffer() throws {
        let session = try MediaSession.bind(host: "127.0.0.1")
        defer { session.stop() }
        #expect(session.localAudioPort > 0 && session.localVideoPort > 0)
        #expect(session.localAudioPort != session.localVideoPort)
        #expect(session.localAudioPort % 2 == 0)
        #expect(session.localAudioRTCPPort == session.localAudioPort + 1)
        #expect(!session.isRunning)
    }

    @Test(arguments: [true, false])
    func twoSessionsExchangeAudioAndVideoOverSRTP(rtcpMux: Bool) async throws {
        let alice = try Endpoint(tone: 1_000)
        let bob = try Endpoint(tone: 600)
        try alice.start(peer: bob, sendKey: Self.keyA, receiveKey: Self.keyB, rtcpMux: rtcpMux)
        try bob.start(peer: alice, sendKey: Self.keyB, receiveKey: Self.keyA, rtcpMux: rtcpMux)
        #expect(await eventually { alice.camera.isOpen && alice.microphone.isOpen && alice.speaker.isOpen })

        let flowing = await eventually {
            let a = alice.session.statistics, b = bob.session.statistics
            return a.video.framesDecoded >= 25 && b.video.framesDecoded >= 25
                && a.audio.framesDecoded >= 50 && b.audio.framesDecoded >= 50
                && a.audio.rtcpPacketsReceived > 0 && b.video.rtcpPacketsReceived > 0
                && a.video.rtcpPacketsReceived > 0 && b.audio.rtcpPacketsReceived > 0
        }
        alice.session.stop()
        bob.session.stop()
        let a = alice.session.statistics, b = bob.session.statistics
        #expect(flowing, "alice \(a) bob \(b)")
        #expect(a.audio.authenticationFailures == 0 && b.video.authenticationFailures == 0)
        #expect(alice.failures.all.isEmpty && bob.failures.all.isEmpty)

        // Each side hears the other's tone, at the other's frequency.
        let heardByBob = Array(bob.speaker.samples.drop { $0 == 0 }.dropFirst(4_800))
        let heardByAlice = Array(alice.speaker.samples.drop { $0 == 0 }.dropFirst(4_800))
        #expect(heardByBob.count >= 12_000 && heardByAlice.count >= 12_000)
        #expect(abs(Signal.dominantFrequency(Array(heardByBob.prefix(12_000)), sampleRate: 48_000) - 1_000) <= 10, "\(b.audio)")
        #expect(abs(Signal.dominantFrequency(Array(heardByAlice.prefix(12_000)), sampleRate: 48_000) - 600) <= 10, "\(a.audio)")

        // Each side sees the other's test pattern: counters go up.
        let seen = bob.display.frames.map(TestPatternCamera.frameNumber(in:))
        #expect(seen.count == 5)
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0 < $1 }, "frame numbers \(seen)")
        #expect(bob.display.frames.last?.width == 320)

        // stop() closed the devices.
        #expect(!alice.camera.isOpen && !alice.microphone.isOpen && !alice.speaker.isOpen)
        #expect(!bob.camera.isOpen && !bob.microphone.isOpen && !bob.speaker.isOpen)
    }

    /// Nice values of this process's threads with `name` (from /proc/self/task/*/stat).
    static func niceValues(ofThreadsNamed name: String) -> [Int] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.compactMap { task -> Int? in
            guard let comm = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8),
                  comm.trimmingCharacters(in: .whitespacesAndNewlines) == name,
                  let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            // After the command name, field 3 (state) is first; nice is field 19.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 16 ? Int(fields[16]) : nil
        }
    }

    @Test func audioThreadsAskForAHigherPriorityThanVideo() async throws {
        // Root, or RLIMIT_NICE of at least 24 (the unit's LimitNICE=-4), may go down to -4.
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(__RLIMIT_NICE.rawValue), &limit)
        let expected = geteuid() == 0 || limit.rlim_cur >= 24 ? Int(JoinableThread.audioNiceness) : 0
        let alice = try Endpoint(tone: 1_000)
        let bob = try Endpoint(tone: 600)
        try alice.start(peer: bob, sendKey: Self.keyA, receiveKey: Self.keyB)
        try bob.start(peer: alice, sendKey: Self.keyB, receiveKey: Self.keyA)
        // Other suites running alongside may add their own media threads: at least ours are there.
        let running = await eventually { Self.niceValues(ofThreadsNamed: "video-receive").count >= 2 }  // started last
        let audio = ["audio-send", "audio-receive", "audio-playout"].flatMap { Self.niceValues(ofThreadsNamed: $0) }
        let video = ["video-send", "video-receive"].flatMap { Self.niceValues(ofThreadsNamed: $0) }
        alice.session.stop()
        bob.session.stop()
        #expect(running)
        #expect(audio.count >= 6 && audio.allSatisfy { $0 == expected }, "audio threads' nice values \(audio), expected \(expected)")
        #expect(video.count >= 4 && video.allSatisfy { $0 == 0 }, "video threads' nice values \(video)")
    }

    @Test func holdStopsSendingOnTheSameSocketsAndResumeStartsItAgain() async throws {
        let alice = try Endpoint(tone: 1_000)
        let bob = try Endpoint(tone: 600)
        try alice.start(peer: bob, sendKey: Self.keyA, receiveKey: Self.keyB)
        try bob.start(peer: alice, sendKey: Self.keyB, receiveKey: Self.keyA)
        defer {
            alice.session.stop()
            bob.session.stop()
        }
        #expect(await eventually { bob.session.statistics.video.framesDecoded >= 10 && bob.session.statistics.audio.framesDecoded >= 25 })

        // The post holds alice's call: alice stops sending, bob stops hearing and seeing her.
        alice.session.holdSending(true)
        try await Task.sleep(for: .milliseconds(400))  // what was in flight arrives
        let heldAt = bob.session.statistics, aliceHeldAt = alice.session.statistics
        try await Task.sleep(for: .milliseconds(1_500))
        let heldEnd = bob.session.statistics, aliceHeldEnd = alice.session.statistics
        #expect(heldEnd.audio.framesDecoded == heldAt.audio.framesDecoded, "bob decoded alice's audio while held")
        #expect(heldEnd.video.framesDecoded == heldAt.video.framesDecoded, "bob decoded alice's video while held")
        #expect(aliceHeldEnd.audio.framesSent == aliceHeldAt.audio.framesSent && aliceHeldEnd.video.framesSent == aliceHeldAt.video.framesSent)
        // ...while alice goes on receiving bob, and her RTCP goes on.
        #expect(aliceHeldEnd.audio.framesDecoded >= aliceHeldAt.audio.framesDecoded + 50)
        #expect(heldEnd.audio.rtcpPacketsReceived > heldAt.audio.rtcpPacketsReceived)
        #expect(alice.microphone.isOpen && alice.camera.isOpen, "a held call is still a call: devices stay open")

        // Resumed: the same sockets and keys carry her audio and video again (a keyframe first).
        alice.session.holdSending(false)
        let resumed = await eventually {
            let b = bob.session.statistics
            return b.audio.framesDecoded >= heldEnd.audio.framesDecoded + 25 && b.video.framesDecoded >= heldEnd.video.framesDecoded + 10
        }
        #expect(resumed, "\(bob.session.statistics)")
        #expect(bob.session.statistics.audio.authenticationFailures == 0)
    }

    @Test func peerWithTheWrongKeyDecodesNothing() async throws {
        let alice = try Endpoint(tone: 1_000)
        let mallory = try Endpoint(tone: 600)
        try alice.start(peer: mallory, sendKey: Self.keyA, receiveKey: Self.keyB)
        // Mallory guesses a key for alice's stream.
        try mallory.start(peer: alice, sendKey: Self.keyB, receiveKey: Self.keyB)
        let rejected = await eventually {
            let m = mallory.session.statistics
            return m.audio.authenticationFailures >= 50 && m.video.authenticationFailures >= 50
        }
        // And alice, with the right key for mallory's stream, still decodes (control).
        let control = await eventually { alice.session.statistics.video.framesDecoded >= 5 }
        alice.session.stop()
        mallory.session.stop()
        let m = mallory.session.statistics
        #expect(rejected, "\(m)")
        #expect(control)
        #expect(m.audio.framesDecoded == 0 && m.video.framesDecoded == 0 && m.video.framesReceived == 0)
        #expect(mallory.display.count == 0)
        #expect(mallory.speaker.samples.allSatisfy { $0 == 0 })
    }

    /// Issue 15 (RFC 7983): linphone sends STUN Binding requests to our RTP ports. They are
    /// demultiplexed by their first byte: a plain Binding request is answered from the port it
    /// reached with XOR-MAPPED-ADDRESS; one with MESSAGE-INTEGRITY (an ICE check we never
    /// offered) is ignored; neither counts as an SRTP failure or a malformed packet.
    @Test(arguments: [true, false])
    func stunOnMediaPortsIsAnsweredNotCountedAsSRTPFailure(rtcpMux: Bool) async throws {
        let alice = try Endpoint(tone: 1_000)
        let bob = try Endpoint(tone: 600)
        defer { alice.session.stop(); bob.session.stop() }
        try alice.start(peer: bob, sendKey: Self.keyA, receiveKey: Self.keyB, rtcpMux: rtcpMux)
        let probe = try UDPSocket(host: "127.0.0.1")
        let ports = [alice.session.localAudioPort, alice.session.localVideoPort]
            + (rtcpMux ? [] : [alice.session.localAudioRTCPPort])
        for (n, port) in ports.enumerated() {
            let transaction = (0..<12).map { UInt8($0 * 7 + n) }
            let request: [UInt8] = [0x00, 0x01, 0x00, 0x00] + MediaSTUN.magicCookie + transaction
            try probe.send(request, to: SocketAddress(host: "127.0.0.1", port: port))
            var answer: [UInt8]?
            let deadline = ContinuousClock.now + .seconds(5)
            while answer == nil, ContinuousClock.now < deadline {
                if let (_, bytes) = try UDPSocket.receive(from: [probe], timeoutMilliseconds: 100) { answer = bytes }
            }
            let response = try #require(answer, "no STUN answer from port \(port)")
            #expect(Array(response[0..<2]) == [0x01, 0x01])  // Binding success
            #expect(Array(response[8..<20]) == transaction)
            // XOR-MAPPED-ADDRESS: 127.0.0.1 and the probe's port.
            #expect(Array(response[20..<24]) == [0x00, 0x20, 0x00, 0x08])
            #expect(Int(UInt16(response[26]) << 8 | UInt16(response[27])) ^ 0x2112 == probe.localPort)
            #expect(zip(response[28..<32], MediaSTUN.magicCookie).map { $0 ^ $1 } == [127, 0, 0, 1])
        }
        // An ICE connectivity check (USERNAME, MESSAGE-INTEGRITY) is not ours to answer.
        let username: [UInt8] = [0x00, 0x06, 0x00, 0x04] + Array("a:bc".utf8)
        let integrity: [UInt8] = [0x00, 0x08, 0x00, 0x14] + [UInt8](repeating: 0xAB, count: 20)
        let check: [UInt8] = [0x00, 0x01, 0x00, UInt8(username.count + integrity.count)] + MediaSTUN.magicCookie
            + [UInt8](repeating: 9, count: 12) + username + integrity
        try probe.send(check, to: SocketAddress(host: "127.0.0.1", port: alice.session.localAudioPort))
        let unanswered = try UDPSocket.receive(from: [probe], timeoutMilliseconds: 300)
        #expect(unanswered == nil)
        let statistics = alice.session.statistics
        #expect(statistics.audio.authenticationFailures == 0 && statistics.video.authenticationFailures == 0)
        #expect(statistics.audio.malformedPackets == 0 && statistics.video.malformedPackets == 0)
        probe.close()
    }

    @Test func cameraFailureStopsVideoAndKeepsAudio() async throws {
        let alice = try Endpoint(tone: 1_000, camera: TestPatternCamera(failAfter: 10))
        let bob = try Endpoint(tone: 600)
        try alice.start(peer: bob, sendKey: Self.keyA, receiveKey: Self.keyB)
        try bob.start(peer: alice, sendKey: Self.keyB, receiveKey: Self.keyA)
        let reported = await eventually { !alice.failures.all.isEmpty }
        let framesAtFailure = bob.session.statistics.video.framesDecoded
        let audioAtFailure = bob.session.statistics.audio.framesDecoded
        let audioGoesOn = await eventually { bob.session.statistics.audio.framesDecoded >= audioAtFailure + 50 }
        alice.session.stop()
        bob.session.stop()
        #expect(reported)
        let failure = try #require(alice.failures.all.first)
        #expect(failure.component == .camera && failure.videoSendingStopped)
        #expect(alice.failures.all.count == 1)
        #expect(audioGoesOn)
        #expect(bob.session.statistics.video.framesDecoded <= 10)
        #expect(framesAtFailure <= 10)
        // Video in the other direction was not affected.
        #expect(alice.session.statistics.video.framesDecoded > 10)
        #expect(!alice.camera.isOpen)
    }

    @Test(arguments: [AudioCodec.pcmu, .pcma])
    func g711WithoutRTCPMuxAndWithoutVideo(codec: AudioCodec) async throws {
        let alice = try Endpoint(tone: 1_000)
        let bob = try Endpoint(tone: 600)
        try alice.start(peer: bob, sendKey: Self.keyA, receiveKey: Self.keyB, codec: codec, rtcpMux: false, video: false)
        try bob.start(peer: alice, sendKey: Self.keyB, receiveKey: Self.keyA, codec: codec, rtcpMux: false, video: false)
        let flowing = await eventually {
            bob.session.statistics.audio.framesDecoded >= 50 && bob.session.statistics.audio.rtcpPacketsReceived >= 1
        }
        alice.session.stop()
        bob.session.stop()
        #expect(flowing, "\(bob.session.statistics)")
        #expect(!alice.camera.isOpen && alice.camera.openCount == 0, "no video negotiated: camera never opened")
        let heard = Array(bob.speaker.samples.drop { $0 == 0 }.dropFirst(960))
        #expect(heard.count >= 12_000)
        #expect(abs(Signal.dominantFrequency(Array(heard.prefix(12_000)), sampleRate: 48_000) - 1_000) <= 10)
    }

    @Test func plainRTPNeedsExplicitPermission() throws {
        let alice = try Endpoint(tone: 1_000)
        let bob = try Endpoint(tone: 600)
        defer {
            alice.session.stop()
            bob.session.stop()
        }
        #expect(throws: MediaError.self) { try alice.start(peer: bob, sendKey: nil, receiveKey: nil) }
        #expect(!alice.session.isRunning)
        try alice.start(peer: bob, sendKey: nil, receiveKey: nil, allowPlain: true)
        #expect(alice.session.isRunning)
        #expect(throws: MediaError.self) { try alice.start(peer: bob, sendKey: nil, receiveKey: nil, allowPlain: true) }
    }
}
