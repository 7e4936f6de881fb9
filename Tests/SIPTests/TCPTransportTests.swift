import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import SIP

/// The user agent over TCP (Content-Length framing, connection reuse, no retransmissions).
@Suite struct TCPTransportTests {
    private func tcpAgent(_ user: String) async throws -> (UserAgent, Recorder<UserAgentEvent>, Int) {
        let agent = UserAgent(
            configuration: UserAgentConfiguration(localHost: "127.0.0.1", user: user, displayName: user,
                                                  timerT1: .milliseconds(100), transport: .tcp),
            group: MultiThreadedEventLoopGroup.singleton, logger: testLogger(user))
        let port = try await agent.start()
        return (agent, Recorder(agent.events), port)
    }

    @Test func callOverTCPBetweenTwoAgents() async throws {
        let (tablet, tabletEvents, _) = try await tcpAgent("tablet")
        let (post, postEvents, postPort) = try await tcpAgent("post")
        let offer = tablet.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer()
        let call = await tablet.invite(to: "sip:post@127.0.0.1:\(postPort);transport=tcp", offer: offer.description)
        guard case .incoming(let incoming, _, let name, let remoteOffer) = try await postEvents.next("INVITE over TCP") else {
            Issue.record("expected incoming")
            return
        }
        #expect(name == "tablet")
        await post.ring(incoming)
        #expect(try await tabletEvents.next("180") == .progress(call, status: 180))
        let (answer, _) = try post.mediaNegotiator(audioPort: 41000, videoPort: nil).answer(remoteOffer)
        await post.answer(incoming, with: answer)
        guard case .answered(call, let remote) = try await tabletEvents.next("200") else {
            Issue.record("expected answered")
            return
        }
        #expect(try MediaNegotiator.readAnswer(remote, for: offer).audio?.remotePort == 41000)
        // The post hangs up: its BYE reaches the tablet over TCP.
        await post.hangUp(incoming)
        #expect(try await tabletEvents.next("BYE") == .remoteHungUp(call))
        await tablet.shutdown()
        await post.shutdown()
    }

    @Test func sippAnswersOverTCP() async throws {
        let sipPort = try await freeTCPPort()
        let mediaPort = try await freeTCPPort()
        let sipp = try SippTests.Sipp(arguments: ["-sn", "uas", "-t", "t1", "-p", "\(sipPort)", "-mp", "\(mediaPort)",
                                                  "-m", "1"])
        defer { sipp.stop() }
        try await waitUntilListening(sipPort)
        let (agent, events, _) = try await tcpAgent("tablet")
        let offer = agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer()
        let call = await agent.invite(to: "sip:service@127.0.0.1:\(sipPort);transport=tcp", offer: offer.description)
        #expect(try await events.next("180") == .progress(call, status: 180))
        guard case .answered(call, _) = try await events.next("200") else {
            Issue.record("sipp did not answer over TCP: \(sipp.stderr)")
            return
        }
        await agent.hangUp(call)
        let status = try await sipp.exitStatus()
        #expect(status == 0, "sipp exit \(status): \(sipp.stderr)")
        await agent.shutdown()
    }

    @Test func framingErrorClosesTheConnectionNotTheAgent() async throws {
        let (agent, _, port) = try await tcpAgent("tablet")
        // A message without Content-Length cannot be framed on a stream.
        let bad = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get()
        try await bad.writeAndFlush(bad.allocator.buffer(string: "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n"))
        try await bad.closeFuture.get()  // the agent closed it
        // The agent still answers a well-formed OPTIONS on a new connection.
        let probeAgent = try await tcpAgent("prober")
        #expect(await probeAgent.0.probe("sip:tablet@127.0.0.1:\(port);transport=tcp", timeout: .seconds(3)) == 200)
        await probeAgent.0.shutdown()
        await agent.shutdown()
    }

    private func freeTCPPort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }

    private func waitUntilListening(_ port: Int) async throws {
        for _ in 0..<500 {
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port).get()
            {
                try? await channel.close()
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw TimedOut(what: "sipp to listen on TCP \(port)")
    }
}
