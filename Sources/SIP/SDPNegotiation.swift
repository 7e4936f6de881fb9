/// The codecs this product speaks, in our order of preference per kind.
public enum MediaCodec: Sendable, Equatable, CaseIterable {
    case opus, pcma, pcmu, vp8

    public var encodingName: String {
        switch self {
        case .opus: "opus"
        case .pcma: "PCMA"
        case .pcmu: "PCMU"
        case .vp8: "VP8"
        }
    }

    public var clockRate: Int {
        switch self {
        case .opus: 48_000
        case .pcma, .pcmu: 8_000
        case .vp8: 90_000
        }
    }

    public var channels: Int? {
        switch self {
        case .opus: 2
        case .pcma, .pcmu, .vp8: nil
        }
    }

    /// The payload type we offer it with (static for G.711, dynamic otherwise).
    public var defaultPayloadType: UInt8 {
        switch self {
        case .opus: 111
        case .pcma: 8
        case .pcmu: 0
        case .vp8: 96
        }
    }

    var isAudio: Bool { self != .vp8 }
}

/// SDES master key and salt for AES_CM_128_HMAC_SHA1_80 (RFC 4568): 16 + 14 bytes.
public struct SRTPKeyMaterial: Sendable, Equatable, CustomStringConvertible {
    public static let suite = "AES_CM_128_HMAC_SHA1_80"
    public static let length = 30
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == SRTPKeyMaterial.length else { return nil }
        self.bytes = bytes
    }

    public init?(base64: String) {
        guard let decoded = Base64.decode(base64) else { return nil }
        self.init(bytes: decoded)
    }

    /// A fresh key from the system's cryptographically secure generator.
    public static func random() -> SRTPKeyMaterial {
        var rng = SystemRandomNumberGenerator()
        return SRTPKeyMaterial(bytes: (0..<length).map { _ in UInt8.random(in: .min ... .max, using: &rng) })!
    }

    public var base64: String { Base64.encode(bytes) }

    /// Never print key material into logs.
    public var description: String { "SRTPKeyMaterial(<redacted>)" }
}

/// One negotiated RTP stream, ready for the Media layer.
public struct NegotiatedStream: Sendable, Equatable {
    public var remotePort: Int
    /// Where the peer wants RTCP: the RTP port with rtcp-mux, else `a=rtcp` or port + 1.
    public var remoteRTCPPort: Int
    public var payloadType: UInt8
    public var codec: MediaCodec
    public var rtcpMux: Bool
    /// Our key: encrypts what we send. Nil means plain RTP.
    public var sendKey: SRTPKeyMaterial?
    /// The peer's key: decrypts what we receive.
    public var receiveKey: SRTPKeyMaterial?
    public var sends: Bool
    public var receives: Bool
}

/// What the daemon hands to Media once offer and answer agree.
public struct MediaDescription: Sendable, Equatable {
    public var remoteAddress: String
    public var audio: NegotiatedStream?
    public var video: NegotiatedStream?
    public var isSecure: Bool { audio?.sendKey != nil }
}

/// Why offer/answer failed. `sipStatus` is what to answer an INVITE with.
public enum SDPNegotiationError: Error, Equatable, Sendable {
    case malformed(SDPParseError)
    case noConnectionAddress
    case noAcceptableCodecs
    case noAcceptableCrypto
    case answerDoesNotMatchOffer

    public var sipStatus: Int {
        switch self {
        case .malformed, .noConnectionAddress: 400
        case .noAcceptableCodecs, .noAcceptableCrypto, .answerDoesNotMatchOffer: 488
        }
    }
}

/// An offer we sent, kept to read the answer against.
public struct PendingOffer: Sendable, Equatable {
    public var description: SessionDescription
    var audioKey: SRTPKeyMaterial?
    var videoKey: SRTPKeyMaterial?
    var srtpRequired: Bool
}

/// Builds offers and answers (RFC 3264) for our media: audio Opus/PCMA/PCMU, video VP8, and
/// SDES-keyed SRTP when required.
public struct MediaNegotiator: Sendable {
    public enum AnswerKeyPolicy: Sendable {
        /// A fresh random key (normal).
        case fresh
        /// Answer with the offerer's own key: only for the demo centrale, which echoes SRTP
        /// packets back so the offerer decrypts its own media.
        case reuseOffered
    }

    public var localAddress: String
    public var audioPort: Int
    /// Nil: no video (an offered video stream is declined with port 0).
    public var videoPort: Int?
    public var srtpRequired: Bool

