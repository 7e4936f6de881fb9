import Testing
@testable import Media

@Suite struct RTPPacketTests {
    @Test func serializeThenParseIsIdentity() throws {
        var packet = RTPPacket(marker: true, payloadType: 96, sequenceNumber: 65_535, timestamp: 0xDEAD_BEEF, ssrc: 42,
                               csrcs: [7, 8], payload: [1, 2, 3, 4, 5])
        packet.headerExtension = (profile: 0xBEDE, data: [0x10, 0xAA, 0, 0])
        let bytes = packet.serialized()
        #expect(bytes.count == 12 + 8 + 8 + 5)
        #expect(bytes[0] == 0x92)  // V=2, X=1, CC=2
        #expect(bytes[1] == 0x80 | 96)
        #expect(try RTPPacket(parsing: bytes) == packet)
    }

    @Test func knownBytesParse() throws {
        // V=2, P=1, PT=0, seq 0x1234, ts 0x01020304, ssrc 0x0A0B0C0D, payload "ab" + 2 bytes padding.
        let bytes: [UInt8] = [0xA0, 0x00, 0x12, 0x34, 1, 2, 3, 4, 0x0A, 0x0B, 0x0C, 0x0D, 0x61, 0x62, 0x00, 0x02]
        let packet = try RTPPacket(parsing: bytes)
        #expect(packet.payloadType == 0)
        #expect(!packet.marker)
        #expect(packet.sequenceNumber == 0x1234)
        #expect(packet.timestamp == 0x0102_0304)
        #expect(packet.ssrc == 0x0A0B_0C0D)
        #expect(packet.payload == [0x61, 0x62])
    }

    @Test func malformedPacketsAreRejected() {
        #expect(throws: MediaError.self) { try RTPPacket(parsing: [0x80, 0, 0]) }
        #expect(throws: MediaError.self) { try RTPPacket(parsing: [0x40] + [UInt8](repeating: 0, count: 11)) }
        // CC=3 but no CSRCs.
        #expect(throws: MediaError.self) { try RTPPacket(parsing: [0x83] + [UInt8](repeating: 0, count: 11)) }
        // Padding longer than the packet.
        #expect(throws: MediaError.self) { try RTPPacket(parsing: [0xA0] + [UInt8](repeating: 0, count: 10) + [40]) }
    }

    @Test func rtcpMuxTellsRTPFromRTCP() {
        let rtp = RTPPacket(marker: true, payloadType: 111, sequenceNumber: 1, timestamp: 1, ssrc: 1, payload: [0]).serialized()
        #expect(RTPPacketKind.classify(rtp) == .rtp)
        #expect(RTPPacketKind.classify(RTCPPacket.goodbye(ssrcs: [1]).serialized()) == .rtcp)
        #expect(RTPPacketKind.classify(RTCPPacket.receiverReport(ssrc: 1, reports: []).serialized()) == .rtcp)
        #expect(RTPPacketKind.classify([1, 2, 3]) == .unknown)
    }

    @Test func senderNumbersPacketsAndWrapsSequence() {
        var sender = RTPStreamSender(payloadType: 111, clockRate: 48_000, ssrc: 9, initialSequence: 65_534, timestampBase: 1_000)
        #expect(sender.rtpTimestamp(for: .milliseconds(20)) == 1_960)
        #expect(sender.rtpTimestamp(for: .seconds(1)) == 49_000)
        let a = sender.packet(payload: [1, 2], timestamp: 1_000, marker: false)
        let b = sender.packet(payload: [3], timestamp: 1_960, marker: false)
        let c = sender.packet(payload: [4], timestamp: 2_920, marker: false)
        #expect([a, b, c].map(\.sequenceNumber) == [65_534, 65_535, 0])
        #expect(sender.packetCount == 3)
        #expect(sender.octetCount == 4)
    }

    @Test func senderReportTimestampIsInterpolatedToTheReportsMoment() {
        // RFC 3550 §6.4.1: the SR's RTP timestamp names the same instant as its NTP time.
        var sender = RTPStreamSender(payloadType: 96, clockRate: 90_000, ssrc: 3, initialSequence: 0, timestampBase: UInt32.max - 899)
        let start = ContinuousClock.now
        #expect(sender.reportTimestamp(at: start) == UInt32.max - 899)  // nothing sent yet
        // A frame of three packets with one timestamp: its first packet dates it.
        _ = sender.packet(payload: [1], timestamp: UInt32.max - 899, marker: false, sentAt: start)
        _ = sender.packet(payload: [2], timestamp: UInt32.max - 899, marker: false, sentAt: start + .milliseconds(5))
        _ = sender.packet(payload: [3], timestamp: UInt32.max - 899, marker: true, sentAt: start + .milliseconds(8))
        // 25 ms later at 90 kHz is 2,250 ticks on, across the 32-bit wrap.
        #expect(sender.reportTimestamp(at: start + .milliseconds(25)) == 1_350)
        // The next frame restarts the count from its own first packet.
        _ = sender.packet(payload: [4], timestamp: 2_700, marker: true, sentAt: start + .milliseconds(40))
        #expect(sender.reportTimestamp(at: start + .milliseconds(50)) == 2_700 + 900)
        // A report dated before the last packet (clock readings out of order) does not go back.
        #expect(sender.reportTimestamp(at: start) == 2_700)
    }

