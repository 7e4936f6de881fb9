// RTP packets (RFC 3550 §5.1), the sending side's sequence/timestamp state, the receiving
// side's statistics (RFC 3550 A.1, A.3, A.8) and rtcp-mux demultiplexing (RFC 5761 §4).

/// One RTP packet. Padding is removed on parsing; header extensions are kept as they came.
public struct RTPPacket: Sendable, Equatable {
    public var marker: Bool
    public var payloadType: UInt8
    public var sequenceNumber: UInt16
    public var timestamp: UInt32
    public var ssrc: UInt32
    public var csrcs: [UInt32]
    /// Profile-defined header extension (RFC 3550 §5.3.1): profile id and its 32-bit words.
    public var headerExtension: (profile: UInt16, data: [UInt8])? {
        get { extensionProfile.map { ($0, extensionData) } }
        set {
            extensionProfile = newValue?.profile
            extensionData = newValue?.data ?? []
        }
    }
    public var payload: [UInt8]

    private var extensionProfile: UInt16?
    private var extensionData: [UInt8] = []

    public init(marker: Bool = false, payloadType: UInt8, sequenceNumber: UInt16, timestamp: UInt32, ssrc: UInt32,
                csrcs: [UInt32] = [], payload: [UInt8]) {
        self.marker = marker
        self.payloadType = payloadType
        self.sequenceNumber = sequenceNumber
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = csrcs
        self.payload = payload
    }

    public init(parsing bytes: some Collection<UInt8>) throws {
        let bytes = Array(bytes)
        guard bytes.count >= 12 else { throw MediaError.rtp("RTP packet of \(bytes.count) bytes is shorter than its header") }
        guard bytes[0] >> 6 == 2 else { throw MediaError.rtp("RTP version \(bytes[0] >> 6), expected 2") }
        let hasPadding = bytes[0] & 0x20 != 0
        let hasExtension = bytes[0] & 0x10 != 0
        let csrcCount = Int(bytes[0] & 0x0F)
        marker = bytes[1] & 0x80 != 0
        payloadType = bytes[1] & 0x7F
        sequenceNumber = readUInt16(bytes, 2)
        timestamp = readUInt32(bytes, 4)
        ssrc = readUInt32(bytes, 8)
        var offset = 12
        guard bytes.count >= offset + 4 * csrcCount else { throw MediaError.rtp("RTP packet truncated in its CSRC list") }
        csrcs = (0..<csrcCount).map { readUInt32(bytes, 12 + 4 * $0) }
        offset += 4 * csrcCount
        if hasExtension {
            guard bytes.count >= offset + 4 else { throw MediaError.rtp("RTP packet truncated in its extension header") }
            let words = Int(readUInt16(bytes, offset + 2))
            guard bytes.count >= offset + 4 + 4 * words else { throw MediaError.rtp("RTP packet truncated in its extension") }
            extensionProfile = readUInt16(bytes, offset)
            extensionData = Array(bytes[(offset + 4)..<(offset + 4 + 4 * words)])
            offset += 4 + 4 * words
        }
        var end = bytes.count
        if hasPadding {
            let padding = Int(bytes[bytes.count - 1])
            guard padding > 0, end - padding >= offset else { throw MediaError.rtp("RTP padding of \(padding) bytes is invalid") }
            end -= padding
        }
        payload = Array(bytes[offset..<end])
    }

    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(12 + 4 * csrcs.count + payload.count + (extensionProfile == nil ? 0 : 4 + extensionData.count))
        out.append(0x80 | (extensionProfile == nil ? 0 : 0x10) | UInt8(csrcs.count & 0x0F))
        out.append((marker ? 0x80 : 0) | (payloadType & 0x7F))
        appendUInt16(&out, sequenceNumber)
        appendUInt32(&out, timestamp)
        appendUInt32(&out, ssrc)
        for csrc in csrcs.prefix(15) { appendUInt32(&out, csrc) }
        if let extensionProfile {
            precondition(extensionData.count % 4 == 0, "RTP header extension must be whole 32-bit words")
            appendUInt16(&out, extensionProfile)
            appendUInt16(&out, UInt16(extensionData.count / 4))
            out += extensionData
        }
        out += payload
        return out
    }

    public static func == (lhs: RTPPacket, rhs: RTPPacket) -> Bool {
        lhs.marker == rhs.marker && lhs.payloadType == rhs.payloadType && lhs.sequenceNumber == rhs.sequenceNumber
            && lhs.timestamp == rhs.timestamp && lhs.ssrc == rhs.ssrc && lhs.csrcs == rhs.csrcs
            && lhs.extensionProfile == rhs.extensionProfile && lhs.extensionData == rhs.extensionData
            && lhs.payload == rhs.payload
    }
}

