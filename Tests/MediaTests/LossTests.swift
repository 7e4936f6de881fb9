import Devices
import Synchronization
import Testing
@testable import Media

/// A one-way UDP relay on loopback that drops every `dropEvery`-th packet: the network loss
/// a tablet on Wi-Fi sees, made repeatable.
final class LossyRelay: Sendable {
    let audio: UDPSocket
    let video: UDPSocket
    private final class Counters: Sendable {
        let stopped = Atomic<Bool>(false)
        let dropped = Atomic<Int>(0)
    }

    private let counters = Counters()
    private let thread = Mutex<JoinableThread?>(nil)
    var dropped: Int { counters.dropped.load(ordering: .relaxed) }

    init(toAudio audioPort: Int, toVideo videoPort: Int, dropEvery: Int) throws {
        audio = try UDPSocket(host: "127.0.0.1")
        video = try UDPSocket(host: "127.0.0.1")
        let targets = [try SocketAddress(host: "127.0.0.1", port: audioPort), try SocketAddress(host: "127.0.0.1", port: videoPort)]
        let worker = try JoinableThread(name: "lossy-relay") { [audio, video, counters] in
            var forwarded = 0
            while !counters.stopped.load(ordering: .acquiring) {
                guard let (index, bytes) = try? UDPSocket.receive(from: [audio, video], timeoutMilliseconds: 20) else { continue }
                forwarded += 1
                // RTCP passes; media packets are dropped on a fixed pattern.
                if RTPPacketKind.classify(bytes) == .rtp, forwarded % dropEvery == 0 {
                    counters.dropped.add(1, ordering: .relaxed)
                    continue
                }
                try? (index == 0 ? audio : video).send(bytes, to: targets[index])
            }
        }
        thread.withLock { $0 = worker }
    }

    func stop() {
        counters.stopped.store(true, ordering: .releasing)
        thread.withLock { $0?.join() }
        audio.close()
        video.close()
    }
}

@Suite(.serialized) struct LossTests {
    static let keyA: [UInt8] = (0..<30).map { UInt8(($0 * 13 + 1) & 0xFF) }
    static let keyB: [UInt8] = (0..<30).map { UInt8(($0 * 17 + 9) & 0xFF) }

    static func parameters(audio: Int, video: Int, send: [UInt8], receive: [UInt8]) -> MediaParameters {
        MediaParameters(remoteHost: "127.0.0.1", remoteAudioPort: audio, remoteVideoPort: video, videoPayloadType: 96,
                        sendKey: send, receiveKey: receive, videoBitrate: 400_000,
                        cameraFormat: CameraFormat(width: 320, height: 240, framesPerSecond: 25), rtcpInterval: .milliseconds(300))
    }

    /// Alice → relay (loses packets) → Bob; Bob → Alice directly (RTCP feedback gets back).
    static func lossyCall(dropEvery: Int, until done: @escaping (MediaStatistics, MediaStatistics) -> Bool) async throws
        -> (alice: MediaStatistics, bob: MediaStatistics, bobHeard: [Int16], bobSaw: [VideoFrame], dropped: Int, reached: Bool)
    {
        let alice = try MediaSession.bind(host: "127.0.0.1")
        let bob = try MediaSession.bind(host: "127.0.0.1")
        let relay = try LossyRelay(toAudio: bob.localAudioPort, toVideo: bob.localVideoPort, dropEvery: dropEvery)
        let bobSpeaker = RecordingAudioSink()
        let bobDisplay = RecordingVideoSink(capacity: 10)
        try alice.start(parameters(audio: relay.audio.localPort, video: relay.video.localPort, send: keyA, receive: keyB),
                        camera: TestPatternCamera(), microphone: ToneSource(frequency: 1_000), speaker: RecordingAudioSink(),
                        display: RecordingVideoSink(), onFailure: { _ in })
        try bob.start(parameters(audio: alice.localAudioPort, video: alice.localVideoPort, send: keyB, receive: keyA),
                      camera: TestPatternCamera(), microphone: ToneSource(frequency: 600), speaker: bobSpeaker,
                      display: bobDisplay, onFailure: { _ in })
        let reached = await eventually(timeout: .seconds(20)) { done(alice.statistics, bob.statistics) }
        alice.stop()
        bob.stop()
        relay.stop()
        return (alice.statistics, bob.statistics, bobSpeaker.samples, bobDisplay.frames, relay.dropped, reached)
    }

    @Test func videoRecoversThroughPLIAndAudioIsConcealed() async throws {
        let result = try await Self.lossyCall(dropEvery: 23) { alice, bob in
            bob.video.keyframeRequestsSent >= 1 && alice.video.keyframeRequestsReceived >= 1
                && bob.video.framesDecoded >= 60 && bob.audio.concealedFrames >= 3 && alice.audio.remoteFractionLost > 0
        }
        let (alice, bob) = (result.alice, result.bob)
        #expect(result.reached, "alice \(alice)\nbob \(bob)")
        #expect(result.dropped > 0)
        #expect(bob.audio.packetsLost > 0 && bob.video.packetsLost > 0)
        // Frames after the loss were decoded again: the newest pictures are consecutive.
        let numbers = result.bobSaw.map(TestPatternCamera.frameNumber(in:))
        #expect(numbers.count == 10 && numbers.last! > numbers.first!, "\(numbers)")
        // Through 4 % loss the tone is still a 1 kHz tone.
        let heard = Array(result.bobHeard.drop { $0 == 0 }.dropFirst(4_800).prefix(48_000))
        #expect(heard.count >= 12_000)
        #expect(abs(Signal.dominantFrequency(Array(heard.prefix(12_000)), sampleRate: 48_000) - 1_000) <= 10)
    }

    @Test func heavyLossLowersTheVideoBitrate() async throws {
        let result = try await Self.lossyCall(dropEvery: 5) { alice, _ in
            alice.video.remoteFractionLost > 0.1 && alice.video.sendBitrate < 400_000
        }
        #expect(result.reached, "alice \(result.alice)")
        #expect(result.alice.video.sendBitrate >= 150_000)
    }
}