    @Test func receptionStatisticsCountLossAcrossWrap() {
        var statistics = RTPReceptionStatistics()
        var sequence: UInt16 = 65_530
        for index in 0..<20 {
            if index != 8 && index != 9 {  // two lost, across the wrap
                statistics.record(sequence: sequence, rtpTimestamp: UInt32(index * 960), ssrc: 5, arrival: Int64(index * 960))
            }
            sequence &+= 1
        }
        #expect(statistics.expected == 20)
        #expect(statistics.received == 18)
        #expect(statistics.cumulativeLost == 2)
        #expect(statistics.extendedHighestSequence == 65_536 + 13)
        let block = statistics.makeReportBlock()
        #expect(block?.fractionLost == UInt8(2 * 256 / 20))
        #expect(statistics.jitter == 0, "arrivals exactly on the media clock")
        // Next report: nothing new, nothing lost since.
        #expect(statistics.makeReportBlock()?.fractionLost == 0)
    }
}

@Suite struct RTCPTests {
    static let block = RTCPReportBlock(ssrc: 0x1111, fractionLost: 25, cumulativeLost: -3, extendedHighestSequence: 70_000,
                                       jitter: 12, lastSenderReport: 0xABCD, delaySinceLastSenderReport: 655)

    @Test func compoundRoundTrip() throws {
        let packets: [RTCPPacket] = [
            .senderReport(RTCPSenderReport(ssrc: 1, ntpTimestamp: 0x0123_4567_89AB_CDEF, rtpTimestamp: 9, packetCount: 100,
                                           octetCount: 16_000, reports: [Self.block])),
            .sourceDescription(ssrc: 1, cname: "tablet@beeldzorg"),
            .receiverReport(ssrc: 2, reports: [Self.block, Self.block]),
            .pictureLossIndication(senderSSRC: 2, mediaSSRC: 1),
            .fullIntraRequest(senderSSRC: 2, mediaSSRC: 1, sequenceNumber: 7),
            .goodbye(ssrcs: [1, 2]),
        ]
        let bytes = RTCPPacket.serializeCompound(packets)
        #expect(bytes.count % 4 == 0)
        #expect(try RTCPPacket.parseCompound(bytes) == packets)
        #expect(packets.filter(\.requestsKeyframe).count == 2)
    }

    @Test func pliHasTheRFC4585Layout() {
        #expect(RTCPPacket.pictureLossIndication(senderSSRC: 0x0102_0304, mediaSSRC: 0x0506_0708).serialized()
                == [0x81, 206, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8])
    }

    @Test func truncatedCompoundIsRejected() {
        let bytes = RTCPPacket.receiverReport(ssrc: 2, reports: [Self.block]).serialized()
        #expect(throws: MediaError.self) { try RTCPPacket.parseCompound(Array(bytes.dropLast(4))) }
    }

    @Test func ntpTimestampOfUnixEpoch() {
        #expect(ntpTimestamp(sinceUnixEpoch: .zero) == UInt64(2_208_988_800) << 32)
        #expect(ntpTimestamp(sinceUnixEpoch: .milliseconds(500)) & 0xFFFF_FFFF == 0x8000_0000)
    }
}

@Suite struct VP8PayloadTests {
    static func frame(size: Int, keyframe: Bool, seed: UInt8) -> [UInt8] {
        var data = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
        data[0] = keyframe ? (data[0] & ~1) : (data[0] | 1)
        return data
    }

    static func packets(_ frames: [[UInt8]], sequence start: UInt16, mtu: Int = 100) -> [[RTPPacket]] {
        var packetizer = VP8Packetizer(maximumPayloadSize: mtu, initialPictureID: 0x7FFE)
        var sender = RTPStreamSender(payloadType: 96, clockRate: 90_000, ssrc: 3, initialSequence: start, timestampBase: 0)
        return frames.enumerated().map { index, frame in
            let payloads = packetizer.packetize(frame)
            return payloads.enumerated().map { part, payload in
                sender.packet(payload: payload, timestamp: UInt32(index * 3_600), marker: part == payloads.count - 1)
            }
        }
    }

    @Test func descriptorRoundTripsAllFields() throws {
        let full = VP8PayloadDescriptor(nonReference: true, startOfPartition: true, partitionIndex: 0, pictureID: 0x1234,
                                        tl0PictureIndex: 9, temporalLayer: 2, layerSync: true, keyIndex: 5)
        let bytes = full.serialized() + [0xFF]
        let (parsed, length) = try VP8PayloadDescriptor.parse(bytes)
        #expect(parsed == full)
        #expect(length == 6)
        let short = VP8PayloadDescriptor(startOfPartition: false, pictureID: 0x55, pictureIDIsLong: false)
        #expect(try VP8PayloadDescriptor.parse(short.serialized()).0 == short)
        #expect(VP8PayloadDescriptor(startOfPartition: true).serialized() == [0x10])
        #expect(throws: MediaError.self) { try VP8PayloadDescriptor.parse([0x80, 0x80, 0x80]) }
    }