    public init(localAddress: String, audioPort: Int, videoPort: Int?, srtpRequired: Bool) {
        self.localAddress = localAddress
        self.audioPort = audioPort
        self.videoPort = videoPort
        self.srtpRequired = srtpRequired
    }

    private var addressType: String { localAddress.contains(":") ? "IP6" : "IP4" }

    private func newSessionDescription(media: [SDPMedia]) -> SessionDescription {
        let id = String(UInt32.random(in: 1...UInt32.max))
        return SessionDescription(
            originUsername: "beeldzorg", sessionID: id, sessionVersion: id, originAddressType: addressType,
            originAddress: localAddress, connection: SDPConnection(addressType: addressType, address: localAddress),
            media: media)
    }

    private static func rtpmap(_ codec: MediaCodec, _ pt: UInt8) -> SDPAttribute {
        let channels = codec.channels.map { "/\($0)" } ?? ""
        return SDPAttribute("rtpmap", "\(pt) \(codec.encodingName)/\(codec.clockRate)\(channels)")
    }

    private static func cryptoAttribute(tag: String, _ key: SRTPKeyMaterial) -> SDPAttribute {
        SDPAttribute("crypto", "\(tag) \(SRTPKeyMaterial.suite) inline:\(key.base64)")
    }

    /// Our offer: audio, plus video when a video port is set; a fresh key per stream if SRTP.
    public func makeOffer() -> PendingOffer {
        let proto = srtpRequired ? "RTP/SAVP" : "RTP/AVP"
        let audioKey = srtpRequired ? SRTPKeyMaterial.random() : nil
        var audioAttributes: [SDPAttribute] = [
            Self.rtpmap(.opus, 111), SDPAttribute("fmtp", "111 minptime=10;useinbandfec=1"),
            Self.rtpmap(.pcma, 8), Self.rtpmap(.pcmu, 0), SDPAttribute("rtcp-mux"), SDPAttribute("sendrecv"),
        ]
        if let audioKey { audioAttributes.append(Self.cryptoAttribute(tag: "1", audioKey)) }
        var media = [SDPMedia(kind: "audio", port: audioPort, proto: proto, formats: ["111", "8", "0"],
                              attributes: audioAttributes)]
        var videoKey: SRTPKeyMaterial?
        if let videoPort {
            videoKey = srtpRequired ? SRTPKeyMaterial.random() : nil
            var attributes = [Self.rtpmap(.vp8, 96), SDPAttribute("rtcp-mux"), SDPAttribute("sendrecv")]
            if let videoKey { attributes.append(Self.cryptoAttribute(tag: "1", videoKey)) }
            media.append(SDPMedia(kind: "video", port: videoPort, proto: proto, formats: ["96"], attributes: attributes))
        }
        return PendingOffer(description: newSessionDescription(media: media), audioKey: audioKey, videoKey: videoKey,
                            srtpRequired: srtpRequired)
    }

