// G.711 A-law and µ-law (ITU-T G.711), the fallback when the peer offers no Opus. Pure
// Swift: one byte per 8 kHz sample. The devices run at 48 kHz, so the frame coders below
// decimate by 6 (box filter) and interpolate back (linear); good enough for a fallback.

/// Companding law of a G.711 stream.
public enum G711Law: Sendable {
    case aLaw
    case muLaw
}

/// Sample-level G.711 coding, exposed for tests and for anyone who needs raw G.711.
public enum G711 {
    private static let muBias: Int32 = 0x84
    private static let muClip: Int32 = 32_635

    public static func encodeMuLaw(_ sample: Int16) -> UInt8 {
        var value = Int32(sample)
        let sign: Int32 = value < 0 ? 0x80 : 0
        if value < 0 { value = -value }
        value = min(value, muClip) + muBias
        // The exponent is the position of the highest set bit above bit 7.
        let exponent = max(0, min(7, (31 - Int32(value.leadingZeroBitCount)) - 7))
        let mantissa = (value >> (exponent + 3)) & 0x0F
        return ~UInt8(truncatingIfNeeded: sign | (exponent << 4) | mantissa)
    }

    public static func decodeMuLaw(_ code: UInt8) -> Int16 {
        let byte = Int32(~code)
        let exponent = (byte >> 4) & 0x07
        let mantissa = byte & 0x0F
        let magnitude = (((mantissa << 3) + muBias) << exponent) - muBias
        return Int16(byte & 0x80 != 0 ? -magnitude : magnitude)
    }

    public static func encodeALaw(_ sample: Int16) -> UInt8 {
        let positive = sample >= 0
        // A-law works on 13-bit linear; keep the 12-bit magnitude.
        let magnitude = min(Int32(4_095), (positive ? Int32(sample) : -Int32(sample) - 1) >> 3)
        let code: Int32
        if magnitude < 32 {
            code = magnitude >> 1
        } else {
            let segment = (31 - Int32(magnitude.leadingZeroBitCount)) - 4
            code = (segment << 4) | ((magnitude >> segment) & 0x0F)
        }
        return UInt8(truncatingIfNeeded: code | (positive ? 0x80 : 0)) ^ 0x55
    }

    public static func decodeALaw(_ code: UInt8) -> Int16 {
        let byte = Int32(code ^ 0x55)
        let segment = (byte >> 4) & 0x07
        let mantissa = byte & 0x0F
        let magnitude: Int32 = segment == 0
            ? (mantissa << 1) | 1
            : (((0x10 | mantissa) << 1) | 1) << (segment - 1)
        // Back to 16 bits; the reconstruction level is the middle of the step.
        let linear = magnitude << 3
        return Int16(byte & 0x80 != 0 ? linear : -linear)
    }

    public static func encode(_ samples: [Int16], law: G711Law) -> [UInt8] {
        switch law {
        case .aLaw: samples.map(encodeALaw)
        case .muLaw: samples.map(encodeMuLaw)
        }
    }

    public static func decode(_ codes: [UInt8], law: G711Law) -> [Int16] {
        switch law {
        case .aLaw: codes.map(decodeALaw)
        case .muLaw: codes.map(decodeMuLaw)
        }
    }
}

/// 48 kHz frames in, 8 kHz G.711 payloads out (160 bytes per 20 ms).
public final class G711FrameEncoder: AudioFrameEncoder {
    public let codec: AudioCodec
    private let law: G711Law

    public init(law: G711Law) {
        self.law = law
        self.codec = law == .aLaw ? .pcma : .pcmu
    }

    public func encode(_ samples: [Int16]) throws -> [UInt8] {
        guard samples.count == audioFrameSamples else {
            throw MediaError.configuration("G.711 encode needs \(audioFrameSamples) samples, got \(samples.count)")
        }
        var narrow = [Int16](repeating: 0, count: samples.count / 6)
        for index in narrow.indices {
            var sum: Int32 = 0
            for offset in 0..<6 { sum += Int32(samples[index * 6 + offset]) }
            narrow[index] = Int16(sum / 6)
        }
        return G711.encode(narrow, law: law)
    }
}

/// 8 kHz G.711 payloads in, 48 kHz frames out. Concealment repeats the last frame, fading.
public final class G711FrameDecoder: AudioFrameDecoder {
    public let codec: AudioCodec
    private let law: G711Law
    private var previous: Int16 = 0
    private var lastFrame: [Int16] = []

    public init(law: G711Law) {
        self.law = law
        self.codec = law == .aLaw ? .pcma : .pcmu
    }

    public func decode(_ payload: [UInt8]) throws -> [Int16] {
        let narrow = G711.decode(payload, law: law)
        var wide = [Int16]()
        wide.reserveCapacity(narrow.count * 6)
        for sample in narrow {
            let from = Int32(previous)
            let to = Int32(sample)
            for step in 1...6 { wide.append(Int16(from + (to - from) * Int32(step) / 6)) }
            previous = sample
        }
        lastFrame = wide
        return wide
    }

    public func conceal(next: [UInt8]?) throws -> [Int16] {
        guard lastFrame.count == audioFrameSamples else { return [Int16](repeating: 0, count: audioFrameSamples) }
        lastFrame = lastFrame.map { Int16(Int32($0) / 2) }
        return lastFrame
    }
}