    @Test func packetizerRespectsTheSizeAndMarksTheEnd() {
        var packetizer = VP8Packetizer(maximumPayloadSize: 100, initialPictureID: 0x7FFF)
        let payloads = packetizer.packetize(Self.frame(size: 1_000, keyframe: true, seed: 1))
        #expect(payloads.allSatisfy { $0.count <= 100 })
        #expect(payloads.count == 1_000 / 96 + 1)
        #expect(payloads.reduce(0) { $0 + $1.count - 4 } == 1_000)
        #expect(payloads[0][0] & 0x10 != 0)
        #expect(payloads.dropFirst().allSatisfy { $0[0] & 0x10 == 0 })
        // Picture id wraps at 15 bits.
        #expect(packetizer.pictureID == 0)
    }

    @Test func reorderedPacketsAssembleInOrder() throws {
        let frames = [Self.frame(size: 450, keyframe: true, seed: 1), Self.frame(size: 300, keyframe: false, seed: 2),
                      Self.frame(size: 50, keyframe: false, seed: 3), Self.frame(size: 333, keyframe: false, seed: 4)]
        // Start near the wrap to exercise it.
        var all = Self.packets(frames, sequence: 65_530).flatMap { $0 }
        var generator = SeededGenerator(seed: 42)
        // Shuffle within windows of 4 packets: reordering, not whole-stream chaos.
        for start in stride(from: 0, to: all.count, by: 4) {
            all[start..<min(all.count, start + 4)].shuffle(using: &generator)
        }
        var assembler = VP8FrameAssembler()
        var out: [AssembledVP8Frame] = []
        for packet in all { out += assembler.insert(packet).frames }
        #expect(out.map(\.data) == frames)
        #expect(out.map(\.isKeyframe) == [true, false, false, false])
        #expect(!assembler.waitingForKeyframe)
    }

    @Test func lostFragmentDropsFramesUntilAKeyframe() {
        let frames = [Self.frame(size: 250, keyframe: true, seed: 1), Self.frame(size: 250, keyframe: false, seed: 2),
                      Self.frame(size: 250, keyframe: false, seed: 3), Self.frame(size: 250, keyframe: false, seed: 4),
                      Self.frame(size: 250, keyframe: false, seed: 5), Self.frame(size: 250, keyframe: false, seed: 6),
                      Self.frame(size: 250, keyframe: true, seed: 7), Self.frame(size: 250, keyframe: false, seed: 8)]
        var perFrame = Self.packets(frames, sequence: 100)
        perFrame[1].remove(at: 1)  // a middle fragment of frame 1 never arrives
        var assembler = VP8FrameAssembler(reorderWindow: 3)
        var out: [AssembledVP8Frame] = []
        var askedForKeyframe = false
        var dropped = 0
        for packet in perFrame.flatMap({ $0 }) {
            let result = assembler.insert(packet)
            out += result.frames
            askedForKeyframe = askedForKeyframe || result.needsKeyframe
            dropped += result.framesDropped
        }
        #expect(askedForKeyframe)
        // Frame 0, then nothing until the keyframe 6, then 7.
        #expect(out.map(\.data) == [frames[0], frames[6], frames[7]])
        #expect(dropped == 5)
        #expect(!assembler.waitingForKeyframe)
    }

    @Test func renumberedSenderIsFollowedFromItsNextKeyframe() {
        var assembler = VP8FrameAssembler()
        let first = Self.packets([Self.frame(size: 120, keyframe: true, seed: 1)], sequence: 40_000)
        #expect(first.flatMap { $0 }.flatMap { assembler.insert($0).frames }.count == 1)
        // The sender restarts with lower sequence numbers (and keyframes every frame here).
        let restarted = Self.packets((0..<40).map { Self.frame(size: 120, keyframe: true, seed: UInt8($0)) }, sequence: 100)
        let out = restarted.flatMap { $0 }.flatMap { assembler.insert($0).frames }
        #expect(!out.isEmpty)
    }

    @Test func streamThatStartsWithoutAKeyframeWaitsForOne() {
        let frames = [Self.frame(size: 120, keyframe: false, seed: 1), Self.frame(size: 120, keyframe: true, seed: 2)]
        var assembler = VP8FrameAssembler()
        var out: [AssembledVP8Frame] = []
        var needs = false
        for packet in Self.packets(frames, sequence: 1).flatMap({ $0 }) {
            let result = assembler.insert(packet)
            out += result.frames
            needs = needs || result.needsKeyframe
        }
        #expect(needs)
        #expect(out.map(\.data) == [frames[1]])
    }
}

/// Deterministic generator so a failing shuffle can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
