/// The audio codec negotiated in SDP. Opus carries its dynamic payload type; G.711 uses the
/// static types 8 (PCMA) and 0 (PCMU).
public enum AudioCodec: Sendable, Equatable, CustomStringConvertible {
    case opus(payloadType: Int)
    case pcma
    case pcmu

    public var payloadType: Int {
        switch self {
        case .opus(let payloadType): payloadType
        case .pcma: 8
        case .pcmu: 0
        }
    }

    /// RTP clock rate: Opus always signals 48 kHz (RFC 7587); G.711 is 8 kHz.
    public var clockRate: Int {
        switch self {
        case .opus: 48_000
        case .pcma, .pcmu: 8_000
        }
    }

    public var description: String {
        switch self {
        case .opus(let payloadType): "opus/\(payloadType)"
        case .pcma: "PCMA/8"
        case .pcmu: "PCMU/0"
        }
    }
}

/// Encodes one 20 ms frame of 48 kHz mono S16 samples into one RTP payload.
public protocol AudioFrameEncoder: AnyObject {
    var codec: AudioCodec { get }
    func encode(_ samples: [Int16]) throws -> [UInt8]
}

/// Decodes one RTP payload into 48 kHz mono S16 samples, and conceals a missing frame.
public protocol AudioFrameDecoder: AnyObject {
    var codec: AudioCodec { get }
    func decode(_ payload: [UInt8]) throws -> [Int16]
    /// A 20 ms frame for a packet that never arrived; `next` is the packet after it, if
    /// already here (Opus recovers from its in-band FEC data, G.711 repeats/fades).
    func conceal(next: [UInt8]?) throws -> [Int16]
}

/// Samples per 20 ms frame at the device rate (48 kHz).
public let audioFrameSamples = 960

public func makeAudioEncoder(_ codec: AudioCodec, bitrate: Int) throws -> any AudioFrameEncoder {
    switch codec {
    case .opus(let payloadType): try OpusFrameEncoder(bitrate: bitrate, payloadType: payloadType)
    case .pcma: G711FrameEncoder(law: .aLaw)
    case .pcmu: G711FrameEncoder(law: .muLaw)
    }
}

public func makeAudioDecoder(_ codec: AudioCodec) throws -> any AudioFrameDecoder {
    switch codec {
    case .opus(let payloadType): try OpusFrameDecoder(payloadType: payloadType)
    case .pcma: G711FrameDecoder(law: .aLaw)
    case .pcmu: G711FrameDecoder(law: .muLaw)
    }
}
