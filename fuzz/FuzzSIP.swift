// libFuzzer entry point for the SIP message parser, the stream framer and SDP offer/answer.
// Built by fuzz/run.sh straight from the SIP module's pure-Swift sources (no NIO), so the
// package manifest stays untouched. The first input byte picks the target; the rest is data.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let start, count > 0 else { return 0 }
    let selector = start[0]
    let bytes = Array(UnsafeBufferPointer(start: start + 1, count: count - 1))
    switch selector % 4 {
    case 0:
        let parser = SIPMessageParser()
        if let message = try? parser.parse(bytes, transport: .datagram) {
            // Serialising is idempotent: what we write parses back to what we wrote. (The
            // reparse itself may fail on limits: CRLF and long header names make it longer.)
            let wire = message.serialized()
            if let again = try? parser.parse(wire, transport: .stream) {
                precondition(again.serialized() == wire, "round trip changed the message")
            }
        }
        _ = parser.salvageRequest(bytes)
    case 1:
        // Feed the stream framer in chunks whose sizes come from the data itself.
        var framer = SIPStreamFramer(role: selector & 0x10 == 0 ? .flowClient : .flowServer)
        var offset = 0
        while offset < bytes.count {
            let size = Int(bytes[offset] % 64) + 1
            let end = min(bytes.count, offset + size)
            framer.append(bytes[offset..<end])
            offset = end
            while let frame = try? framer.next() {
                if case .message(let message) = frame { _ = try? SIPMessageParser().parse(message, transport: .stream) }
            }
        }
        precondition(framer.bufferedByteCount <= 70_000, "framer buffered without bound")
    case 2:
        if let sdp = try? SessionDescription(parsing: bytes) {
            let wire = sdp.serialized()
            if wire.count <= SessionDescription.maxSize {
                precondition((try? SessionDescription(parsing: wire))?.serialized() == wire, "SDP round trip changed it")
            }
            let negotiator = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 4000, videoPort: 4002,
                                             srtpRequired: selector & 0x10 != 0)
            _ = try? negotiator.answer(sdp)
            _ = try? MediaNegotiator.readAnswer(sdp, for: negotiator.makeOffer())
            // A re-INVITE's offer against the session we have (hold, resume, refresh).
            if let reanswer = MediaNegotiator.reanswer(sdp, current: negotiator.makeOffer().description) {
                precondition(reanswer.media.count == sdp.media.count, "re-answer changed the number of streams")
            }
        }
    default:
        _ = SIPURI(String(decoding: bytes, as: UTF8.self))
        _ = SIPNameAddress(String(decoding: bytes, as: UTF8.self))
        _ = SIPVia(String(decoding: bytes, as: UTF8.self))
        _ = SIPCSeq(String(decoding: bytes, as: UTF8.self))
        // Digest challenges come from the network (401/407): parse, then answer one.
        if let challenge = DigestChallenge(String(decoding: bytes, as: UTF8.self)) {
            _ = challenge.authorization(method: "REGISTER", uri: "sip:x", username: "u", password: "p", cnonce: "c",
                                        nonceCount: 1)
        }
    }
    return 0
}