    /// Answers a remote offer: one answer line per offered line (RFC 3264 §6), unusable ones
    /// with port 0. Throws when no audio stream can be accepted.
    public func answer(
        _ offer: SessionDescription, keyPolicy: AnswerKeyPolicy = .fresh
    ) throws(SDPNegotiationError) -> (answer: SessionDescription, media: MediaDescription) {
        var answerMedia: [SDPMedia] = []
        var result = MediaDescription(remoteAddress: "")
        var cryptoWasTheProblem = false
        var remoteAddress: String?

        for offered in offer.media {
            func decline() {
                answerMedia.append(SDPMedia(kind: offered.kind, port: 0, proto: offered.proto,
                                            formats: offered.formats.isEmpty ? ["0"] : offered.formats))
            }
            let isAudio = offered.kind == "audio" && result.audio == nil
            let isVideo = offered.kind == "video" && result.video == nil && videoPort != nil
            guard offered.port != 0, isAudio || isVideo else {
                decline()
                continue
            }
            let candidates: [MediaCodec] = isAudio ? [.opus, .pcma, .pcmu] : [.vp8]
            let maps = payloadMap(offered)
            // Offerer's order of preference among the codecs we speak.
            guard let (pt, codec) = maps.first(where: { candidates.contains($0.1) }) else {
                decline()
                continue
            }
            let secureProfile = offered.proto.uppercased().hasPrefix("RTP/SAVP")
            var offeredKey: (tag: String, key: SRTPKeyMaterial)?
            if secureProfile { offeredKey = acceptableCrypto(offered) }
            if srtpRequired || secureProfile {
                guard secureProfile, offeredKey != nil else {
                    cryptoWasTheProblem = true
                    decline()
                    continue
                }
            }
            guard let address = offered.connection?.address ?? offer.connection?.address else {
                throw .noConnectionAddress
            }
            remoteAddress = remoteAddress ?? address

            let ourKey: SRTPKeyMaterial? = offeredKey.map { keyPolicy == .reuseOffered ? $0.key : .random() }
            let mux = offered.hasAttribute("rtcp-mux")
            let (sends, receives, directionAttribute) = answerDirection(offered)
            var attributes = [Self.rtpmap(codec, pt)]
            if codec == .opus { attributes.append(SDPAttribute("fmtp", "\(pt) minptime=10;useinbandfec=1")) }
            if mux { attributes.append(SDPAttribute("rtcp-mux")) }
            attributes.append(SDPAttribute(directionAttribute))
            if let offeredKey, let ourKey { attributes.append(Self.cryptoAttribute(tag: offeredKey.tag, ourKey)) }
            let localPort = isAudio ? audioPort : videoPort!
            answerMedia.append(SDPMedia(kind: offered.kind, port: localPort, proto: offered.proto,
                                        formats: [String(pt)], attributes: attributes))
            let stream = NegotiatedStream(
                remotePort: offered.port, remoteRTCPPort: rtcpPort(offered, mux: mux), payloadType: pt, codec: codec,
                rtcpMux: mux, sendKey: ourKey, receiveKey: offeredKey?.key, sends: sends, receives: receives)
            if isAudio { result.audio = stream } else { result.video = stream }
        }
        guard result.audio != nil, let remoteAddress else {
            throw cryptoWasTheProblem ? .noAcceptableCrypto : .noAcceptableCodecs
        }
        result.remoteAddress = remoteAddress
        return (newSessionDescription(media: answerMedia), result)
    }

    /// Reads the answer to an offer we made.
    public static func readAnswer(
        _ answer: SessionDescription, for offer: PendingOffer
    ) throws(SDPNegotiationError) -> MediaDescription {
        guard answer.media.count == offer.description.media.count else { throw .answerDoesNotMatchOffer }
        var result = MediaDescription(remoteAddress: "")
        var remoteAddress: String?
        for (ours, theirs) in zip(offer.description.media, answer.media) {
            guard ours.kind == theirs.kind else { throw .answerDoesNotMatchOffer }
            guard theirs.port != 0 else { continue }
            let ourMap = MediaNegotiator(localAddress: "", audioPort: 0, videoPort: nil, srtpRequired: false)
                .payloadMap(ours)
            guard let chosen = theirs.formats.first, let pt = UInt8(chosen),
                  let codec = ourMap.first(where: { $0.0 == pt })?.1
            else { throw .noAcceptableCodecs }
            let ourKey = ours.kind == "audio" ? offer.audioKey : offer.videoKey
            var theirKey: SRTPKeyMaterial?
            if ourKey != nil {
                guard theirs.proto.uppercased().hasPrefix("RTP/SAVP"),
                      let accepted = MediaNegotiator(localAddress: "", audioPort: 0, videoPort: nil, srtpRequired: true)
                        .acceptableCrypto(theirs)
                else {
                    if offer.srtpRequired { throw .noAcceptableCrypto }
                    continue
                }
                theirKey = accepted.key
            }
            guard let address = theirs.connection?.address ?? answer.connection?.address else {
                throw .noConnectionAddress
            }
            remoteAddress = remoteAddress ?? address
            let mux = theirs.hasAttribute("rtcp-mux") && ours.hasAttribute("rtcp-mux")
            let (sends, receives, _) = MediaNegotiator(localAddress: "", audioPort: 0, videoPort: nil, srtpRequired: false)
                .answerDirection(theirs)
            let stream = NegotiatedStream(
                remotePort: theirs.port,
                remoteRTCPPort: MediaNegotiator(localAddress: "", audioPort: 0, videoPort: nil, srtpRequired: false)
                    .rtcpPort(theirs, mux: mux),
                payloadType: pt, codec: codec, rtcpMux: mux, sendKey: theirKey == nil ? nil : ourKey,
                receiveKey: theirKey, sends: sends, receives: receives)
            if ours.kind == "audio" { result.audio = stream } else if ours.kind == "video" { result.video = stream }
        }
        guard result.audio != nil, let remoteAddress else { throw .noAcceptableCodecs }
        result.remoteAddress = remoteAddress
        return result
    }

