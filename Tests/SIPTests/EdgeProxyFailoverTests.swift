import Foundation
import NIOPosix
import Testing

@testable import SIP

/// RFC 5626 with two edge proxies: two real Kamailio instances, the tablet and a post each
/// registered through both (reg-id 1 and 2). One proxy dies; the tablet's keepalive notices
/// before anyone presses, and the call goes through the other.
@Suite(.serialized) struct EdgeProxyFailoverTests {
    static let password = KamailioTests.password

    func startAgent(user: String, instance: String, proxies: [String], passwordFile: String,
                    keepalive: Duration = .seconds(1)) async throws
        -> KamailioTests.Agent
    {
        let registration = RegistrationConfiguration(
            domain: Kamailio.realm, authUser: user, passwordFile: passwordFile, instanceID: instance,
            edgeProxies: proxies.map { EdgeProxy(uri: $0) }, expires: 120, keepaliveInterval: keepalive,
            pongTimeout: .milliseconds(800), baseBackoff: .milliseconds(500), maxBackoff: .seconds(2))
        let agent = UserAgent(
            configuration: UserAgentConfiguration(
                localHost: "127.0.0.1", user: user, timerT1: .milliseconds(100), timerT2: .milliseconds(800),
                transport: .udp, registration: registration),
            group: MultiThreadedEventLoopGroup.singleton, logger: testLogger(user))
        let registrations = Recorder(agent.registrationEvents)
        let events = Recorder(agent.events)
        _ = try await agent.start()
        return KamailioTests.Agent(agent: agent, registrations: registrations, events: events)
    }

    /// Waits until every flow of `agent` is registered.
    func allRegistered(_ agent: UserAgent, count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let status = await agent.registrationStatus()
            if status.count == count, status.allSatisfy({ $0.state == .registered }) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TimedOut(what: "\(count) registered flows: \(await agent.registrationStatus())")
    }

    /// Two ready Kamailio edge proxies with the same certificates, and the tablet and a post
    /// each registered through both (keepalive every `keepalive`), for `body`; the proxies are
    /// stopped afterwards, also when `body` throws.
    func withBothRegistered(
        keepalive: Duration = .seconds(1),
        _ body: (_ first: Kamailio, _ second: Kamailio, _ tablet: KamailioTests.Agent, _ post: KamailioTests.Agent) async throws -> Void
    ) async throws {
        let certificates = try TestCertificates()
        let first = try await Kamailio(certificates: certificates, password: Self.password)
        defer { first.stop() }
        let second = try await Kamailio(certificates: certificates, password: Self.password)
        defer { second.stop() }
        try await first.waitUntilReady()
        try await second.waitUntilReady()
        let passwordFile = try KamailioTests().writePassword(Self.password, in: certificates.directory)
        let tablet = try await startAgent(user: "tablet", instance: KamailioTests.instance,
                                          proxies: [first.udpURI, second.udpURI], passwordFile: passwordFile,
                                          keepalive: keepalive)
        let post = try await startAgent(user: "post1", instance: "urn:uuid:0b7d5e1a-8c55-4a1e-bb0e-3f0f6c9a1d42",
                                        proxies: [first.udpURI, second.udpURI], passwordFile: passwordFile,
                                        keepalive: keepalive)
        try await allRegistered(tablet.agent, count: 2)
        try await allRegistered(post.agent, count: 2)
        try await body(first, second, tablet, post)
    }

    /// Calls the post; returns when answered and hung up again, with the time to the answer.
    func call(from tablet: KamailioTests.Agent, to post: KamailioTests.Agent) async throws -> Duration {
        let start = ContinuousClock.now
        let offer = tablet.agent.mediaNegotiator(audioPort: 40100, videoPort: nil).makeOffer().description
        let handle = await tablet.agent.invite(to: "sip:post1@\(Kamailio.realm)", offer: offer)
        let incoming = try await post.events.next("incoming at post") { if case .incoming = $0 { true } else { false } }
        guard case .incoming(let postHandle, _, _, let remoteOffer) = incoming else { throw TimedOut(what: "incoming") }
        let (answer, _) = try post.agent.mediaNegotiator(audioPort: 40110, videoPort: nil).answer(remoteOffer)
        await post.agent.answer(postHandle, with: answer)
        let answered = try await tablet.events.next("answered") {
            switch $0 {
            case .answered(let h, _), .failed(let h, _, _): h == handle
            default: false
            }
        }
        guard case .answered = answered else { throw TimedOut(what: "an answer, got \(answered)") }
        let elapsed = ContinuousClock.now - start
        await tablet.agent.hangUp(handle)
        _ = try await post.events.next("BYE at post") { $0 == .remoteHungUp(postHandle) }
        return elapsed
    }

    @Test func oneEdgeProxyDeadCallsGoThroughTheOther() async throws {
        try await withBothRegistered { first, second, tablet, post in
            // One binding per proxy, told apart by reg-id (RFC 5626 §4.2).
            #expect(first.log.contains("REGISTER accepted for tablet") && first.log.contains("reg-id=1"))
            #expect(second.log.contains("REGISTER accepted for tablet") && second.log.contains("reg-id=2"))

            // Both alive: the call goes through the first.
            let both = try await call(from: tablet, to: post)
            #expect(first.log.contains("request INVITE"))
            #expect(!second.log.contains("request INVITE"))
            print("answered with both edge proxies alive: \(wholeMilliseconds(both)) ms")

            // The first dies. Nobody calls; the keepalive notices.
            first.stop()
            let firstURI = first.udpURI
            let lost = try await tablet.registrations.next("first flow lost") {
                if case .failed(let proxy, _) = $0 { proxy == firstURI } else { false }
            }
            print("first edge proxy dead: \(lost)")
            let status = await tablet.agent.registrationStatus()
            #expect(status.first { $0.proxy == first.udpURI }?.state != .registered)
            #expect(status.first { $0.proxy == second.udpURI }?.state == .registered)

            // The press now: the INVITE goes through the second, and the post answers.
            let failover = try await call(from: tablet, to: post)
            #expect(second.log.contains("request INVITE"))
            print("answered through the second edge proxy, the first dead: \(wholeMilliseconds(failover)) ms")
            await tablet.agent.shutdown()
            await post.agent.shutdown()
        }
    }

    /// The edge proxy dies just before the press, so no keepalive has noticed yet: the INVITE
    /// hears nothing from it, and after 2·T1 goes over the other flow.
    @Test func anEdgeProxyThatDiedSinceItsLastKeepaliveCostsTwoT1() async throws {
        // Keepalive every 60 s: it will not be what notices.
        try await withBothRegistered(keepalive: .seconds(60)) { first, second, tablet, post in
            first.stop()
            let elapsed = try await call(from: tablet, to: post)
            print("answered through the second edge proxy, the first dead but not yet noticed: \(wholeMilliseconds(elapsed)) ms (2·T1 = 200 ms here)")
            #expect(second.log.contains("request INVITE"))
            let firstURI = first.udpURI
            let events = await tablet.registrations.all()
            #expect(events.contains(.failed(proxy: firstURI, reason: "no response to INVITE from edge proxy")))
            // Generous bound: far below Timer B (6.4 s here), which is what it cost before.
            #expect(elapsed < .seconds(3))
            await tablet.agent.shutdown()
            await post.agent.shutdown()
        }
    }
}
