// One call's media: sockets bound before the SDP offer, then five threads while the call
// runs. Each blocking device and each socket direction has its own thread, none of them an
// event loop that carries SIP, so a slow encoder or a stuck device never delays signalling.
//
//   audio-send:     microphone → echo canceller → encoder → RTP → SRTP → socket   (+ RTCP SR)
//   audio-receive:  socket → SRTP → RTP/RTCP → jitter buffer
//   audio-playout:  jitter buffer → decoder / concealment → echo canceller (far end) → speaker,
//                   paced at 20 ms
//   video-send:     camera → VP8 → RFC 7741 packets → SRTP → socket   (+ RTCP SR, PLI → keyframe)
//   video-receive:  socket → SRTP → assembler → VP8 → display   (loss → PLI)
public import Devices
import Logging
import Synchronization

public final class MediaSession: Sendable {
    private enum Phase {
        case bound
        case running(Running)
        case stopped
    }

    private struct Running {
        var threads: [JoinableThread]
        var camera: (any CameraSource)?
        var microphone: any AudioSource
        var speaker: any AudioSink
        var call: Call
    }

    /// Everything the threads share for one call; immutable once started.
    private struct Call: Sendable {
        var parameters: MediaParameters
        var audioRemote: SocketAddress
        var audioRTCPRemote: SocketAddress
        var videoRemote: SocketAddress?
        var videoRTCPRemote: SocketAddress?
        var audioOut: SRTPSession?
        var audioIn: SRTPSession?
        var videoOut: SRTPSession?
        var videoIn: SRTPSession?
        var audioSSRC: UInt32
        var videoSSRC: UInt32
        /// nil when `audio.echo_cancellation` is off: the microphone goes out unchanged.
        var echoCanceller: EchoCanceller?
        var onFailure: @Sendable (MediaFailureReport) -> Void
    }

    private struct Reception: Sendable {
        var statistics = RTPReceptionStatistics()
        var lastSenderReport: UInt32 = 0
        var lastSenderReportArrival: ContinuousClock.Instant?

        mutating func reportBlock() -> RTCPReportBlock? {
            var delay: UInt32 = 0
            if let arrival = lastSenderReportArrival {
                let (seconds, attoseconds) = arrival.duration(to: .now).components
                delay = UInt32(clamping: seconds * 65_536 + Int64(Double(attoseconds) / 1e18 * 65_536))
            }
            return statistics.makeReportBlock(lastSenderReport: lastSenderReport, delaySinceLastSenderReport: delay)
        }
    }

    private enum Kind { case audio, video }

    public let host: String
    private let audioRTP: UDPSocket
    private let audioRTCP: UDPSocket
    private let videoRTP: UDPSocket
    private let videoRTCP: UDPSocket
    private let phase = Mutex<Phase>(.bound)
    private let running = Atomic<Bool>(false)
    private let videoSending = Atomic<Bool>(false)
    private let keyframeRequested = Atomic<Bool>(false)
    private let sendingHeld = Atomic<Bool>(false)
    private let videoBitrateTarget = Atomic<Int>(0)
    /// When the last RTP or RTCP packet from the other side arrived (and authenticated), in
    /// nanoseconds since `epoch`; the start of the call until the first one.
    private let lastHeard = Atomic<Int64>(0)
    private let counters = Mutex(MediaStatistics())
    private let jitterBuffer = Mutex(AudioJitterBuffer())
    private let audioReception = Mutex(Reception())
    private let videoReception = Mutex(Reception())
    private let epoch = ContinuousClock.now
    private let logger = Logger(label: "beeldzorg.media")

    /// Binds the audio and video sockets on `host` with ports the OS chooses (an even RTP
    /// port with RTCP on the next one, for peers without rtcp-mux), so the SDP offer can
    /// name them.
    public static func bind(host: String) throws -> MediaSession {
        let audio = try bindPair(host: host)
        let video = try bindPair(host: host)
        return MediaSession(host: host, audio: audio, video: video)
    }

