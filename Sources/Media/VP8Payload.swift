// RTP payload format for VP8 (RFC 7741): the payload descriptor, a packetiser that cuts a
// frame into MTU-sized packets, and an assembler that puts frames back together, tolerates
// reordering, and on loss waits for (and asks for) a keyframe.

/// The VP8 payload descriptor (RFC 7741 §4.2).
public struct VP8PayloadDescriptor: Sendable, Equatable {
    public var nonReference: Bool
    /// S: first packet of a partition.
    public var startOfPartition: Bool
    public var partitionIndex: UInt8
    /// 7- or 15-bit picture id, if present.
    public var pictureID: UInt16?
    public var pictureIDIsLong: Bool
    public var tl0PictureIndex: UInt8?
    public var temporalLayer: UInt8?
    public var layerSync: Bool
    public var keyIndex: UInt8?

    public init(nonReference: Bool = false, startOfPartition: Bool, partitionIndex: UInt8 = 0, pictureID: UInt16? = nil,
                pictureIDIsLong: Bool = true, tl0PictureIndex: UInt8? = nil, temporalLayer: UInt8? = nil,
                layerSync: Bool = false, keyIndex: UInt8? = nil) {
        self.nonReference = nonReference
        self.startOfPartition = startOfPartition
        self.partitionIndex = partitionIndex
        self.pictureID = pictureID
        self.pictureIDIsLong = pictureIDIsLong
        self.tl0PictureIndex = tl0PictureIndex
        self.temporalLayer = temporalLayer
        self.layerSync = layerSync
        self.keyIndex = keyIndex
    }

    /// Parses the descriptor at the start of an RTP payload; returns it and its length.
    public static func parse(_ payload: [UInt8]) throws -> (VP8PayloadDescriptor, Int) {
        guard let first = payload.first else { throw MediaError.rtp("empty VP8 payload") }
        var descriptor = VP8PayloadDescriptor(nonReference: first & 0x20 != 0, startOfPartition: first & 0x10 != 0,
                                              partitionIndex: first & 0x07)
        var offset = 1
        func next() throws -> UInt8 {
            guard offset < payload.count else { throw MediaError.rtp("VP8 payload descriptor truncated") }
            defer { offset += 1 }
            return payload[offset]
        }
        if first & 0x80 != 0 {
            let extensions = try next()
            if extensions & 0x80 != 0 {
                let high = try next()
                if high & 0x80 != 0 {
                    descriptor.pictureID = UInt16(high & 0x7F) << 8 | UInt16(try next())
                    descriptor.pictureIDIsLong = true
                } else {
                    descriptor.pictureID = UInt16(high)
                    descriptor.pictureIDIsLong = false
                }
            }
            if extensions & 0x40 != 0 { descriptor.tl0PictureIndex = try next() }
            if extensions & 0x30 != 0 {
                let byte = try next()
                if extensions & 0x20 != 0 {
                    descriptor.temporalLayer = byte >> 6
                    descriptor.layerSync = byte & 0x20 != 0
                }
                if extensions & 0x10 != 0 { descriptor.keyIndex = byte & 0x1F }
            }
        }
        return (descriptor, offset)
    }

    public func serialized() -> [UInt8] {
        let hasT = temporalLayer != nil
        let hasK = keyIndex != nil
        let hasExtension = pictureID != nil || tl0PictureIndex != nil || hasT || hasK
        var out: [UInt8] = [(hasExtension ? 0x80 : 0) | (nonReference ? 0x20 : 0) | (startOfPartition ? 0x10 : 0) | (partitionIndex & 0x07)]
        guard hasExtension else { return out }
        out.append((pictureID != nil ? 0x80 : 0) | (tl0PictureIndex != nil ? 0x40 : 0) | (hasT ? 0x20 : 0) | (hasK ? 0x10 : 0))
        if let pictureID {
            if pictureIDIsLong {
                out.append(0x80 | UInt8((pictureID >> 8) & 0x7F))
                out.append(UInt8(pictureID & 0xFF))
            } else {
                out.append(UInt8(pictureID & 0x7F))
            }
        }
        if let tl0PictureIndex { out.append(tl0PictureIndex) }
        if hasT || hasK {
            out.append(((temporalLayer ?? 0) & 0x03) << 6 | (layerSync ? 0x20 : 0) | ((keyIndex ?? 0) & 0x1F))
        }
        return out
    }
}

