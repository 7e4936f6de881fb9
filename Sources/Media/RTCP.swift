// RTCP (RFC 3550 §6): sender and receiver reports, SDES CNAME, BYE; and the payload-specific
// feedback a video sender must act on: PLI and FIR (RFC 4585 §6.3.1, RFC 5104 §4.3.1).

/// One reception report block (RFC 3550 §6.4.1).
public struct RTCPReportBlock: Sendable, Equatable {
    public var ssrc: UInt32
    public var fractionLost: UInt8
    public var cumulativeLost: Int32
    public var extendedHighestSequence: UInt32
    public var jitter: UInt32
    public var lastSenderReport: UInt32
    public var delaySinceLastSenderReport: UInt32

    public init(ssrc: UInt32, fractionLost: UInt8, cumulativeLost: Int32, extendedHighestSequence: UInt32, jitter: UInt32,
                lastSenderReport: UInt32, delaySinceLastSenderReport: UInt32) {
        self.ssrc = ssrc
        self.fractionLost = fractionLost
        self.cumulativeLost = cumulativeLost
        self.extendedHighestSequence = extendedHighestSequence
        self.jitter = jitter
        self.lastSenderReport = lastSenderReport
        self.delaySinceLastSenderReport = delaySinceLastSenderReport
    }

    /// Loss since the previous report, 0…1.
    public var lossFraction: Double { Double(fractionLost) / 256 }
}

/// Sender report (RFC 3550 §6.4.1).
public struct RTCPSenderReport: Sendable, Equatable {
    public var ssrc: UInt32
    public var ntpTimestamp: UInt64
    public var rtpTimestamp: UInt32
    public var packetCount: UInt32
    public var octetCount: UInt32
    public var reports: [RTCPReportBlock]

    public init(ssrc: UInt32, ntpTimestamp: UInt64, rtpTimestamp: UInt32, packetCount: UInt32, octetCount: UInt32,
                reports: [RTCPReportBlock] = []) {
        self.ssrc = ssrc
        self.ntpTimestamp = ntpTimestamp
        self.rtpTimestamp = rtpTimestamp
        self.packetCount = packetCount
        self.octetCount = octetCount
        self.reports = reports
    }

    /// The middle 32 bits of the NTP timestamp, as echoed in LSR.
    public var compactNTP: UInt32 { UInt32(truncatingIfNeeded: ntpTimestamp >> 16) }
}

/// One RTCP packet of a compound packet.
public enum RTCPPacket: Sendable, Equatable {
    case senderReport(RTCPSenderReport)
    case receiverReport(ssrc: UInt32, reports: [RTCPReportBlock])
    /// SDES with one chunk carrying the CNAME (the only item RFC 3550 requires).
    case sourceDescription(ssrc: UInt32, cname: String)
    case goodbye(ssrcs: [UInt32])
    case pictureLossIndication(senderSSRC: UInt32, mediaSSRC: UInt32)
    case fullIntraRequest(senderSSRC: UInt32, mediaSSRC: UInt32, sequenceNumber: UInt8)
    /// Anything else (APP, NACK, REMB, XR…): kept, not interpreted.
    case other(packetType: UInt8, count: UInt8, body: [UInt8])

    public static let senderReportType: UInt8 = 200
    public static let receiverReportType: UInt8 = 201
    public static let sourceDescriptionType: UInt8 = 202
    public static let goodbyeType: UInt8 = 203
    public static let payloadFeedbackType: UInt8 = 206

    /// True for feedback that asks this side's video sender for a keyframe.
    public var requestsKeyframe: Bool {
        switch self {
        case .pictureLossIndication, .fullIntraRequest: true
        case .senderReport, .receiverReport, .sourceDescription, .goodbye, .other: false
        }
    }