    private static func bindPair(host: String) throws -> (UDPSocket, UDPSocket) {
        var lastError: (any Error)?
        for _ in 0..<64 {
            let rtp = try UDPSocket(host: host, port: 0)
            guard rtp.localPort % 2 == 0, rtp.localPort < 65_535 else { continue }
            do {
                return (rtp, try UDPSocket(host: host, port: rtp.localPort + 1))
            } catch {
                lastError = error
            }
        }
        throw MediaError.socket("no free even/odd port pair on \(host): \(lastError.map { "\($0)" } ?? "all odd")")
    }

    private init(host: String, audio: (UDPSocket, UDPSocket), video: (UDPSocket, UDPSocket)) {
        self.host = host
        (audioRTP, audioRTCP) = audio
        (videoRTP, videoRTCP) = video
    }

    deinit { stop() }

    public var localAudioPort: Int { audioRTP.localPort }
    public var localVideoPort: Int { videoRTP.localPort }
    /// Without rtcp-mux, RTCP goes to RTP port + 1 (RFC 3550 §11).
    public var localAudioRTCPPort: Int { audioRTCP.localPort }
    public var localVideoRTCPPort: Int { videoRTCP.localPort }

    public var statistics: MediaStatistics {
        var snapshot = counters.withLock { $0 }
        snapshot.audio.packetsLost = Int(audioReception.withLock { $0.statistics.cumulativeLost })
        snapshot.video.packetsLost = Int(videoReception.withLock { $0.statistics.cumulativeLost })
        snapshot.audio.playoutUnderruns = jitterBuffer.withLock { $0.underruns }
        snapshot.echoCanceller = phase.withLock { phase -> EchoCanceller? in
            guard case .running(let run) = phase else { return nil }
            return run.call.echoCanceller
        }?.metrics
        return snapshot
    }

    public var isRunning: Bool { running.load(ordering: .acquiring) }

    /// The post put the call on hold (its re-offer was sendonly or inactive, our answer
    /// recvonly or inactive): stop sending RTP and go on receiving, on the same sockets with
    /// the same SRTP contexts, so a resume needs no new ports or key. The devices stay open
    /// (it is still a call) and are read as before, so nothing overruns; their frames are not
    /// encoded. RTCP goes on. On resume the next video frame is a keyframe. May be called
    /// before `start`.
    public func holdSending(_ held: Bool) {
        let was = sendingHeld.exchange(held, ordering: .acquiringAndReleasing)
        if was && !held { keyframeRequested.store(true, ordering: .releasing) }
    }

    public var isSendingHeld: Bool { sendingHeld.load(ordering: .acquiring) }

    /// Starts the call's media with the negotiated `parameters`. Devices are opened here
    /// (on their threads) and closed by `stop()`. Throws for a bad configuration; device
    /// failures during the call go to `onFailure` and the call goes on without that device.
    public func start(
        _ parameters: MediaParameters, camera: (any CameraSource)?, microphone: any AudioSource,
        speaker: any AudioSink, display: any VideoSink, onFailure: @escaping @Sendable (MediaFailureReport) -> Void
    ) throws {
        let call = try makeCall(parameters, onFailure: onFailure)
        try phase.withLock { phase in
            guard case .bound = phase else { throw MediaError.configuration("a media session starts once, before stop()") }
            running.store(true, ordering: .releasing)
            heard()
            videoBitrateTarget.store(parameters.videoBitrate, ordering: .relaxed)
            jitterBuffer.withLock { $0 = AudioJitterBuffer(targetFrames: parameters.jitterBufferFrames) }
            var threads: [JoinableThread] = []
            do {
                threads.append(try JoinableThread(name: "audio-send", niceness: JoinableThread.audioNiceness) { self.audioSendLoop(call, microphone: microphone) })
                threads.append(try JoinableThread(name: "audio-receive", niceness: JoinableThread.audioNiceness) { self.audioReceiveLoop(call) })
                threads.append(try JoinableThread(name: "audio-playout", niceness: JoinableThread.audioNiceness) { self.audioPlayoutLoop(call, speaker: speaker) })
                if parameters.hasVideo {
                    if let camera {
                        threads.append(try JoinableThread(name: "video-send") { self.videoSendLoop(call, camera: camera) })
                    }
                    threads.append(try JoinableThread(name: "video-receive") { self.videoReceiveLoop(call, display: display) })
                }
            } catch {
                running.store(false, ordering: .releasing)
                camera?.close()
                threads.forEach { $0.join() }
                throw error
            }
            phase = .running(Running(threads: threads, camera: parameters.hasVideo ? camera : nil, microphone: microphone,
                                     speaker: speaker, call: call))
        }
    }

