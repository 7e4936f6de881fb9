import TestSupport
import Testing

@testable import SIP

private func sdp(_ lines: [String]) -> [UInt8] { Array((lines.joined(separator: "\r\n") + "\r\n").utf8) }

/// An offer in the shape baresip sends with mandatory SDES.
private func foreignOffer(proto: String = "RTP/SAVP", crypto: String? = nil, audioFormats: String = "96 8 0",
                          extra: [String] = []) -> [UInt8] {
    let key = crypto ?? "inline:" + SRTPKeyMaterial(bytes: Array(0..<30))!.base64
    var lines = [
        "v=0", "o=- 12345 67890 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
        "m=audio 10000 \(proto) \(audioFormats)", "b=AS:64",
        "a=rtpmap:96 opus/48000/2", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
        "a=rtcp-mux", "a=sendrecv",
    ]
    if proto.contains("SAVP") { lines.append("a=crypto:7 AES_CM_128_HMAC_SHA1_80 \(key)") }
    lines += ["m=video 10002 \(proto) 100", "a=rtpmap:100 VP8/90000", "a=rtcp:10009"]
    if proto.contains("SAVP") { lines.append("a=crypto:1 AES_CM_128_HMAC_SHA1_80 \(key)") }
    return sdp(lines + extra)
}