    // MARK: Helpers

    /// Payload types of a media line that map to codecs we know, in the line's order.
    func payloadMap(_ media: SDPMedia) -> [(UInt8, MediaCodec)] {
        var rtpmaps: [UInt8: (name: String, rate: Int, channels: Int?)] = [:]
        for value in media.attributeValues("rtpmap") {
            let parts = value.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let pt = parseDecimal(parts[0], maxDigits: 3), pt <= 127 else { continue }
            let enc = parts[1].split(separator: "/")
            guard enc.count >= 2, let rate = parseDecimal(enc[1], maxDigits: 6) else { continue }
            let channels = enc.count >= 3 ? parseDecimal(enc[2], maxDigits: 2) : nil
            rtpmaps[UInt8(pt)] = (enc[0].lowercased(), rate, channels)
        }
        var result: [(UInt8, MediaCodec)] = []
        for format in media.formats {
            guard let n = parseDecimal(format, maxDigits: 3), n <= 127 else { continue }
            let pt = UInt8(n)
            if let map = rtpmaps[pt] {
                if let codec = MediaCodec.allCases.first(where: {
                    $0.encodingName.lowercased() == map.name && $0.clockRate == map.rate
                }) {
                    result.append((pt, codec))
                }
            } else if pt == 0 {
                result.append((0, .pcmu))  // static payload types need no rtpmap
            } else if pt == 8 {
                result.append((8, .pcma))
            }
        }
        return result
    }

    /// The first `a=crypto` line with our suite and a well-formed 30-byte inline key (no MKI).
    func acceptableCrypto(_ media: SDPMedia) -> (tag: String, key: SRTPKeyMaterial)? {
        for value in media.attributeValues("crypto") {
            let parts = value.split(separator: " ")
            guard parts.count >= 3, parseDecimal(parts[0], maxDigits: 9) != nil,
                  parts[1] == SRTPKeyMaterial.suite
            else { continue }
            let keyParams = parts[2].split(separator: ";")
            guard let first = keyParams.first, first.hasPrefix("inline:") else { continue }
            let pieces = first.dropFirst("inline:".count).split(separator: "|", omittingEmptySubsequences: false)
            guard pieces.count <= 2, !(pieces.last?.contains(":") ?? false) || pieces.count == 1 else { continue }
            guard let key = SRTPKeyMaterial(base64: String(pieces[0])) else { continue }
            return (String(parts[0]), key)
        }
        return nil
    }

    func rtcpPort(_ media: SDPMedia, mux: Bool) -> Int {
        if mux { return media.port }
        if let value = media.attributeValues("rtcp").first,
           let port = parseDecimal(value.split(separator: " ").first ?? "", maxDigits: 5), port <= 65535 {
            return port
        }
        return min(media.port + 1, 65535)
    }

    /// Our direction given theirs: (we send, we receive, attribute for our answer).
    func answerDirection(_ media: SDPMedia) -> (Bool, Bool, String) {
        if media.hasAttribute("sendonly") { return (false, true, "recvonly") }
        if media.hasAttribute("recvonly") { return (true, false, "sendonly") }
        if media.hasAttribute("inactive") { return (false, false, "inactive") }
        return (true, true, "sendrecv")
    }
}

/// Standard base64 (RFC 4648) for SDES keys; the SIP module does not pull in Foundation.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i]
            let b1 = i + 1 < bytes.count ? bytes[i + 1] : 0
            let b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.append(i + 1 < bytes.count ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(i + 2 < bytes.count ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        var padding = 0
        for byte in text.utf8 {
            if byte == UInt8(ascii: "=") {
                padding += 1
                continue
            }
            guard padding == 0 else { return nil }
            let v: UInt8
            switch byte {
            case 65...90: v = byte - 65
            case 97...122: v = byte - 97 + 26
            case 48...57: v = byte - 48 + 52
            case UInt8(ascii: "+"): v = 62
            case UInt8(ascii: "/"): v = 63
            default: return nil
            }
            values.append(v)
        }
        guard padding <= 2, values.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i + 1 < values.count {
            let v0 = values[i], v1 = values[i + 1]
            out.append(v0 << 2 | v1 >> 4)
            if i + 2 < values.count {
                let v2 = values[i + 2]
                out.append((v1 & 0x0F) << 4 | v2 >> 2)
                if i + 3 < values.count { out.append((v2 & 0x03) << 6 | values[i + 3]) }
            }
            i += 4
        }
        return out
    }
}