    /// Stops sending and receiving, joins the threads, closes camera, microphone and
    /// speaker, says BYE, and releases the ports. Idempotent.
    public func stop() {
        let previous = phase.withLock { phase -> Phase in
            let previous = phase
            phase = .stopped
            return previous
        }
        switch previous {
        case .bound:
            break
        case .stopped:
            return
        case .running(let run):
            running.store(false, ordering: .releasing)
            // A blocked nextFrame() returns once the camera is closed.
            run.camera?.close()
            for thread in run.threads { thread.join() }
            run.microphone.close()
            run.speaker.close()
            sendGoodbye(run.call)
        }
        [audioRTP, audioRTCP, videoRTP, videoRTCP].forEach { $0.close() }
    }

    // MARK: Setting up

    private func makeCall(_ parameters: MediaParameters, onFailure: @escaping @Sendable (MediaFailureReport) -> Void) throws -> Call {
        func session(_ key: [UInt8]?, _ direction: SRTPSession.Direction) throws -> SRTPSession? {
            guard let key else {
                guard parameters.allowPlainRTP else {
                    throw MediaError.configuration("no SRTP key and plain RTP is not allowed for this call")
                }
                return nil
            }
            return try SRTPSession(masterKeyAndSalt: key, direction: direction)
        }
        let audioRemote = try SocketAddress(host: parameters.remoteHost, port: parameters.remoteAudioPort)
        let audioRTCPRemote = parameters.rtcpMux
            ? audioRemote
            : try SocketAddress(host: parameters.remoteHost, port: parameters.remoteAudioRTCPPort ?? parameters.remoteAudioPort + 1)
        var videoRemote: SocketAddress?
        var videoRTCPRemote: SocketAddress?
        if parameters.hasVideo, let port = parameters.remoteVideoPort {
            videoRemote = try SocketAddress(host: parameters.remoteHost, port: port)
            videoRTCPRemote = parameters.rtcpMux
                ? videoRemote
                : try SocketAddress(host: parameters.remoteHost, port: parameters.remoteVideoRTCPPort ?? port + 1)
        }
        return Call(
            parameters: parameters, audioRemote: audioRemote, audioRTCPRemote: audioRTCPRemote,
            videoRemote: videoRemote, videoRTCPRemote: videoRTCPRemote,
            audioOut: try session(parameters.sendKey, .outbound), audioIn: try session(parameters.receiveKey, .inbound),
            videoOut: parameters.hasVideo ? try session(parameters.videoSendKey ?? parameters.sendKey, .outbound) : nil,
            videoIn: parameters.hasVideo ? try session(parameters.videoReceiveKey ?? parameters.receiveKey, .inbound) : nil,
            audioSSRC: .random(in: 1...UInt32.max), videoSSRC: .random(in: 1...UInt32.max),
            echoCanceller: parameters.voiceProcessing.isActive ? try EchoCanceller(voice: parameters.voiceProcessing) : nil, onFailure: onFailure)
    }

    private var isActive: Bool { running.load(ordering: .acquiring) }