@Suite struct SDPTests {
    let tablet = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 20000, videoPort: 20002, srtpRequired: true)

    @Test func parsesAndRoundTrips() throws {
        let parsed = try SessionDescription(parsing: foreignOffer())
        #expect(parsed.media.count == 2)
        #expect(parsed.media[0].formats == ["96", "8", "0"])
        #expect(parsed.media[0].bandwidths == ["AS:64"])
        #expect(parsed.connection?.address == "127.0.0.1")
        let again = try SessionDescription(parsing: parsed.serialized())
        #expect(again == parsed)
    }

    @Test func offerHasOurCodecsAndAFreshKeyPerCall() throws {
        let first = tablet.makeOffer()
        let second = tablet.makeOffer()
        let text = String(decoding: first.description.serialized(), as: UTF8.self)
        #expect(text.contains("m=audio 20000 RTP/SAVP 111 8 0\r\n"))
        #expect(text.contains("a=rtpmap:111 opus/48000/2\r\n"))
        #expect(text.contains("a=rtpmap:8 PCMA/8000\r\n"))
        #expect(text.contains("a=rtpmap:0 PCMU/8000\r\n"))
        #expect(text.contains("m=video 20002 RTP/SAVP 96\r\n"))
        #expect(text.contains("a=rtpmap:96 VP8/90000\r\n"))
        let crypto = try #require(first.description.media[0].attributeValues("crypto").first)
        #expect(crypto.hasPrefix("1 AES_CM_128_HMAC_SHA1_80 inline:"))
        let key = try #require(SRTPKeyMaterial(base64: String(crypto.split(separator: ":").last!)))
        #expect(key.bytes.count == 30)
        #expect(first.audioKey != second.audioKey)
        #expect(first.audioKey != first.videoKey)
        // The offer parses back as itself.
        #expect(try SessionDescription(parsing: first.description.serialized()) == first.description)
    }

    @Test func plainOfferWithoutSRTP() {
        let plain = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 20000, videoPort: nil, srtpRequired: false)
        let offer = plain.makeOffer()
        #expect(offer.description.media.count == 1)
        #expect(offer.description.media[0].proto == "RTP/AVP")
        #expect(!offer.description.media[0].hasAttribute("crypto"))
    }

    @Test func answersAForeignOffer() throws {
        let offer = try SessionDescription(parsing: foreignOffer())
        let (answer, media) = try tablet.answer(offer)
        #expect(answer.media.count == 2)
        #expect(answer.media[0].formats == ["96"])
        #expect(answer.media[0].port == 20000)
        #expect(answer.media[0].attributeValues("crypto").first?.hasPrefix("7 AES_CM_128_HMAC_SHA1_80 inline:") == true)
        #expect(media.remoteAddress == "127.0.0.1")
        let audio = try #require(media.audio)
        #expect(audio.codec == .opus)
        #expect(audio.payloadType == 96)
        #expect(audio.remotePort == 10000)
        #expect(audio.rtcpMux)
        #expect(audio.remoteRTCPPort == 10000)
        #expect(audio.receiveKey == SRTPKeyMaterial(bytes: Array(0..<30)))
        #expect(audio.sendKey != nil && audio.sendKey != audio.receiveKey)
        let video = try #require(media.video)
        #expect(video.codec == .vp8)
        #expect(video.payloadType == 100)
        #expect(!video.rtcpMux)
        #expect(video.remoteRTCPPort == 10009)
    }

    /// RFC 5761 §5.1.1: the answer carries a=rtcp-mux for a stream only if its offer did.
    @Test func rtcpMuxOnlyIfOffered() throws {
        // foreignOffer: audio with rtcp-mux, video without.
        let (answer, _) = try tablet.answer(try SessionDescription(parsing: foreignOffer()))
        #expect(answer.media[0].hasAttribute("rtcp-mux"))
        #expect(!answer.media[1].hasAttribute("rtcp-mux"))
        let plain = try SessionDescription(
            parsing: Array(String(decoding: foreignOffer(), as: UTF8.self).replacing("a=rtcp-mux\r\n", with: "").utf8))
        let (noMux, media) = try tablet.answer(plain)
        #expect(!noMux.media.contains { $0.hasAttribute("rtcp-mux") })
        #expect(media.audio?.rtcpMux == false)
        #expect(media.audio?.remoteRTCPPort == 10001)
    }

    /// Issue 15: the answer to a post's re-INVITE (hold, session refresh) is our description
    /// as last sent, which for a call we placed is our offer with a=rtcp-mux. A re-offer
    /// without rtcp-mux must get an answer without it; one with it keeps it.
    @Test func reanswerDropsRtcpMuxTheReofferLacks() throws {
        let ours = tablet.makeOffer().description
        #expect(ours.media.allSatisfy { $0.hasAttribute("rtcp-mux") })
        let text = String(decoding: foreignOffer(), as: UTF8.self)
        let withoutMux = try SessionDescription(parsing: Array(text.replacing("a=rtcp-mux\r\n", with: "").utf8))
        let answer = try #require(MediaNegotiator.reanswer(withoutMux, current: ours))
        #expect(!answer.media.contains { $0.hasAttribute("rtcp-mux") })
        let withMux = try SessionDescription(parsing: foreignOffer(extra: []))
        let again = try #require(MediaNegotiator.reanswer(withMux, current: ours))
        #expect(again.media[0].hasAttribute("rtcp-mux"))  // audio offered it
        #expect(!again.media[1].hasAttribute("rtcp-mux"))  // video did not
        // The hold answer stays a hold answer.
        let hold = try SessionDescription(parsing: Array(text.replacing("a=sendrecv", with: "a=sendonly").utf8))
        #expect(try #require(MediaNegotiator.reanswer(hold, current: ours)).media[0].hasAttribute("recvonly"))
    }

    @Test func demoCentraleReusesTheOfferedKey() throws {
        let offer = tablet.makeOffer()
        let centrale = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 30000, videoPort: 30002, srtpRequired: true)
        let (answer, _) = try centrale.answer(offer.description, keyPolicy: .reuseOffered)
        let media = try MediaNegotiator.readAnswer(answer, for: offer)
        #expect(media.audio?.receiveKey == media.audio?.sendKey)
        #expect(media.audio?.sendKey == offer.audioKey)
        #expect(media.video?.receiveKey == offer.videoKey)
    }

    @Test func offerAnswerBetweenTwoOfUs() throws {
        let offer = tablet.makeOffer()
        let other = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 30000, videoPort: 30002, srtpRequired: true)
        let (answer, theirView) = try other.answer(try SessionDescription(parsing: offer.description.serialized()))
        let ourView = try MediaNegotiator.readAnswer(try SessionDescription(parsing: answer.serialized()), for: offer)
        #expect(ourView.audio?.codec == .opus)
        #expect(ourView.audio?.remotePort == 30000)
        #expect(theirView.audio?.remotePort == 20000)
        // Each side's send key is the other side's receive key.
        #expect(ourView.audio?.sendKey == theirView.audio?.receiveKey)
        #expect(ourView.audio?.receiveKey == theirView.audio?.sendKey)
        #expect(ourView.video?.sendKey == theirView.video?.receiveKey)
        #expect(ourView.isSecure)
    }

    @Test func plainOfferRejectedWhenSRTPRequired() throws {
        let offer = try SessionDescription(parsing: foreignOffer(proto: "RTP/AVP"))
        #expect(throws: SDPNegotiationError.noAcceptableCrypto) { try tablet.answer(offer) }
        #expect(SDPNegotiationError.noAcceptableCrypto.sipStatus == 488)
        // Accepted when not required.
        let relaxed = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 1, videoPort: nil, srtpRequired: false)
        let (answer, media) = try relaxed.answer(offer)
        #expect(media.audio?.sendKey == nil)
        #expect(answer.media[1].port == 0)  // video declined: no local video port
    }

    @Test(arguments: [
        "inline:tooShort", "inline:" + String(repeating: "A", count: 40) + "!!", "inline:", "nokeyhere",
        "inline:" + SRTPKeyMaterial(bytes: Array(0..<30))!.base64 + "|2^20|1:4",
    ])
    func badCryptoRejected(crypto: String) throws {
        let offer = try SessionDescription(parsing: foreignOffer(crypto: crypto))
        #expect(throws: SDPNegotiationError.noAcceptableCrypto) { try tablet.answer(offer) }
    }

    @Test func noCommonCodec() throws {
        let offer = try SessionDescription(parsing: foreignOffer(audioFormats: "9 18"))
        #expect(throws: SDPNegotiationError.noAcceptableCodecs) { try tablet.answer(offer) }
        #expect(SDPNegotiationError.noAcceptableCodecs.sipStatus == 488)
    }

    @Test func staticPayloadTypesWithoutRtpmap() throws {
        let bytes = sdp(["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
                         "m=audio 6000 RTP/AVP 0"])
        let relaxed = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 1, videoPort: nil, srtpRequired: false)
        let (_, media) = try relaxed.answer(try SessionDescription(parsing: bytes))
        #expect(media.audio?.codec == .pcmu)
        #expect(media.audio?.remoteRTCPPort == 6001)
    }

    static let hostile: [(String, [UInt8], SDPParseError)] = [
        ("huge", Array(repeating: UInt8(ascii: "a"), count: 40_000), .tooLarge),
        ("no version", sdp(["o=- 1 1 IN IP4 h", "s=-", "t=0 0"]), .missingLine("v")),
        ("no origin", sdp(["v=0", "s=-", "t=0 0"]), .missingLine("o")),
        ("no timing", sdp(["v=0", "o=- 1 1 IN IP4 h", "s=-"]), .missingLine("t")),
        ("bad version", sdp(["v=1", "o=- 1 1 IN IP4 h", "s=-", "t=0 0"]), .unsupportedVersion),
        ("bad origin", sdp(["v=0", "o=- 1 IN IP4 h", "s=-", "t=0 0"]), .invalidOrigin),
        ("bad port", sdp(["v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 99999 RTP/AVP 0"]), .invalidNumber),
        ("negative port", sdp(["v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio -5 RTP/AVP 0"]), .invalidNumber),
        ("short m line", sdp(["v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 5"]), .invalidMedia),
        ("bad connection", sdp(["v=0", "o=- 1 1 IN IP4 h", "s=-", "c=IN", "t=0 0"]), .invalidConnection),
        ("bad timing", sdp(["v=0", "o=- 1 1 IN IP4 h", "s=-", "t=soon"]), .invalidNumber),
        ("not a line", sdp(["v=0", "garbage"]), .malformedLine(2)),
        ("non UTF-8", [UInt8]("v=0\r\ns=".utf8) + [0xC3, 0x28], .invalidEncoding),
        ("too many media", sdp(["v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0"] + Array(repeating: "m=audio 1 RTP/AVP 0", count: 20)),
         .tooManyMediaSections),
        ("too many lines", sdp(["v=0"] + Array(repeating: "a=x", count: 2000)), .tooManyLines),
    ]

    @Test(arguments: 0..<hostile.count)
    func hostileSDPGivesErrors(index: Int) {
        let (name, bytes, expected) = Self.hostile[index]
        #expect(throws: expected, "\(name)") { try SessionDescription(parsing: bytes) }
    }

    @Test func missingConnectionAddress() throws {
        let bytes = sdp(["v=0", "o=- 1 1 IN IP4 h", "s=-", "t=0 0", "m=audio 6000 RTP/AVP 0"])
        let relaxed = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 1, videoPort: nil, srtpRequired: false)
        #expect(throws: SDPNegotiationError.noConnectionAddress) { try relaxed.answer(try SessionDescription(parsing: bytes)) }
    }

    @Test func mutatedSDPNeverTraps() throws {
        var rng = SplitMix64(seed: 99)
        let base = foreignOffer()
        for _ in 0..<2_000 {
            var bytes = base
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 32...126, using: &rng)
            }
            if let parsed = try? SessionDescription(parsing: bytes) {
                _ = try? tablet.answer(parsed)
                _ = try? MediaNegotiator.readAnswer(parsed, for: tablet.makeOffer())
            }
        }
    }

    @Test func base64RoundTrip() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(($0 * 37 + 11) & 0xFF) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes)
        }
        #expect(Base64.encode(Array("foobar".utf8)) == "Zm9vYmFy")
        #expect(Base64.encode(Array("fo".utf8)) == "Zm8=")
        #expect(Base64.decode("Zm9v!") == nil)
    }
}