// MARK: - Offers inside an established dialog

extension MediaNegotiator {
    /// The answer to an offer inside an established dialog (a post putting us on hold, a
    /// session refresh; RFC 3264 §8): our current session description again, with the origin
    /// version one higher and each stream's direction mirrored from the offer (sendonly →
    /// recvonly, recvonly → sendonly, inactive → inactive, else sendrecv); a stream the offer
    /// rejects (port 0) is rejected too. Media itself is not renegotiated: codecs, addresses and
    /// keys stay as agreed, except that rtcp-mux is left out of a stream whose offer lacks it
    /// (RFC 5761 §5.1.1). nil when the offer's streams do not line up with ours (added,
    /// removed or of another kind): that needs a new negotiation, which we refuse (488).
    public static func reanswer(_ offer: SessionDescription, current: SessionDescription) -> SessionDescription? {
        guard offer.media.count == current.media.count,
              zip(offer.media, current.media).allSatisfy({ $0.kind == $1.kind })
        else { return nil }
        var answer = current
        answer.sessionVersion = String((UInt64(current.sessionVersion) ?? 0) &+ 1)
        let directions: Set<String> = ["sendrecv", "sendonly", "recvonly", "inactive"]
        for index in answer.media.indices {
            let offered = offer.media[index]
            if offered.port == 0 { answer.media[index].port = 0 }
            let direction: String
            if offered.hasAttribute("sendonly") {
                direction = "recvonly"
            } else if offered.hasAttribute("recvonly") {
                direction = "sendonly"
            } else if offered.hasAttribute("inactive") || offered.port == 0 {
                direction = "inactive"
            } else if offer.attributes.contains(where: { $0.name == "sendonly" }) {
                direction = "recvonly"  // session-level direction (RFC 4566 §6)
            } else if offer.attributes.contains(where: { $0.name == "inactive" }) {
                direction = "inactive"
            } else {
                direction = "sendrecv"
            }
            answer.media[index].attributes.removeAll { directions.contains($0.name) }
            // RFC 5761 §5.1.1: rtcp-mux in an answer only if the offer has it. Our description
            // as last sent may be our own offer (with rtcp-mux) that the post answered without.
            if !offered.hasAttribute("rtcp-mux") {
                answer.media[index].attributes.removeAll { $0.name == "rtcp-mux" }
            }
            answer.media[index].attributes.append(SDPAttribute(direction))
        }
        answer.attributes.removeAll { directions.contains($0.name) }
        return answer
    }
}

// MARK: - Renegotiation (re-INVITE offers the daemon decides on)

extension MediaNegotiator {
    /// Whether an offer puts us on hold (RFC 3264 §8.4): its audio stream is sendonly or
    /// inactive (its own attribute, else the session's), or rejected with port 0.
    public static func offerIsHold(_ offer: SessionDescription) -> Bool {
        guard let audio = offer.media.first(where: { $0.kind == "audio" }) else { return false }
        if audio.port == 0 || audio.hasAttribute("sendonly") || audio.hasAttribute("inactive") { return true }
        if audio.hasAttribute("sendrecv") || audio.hasAttribute("recvonly") { return false }
        return offer.attributes.contains { $0.name == "sendonly" || $0.name == "inactive" }
    }

    /// A fresh answer (`answer(_:)`) made the next version of our current description: same
    /// origin user name and session id, version one higher (RFC 3264 §8).
    public static func continuing(_ answer: SessionDescription, from current: SessionDescription) -> SessionDescription {
        var next = answer
        next.originUsername = current.originUsername
        next.sessionID = current.sessionID
        next.sessionVersion = String((UInt64(current.sessionVersion) ?? 0) &+ 1)
        return next
    }
}

extension MediaDescription {
    /// Whether `other` sends to the same place with the same codec and the peer's same key:
    /// what a session refresh keeps and a moved call (new relay, new post) changes. Our own
    /// keys and the directions are not compared.
    public func sameRemoteMedia(as other: MediaDescription) -> Bool {
        func same(_ a: NegotiatedStream?, _ b: NegotiatedStream?) -> Bool {
            guard let a, let b else { return a == nil && b == nil }
            return a.remotePort == b.remotePort && a.remoteRTCPPort == b.remoteRTCPPort && a.payloadType == b.payloadType
                && a.codec == b.codec && a.rtcpMux == b.rtcpMux && a.receiveKey == b.receiveKey
        }
        return remoteAddress == other.remoteAddress && same(audio, other.audio) && same(video, other.video)
    }
}