    private func nanosecondsSinceEpoch() -> Int64 {
        let (seconds, attoseconds) = epoch.duration(to: .now).components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// Something authentic came from the other side (or the call starts).
    private func heard() {
        lastHeard.store(nanosecondsSinceEpoch(), ordering: .relaxed)
    }

    /// How long nothing has come from the other side (since the start, before anything did).
    public var silentFor: Duration {
        .nanoseconds(nanosecondsSinceEpoch() - lastHeard.load(ordering: .relaxed))
    }

    private func count(_ kind: Kind, _ body: (inout MediaStreamStatistics) -> Void) {
        counters.withLock { statistics in
            switch kind {
            case .audio: body(&statistics.audio)
            case .video: body(&statistics.video)
            }
        }
    }

    private func withReception<R>(_ kind: Kind, _ body: (inout Reception) -> R) -> R {
        switch kind {
        case .audio: audioReception.withLock { body(&$0) }
        case .video: videoReception.withLock { body(&$0) }
        }
    }

    private func report(_ call: Call, _ failure: MediaFailureReport) {
        logger.warning("media failure", metadata: ["component": "\(failure.component.rawValue)", "detail": "\(failure.detail)"])
        call.onFailure(failure)
    }

    // MARK: Sending

    private func sendRTP(_ packet: RTPPacket, kind: Kind, call: Call) {
        let (session, socket, remote) = kind == .audio
            ? (call.audioOut, audioRTP, call.audioRemote)
            : (call.videoOut, videoRTP, call.videoRemote!)
        do {
            let plain = packet.serialized()
            let bytes = try session?.protect(plain) ?? plain
            try socket.send(bytes, to: remote)
            count(kind) {
                $0.packetsSent += 1
                $0.bytesSent += bytes.count
            }
        } catch {
            logger.debug("rtp send failed", metadata: ["error": "\(error)"])
        }
    }

    private func sendRTCP(_ packets: [RTCPPacket], kind: Kind, call: Call) {
        let (session, socket, remote) = kind == .audio
            ? (call.audioOut, call.parameters.rtcpMux ? audioRTP : audioRTCP, call.audioRTCPRemote)
            : (call.videoOut, call.parameters.rtcpMux ? videoRTP : videoRTCP, call.videoRTCPRemote!)
        do {
            let plain = RTCPPacket.serializeCompound(packets)
            try socket.send(try session?.protectRTCP(plain) ?? plain, to: remote)
            count(kind) { $0.rtcpPacketsSent += 1 }
        } catch {
            logger.debug("rtcp send failed", metadata: ["error": "\(error)"])
        }
    }

    /// SR (when sending) or RR, with a report block for what we receive, and SDES CNAME.
    private func sendReport(_ kind: Kind, sender: RTPStreamSender?, call: Call) {
        let ssrc = kind == .audio ? call.audioSSRC : call.videoSSRC
        let blocks = withReception(kind) { $0.reportBlock() }.map { [$0] } ?? []
        let first: RTCPPacket = if let sender {
            .senderReport(RTCPSenderReport(
                ssrc: ssrc, ntpTimestamp: ntpTimestamp(sinceUnixEpoch: wallClockSinceEpoch()), rtpTimestamp: sender.reportTimestamp(at: .now),
                packetCount: sender.packetCount, octetCount: sender.octetCount, reports: blocks))
        } else {
            .receiverReport(ssrc: ssrc, reports: blocks)
        }
        sendRTCP([first, .sourceDescription(ssrc: ssrc, cname: call.parameters.cname)], kind: kind, call: call)
    }

    private func sendGoodbye(_ call: Call) {
        sendRTCP([.receiverReport(ssrc: call.audioSSRC, reports: []), .goodbye(ssrcs: [call.audioSSRC])], kind: .audio, call: call)
        if call.videoRemote != nil {
            sendRTCP([.receiverReport(ssrc: call.videoSSRC, reports: []), .goodbye(ssrcs: [call.videoSSRC])], kind: .video, call: call)
        }
    }

    private func audioSendLoop(_ call: Call, microphone: any AudioSource) {
        let codec = call.parameters.audioCodec
        let encoder: any AudioFrameEncoder
        do {
            encoder = try makeAudioEncoder(codec, bitrate: call.parameters.audioBitrate)
        } catch {
            report(call, MediaFailureReport(component: .codec, detail: "\(error)"))
            return
        }
        count(.audio) { $0.sendBitrate = call.parameters.audioBitrate }
        var microphoneWorks = true
        do {
            try microphone.open(AudioFormat())
        } catch {
            microphoneWorks = false
            report(call, MediaFailureReport(component: .microphone, detail: "\(error)"))
        }
        var sender = RTPStreamSender(payloadType: UInt8(codec.payloadType), clockRate: codec.clockRate, ssrc: call.audioSSRC)
        let ticksPerFrame = UInt32(codec.clockRate / 50)
        var timestamp = sender.timestampBase
        var first = true
        var deadline = ContinuousClock.now
        var nextReport = ContinuousClock.now + .milliseconds(500)
        while isActive {
            var samples: [Int16]
            if microphoneWorks {
                do {
                    samples = try microphone.read()
                } catch {
                    microphoneWorks = false
                    microphone.close()
                    report(call, MediaFailureReport(component: .microphone, detail: "\(error)"))
                    deadline = .now
                    continue
                }
            } else {
                // Keep the stream (and the peer's jitter buffer) alive with silence.
                deadline += .milliseconds(20)
                sleep(until: deadline)
                samples = []
            }
            if samples.count != audioFrameSamples {
                samples = Array(samples.prefix(audioFrameSamples)) + [Int16](repeating: 0, count: max(0, audioFrameSamples - samples.count))
            }
            if microphoneWorks, let canceller = call.echoCanceller {
                do {
                    try canceller.capture(&samples)
                } catch {
                    count(.audio) { $0.echoCancellerErrors += 1 }
                }
            }
            if sendingHeld.load(ordering: .acquiring) {
                // Held: the time passes (timestamps go on), nothing is sent; the first packet
                // after the resume starts a talkspurt again (marker bit).
                first = true
            } else {
                do {
                    let payload = try encoder.encode(samples)
                    sendRTP(sender.packet(payload: payload, timestamp: timestamp, marker: first), kind: .audio, call: call)
                    count(.audio) { $0.framesSent += 1 }
                    first = false
                } catch {
                    count(.audio) { $0.decodeErrors += 1 }
                }
            }
            timestamp &+= ticksPerFrame
            if ContinuousClock.now >= nextReport {
                sendReport(.audio, sender: sender, call: call)
                nextReport = .now + call.parameters.rtcpInterval
            }
        }
    }

    private func videoSendLoop(_ call: Call, camera: any CameraSource) {
        let format: CameraFormat
        do {
            format = try camera.open(call.parameters.cameraFormat)
        } catch {
            report(call, MediaFailureReport(component: .camera, detail: "\(error)", videoSendingStopped: true))
            return
        }
        var encoder: VP8Encoder
        do {
            encoder = try VP8Encoder(width: format.width, height: format.height, framesPerSecond: format.framesPerSecond,
                                     bitrate: call.parameters.videoBitrate)
        } catch {
            camera.close()
            report(call, MediaFailureReport(component: .codec, detail: "\(error)", videoSendingStopped: true))
            return
        }
        videoSending.store(true, ordering: .releasing)
        defer { videoSending.store(false, ordering: .releasing) }
        count(.video) { $0.sendBitrate = call.parameters.videoBitrate }
        var packetizer = VP8Packetizer()
        var sender = RTPStreamSender(payloadType: UInt8(call.parameters.videoPayloadType!), clockRate: 90_000, ssrc: call.videoSSRC)
        var nextReport = ContinuousClock.now + .milliseconds(500)
        while isActive {
            let frame: VideoFrame
            do {
                frame = try camera.nextFrame()
            } catch {
                // stop() closing the camera is not a failure.
                guard isActive else { break }
                camera.close()
                report(call, MediaFailureReport(component: .camera, detail: "\(error)", videoSendingStopped: true))
                break
            }
            do {
                if frame.width != encoder.width || frame.height != encoder.height {
                    encoder = try VP8Encoder(width: frame.width, height: frame.height, framesPerSecond: format.framesPerSecond,
                                             bitrate: encoder.bitrate)
                }
                let target = videoBitrateTarget.load(ordering: .relaxed)
                if target != encoder.bitrate {
                    try encoder.setBitrate(target)
                    count(.video) { $0.sendBitrate = target }
                }
                // Held: the camera is read (its frames still feed the self view) but nothing is
                // encoded or sent; RTCP below goes on.
                let held = sendingHeld.load(ordering: .acquiring)
                let forceKeyframe = held ? false : keyframeRequested.exchange(false, ordering: .acquiringAndReleasing)
                for encoded in held ? [] : try encoder.encode(frame, forceKeyframe: forceKeyframe) {
                    let timestamp = sender.rtpTimestamp(for: encoded.timestamp)
                    let payloads = packetizer.packetize(encoded.data)
                    for (index, payload) in payloads.enumerated() {
                        sendRTP(sender.packet(payload: payload, timestamp: timestamp, marker: index == payloads.count - 1),
                                kind: .video, call: call)
                    }
                    count(.video) { $0.framesSent += 1 }
                }
            } catch {
                count(.video) { $0.decodeErrors += 1 }
                logger.warning("video encode failed", metadata: ["error": "\(error)"])
            }
            if ContinuousClock.now >= nextReport {
                sendReport(.video, sender: sender, call: call)
                nextReport = .now + call.parameters.rtcpInterval
            }
        }
    }

    // MARK: Receiving

    /// STUN on a media port (RFC 7983: first byte 0–3) is not RTP: a Binding request is
    /// answered from the port it reached, anything else is dropped, and neither counts as an
    /// SRTP failure or a malformed packet.
    private func answerSTUN(_ bytes: [UInt8], on socket: UDPSocket, source: SocketAddress?) {
        guard let source, let response = MediaSTUN.bindingResponse(to: bytes, from: source) else { return }
        try? socket.send(response, to: source)
    }

    /// Unprotects and classifies one datagram; handles RTCP itself and returns RTP packets.
    private func receive(_ bytes: [UInt8], kind: Kind, call: Call) -> RTPPacket? {
        let session = kind == .audio ? call.audioIn : call.videoIn
        switch RTPPacketKind.classify(bytes) {
        case .unknown:
            count(kind) { $0.malformedPackets += 1 }
            return nil
        case .rtcp:
            do {
                let plain = try session?.unprotectRTCP(bytes) ?? bytes
                let packets = try RTCPPacket.parseCompound(plain)
                count(kind) { $0.rtcpPacketsReceived += 1 }
                heard()
                handle(packets, kind: kind, call: call)
            } catch let error as MediaError where error.isAuthenticationFailure {
                count(kind) { $0.authenticationFailures += 1 }
            } catch {
                count(kind) { $0.malformedPackets += 1 }
            }
            return nil
        case .rtp:
            do {
                let plain = try session?.unprotect(bytes) ?? bytes
                let packet = try RTPPacket(parsing: plain)
                count(kind) { $0.packetsReceived += 1 }
                heard()
                let clockRate = kind == .audio ? call.parameters.audioCodec.clockRate : 90_000
                let (seconds, attoseconds) = epoch.duration(to: .now).components
                let arrival = seconds * Int64(clockRate) + Int64(Double(attoseconds) / 1e18 * Double(clockRate))
                withReception(kind) {
                    $0.statistics.record(sequence: packet.sequenceNumber, rtpTimestamp: packet.timestamp, ssrc: packet.ssrc, arrival: arrival)
                }
                return packet
            } catch let error as MediaError where error.isAuthenticationFailure {
                count(kind) { $0.authenticationFailures += 1 }
            } catch {
                count(kind) { $0.malformedPackets += 1 }
            }
            return nil
        }
    }

    private func handle(_ packets: [RTCPPacket], kind: Kind, call: Call) {
        let ourSSRC = kind == .audio ? call.audioSSRC : call.videoSSRC
        var blocks: [RTCPReportBlock] = []
        for packet in packets {
            switch packet {
            case .senderReport(let report):
                withReception(kind) {
                    $0.lastSenderReport = report.compactNTP
                    $0.lastSenderReportArrival = .now
                }
                blocks += report.reports
            case .receiverReport(_, let reports):
                blocks += reports
            case .pictureLossIndication, .fullIntraRequest:
                keyframeRequested.store(true, ordering: .releasing)
                count(kind) { $0.keyframeRequestsReceived += 1 }
            case .sourceDescription, .goodbye, .other:
                break
            }
        }
        guard let block = blocks.first(where: { $0.ssrc == ourSSRC }) else { return }
        count(kind) { $0.remoteFractionLost = block.lossFraction }
        guard kind == .video else { return }
        // Loss-based rate control in the spirit of RFC 8836's simplest reading: back off
        // above 10 % loss, creep up again below 2 %, never above what was negotiated.
        let current = videoBitrateTarget.load(ordering: .relaxed)
        let ceiling = call.parameters.videoBitrate
        if block.lossFraction > 0.10 {
            videoBitrateTarget.store(max(150_000, current * 85 / 100), ordering: .relaxed)
        } else if block.lossFraction < 0.02 {
            videoBitrateTarget.store(min(ceiling, current * 105 / 100), ordering: .relaxed)
        }
    }

    private func audioReceiveLoop(_ call: Call) {
        let sockets = call.parameters.rtcpMux ? [audioRTP] : [audioRTP, audioRTCP]
        let payloadType = UInt8(call.parameters.audioCodec.payloadType)
        let buffer = UDPSocket.ReceiveBuffer()
        // This thread wakes every 50 ms anyway: it is the one that notices silence, once.
        var silenceReported = false
        while isActive {
            if let timeout = call.parameters.livenessTimeout, !silenceReported, silentFor >= timeout {
                silenceReported = true
                report(call, MediaFailureReport(component: .silence, detail: "nothing received for \(silentFor)"))
            }
            let datagram: (Int, [UInt8])?
            do {
                datagram = try UDPSocket.receive(from: sockets, timeoutMilliseconds: 50, buffer: buffer)
            } catch {
                report(call, MediaFailureReport(component: .network, detail: "\(error)"))
                return
            }
            guard let (index, bytes) = datagram else { continue }
            if MediaSTUN.isSTUN(bytes) {
                answerSTUN(bytes, on: sockets[index], source: buffer.source)
                continue
            }
            guard let packet = receive(bytes, kind: .audio, call: call) else { continue }
            guard packet.payloadType == payloadType else { continue }  // comfort noise, DTMF: not played
            jitterBuffer.withLock { $0.insert(sequence: packet.sequenceNumber, payload: packet.payload) }
        }
    }

    private func audioPlayoutLoop(_ call: Call, speaker: any AudioSink) {
        let decoder: any AudioFrameDecoder
        do {
            decoder = try makeAudioDecoder(call.parameters.audioCodec)
        } catch {
            report(call, MediaFailureReport(component: .codec, detail: "\(error)"))
            return
        }
        var speakerWorks = true
        do {
            try speaker.open(AudioFormat())
        } catch {
            speakerWorks = false
            report(call, MediaFailureReport(component: .speaker, detail: "\(error)"))
        }
        let silence = [Int16](repeating: 0, count: audioFrameSamples)
        var deadline = ContinuousClock.now
        while isActive {
            deadline += .milliseconds(20)
            if deadline < .now - .milliseconds(200) { deadline = .now }  // fell far behind: do not burst
            sleep(until: deadline)
            let next = jitterBuffer.withLock { $0.pop() }
            var samples = silence
            do {
                switch next {
                case .payload(let payload):
                    count(.audio) { $0.framesReceived += 1 }
                    samples = try decoder.decode(payload)
                    count(.audio) { $0.framesDecoded += 1 }
                case .missing(let following):
                    samples = try decoder.conceal(next: following)
                    count(.audio) { $0.concealedFrames += 1 }
                case .silence:
                    break
                }
            } catch {
                count(.audio) { $0.decodeErrors += 1 }
            }
            guard speakerWorks else { continue }
            if let canceller = call.echoCanceller {
                do {
                    try canceller.render(samples)
                } catch {
                    count(.audio) { $0.echoCancellerErrors += 1 }
                }
            }
            do {
                try speaker.write(samples)
            } catch {
                speakerWorks = false
                report(call, MediaFailureReport(component: .speaker, detail: "\(error)"))
            }
        }
    }

    private func videoReceiveLoop(_ call: Call, display: any VideoSink) {
        let decoder: VP8Decoder
        do {
            decoder = try VP8Decoder()
        } catch {
            report(call, MediaFailureReport(component: .codec, detail: "\(error)"))
            return
        }
        let sockets = call.parameters.rtcpMux ? [videoRTP] : [videoRTP, videoRTCP]
        let payloadType = UInt8(call.parameters.videoPayloadType!)
        var assembler = VP8FrameAssembler()
        let buffer = UDPSocket.ReceiveBuffer()
        var lastKeyframeRequest: ContinuousClock.Instant?
        var nextReport = ContinuousClock.now + .milliseconds(500)
        while isActive {
            if ContinuousClock.now >= nextReport {
                // When we do not send video, our receiver reports go out from here.
                if !videoSending.load(ordering: .acquiring) { sendReport(.video, sender: nil, call: call) }
                nextReport = .now + call.parameters.rtcpInterval
            }
            let datagram: (Int, [UInt8])?
            do {
                datagram = try UDPSocket.receive(from: sockets, timeoutMilliseconds: 50, buffer: buffer)
            } catch {
                report(call, MediaFailureReport(component: .network, detail: "\(error)"))
                return
            }
            guard let (index, bytes) = datagram else { continue }
            if MediaSTUN.isSTUN(bytes) {
                answerSTUN(bytes, on: sockets[index], source: buffer.source)
                continue
            }
            guard let packet = receive(bytes, kind: .video, call: call), packet.payloadType == payloadType else { continue }
            let output = assembler.insert(packet)
            var needsKeyframe = output.needsKeyframe
            count(.video) {
                $0.framesReceived += output.frames.count
                $0.concealedFrames += output.framesDropped
            }
            for frame in output.frames {
                do {
                    let timestamp = Duration.seconds(Double(frame.rtpTimestamp) / 90_000)
                    if let picture = try decoder.decode(frame.data, timestamp: timestamp) {
                        display.show(picture)
                        count(.video) { $0.framesDecoded += 1 }
                    }
                } catch {
                    count(.video) { $0.decodeErrors += 1 }
                    needsKeyframe = true
                }
            }
            if needsKeyframe, lastKeyframeRequest.map({ $0.duration(to: .now) > .milliseconds(300) }) ?? true {
                lastKeyframeRequest = .now
                sendRTCP([.pictureLossIndication(senderSSRC: call.videoSSRC, mediaSSRC: packet.ssrc)], kind: .video, call: call)
                count(.video) { $0.keyframeRequestsSent += 1 }
            }
        }
    }
}