/// Cuts encoded VP8 frames into RTP payloads of at most `maximumPayloadSize` bytes, each
/// with a descriptor carrying a 15-bit picture id.
public struct VP8Packetizer: Sendable {
    public let maximumPayloadSize: Int
    public private(set) var pictureID: UInt16

    /// The default leaves room in a 1200-byte datagram for the RTP header and SRTP tag.
    public init(maximumPayloadSize: Int = 1_200 - 12 - SRTPSession.rtpOverhead, initialPictureID: UInt16 = .random(in: 0...0x7FFF)) {
        precondition(maximumPayloadSize > 8, "VP8 payloads need room for a descriptor and data")
        self.maximumPayloadSize = maximumPayloadSize
        self.pictureID = initialPictureID & 0x7FFF
    }

    /// The RTP payloads for one frame, in order; the last one gets the marker bit.
    public mutating func packetize(_ frame: [UInt8]) -> [[UInt8]] {
        defer { pictureID = (pictureID + 1) & 0x7FFF }
        var payloads: [[UInt8]] = []
        var offset = 0
        repeat {
            let descriptor = VP8PayloadDescriptor(startOfPartition: offset == 0, pictureID: pictureID).serialized()
            let room = maximumPayloadSize - descriptor.count
            let end = min(frame.count, offset + room)
            payloads.append(descriptor + frame[offset..<end])
            offset = end
        } while offset < frame.count
        return payloads
    }
}

/// A frame put back together from its RTP packets.
public struct AssembledVP8Frame: Sendable, Equatable {
    public var data: [UInt8]
    public var rtpTimestamp: UInt32
    public var isKeyframe: Bool
}

/// Rebuilds VP8 frames from RTP packets that may arrive out of order or not at all.
///
/// Packets are grouped by RTP timestamp. A frame is delivered when it is complete (start
/// packet, marker packet, no gaps) and follows the previous delivered frame without a gap.
/// When a frame is given up for lost (newer frames pile up behind it), the decoder's
/// reference is broken: the assembler drops everything until a complete keyframe and says
/// a keyframe should be requested.
public struct VP8FrameAssembler: Sendable {
    private struct Part: Sendable {
        var sequence: UInt16
        var start: Bool
        var marker: Bool
        var data: [UInt8]
    }

    private struct Pending: Sendable {
        var timestamp: UInt32
        var parts: [Part] = []

        /// Oldest sequence number seen for this frame (parts is never empty).
        var firstSequence: UInt16 {
            parts.dropFirst().reduce(parts[0].sequence) { isNewer($0, than: $1.sequence) ? $1.sequence : $0 }
        }
    }

    public struct Output: Sendable {
        public var frames: [AssembledVP8Frame] = []
        /// Loss was detected (now or still waiting for a keyframe): send PLI.
        public var needsKeyframe = false
        public var framesDropped = 0
    }

    /// How many newer frames may be pending before an incomplete older one is given up.
    public let reorderWindow: Int
    private var pending: [Pending] = []
    private var lastDeliveredSequence: UInt16?
    private var lastDeliveredTimestamp: UInt32?
    public private(set) var waitingForKeyframe = true
    private var consecutiveLate = 0

    public init(reorderWindow: Int = 3) {
        self.reorderWindow = max(1, reorderWindow)
    }

