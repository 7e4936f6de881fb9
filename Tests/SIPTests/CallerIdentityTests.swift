import Foundation
import NIOPosix
import Testing

@testable import SIP

/// Caller identity (issue 3, "Being called"; issue 15, trust): with an edge proxy, only its
/// flow may start anything; the caller is its P-Asserted-Identity, else the From it sent.
@Suite(.serialized) struct CallerIdentityTests {
    /// An agent whose one (UDP) edge proxy is `proxy`; the REGISTERs it sends there go unanswered.
    func agent(edgeProxy proxy: RawPeer) async throws -> (UserAgent, Recorder<UserAgentEvent>, Int, URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("identity-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let passwordFile = directory.appendingPathComponent("password").path
        try "secret\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let registration = RegistrationConfiguration(
            domain: "127.0.0.1", authUser: "tablet", passwordFile: passwordFile,
            instanceID: "urn:uuid:5d1f3c2a-7e4b-4c9a-8f0e-1a2b3c4d5e6f",
            edgeProxies: [EdgeProxy(uri: "sip:127.0.0.1:\(proxy.port)")])
        let agent = UserAgent(
            configuration: UserAgentConfiguration(localHost: "127.0.0.1", user: "tablet", timerT1: .milliseconds(100),
                                                  timerT2: .milliseconds(800), registration: registration),
            group: MultiThreadedEventLoopGroup.singleton, logger: testLogger("tablet"))
        let port = try await agent.start()
        return (agent, Recorder(agent.events), port, directory)
    }

    func invite(to port: Int, from peer: RawPeer, callID: String, assertedIdentity: String?) -> [UInt8] {
        let offer = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 50000, videoPort: nil, srtpRequired: false)
            .makeOffer().description.serialized()
        var head = """
            INVITE sip:tablet@127.0.0.1:\(port) SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bK\(callID)\r
            From: "Wie Dan Ook" <sip:claimed@127.0.0.1>;tag=\(callID)\r
            To: <sip:tablet@127.0.0.1:\(port)>\r
            Call-ID: \(callID)\r
            CSeq: 1 INVITE\r
            Contact: <sip:claimed@127.0.0.1:\(peer.port)>\r
            Max-Forwards: 70\r

            """
        if let assertedIdentity { head += "P-Asserted-Identity: \(assertedIdentity)\r\n" }
        head += "Content-Type: application/sdp\r\nContent-Length: \(offer.count)\r\n\r\n"
        return Array(head.utf8) + offer
    }

    func incoming(_ events: Recorder<UserAgentEvent>) async throws -> (uri: String, name: String?) {
        guard case .incoming(_, let uri, let name, _) = try await events.next("incoming", where: {
            if case .incoming = $0 { true } else { false }
        }) else { throw TimedOut(what: "incoming") }
        return (uri, name)
    }

    @Test func assertedIdentityCountsOnlyFromTheEdgeProxyFlow() async throws {
        let proxy = try await RawPeer.bind()
        let stranger = try await RawPeer.bind()
        let (agent, events, port, directory) = try await agent(edgeProxy: proxy)
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(agent.verifiesCallers)

        // From the edge proxy: the asserted identity (a tel: URI first is skipped) wins over From.
        try await proxy.send(invite(to: port, from: proxy, callID: "pai1",
                                    assertedIdentity: "<tel:+31201234567>, \"Marieke\" <sip:marieke@centrale.example>"),
                             to: port)
        let trusted = try await incoming(events)
        #expect(trusted.uri == "sip:marieke@centrale.example")
        #expect(trusted.name == "Marieke")

        // Issue 15: anyone else may not start a call at all, whatever it asserts or puts in
        // From: over UDP it hears nothing back (no 100, no 403: we are nobody's reflector),
        // and the owner never hears of it.
        try await stranger.send(invite(to: port, from: stranger, callID: "pai2",
                                       assertedIdentity: "\"Marieke\" <sip:marieke@centrale.example>"), to: port)
        try await stranger.send(invite(to: port, from: stranger, callID: "pai2b", assertedIdentity: nil), to: port)

        // From the edge proxy without the header: From (the proxy authenticated it). Datagrams
        // are taken in order, so by the time this one is reported the stranger's were handled.
        try await proxy.send(invite(to: port, from: proxy, callID: "pai3", assertedIdentity: nil), to: port)
        #expect(try await incoming(events).uri == "sip:claimed@127.0.0.1")
        let reported = await events.all().compactMap { event -> String? in
            if case .incoming(let handle, _, _, _) = event { handle.callID } else { nil }
        }
        #expect(reported == ["pai1", "pai3"])
        let heard = await stranger.received.all()
        #expect(heard.isEmpty, "\(heard.map(\.text))")

        await agent.shutdown()
        await proxy.close()
        await stranger.close()
    }

    /// OPTIONS (or any request outside a dialog) from outside the flow gets nothing; from the
    /// edge proxy, 200.
    @Test func onlyTheEdgeProxyIsAnswered() async throws {
        let proxy = try await RawPeer.bind()
        let stranger = try await RawPeer.bind()
        let (agent, _, port, directory) = try await agent(edgeProxy: proxy)
        defer { try? FileManager.default.removeItem(at: directory) }
        func options(_ peer: RawPeer, _ callID: String, method: String = "OPTIONS") -> [UInt8] {
            Array("""
                \(method) sip:tablet@127.0.0.1:\(port) SIP/2.0\r
                Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bK\(callID)\r
                From: <sip:marieke@127.0.0.1>;tag=\(callID)\r
                To: <sip:tablet@127.0.0.1>\r
                Call-ID: \(callID)\r
                CSeq: 1 \(method)\r
                Max-Forwards: 70\r
                Content-Length: 0\r
                \r

                """.utf8)
        }
        try await stranger.send(options(stranger, "opt1"), to: port)
        try await stranger.send(options(stranger, "msg1", method: "MESSAGE"), to: port)
        try await stranger.send(Array("OPTIONS sip:tablet@127.0.0.1 SIP/3.0\r\nVia: SIP/2.0/UDP 127.0.0.1:\(stranger.port);branch=z9hG4bKv3\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:tablet@127.0.0.1>\r\nCall-ID: v3\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".utf8), to: port)
        try await proxy.send(options(proxy, "opt2"), to: port)
        let answer = try await proxy.nextResponse()
        #expect(answer.status == 200)
        #expect(answer.headers["Call-ID"] == "opt2")
        let heard = await stranger.received.all()
        #expect(heard.isEmpty, "\(heard.map(\.text))")
        await agent.shutdown()
        await proxy.close()
        await stranger.close()
    }

    /// The log line about refused requests comes at most every 10 s, then counts the rest.
    @Test func refusalsAreLoggedAtMostEveryTenSeconds() {
        var log = RefusalLog()
        let start = ContinuousClock.now
        #expect(log.shouldLog(now: start) == 0)
        #expect(log.shouldLog(now: start + .seconds(1)) == nil)
        #expect(log.shouldLog(now: start + .seconds(9)) == nil)
        #expect(log.shouldLog(now: start + .seconds(10)) == 2)
        #expect(log.shouldLog(now: start + .seconds(11)) == nil)
        #expect(log.shouldLog(now: start + .seconds(30)) == 1)
    }
}