/// rtcp-mux: RTP and RTCP share one port; RTCP packet types 192–223 occupy the second byte
/// where RTP has marker+payload type (RFC 5761 §4).
public enum RTPPacketKind: Sendable, Equatable {
    case rtp
    case rtcp
    case unknown

    public static func classify(_ bytes: [UInt8]) -> RTPPacketKind {
        guard bytes.count >= 8, bytes[0] >> 6 == 2 else { return .unknown }
        return (192...223).contains(bytes[1]) ? .rtcp : .rtp
    }
}

/// The sending side of one RTP stream: random SSRC, random initial sequence number and
/// timestamp (RFC 3550 §5.1), and counters for sender reports.
public struct RTPStreamSender: Sendable {
    public let ssrc: UInt32
    public let payloadType: UInt8
    public let clockRate: Int
    public private(set) var nextSequenceNumber: UInt16
    public let timestampBase: UInt32
    public private(set) var packetCount: UInt32 = 0
    public private(set) var octetCount: UInt32 = 0
    public private(set) var lastTimestamp: UInt32
    /// When the first packet carrying `lastTimestamp` went out; nil before any packet.
    public private(set) var lastTimestampSent: ContinuousClock.Instant?

    public init(payloadType: UInt8, clockRate: Int, ssrc: UInt32 = .random(in: 1...UInt32.max),
                initialSequence: UInt16 = .random(in: 0...UInt16.max), timestampBase: UInt32 = .random(in: 0...UInt32.max)) {
        self.payloadType = payloadType
        self.clockRate = clockRate
        self.ssrc = ssrc
        self.nextSequenceNumber = initialSequence
        self.timestampBase = timestampBase
        self.lastTimestamp = timestampBase
    }

    /// RTP timestamp for a media time since the stream started.
    public func rtpTimestamp(for mediaTime: Duration) -> UInt32 {
        timestampBase &+ ticks(mediaTime)
    }

    /// `duration` in clock-rate ticks, modulo 2^32 as RTP timestamps count.
    private func ticks(_ duration: Duration) -> UInt32 {
        let (seconds, attoseconds) = duration.components
        let ticks = Int64(seconds) * Int64(clockRate) + Int64(attoseconds / 1_000_000) * Int64(clockRate) / 1_000_000_000_000
        return UInt32(truncatingIfNeeded: ticks)
    }

    public mutating func packet(payload: [UInt8], timestamp: UInt32, marker: Bool,
                                sentAt instant: ContinuousClock.Instant = .now) -> RTPPacket {
        // A video frame's packets share one timestamp; the frame's first packet dates it.
        if lastTimestampSent == nil || timestamp != lastTimestamp { lastTimestampSent = instant }
        let packet = RTPPacket(marker: marker, payloadType: payloadType, sequenceNumber: nextSequenceNumber,
                               timestamp: timestamp, ssrc: ssrc, payload: payload)
        nextSequenceNumber &+= 1
        packetCount &+= 1
        octetCount &+= UInt32(truncatingIfNeeded: payload.count)
        lastTimestamp = timestamp
        return packet
    }

