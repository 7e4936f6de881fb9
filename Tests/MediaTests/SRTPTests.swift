import Testing
@testable import Media

@Suite struct SRTPTests {
    static let key: [UInt8] = (0..<30).map { UInt8(($0 * 7 + 3) & 0xFF) }
    static let otherKey: [UInt8] = (0..<30).map { UInt8(($0 * 11 + 5) & 0xFF) }

    static func packet(sequence: UInt16) -> [UInt8] {
        RTPPacket(payloadType: 111, sequenceNumber: sequence, timestamp: 960 * UInt32(sequence), ssrc: 0x1234_5678,
                  payload: Array("hello beeldzorg \(sequence)".utf8)).serialized()
    }

    @Test func protectThenUnprotectGivesThePacketBack() throws {
        let sender = try SRTPSession(masterKeyAndSalt: Self.key, direction: .outbound)
        let receiver = try SRTPSession(masterKeyAndSalt: Self.key, direction: .inbound)
        for sequence in UInt16(1)...20 {
            let plain = Self.packet(sequence: sequence)
            let protected = try sender.protect(plain)
            #expect(protected.count == plain.count + SRTPSession.rtpOverhead)
            // The header stays in clear, the payload does not.
            #expect(Array(protected.prefix(12)) == Array(plain.prefix(12)))
            #expect(Array(protected[12..<plain.count]) != Array(plain[12...]))
            #expect(try receiver.unprotect(protected) == plain)
        }
    }

    @Test func tamperedPacketFailsAuthentication() throws {
        let sender = try SRTPSession(masterKeyAndSalt: Self.key, direction: .outbound)
        let receiver = try SRTPSession(masterKeyAndSalt: Self.key, direction: .inbound)
        var protected = try sender.protect(Self.packet(sequence: 7))
        protected[15] ^= 0x01
        do {
            _ = try receiver.unprotect(protected)
            Issue.record("tampered packet was accepted")
        } catch let error as MediaError {
            #expect(error.isAuthenticationFailure)
        }
        // A replay of an accepted packet is refused too.
        let good = try sender.protect(Self.packet(sequence: 8))
        _ = try receiver.unprotect(good)
        #expect(throws: MediaError.self) { try receiver.unprotect(good) }
    }

    @Test func wrongKeyIsRejected() throws {
        let sender = try SRTPSession(masterKeyAndSalt: Self.key, direction: .outbound)
        let receiver = try SRTPSession(masterKeyAndSalt: Self.otherKey, direction: .inbound)
        let error = try #require(throws: MediaError.self) { try receiver.unprotect(try sender.protect(Self.packet(sequence: 1))) }
        #expect(error.isAuthenticationFailure)
    }

    @Test func rtcpRoundTripAndWrongKey() throws {
        let sender = try SRTPSession(masterKeyAndSalt: Self.key, direction: .outbound)
        let receiver = try SRTPSession(masterKeyAndSalt: Self.key, direction: .inbound)
        let stranger = try SRTPSession(masterKeyAndSalt: Self.otherKey, direction: .inbound)
        let pli = RTCPPacket.pictureLossIndication(senderSSRC: 1, mediaSSRC: 2).serialized()
        let protected = try sender.protectRTCP(pli)
        #expect(protected.count == pli.count + SRTPSession.rtcpOverhead)
        #expect(try receiver.unprotectRTCP(protected) == pli)
        #expect(throws: MediaError.self) { try stranger.unprotectRTCP(protected) }
    }

    @Test func keyMustBeThirtyBytes() {
        #expect(throws: MediaError.self) { try SRTPSession(masterKeyAndSalt: [1, 2, 3], direction: .outbound) }
    }
}
