import Devices
import Testing
@testable import Media

/// Liveness (issue 15, problem 4): a session reports `.silence` once when nothing — no RTP
/// and no RTCP — has come from the other side for `livenessTimeout`; a held peer (RTCP only)
/// is alive.
@Suite(.serialized) struct MediaLivenessTests {
    static func start(_ endpoint: Endpoint, peer: Endpoint, sendKey: [UInt8], receiveKey: [UInt8],
                      livenessTimeout: Duration?) throws {
        let parameters = MediaParameters(
            remoteHost: "127.0.0.1", remoteAudioPort: peer.session.localAudioPort, remoteVideoPort: nil,
            videoPayloadType: nil, sendKey: sendKey, receiveKey: receiveKey,
            cameraFormat: CameraFormat(width: 320, height: 240, framesPerSecond: 25), rtcpInterval: .milliseconds(300),
            livenessTimeout: livenessTimeout)
        let failures = endpoint.failures
        try endpoint.session.start(parameters, camera: nil, microphone: endpoint.microphone, speaker: endpoint.speaker,
                                   display: endpoint.display, onFailure: { failures.record($0) })
    }

    static func silenceReports(_ endpoint: Endpoint) -> Int {
        endpoint.failures.all.filter { $0.component == .silence }.count
    }

    @Test func aPeerThatStopsIsReportedSilentOnceAndAHeldPeerIsNot() async throws {
        let tablet = try Endpoint(tone: 1_000)
        let post = try Endpoint(tone: 600)
        defer { tablet.session.stop(); post.session.stop() }
        try Self.start(tablet, peer: post, sendKey: MediaSessionTests.keyA, receiveKey: MediaSessionTests.keyB,
                       livenessTimeout: .milliseconds(1_500))
        try Self.start(post, peer: tablet, sendKey: MediaSessionTests.keyB, receiveKey: MediaSessionTests.keyA,
                       livenessTimeout: nil)
        #expect(await eventually { tablet.session.statistics.audio.packetsReceived >= 25 })

        // The post holds the call: no RTP, only its RTCP reports. Still alive.
        post.session.holdSending(true)
        let heldAt = tablet.session.statistics.audio.packetsReceived
        #expect(await eventually { tablet.session.statistics.audio.rtcpPacketsReceived >= 8 })
        #expect(tablet.session.statistics.audio.packetsReceived <= heldAt + 5, "held, yet RTP kept coming")
        #expect(Self.silenceReports(tablet) == 0, "a held post's RTCP keeps the call alive: \(tablet.failures.all)")
        #expect(tablet.session.silentFor < .milliseconds(1_500))

        // The post dies without a word: reported once, after the timeout and not long after.
        let stopped = ContinuousClock.now
        post.session.stop()
        #expect(await eventually(timeout: .seconds(10)) { Self.silenceReports(tablet) == 1 })
        let after = ContinuousClock.now - stopped
        #expect(after >= .milliseconds(1_000) && after < .seconds(5), "silence reported after \(after)")
        // Once: the thread goes on (the daemon ends the call) without repeating itself.
        #expect(await eventually(timeout: .seconds(1)) { false } == false)
        #expect(Self.silenceReports(tablet) == 1)
    }

    @Test func withoutATimeoutNothingIsReported() async throws {
        let tablet = try Endpoint(tone: 1_000)
        let nobody = try Endpoint(tone: 600)  // bound, never started: sends nothing
        defer { tablet.session.stop(); nobody.session.stop() }
        try Self.start(tablet, peer: nobody, sendKey: MediaSessionTests.keyA, receiveKey: MediaSessionTests.keyB,
                       livenessTimeout: nil)
        #expect(await eventually(timeout: .seconds(2)) { !tablet.failures.all.isEmpty } == false)
        #expect(tablet.session.silentFor >= .seconds(1))
    }
}
