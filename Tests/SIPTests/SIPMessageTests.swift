import TestSupport
import Testing

@testable import SIP

private func wire(_ lines: [String], body: String = "") -> [UInt8] {
    Array((lines.joined(separator: "\r\n") + "\r\n\r\n" + body).utf8)
}

private let inviteBody = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

private let goodInvite = wire([
    "INVITE sip:bob@biloxi.example.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.example.com>",
    "From: \"Alice A.\" <sip:alice@atlanta.example.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.example.com>",
    "Content-Type: application/sdp",
    "Content-Length: \(inviteBody.utf8.count)",
], body: inviteBody)

private let baseHeaders = [
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc",
    "To: <sip:bob@example.com>",
    "From: <sip:alice@example.com>;tag=x",
    "Call-ID: c1",
    "CSeq: 1 OPTIONS",
]

@Suite struct SIPMessageParserTests {
    let parser = SIPMessageParser()

    @Test func parsesRFC3261Invite() throws {
        let message = try parser.parse(goodInvite, transport: .stream)
        guard case .request(let request) = message else {
            Issue.record("expected a request")
            return
        }
        #expect(request.method == .invite)
        #expect(request.uri == "sip:bob@biloxi.example.com")
        #expect(request.headers["call-id"] == "a84b4c76e66710@pc33.atlanta.example.com")
        #expect(SIPCSeq(request.headers["CSeq"]!) == SIPCSeq(number: 314159, method: .invite))
        let from = try #require(SIPNameAddress(request.headers["From"]!))
        #expect(from.displayName == "Alice A.")
        #expect(from.tag == "1928301774")
        #expect(String(decoding: request.body, as: UTF8.self) == inviteBody)
    }

    @Test func goodMessagesRoundTrip() throws {
        let response = wire([
            "SIP/2.0 200 OK",
            "Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bKnashds8;received=192.0.2.3",
            "Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2",
            "To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf",
            "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
            "Call-ID: a84b4c76e66710",
            "CSeq: 314159 INVITE",
            "Content-Length: 0",
        ])
        for bytes in [goodInvite, response] {
            let first = try parser.parse(bytes, transport: .stream)
            #expect(first.serialized() == bytes)
            let second = try parser.parse(first.serialized(), transport: .datagram)
            #expect(second == first)
        }
    }

