import Foundation
import NIOPosix
import Testing

@testable import SIP

/// Caller identity (issue 3, "Being called"): From, or P-Asserted-Identity only when the INVITE
/// came over the flow to the configured edge proxy.
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

        // From the edge proxy: the asserted identity (a tel: URI first is skipped) wins over From.
        try await proxy.send(invite(to: port, from: proxy, callID: "pai1",
                                    assertedIdentity: "<tel:+31201234567>, \"Marieke\" <sip:marieke@centrale.example>"),
                             to: port)
        let trusted = try await incoming(events)
        #expect(trusted.uri == "sip:marieke@centrale.example")
        #expect(trusted.name == "Marieke")

        // The same header from anyone else is ignored: the caller is who From says.
        try await stranger.send(invite(to: port, from: stranger, callID: "pai2",
                                       assertedIdentity: "\"Marieke\" <sip:marieke@centrale.example>"), to: port)
        let untrusted = try await incoming(events)
        #expect(untrusted.uri == "sip:claimed@127.0.0.1")
        #expect(untrusted.name == "Wie Dan Ook")

        // From the edge proxy without the header: From.
        try await proxy.send(invite(to: port, from: proxy, callID: "pai3", assertedIdentity: nil), to: port)
        #expect(try await incoming(events).uri == "sip:claimed@127.0.0.1")

        await agent.shutdown()
        await proxy.close()
        await stranger.close()
    }
}
