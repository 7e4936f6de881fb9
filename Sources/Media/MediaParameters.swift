public import Devices

/// Everything a call's media needs from the SDP offer/answer. The daemon copies the
/// negotiated values in; Media never parses SDP.
public struct MediaParameters: Sendable, Equatable {
    /// Numeric IP address of the peer's media (SDP `c=`).
    public var remoteHost: String
    public var remoteAudioPort: Int
    /// The peer's audio RTCP port (`a=rtcp`); nil means RTP port + 1. Unused with rtcp-mux.
    public var remoteAudioRTCPPort: Int?
    /// nil: no video in this call (either side).
    public var remoteVideoPort: Int?
    public var remoteVideoRTCPPort: Int?
    public var audioCodec: AudioCodec
    /// VP8's dynamic payload type; nil: no video.
    public var videoPayloadType: Int?
    /// 30-byte SRTP master key || salt for what we send / what we receive (SDES `a=crypto`).
    /// nil means plain RTP, which `start` refuses unless `allowPlainRTP` is set.
    public var sendKey: [UInt8]?
    public var receiveKey: [UInt8]?
    /// Separate video keys, when the video m-line has its own `a=crypto`; default: the audio keys.
    public var videoSendKey: [UInt8]?
    public var videoReceiveKey: [UInt8]?
    public var allowPlainRTP: Bool
    public var rtcpMux: Bool
    /// Opus target bitrate, bits per second.
    public var audioBitrate: Int
    /// VP8 target (and ceiling) bitrate, bits per second; lowered when the peer reports loss.
    public var videoBitrate: Int
    public var cameraFormat: CameraFormat
    /// Audio held before playout, in 20 ms frames (2 = 40 ms).
    public var jitterBufferFrames: Int
    /// How often sender/receiver reports go out.
    public var rtcpInterval: Duration
    /// CNAME in our SDES (RFC 7022 recommends a random one per call).
    public var cname: String
    /// What runs on the microphone's audio before it is sent: echo cancellation
    /// (`audio.echo_cancellation`), gain control, noise suppression, the high-pass filter
    /// (`media.voice.*`). All off sends the microphone unchanged.
    public var voiceProcessing: VoiceProcessing
    /// Cancel the speaker's echo in what the microphone sends (`voiceProcessing`).
    public var echoCancellation: Bool {
        get { voiceProcessing.echoCancellation }
        set { voiceProcessing.echoCancellation = newValue }
    }
    /// Nothing from the other side — no RTP and no RTCP that authenticates, on any of the
    /// call's sockets — for this long is reported once as `.silence` (configuration
    /// `media.liveness_timeout_seconds`). RTCP counts, so a post that holds the call (and
    /// sends no RTP) stays alive by its reports. nil: never reported.
    public var livenessTimeout: Duration?

    public init(
        remoteHost: String, remoteAudioPort: Int, remoteAudioRTCPPort: Int? = nil,
        remoteVideoPort: Int? = nil, remoteVideoRTCPPort: Int? = nil,
        audioCodec: AudioCodec = .opus(payloadType: 111), videoPayloadType: Int? = nil,
        sendKey: [UInt8]?, receiveKey: [UInt8]?, videoSendKey: [UInt8]? = nil, videoReceiveKey: [UInt8]? = nil,
        allowPlainRTP: Bool = false, rtcpMux: Bool = true, audioBitrate: Int = 32_000, videoBitrate: Int = 800_000,
        cameraFormat: CameraFormat = CameraFormat(), jitterBufferFrames: Int = 2, rtcpInterval: Duration = .seconds(2),
        cname: String = "beeldzorg-\(UInt32.random(in: 0...UInt32.max))", echoCancellation: Bool = true,
        livenessTimeout: Duration? = nil, voiceProcessing: VoiceProcessing? = nil
    ) {
        self.remoteHost = remoteHost
        self.remoteAudioPort = remoteAudioPort
        self.remoteAudioRTCPPort = remoteAudioRTCPPort
        self.remoteVideoPort = remoteVideoPort
        self.remoteVideoRTCPPort = remoteVideoRTCPPort
        self.audioCodec = audioCodec
        self.videoPayloadType = videoPayloadType
        self.sendKey = sendKey
        self.receiveKey = receiveKey
        self.videoSendKey = videoSendKey
        self.videoReceiveKey = videoReceiveKey
        self.allowPlainRTP = allowPlainRTP
        self.rtcpMux = rtcpMux
        self.audioBitrate = audioBitrate
        self.videoBitrate = videoBitrate
        self.cameraFormat = cameraFormat
        self.jitterBufferFrames = jitterBufferFrames
        self.rtcpInterval = rtcpInterval
        self.cname = cname
        var voice = voiceProcessing ?? VoiceProcessing()
        if voiceProcessing == nil { voice.echoCancellation = echoCancellation }
        self.voiceProcessing = voice
        self.livenessTimeout = livenessTimeout
    }

    var hasVideo: Bool { remoteVideoPort != nil && videoPayloadType != nil }
}

/// Something went wrong with a device or the network during a call. Media keeps going with
/// what still works (audio without a camera); the daemon tells CallFlow.
public struct MediaFailureReport: Sendable, Equatable, CustomStringConvertible {
    public enum Component: String, Sendable {
        case camera, microphone, speaker, display, network, codec
        /// Nothing came from the other side for `MediaParameters.livenessTimeout`.
        case silence
    }

    public var component: Component
    public var detail: String
    /// True when this stopped sending video (the rest of the call goes on).
    public var videoSendingStopped: Bool

    public init(component: Component, detail: String, videoSendingStopped: Bool = false) {
        self.component = component
        self.detail = detail
        self.videoSendingStopped = videoSendingStopped
    }

    public var description: String { "\(component.rawValue): \(detail)" }
}

/// Counters of one media stream (audio or video), both directions.
public struct MediaStreamStatistics: Sendable, Equatable {
    public var packetsSent = 0
    public var bytesSent = 0
    public var framesSent = 0
    public var packetsReceived = 0
    /// Audio: payloads taken from the jitter buffer; video: frames assembled.
    public var framesReceived = 0
    public var framesDecoded = 0
    /// Dropped because SRTP/SRTCP authentication (or replay check) failed.
    public var authenticationFailures = 0
    public var malformedPackets = 0
    public var decodeErrors = 0
    /// Lost by the network, as counted from sequence numbers (RFC 3550 A.3).
    public var packetsLost = 0
    /// Audio frames rebuilt from FEC or concealed; video frames dropped for loss.
    public var concealedFrames = 0
    /// Audio: times the jitter buffer ran dry (each grows its target delay by 20 ms, ≤ 60 ms).
    public var playoutUnderruns = 0
    public var keyframeRequestsSent = 0
    public var keyframeRequestsReceived = 0
    public var rtcpPacketsSent = 0
    public var rtcpPacketsReceived = 0
    /// Loss the peer reported in its last RTCP report, 0…1.
    public var remoteFractionLost = 0.0
    /// Current encoder target in bits per second (video adapts to reported loss).
    public var sendBitrate = 0
    /// Audio frames the echo canceller refused (they went out or were played unprocessed).
    public var echoCancellerErrors = 0

    public init() {}
}

public struct MediaStatistics: Sendable, Equatable {
    public var audio = MediaStreamStatistics()
    public var video = MediaStreamStatistics()
    /// The echo canceller's own figures while a call runs with it on; nil otherwise.
    public var echoCanceller: EchoCanceller.Metrics?

    public init() {}
}