    @Test func compactFormsAreExpanded() throws {
        let bytes = wire([
            "OPTIONS sip:bob@example.com SIP/2.0",
            "v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1",
            "t: <sip:bob@example.com>", "f: <sip:a@example.com>;tag=1", "i: abc", "CSeq: 2 OPTIONS",
            "m: <sip:a@10.0.0.1>", "l: 0", "k: timer", "c: text/plain", "s: hello", "e: gzip",
        ])
        let message = try parser.parse(bytes, transport: .stream)
        let names = message.headers.map(\.name)
        #expect(names == ["Via", "To", "From", "Call-ID", "CSeq", "Contact", "Content-Length", "Supported",
                          "Content-Type", "Subject", "Content-Encoding"])
        #expect(message.headers["Call-ID"] == "abc")
    }

    @Test func foldedLinesAndSeveralVia() throws {
        let bytes = wire([
            "OPTIONS sip:bob@example.com SIP/2.0",
            "Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1,",
            "  SIP/2.0/TCP b.example.com:5070;branch=z9hG4bK2",
            "Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
            "Subject: I know you're there,",
            "\tpick up the phone",
            "To: <sip:bob@example.com>", "From: <sip:a@example.com>;tag=1", "Call-ID: abc", "CSeq: 2 OPTIONS",
        ])
        let message = try parser.parse(bytes, transport: .datagram)
        let vias = message.headers.values("Via").compactMap(SIPVia.init)
        #expect(vias.map(\.host) == ["a.example.com", "b.example.com", "c.example.com"])
        #expect(vias[1].port == 5070)
        #expect(vias[1].transport == "TCP")
        #expect(vias.map(\.branch) == ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"])
        #expect(message.headers["Subject"] == "I know you're there, pick up the phone")
    }

    @Test func datagramContentLength() throws {
        let body = "hello"
        // Missing on UDP: the rest of the datagram is the body.
        let missing = wire(baseHeaders, body: body)
        var request = try parser.parse(Array("OPTIONS sip:b@example.com SIP/2.0\r\n".utf8) + missing, transport: .datagram)
        #expect(request.body == Array(body.utf8))
        // Shorter than the datagram: the extra bytes are discarded.
        let short = Array("OPTIONS sip:b@example.com SIP/2.0\r\n".utf8) + wire(baseHeaders + ["Content-Length: 3"], body: body)
        request = try parser.parse(short, transport: .datagram)
        #expect(request.body == Array("hel".utf8))
        // Missing on a stream: an error.
        #expect(throws: SIPParseError.missingContentLength) {
            try parser.parse(Array("OPTIONS sip:b@example.com SIP/2.0\r\n".utf8) + missing, transport: .stream)
        }
    }

    @Test func nonASCIIUTF8DisplayNameIsAccepted() throws {
        let bytes = Array("OPTIONS sip:b@example.com SIP/2.0\r\n".utf8)
            + wire(["Via: SIP/2.0/UDP h;branch=z9hG4bK1", "To: <sip:b@example.com>",
                    "From: \"Zoë Müller\" <sip:z@example.com>;tag=1", "Call-ID: c", "CSeq: 1 OPTIONS"])
        let message = try parser.parse(bytes, transport: .datagram)
        #expect(SIPNameAddress(message.headers["From"]!)?.displayName == "Zoë Müller")
    }

    static let requestLine = "OPTIONS sip:b@example.com SIP/2.0"

    /// Each malformed message and the error it must give.
    static let malformed: [(String, [UInt8], SIPParseError)] = {
        func req(_ headers: [String], body: String = "", start: String = requestLine) -> [UInt8] {
            wire([start] + headers, body: body)
        }
        let manyHeaders = (0..<200).map { "X-H\($0): v" }
        let longLine = "X-Long: " + String(repeating: "a", count: 5_000)
        let hugeSection = (0..<60).map { "X-Big\($0): " + String(repeating: "b", count: 300) }
        var nonUTF8 = req(baseHeaders)
        nonUTF8.insert(contentsOf: [0xFF, 0xFE], at: 20)
        var nul = req(baseHeaders)
        nul.insert(0, at: 30)
        return [
            ("empty", [], .empty),
            ("only CRLF", Array("\r\n\r\n".utf8), .empty),
            ("truncated headers", Array((requestLine + "\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b").utf8), .incompleteHeaders),
            ("no blank line", Array((requestLine + "\r\n" + baseHeaders.joined(separator: "\r\n") + "\r\n").utf8), .incompleteHeaders),
            ("too many headers", req(baseHeaders + manyHeaders), .tooManyHeaders),
            ("line too long", req(baseHeaders + [longLine]), .lineTooLong),
            ("header section too large", req(baseHeaders + hugeSection), .headerSectionTooLarge),
            ("datagram too large", Array(repeating: UInt8(ascii: "a"), count: 70_000), .messageTooLarge),
            ("non-UTF-8 bytes", nonUTF8, .invalidEncoding),
            ("NUL byte", nul, .invalidEncoding),
            ("garbage start line", req(baseHeaders, start: "HELLO"), .invalidStartLine),
            ("bad version", req(baseHeaders, start: "OPTIONS sip:b@example.com SIP/3.0"), .unsupportedVersion),
            ("bad status", req(baseHeaders, start: "SIP/2.0 2000 OK"), .invalidStatusCode),
            ("status out of range", req(baseHeaders, start: "SIP/2.0 099 Huh"), .invalidStatusCode),
            ("bad method", req(baseHeaders, start: "OPT(IONS sip:b@example.com SIP/2.0"), .invalidMethod),
            ("bad request URI", req(baseHeaders, start: "OPTIONS nocolon SIP/2.0"), .invalidRequestURI),
            ("header without colon", req(baseHeaders + ["NoColonHere"]), .malformedHeader),
            ("fold before any header", wire([requestLine, " folded"] + baseHeaders), .malformedHeader),
            ("missing Via", req(Array(baseHeaders.dropFirst())), .missingHeader("Via")),
            ("missing Call-ID", req(baseHeaders.filter { !$0.hasPrefix("Call-ID") }), .missingHeader("Call-ID")),
            ("missing CSeq", req(baseHeaders.filter { !$0.hasPrefix("CSeq") }), .missingHeader("CSeq")),
            ("bad CSeq", req(baseHeaders.filter { !$0.hasPrefix("CSeq") } + ["CSeq: x OPTIONS"]), .invalidHeaderValue("CSeq")),
            ("CSeq method mismatch", req(baseHeaders.filter { !$0.hasPrefix("CSeq") } + ["CSeq: 1 INVITE"]), .methodMismatch),
            ("bad Via", req(["Via: HTTP/1.1 foo"] + baseHeaders.dropFirst()), .invalidHeaderValue("Via")),
            ("bad From", req(baseHeaders.filter { !$0.hasPrefix("From") } + ["From: nobody"]), .invalidHeaderValue("From")),
            ("bad Max-Forwards", req(baseHeaders + ["Max-Forwards: lots"]), .invalidHeaderValue("Max-Forwards")),
            ("non-numeric Content-Length", req(baseHeaders + ["Content-Length: abc"]), .invalidContentLength),
            ("negative Content-Length", req(baseHeaders + ["Content-Length: -1"]), .invalidContentLength),
            ("conflicting Content-Length", req(baseHeaders + ["Content-Length: 1", "l: 2"], body: "xx"), .invalidContentLength),
            ("Content-Length beyond datagram", req(baseHeaders + ["Content-Length: 50"], body: "short"), .truncatedBody),
            ("huge Content-Length", req(baseHeaders + ["Content-Length: 999999999"]), .bodyTooLarge),
        ]
    }()

    @Test(arguments: 0..<malformed.count)
    func malformedMessagesGiveTypedErrors(index: Int) {
        let (name, bytes, expected) = Self.malformed[index]
        #expect(throws: expected, "\(name)") { try parser.parse(bytes, transport: .datagram) }
    }

    @Test func everyPrefixOfAMessageFailsCleanly() {
        // Truncation at any byte gives an error or (only at full length) the message; never a trap.
        for end in 0..<goodInvite.count {
            #expect(throws: SIPParseError.self) { try parser.parse(Array(goodInvite[..<end]), transport: .stream) }
        }
    }

    @Test func randomBytesNeverTrap() {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<2_000 {
            var bytes = goodInvite
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[i] = UInt8.random(in: 0...255, using: &rng)
            }
            _ = try? parser.parse(bytes, transport: .datagram)
            _ = parser.salvageRequest(bytes)
        }
    }

    @Test func salvageGivesHeadersForA400() throws {
        let bytes = Array((Self.requestLine + "\r\n").utf8) + wire(baseHeaders + ["Content-Length: abc"])
        #expect(throws: SIPParseError.invalidContentLength) { try parser.parse(bytes, transport: .datagram) }
        let salvaged = try #require(parser.salvageRequest(bytes))
        #expect(salvaged.headers["Call-ID"] == "c1")
        #expect(parser.salvageRequest(Array("garbage\r\n\r\n".utf8)) == nil)
    }
}

@Suite struct SIPHeaderValueTests {
    @Test func uris() throws {
        let uri = try #require(SIPURI("sip:alice:secret@[2001:db8::1]:5070;transport=tcp;lr?subject=x"))
        #expect(uri.user == "alice")
        #expect(uri.host == "2001:db8::1")
        #expect(uri.port == 5070)
        #expect(uri.parameters["transport"] == "tcp")
        #expect(uri.parameters.contains("lr"))
        #expect(SIPURI("sip:bob@example.com")?.port == nil)
        #expect(SIPURI("http://example.com") == nil)
        #expect(SIPURI("sip:bob@host:99999") == nil)
        #expect(SIPURI("sip:bob@exa mple.com") == nil)
    }

    @Test func nameAddresses() throws {
        let a = try #require(SIPNameAddress("\"Quote \\\" Me\" <sip:q@example.com;lr>;tag=9"))
        #expect(a.displayName == "Quote \" Me")
        #expect(a.uri == "sip:q@example.com;lr")
        #expect(a.tag == "9")
        let b = try #require(SIPNameAddress("sip:q@example.com;tag=7"))
        #expect(b.uri == "sip:q@example.com")
        #expect(b.tag == "7")
        #expect(SIPNameAddress(a.description) == a)
    }
}
