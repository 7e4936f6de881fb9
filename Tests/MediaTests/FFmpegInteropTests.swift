// A peer nobody on this team wrote: ffmpeg receives our SRTP call from an SDP file (the key
// in a=crypto, as a SIP peer would see it) and decodes it.
import Devices
import Foundation
import Testing
@testable import Media

private let ffmpegPath = ["/usr/bin/ffmpeg", "/usr/local/bin/ffmpeg"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// True once some process has a UDP socket bound to `port` (read from /proc, so we never
/// race ffmpeg for the port ourselves).
private func udpPortIsBound(_ port: Int) -> Bool {
    let hex = String(format: ":%04X ", port)
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
        for line in text.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count > 1, (fields[1] + " ").hasSuffix(hex) { return true }
        }
    }
    return false
}

/// An even RTP port with a free odd RTCP port after it, found by binding and releasing.
private func freePortPair() throws -> Int {
    for _ in 0..<64 {
        let probe = try UDPSocket(host: "127.0.0.1")
        guard probe.localPort % 2 == 0, let rtcp = try? UDPSocket(host: "127.0.0.1", port: probe.localPort + 1) else { continue }
        rtcp.close()
        probe.close()
        return probe.localPort
    }
    throw MediaError.socket("no free port pair")
}

private struct FFmpegResult {
    var videoFrameNumbers: [Int]
    var audio: [Int16]
    var log: String
    var session: MediaStatistics
    /// ffmpeg finished on SIGINT (it cannot while still waiting for a decodable stream).
    var exitedCleanly: Bool
}