    /// Splits and parses a compound RTCP packet.
    public static func parseCompound(_ bytes: [UInt8]) throws -> [RTCPPacket] {
        var packets: [RTCPPacket] = []
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= 4 else { throw MediaError.rtp("RTCP packet truncated in its header") }
            guard bytes[offset] >> 6 == 2 else { throw MediaError.rtp("RTCP version \(bytes[offset] >> 6), expected 2") }
            let length = (Int(readUInt16(bytes, offset + 2)) + 1) * 4
            guard offset + length <= bytes.count else { throw MediaError.rtp("RTCP packet length \(length) runs past the datagram") }
            var body = Array(bytes[(offset + 4)..<(offset + length)])
            if bytes[offset] & 0x20 != 0, let padding = body.last {
                guard Int(padding) <= body.count else { throw MediaError.rtp("RTCP padding is invalid") }
                body.removeLast(Int(padding))
            }
            packets.append(try parse(type: bytes[offset + 1], count: bytes[offset] & 0x1F, body: body))
            offset += length
        }
        return packets
    }

    private static func parse(type: UInt8, count: UInt8, body: [UInt8]) throws -> RTCPPacket {
        func blocks(from start: Int) throws -> [RTCPReportBlock] {
            guard body.count >= start + 24 * Int(count) else { throw MediaError.rtp("RTCP report blocks truncated") }
            return (0..<Int(count)).map { index in
                let at = start + 24 * index
                let lost24 = readUInt32(body, at + 4) & 0x00FF_FFFF
                let lost = lost24 & 0x80_0000 != 0 ? Int32(bitPattern: lost24 | 0xFF00_0000) : Int32(lost24)
                return RTCPReportBlock(ssrc: readUInt32(body, at), fractionLost: body[at + 4], cumulativeLost: lost,
                                       extendedHighestSequence: readUInt32(body, at + 8), jitter: readUInt32(body, at + 12),
                                       lastSenderReport: readUInt32(body, at + 16), delaySinceLastSenderReport: readUInt32(body, at + 20))
            }
        }
        switch type {
        case senderReportType:
            guard body.count >= 24 else { throw MediaError.rtp("RTCP SR truncated") }
            return .senderReport(RTCPSenderReport(
                ssrc: readUInt32(body, 0), ntpTimestamp: UInt64(readUInt32(body, 4)) << 32 | UInt64(readUInt32(body, 8)),
                rtpTimestamp: readUInt32(body, 12), packetCount: readUInt32(body, 16), octetCount: readUInt32(body, 20),
                reports: try blocks(from: 24)))
        case receiverReportType:
            guard body.count >= 4 else { throw MediaError.rtp("RTCP RR truncated") }
            return .receiverReport(ssrc: readUInt32(body, 0), reports: try blocks(from: 4))
        case sourceDescriptionType where count >= 1 && body.count >= 4:
            var at = 4
            while at + 2 <= body.count, body[at] != 0 {
                let itemLength = Int(body[at + 1])
                guard at + 2 + itemLength <= body.count else { break }
                if body[at] == 1 {
                    return .sourceDescription(ssrc: readUInt32(body, 0), cname: String(decoding: body[(at + 2)..<(at + 2 + itemLength)], as: UTF8.self))
                }
                at += 2 + itemLength
            }
            return .other(packetType: type, count: count, body: body)
        case goodbyeType:
            guard body.count >= 4 * Int(count) else { throw MediaError.rtp("RTCP BYE truncated") }
            return .goodbye(ssrcs: (0..<Int(count)).map { readUInt32(body, 4 * $0) })
        case payloadFeedbackType where count == 1 && body.count >= 8:
            return .pictureLossIndication(senderSSRC: readUInt32(body, 0), mediaSSRC: readUInt32(body, 4))
        case payloadFeedbackType where count == 4 && body.count >= 16:
            return .fullIntraRequest(senderSSRC: readUInt32(body, 0), mediaSSRC: readUInt32(body, 8), sequenceNumber: body[12])
        default:
            return .other(packetType: type, count: count, body: body)
        }
    }

    public func serialized() -> [UInt8] {
        var body: [UInt8] = []
        let type: UInt8
        let count: UInt8
        func append(_ block: RTCPReportBlock) {
            appendUInt32(&body, block.ssrc)
            appendUInt32(&body, UInt32(block.fractionLost) << 24 | (UInt32(bitPattern: block.cumulativeLost) & 0x00FF_FFFF))
            appendUInt32(&body, block.extendedHighestSequence)
            appendUInt32(&body, block.jitter)
            appendUInt32(&body, block.lastSenderReport)
            appendUInt32(&body, block.delaySinceLastSenderReport)
        }
        switch self {
        case .senderReport(let report):
            type = Self.senderReportType
            count = UInt8(min(31, report.reports.count))
            appendUInt32(&body, report.ssrc)
            appendUInt32(&body, UInt32(truncatingIfNeeded: report.ntpTimestamp >> 32))
            appendUInt32(&body, UInt32(truncatingIfNeeded: report.ntpTimestamp))
            appendUInt32(&body, report.rtpTimestamp)
            appendUInt32(&body, report.packetCount)
            appendUInt32(&body, report.octetCount)
            report.reports.prefix(31).forEach(append)
        case .receiverReport(let ssrc, let reports):
            type = Self.receiverReportType
            count = UInt8(min(31, reports.count))
            appendUInt32(&body, ssrc)
            reports.prefix(31).forEach(append)
        case .sourceDescription(let ssrc, let cname):
            type = Self.sourceDescriptionType
            count = 1
            appendUInt32(&body, ssrc)
            let text = Array(cname.utf8.prefix(255))
            body.append(1)
            body.append(UInt8(text.count))
            body += text
            // The item list ends with a null item, then padding to a 32-bit boundary.
            body.append(0)
            while body.count % 4 != 0 { body.append(0) }
        case .goodbye(let ssrcs):
            type = Self.goodbyeType
            count = UInt8(min(31, ssrcs.count))
            for ssrc in ssrcs.prefix(31) { appendUInt32(&body, ssrc) }
        case .pictureLossIndication(let sender, let media):
            type = Self.payloadFeedbackType
            count = 1
            appendUInt32(&body, sender)
            appendUInt32(&body, media)
        case .fullIntraRequest(let sender, let media, let sequence):
            type = Self.payloadFeedbackType
            count = 4
            appendUInt32(&body, sender)
            appendUInt32(&body, 0)
            appendUInt32(&body, media)
            body += [sequence, 0, 0, 0]
        case .other(let packetType, let otherCount, let otherBody):
            type = packetType
            count = otherCount & 0x1F
            body = otherBody
            while body.count % 4 != 0 { body.append(0) }
        }
        var out: [UInt8] = [0x80 | count, type]
        appendUInt16(&out, UInt16(body.count / 4))
        return out + body
    }

    public static func serializeCompound(_ packets: [RTCPPacket]) -> [UInt8] {
        packets.flatMap { $0.serialized() }
    }
}

/// NTP time (RFC 5905: seconds since 1900 in the high 32 bits, fraction in the low 32) for
/// a wall-clock time given as a `Duration` since the Unix epoch.
public func ntpTimestamp(sinceUnixEpoch time: Duration) -> UInt64 {
    let (seconds, attoseconds) = time.components
    let fraction = UInt64(Double(attoseconds) / 1e18 * 4_294_967_296.0)
    return UInt64(seconds + 2_208_988_800) << 32 | fraction
}
