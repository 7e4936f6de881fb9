import NIOPosix
import Testing

@testable import SIP

/// Issue 15 (conformance): what the user agent says to requests it cannot serve, and who the
/// tablet says it is. A hand-written peer on a loopback UDP socket (kernel-chosen ports).
@Suite struct RequestValidationTests {
    func request(_ method: String = "OPTIONS", uri: String, version: String = "SIP/2.0", from peer: RawPeer,
                 callID: String) -> [UInt8] {
        Array("""
            \(method) \(uri) \(version)\r
            Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bK\(callID)\r
            From: <sip:post1@127.0.0.1:\(peer.port)>;tag=\(callID)\r
            To: <sip:tablet@127.0.0.1>\r
            Call-ID: \(callID)\r
            CSeq: 1 \(method)\r
            Max-Forwards: 70\r
            Content-Length: 0\r
            \r

            """.utf8)
    }

    /// RFC 3261 §21.5.20: a request in another SIP version gets 505 (before, it was dropped
    /// as malformed and the sender heard nothing).
    @Test func anotherSIPVersionGets505() async throws {
        let (agent, _, port) = try await makeAgent()
        let peer = try await RawPeer.bind()
        try await peer.send(request(uri: "sip:tablet@127.0.0.1:\(port)", version: "SIP/3.0", from: peer, callID: "v3"),
                            to: port)
        let answer = try await peer.nextResponse()
        #expect(answer.status == 505)
        #expect(answer.headers["Call-ID"] == "v3")
        await agent.shutdown()
        await peer.close()
    }

    /// RFC 3261 §8.2.2.1: a Request-URI scheme we do not serve gets 416; a sip: URI that does
    /// not parse gets 400; a good one still 200 (before, all of these got 200).
    @Test(arguments: [
        ("tel:+31201234567", 416), ("mailto:tablet@example.org", 416), ("sip:@@@:::", 400), ("sips:tablet@[::1", 400),
        ("sip:tablet@127.0.0.1", 200),
    ])
    func requestURIsAreChecked(uri: String, status: Int) async throws {
        let (agent, _, _) = try await makeAgent()
        let port = await agent.port
        let peer = try await RawPeer.bind()
        try await peer.send(request(uri: uri, from: peer, callID: "uri1"), to: port)
        let answer = try await peer.nextResponse()
        #expect(answer.status == status, "\(uri)")
        // An INVITE to such a URI never becomes a call either.
        if status != 200 {
            try await peer.send(request("INVITE", uri: uri, from: peer, callID: "uri2"), to: port)
            let refused = try await peer.nextResponse()
            #expect(refused.status == status, "\(uri)")
            #expect(refused.headers["Call-ID"] == "uri2")
        }
        await agent.shutdown()
        await peer.close()
    }

    /// Issue 15 problem 5: the tablet's own From is its address of record `sip:user@domain`,
    /// in its INVITE and its OPTIONS probes, never its IP address with a transport
    /// parameter; Contact and Via keep the real address.
    @Test func ourFromIsTheAddressOfRecord() async throws {
        let peer = try await RawPeer.bind()
        let agent = UserAgent(
            configuration: UserAgentConfiguration(localHost: "127.0.0.1", user: "tablet", displayName: "Tablet",
                                                  timerT1: .milliseconds(100), timerT2: .milliseconds(800),
                                                  domain: "zorg.example"),
            group: MultiThreadedEventLoopGroup.singleton, logger: testLogger("tablet"))
        let port = try await agent.start()
        let offer = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 50000, videoPort: nil, srtpRequired: false)
            .makeOffer().description
        _ = await agent.invite(to: "sip:post1@127.0.0.1:\(peer.port)", offer: offer)
        let (invite, _) = try await peer.nextRequest(.invite)
        let from = try #require(invite.headers["From"].flatMap(SIPNameAddress.init))
        #expect(from.uri == "sip:tablet@zorg.example", "\(invite.headers["From"] ?? "")")
        #expect(from.displayName == "Tablet")
        #expect(invite.headers["Contact"]?.contains("sip:tablet@127.0.0.1:\(port)") == true)
        #expect(invite.headers.values("Via").first?.contains("127.0.0.1:\(port)") == true)

        let probe = Task { await agent.probe("sip:post1@127.0.0.1:\(peer.port)", timeout: .seconds(2)) }
        let (options, _) = try await peer.nextRequest(.options)
        #expect(options.headers["From"].flatMap(SIPNameAddress.init)?.uri == "sip:tablet@zorg.example",
                "\(options.headers["From"] ?? "")")
        try await peer.send(response(to: options, status: 200, toTag: "p"), to: port)
        #expect(await probe.value == 200)
        await agent.shutdown()
        await peer.close()
    }
}