/// Runs one call from a MediaSession to ffmpeg for `frames` video frames; ffmpeg is told
/// `ffmpegKey`, we encrypt with `ourKey`.
private func callFFmpeg(ourKey: [UInt8], ffmpegKey: [UInt8], frames: Int) async throws -> FFmpegResult {
    let ffmpeg = try #require(ffmpegPath)
    let width = 320, height = 240
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("beeldzorg-ffmpeg-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let audioPort = try freePortPair()
    var videoPort = try freePortPair()
    while videoPort == audioPort { videoPort = try freePortPair() }
    let inline = Data(ffmpegKey).base64EncodedString()
    let sdp = """
        v=0
        o=- 1 1 IN IP4 127.0.0.1
        s=beeldzorg
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio \(audioPort) RTP/SAVP 111
        a=rtpmap:111 opus/48000/2
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:\(inline)
        m=video \(videoPort) RTP/SAVP 96
        a=rtpmap:96 VP8/90000
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:\(inline)

        """
    let sdpFile = directory.appendingPathComponent("call.sdp")
    try sdp.write(to: sdpFile, atomically: true, encoding: .utf8)
    let videoFile = directory.appendingPathComponent("video.gray")
    let audioFile = directory.appendingPathComponent("audio.s16")
    let logFile = directory.appendingPathComponent("ffmpeg.log")
    FileManager.default.createFile(atPath: logFile.path, contents: nil)

    let process = Process()
    process.executableURL = URL(fileURLWithPath: ffmpeg)
    process.arguments = [
        "-hide_banner", "-nostdin", "-loglevel", "info", "-protocol_whitelist", "file,udp,rtp,srtp",
        "-analyzeduration", "500000", "-reorder_queue_size", "64", "-i", sdpFile.path,
        "-map", "0:v", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "gray", "-y", videoFile.path,
        "-map", "0:a", "-f", "s16le", "-ar", "48000", "-ac", "1", "-y", audioFile.path,
    ]
    let log = try FileHandle(forWritingTo: logFile)
    process.standardOutput = log
    process.standardError = log
    try process.run()
    defer {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
    #expect(await eventually(timeout: .seconds(10)) { udpPortIsBound(videoPort) && udpPortIsBound(audioPort) })

    let session = try MediaSession.bind(host: "127.0.0.1")
    let camera = TestPatternCamera(failAfter: frames)
    let parameters = MediaParameters(
        remoteHost: "127.0.0.1", remoteAudioPort: audioPort, remoteVideoPort: videoPort, audioCodec: .opus(payloadType: 111),
        videoPayloadType: 96, sendKey: ourKey, receiveKey: ourKey, rtcpMux: false, videoBitrate: 500_000,
        cameraFormat: CameraFormat(width: width, height: height, framesPerSecond: 25), rtcpInterval: .seconds(1))
    try session.start(parameters, camera: camera, microphone: ToneSource(frequency: 1_000), speaker: RecordingAudioSink(),
                      display: RecordingVideoSink(), onFailure: { _ in })
    // The camera "vanishes" after `frames` frames; then give ffmpeg a moment for the tail.
    _ = await eventually(timeout: .seconds(30)) { session.statistics.video.framesSent >= frames }
    try await Task.sleep(for: .milliseconds(500))
    session.stop()
    // SIGINT: ffmpeg finishes its outputs and exits.
    process.interrupt()
    let exited = await eventually(timeout: .seconds(5)) { !process.isRunning }
    if !exited { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    try log.close()

    let luma = (try? Data(contentsOf: videoFile)).map { [UInt8]($0) } ?? []
    let frameSize = width * height
    let chroma = [UInt8](repeating: 128, count: frameSize / 2)
    let numbers = stride(from: 0, to: luma.count - frameSize + 1, by: frameSize).map { start in
        TestPatternCamera.frameNumber(in: VideoFrame(width: width, height: height,
                                                     planes: Array(luma[start..<(start + frameSize)]) + chroma, timestamp: .zero))
    }
    let audioBytes = (try? Data(contentsOf: audioFile)).map { [UInt8]($0) } ?? []
    let audio = stride(from: 0, to: audioBytes.count - 1, by: 2).map { Int16(bitPattern: UInt16(audioBytes[$0]) | UInt16(audioBytes[$0 + 1]) << 8) }
    return FFmpegResult(videoFrameNumbers: numbers, audio: audio,
                        log: (try? String(contentsOf: logFile, encoding: .utf8)) ?? "", session: session.statistics,
                        exitedCleanly: exited)
}

@Suite(.serialized, .enabled(if: ffmpegPath != nil, "needs ffmpeg (Debian package ffmpeg)"))
struct FFmpegInteropTests {
    static let key: [UInt8] = (0..<30).map { UInt8(($0 * 29 + 7) & 0xFF) }
    static let wrongKey: [UInt8] = (0..<30).map { UInt8(($0 * 31 + 3) & 0xFF) }

    @Test func ffmpegDecodesOurSRTPCall() async throws {
        let frames = 100
        let result = try await callFFmpeg(ourKey: Self.key, ffmpegKey: Self.key, frames: frames)
        #expect(result.session.video.framesSent == frames)
        #expect(result.exitedCleanly)
        let distinct = Set(result.videoFrameNumbers.filter { $0 < frames })
        #expect(distinct.count * 100 >= frames * 95, "ffmpeg decoded \(distinct.count) of \(frames) frames\n\(result.log)")
        // The pictures are ours, in order.
        #expect(result.videoFrameNumbers == result.videoFrameNumbers.sorted())
        let heard = Array(result.audio.drop { $0 == 0 }.dropFirst(4_800).prefix(48_000))
        #expect(heard.count >= 24_000, "ffmpeg audio: \(result.audio.count) samples\n\(result.log)")
        #expect(abs(Signal.dominantFrequency(Array(heard.prefix(12_000)), sampleRate: 48_000) - 1_000) <= 10)
    }

    @Test func ffmpegWithTheWrongKeyDecodesNothing() async throws {
        let result = try await callFFmpeg(ourKey: Self.key, ffmpegKey: Self.wrongKey, frames: 50)
        #expect(result.session.video.framesSent == 50)
        #expect(result.videoFrameNumbers.isEmpty, "\(result.videoFrameNumbers.count) frames decoded with the wrong key")
        #expect(result.audio.allSatisfy { $0 == 0 })
        // The packets did reach ffmpeg, and its SRTP layer refused them.
        #expect(result.log.contains("HMAC mismatch"), "\(result.log)")
    }
}