    public mutating func insert(_ packet: RTPPacket) -> Output {
        var output = Output()
        guard let (descriptor, length) = try? VP8PayloadDescriptor.parse(packet.payload) else { return output }
        // Too late: a frame at or before the last delivered one.
        if let last = lastDeliveredSequence, !isNewer(packet.sequenceNumber, than: last)
            || lastDeliveredTimestamp == packet.timestamp {
            consecutiveLate += 1
            guard consecutiveLate > 64 else { return output }
            // So many "late" packets in a row: the sender renumbered. Start over at a keyframe.
            self = VP8FrameAssembler(reorderWindow: reorderWindow)
        }
        consecutiveLate = 0
        let part = Part(sequence: packet.sequenceNumber, start: descriptor.startOfPartition && descriptor.partitionIndex == 0,
                        marker: packet.marker, data: Array(packet.payload[length...]))
        if let index = pending.firstIndex(where: { $0.timestamp == packet.timestamp }) {
            guard !pending[index].parts.contains(where: { $0.sequence == part.sequence }) else { return output }
            pending[index].parts.append(part)
        } else {
            pending.append(Pending(timestamp: packet.timestamp, parts: [part]))
        }
        drain(into: &output)
        output.needsKeyframe = output.needsKeyframe || waitingForKeyframe
        return output
    }

    private mutating func drain(into output: inout Output) {
        while !pending.isEmpty {
            pending.sort { isNewer($1.firstSequence, than: $0.firstSequence) }
            let oldest = pending[0]
            if let frame = complete(oldest) {
                let contiguous = lastDeliveredSequence.map { frame.first == $0 &+ 1 } ?? false
                if contiguous && !waitingForKeyframe || frame.isKeyframe {
                    pending.removeFirst()
                    deliver(frame, timestamp: oldest.timestamp, into: &output)
                    continue
                }
                if waitingForKeyframe {
                    // Not decodable until a keyframe: drop it.
                    pending.removeFirst()
                    lastDeliveredSequence = frame.last
                    output.framesDropped += 1
                    continue
                }
            }
            // The oldest cannot go out yet; give it up once enough newer frames are waiting.
            guard pending.count > reorderWindow else { return }
            let dropped = pending.removeFirst()
            if let newest = dropped.parts.map(\.sequence).max(by: { isNewer($1, than: $0) }) {
                lastDeliveredSequence = newest
            }
            output.framesDropped += 1
            waitingForKeyframe = true
            output.needsKeyframe = true
        }
    }

    private mutating func deliver(_ frame: (data: [UInt8], first: UInt16, last: UInt16, isKeyframe: Bool), timestamp: UInt32,
                                  into output: inout Output) {
        lastDeliveredSequence = frame.last
        lastDeliveredTimestamp = timestamp
        if frame.isKeyframe { waitingForKeyframe = false }
        output.frames.append(AssembledVP8Frame(data: frame.data, rtpTimestamp: timestamp, isKeyframe: frame.isKeyframe))
    }

    private func complete(_ frame: Pending) -> (data: [UInt8], first: UInt16, last: UInt16, isKeyframe: Bool)? {
        let parts = frame.parts.sorted { isNewer($1.sequence, than: $0.sequence) }
        guard let first = parts.first, first.start, let last = parts.last, last.marker else { return nil }
        for (a, b) in zip(parts, parts.dropFirst()) where b.sequence != a.sequence &+ 1 { return nil }
        let data = parts.flatMap(\.data)
        // VP8 frame tag (RFC 6386 §9.1): bit 0 of the first byte is 0 for a keyframe.
        guard let tag = data.first else { return nil }
        return (data, first.sequence, last.sequence, tag & 0x01 == 0)
    }
}

/// Sequence-number order with wrap-around (RFC 1982 serial arithmetic on 16 bits).
@inline(__always) func isNewer(_ a: UInt16, than b: UInt16) -> Bool {
    a != b && (a &- b) < 0x8000
}