    /// The RTP timestamp of `instant`, for a sender report (RFC 3550 §6.4.1): the SR's NTP
    /// and RTP timestamps must name the same moment, which usually falls between two packets,
    /// so the last packet's timestamp is advanced by the time since it went out at the clock
    /// rate. A receiver uses the pair for lip sync and round-trip figures; the last packet's
    /// own timestamp would be up to a frame (40 ms of video) early.
    public func reportTimestamp(at instant: ContinuousClock.Instant = .now) -> UInt32 {
        guard let sent = lastTimestampSent, instant > sent else { return lastTimestamp }
        return lastTimestamp &+ ticks(sent.duration(to: instant))
    }
}

/// Receiver statistics of one source (RFC 3550 A.1, A.3, A.8): extended highest sequence,
/// loss, interarrival jitter, and the report block to send back.
public struct RTPReceptionStatistics: Sendable {
    public private(set) var ssrc: UInt32?
    private var baseSequence: UInt32 = 0
    private var maxSequence: UInt16 = 0
    private var cycles: UInt32 = 0
    public private(set) var received: UInt32 = 0
    private var expectedPrior: UInt32 = 0
    private var receivedPrior: UInt32 = 0
    private var transit: Int64? = nil
    /// Interarrival jitter in timestamp units.
    public private(set) var jitter: Double = 0

    public init() {}

    /// Records one packet; `arrival` is the arrival time in the stream's clock units.
    public mutating func record(sequence: UInt16, rtpTimestamp: UInt32, ssrc: UInt32, arrival: Int64) {
        if self.ssrc != ssrc {
            self = RTPReceptionStatistics()
            self.ssrc = ssrc
            baseSequence = UInt32(sequence)
            maxSequence = sequence
        }
        let delta = sequence &- maxSequence
        if delta < 3_000 {
            if sequence < maxSequence { cycles &+= 1 << 16 }
            maxSequence = sequence
        }
        // Anything else is reordered, duplicated or a restart; counted, not used for max.
        received &+= 1
        let packetTransit = arrival - Int64(rtpTimestamp)
        if let transit {
            let d = Double(abs(packetTransit - transit))
            jitter += (d - jitter) / 16
        }
        transit = packetTransit
    }

    public var extendedHighestSequence: UInt32 { cycles &+ UInt32(maxSequence) }
    public var expected: UInt32 { received == 0 ? 0 : extendedHighestSequence &- baseSequence &+ 1 }
    public var cumulativeLost: Int32 {
        let lost = Int64(expected) - Int64(received)
        return Int32(clamping: max(-0x80_0000, min(0x7F_FFFF, lost)))
    }

    /// The report block for the next RR/SR; resets the "since last report" counters.
    public mutating func makeReportBlock(lastSenderReport: UInt32 = 0, delaySinceLastSenderReport: UInt32 = 0) -> RTCPReportBlock? {
        guard let ssrc else { return nil }
        let expectedInterval = Int64(expected) - Int64(expectedPrior)
        let receivedInterval = Int64(received) - Int64(receivedPrior)
        expectedPrior = expected
        receivedPrior = received
        let lostInterval = expectedInterval - receivedInterval
        let fraction: UInt8 = expectedInterval == 0 || lostInterval <= 0 ? 0 : UInt8(min(255, (lostInterval << 8) / expectedInterval))
        return RTCPReportBlock(ssrc: ssrc, fractionLost: fraction, cumulativeLost: cumulativeLost,
                               extendedHighestSequence: extendedHighestSequence, jitter: UInt32(jitter),
                               lastSenderReport: lastSenderReport, delaySinceLastSenderReport: delaySinceLastSenderReport)
    }
}

// MARK: Byte helpers

@inline(__always) func readUInt16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
    UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
}

@inline(__always) func readUInt32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
}

@inline(__always) func appendUInt16(_ out: inout [UInt8], _ value: UInt16) {
    out.append(UInt8(value >> 8))
    out.append(UInt8(value & 0xFF))
}

@inline(__always) func appendUInt32(_ out: inout [UInt8], _ value: UInt32) {
    out.append(UInt8(value >> 24))
    out.append(UInt8((value >> 16) & 0xFF))
    out.append(UInt8((value >> 8) & 0xFF))
    out.append(UInt8(value & 0xFF))
}
