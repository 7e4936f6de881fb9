import TestSupport
import Testing

@testable import SIP

private func message(callID: String, body: String) -> [UInt8] {
    let lines = [
        "MESSAGE sip:b@example.com SIP/2.0", "Via: SIP/2.0/TCP h;branch=z9hG4bK\(callID)", "To: <sip:b@example.com>",
        "From: <sip:a@example.com>;tag=1", "Call-ID: \(callID)", "CSeq: 1 MESSAGE", "l: \(body.utf8.count)",
    ]
    return Array((lines.joined(separator: "\r\n") + "\r\n\r\n" + body).utf8)
}

@Suite struct SIPStreamFramerTests {
    let messages = [message(callID: "one", body: "hello"), message(callID: "two", body: ""),
                    message(callID: "three", body: String(repeating: "x", count: 3000))]

    private func drain(_ framer: inout SIPStreamFramer) throws -> [SIPStreamFramer.Frame] {
        var frames: [SIPStreamFramer.Frame] = []
        while let frame = try framer.next() { frames.append(frame) }
        return frames
    }

    private func feed(_ stream: [UInt8], chunks: [Int], role: SIPStreamFramer.KeepAliveRole) throws -> [SIPStreamFramer.Frame] {
        var framer = SIPStreamFramer(role: role)
        var frames: [SIPStreamFramer.Frame] = []
        var offset = 0
        var chunkIndex = 0
        while offset < stream.count {
            let size = min(chunks[chunkIndex % chunks.count], stream.count - offset)
            framer.append(stream[offset..<(offset + size)])
            offset += size
            chunkIndex += 1
            frames += try drain(&framer)
        }
        #expect(framer.bufferedByteCount == 0)
        return frames
    }

    @Test func oneByteAtATime() throws {
        let stream = messages.flatMap { $0 }
        let frames = try feed(stream, chunks: [1], role: .flowClient)
        #expect(frames == messages.map { .message($0) })
        // And each frame parses as a stream message.
        for case .message(let bytes) in frames {
            _ = try SIPMessageParser().parse(bytes, transport: .stream)
        }
    }

    @Test func randomBatches() throws {
        var rng = SplitMix64(seed: 7)
        let stream = messages.flatMap { $0 }
        for _ in 0..<50 {
            let chunks = (0..<10).map { _ in Int.random(in: 1...700, using: &rng) }
            #expect(try feed(stream, chunks: chunks, role: .flowClient) == messages.map { .message($0) })
        }
    }

    @Test func keepAlivePingsForAFlowServer() throws {
        let crlf: [UInt8] = [13, 10]
        let stream = crlf + crlf + messages[0] + crlf + crlf + crlf + crlf + messages[1]
        for chunk in [1, 3, 1000] {
            let frames = try feed(stream, chunks: [chunk], role: .flowServer)
            #expect(frames == [.keepAlivePing, .message(messages[0]), .keepAlivePing, .keepAlivePing, .message(messages[1])])
        }
    }

    @Test func keepAlivePongsForAFlowClient() throws {
        let crlf: [UInt8] = [13, 10]
        let stream = crlf + messages[0] + crlf
        for chunk in [1, 2, 1000] {
            let frames = try feed(stream, chunks: [chunk], role: .flowClient)
            #expect(frames == [.keepAlivePong, .message(messages[0]), .keepAlivePong])
        }
    }

    @Test func missingContentLengthFailsTheStream() throws {
        var framer = SIPStreamFramer(role: .flowClient)
        framer.append(Array("OPTIONS sip:b@e SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n".utf8))
        #expect(throws: SIPParseError.missingContentLength) { try framer.next() }
        framer.append(messages[0])
        #expect(throws: SIPParseError.missingContentLength) { try framer.next() }
    }

    @Test func badAndHugeContentLength() {
        var bad = SIPStreamFramer(role: .flowClient)
        bad.append(Array("OPTIONS sip:b@e SIP/2.0\r\nContent-Length: 12a\r\n\r\n".utf8))
        #expect(throws: SIPParseError.invalidContentLength) { try bad.next() }
        var huge = SIPStreamFramer(role: .flowClient)
        huge.append(Array("OPTIONS sip:b@e SIP/2.0\r\nContent-Length: 900000\r\n\r\n".utf8))
        #expect(throws: SIPParseError.bodyTooLarge) { try huge.next() }
    }

    @Test func endlessHeadersAreBounded() {
        var framer = SIPStreamFramer(role: .flowClient)
        framer.append(Array("OPTIONS sip:b@e SIP/2.0\r\n".utf8))
        var failure: SIPParseError?
        for _ in 0..<1_000 {
            framer.append(Array("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".utf8))
            do { _ = try framer.next() } catch let e { failure = e }
            if failure != nil { break }
        }
        #expect(failure == .headerSectionTooLarge)
        #expect(framer.bufferedByteCount < 20_000)
    }
}
