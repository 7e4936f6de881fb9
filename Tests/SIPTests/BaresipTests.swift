import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import DemoCentrale
@testable import SIP

/// The user agent against real baresip posts behind a real Kamailio with `dispatcher`, over
/// TLS with a test CA, with mandatory SRTP (issue 3, "baresip as centrale posts").
@Suite(.serialized) struct BaresipTests {
    static let password = "pw-Bs47-tLq"

    struct Tablet {
        let agent: UserAgent
        let registrations: Recorder<RegistrationEvent>
        let events: Recorder<UserAgentEvent>
    }

    /// The tablet's agent over TLS to `proxy`, SRTP required, RFC 3261 default timers (so a
    /// dead post would cost the full 32 s Timer B if nothing else moved the call on).
    func startTablet(proxy: CentraleProxy, certificates: TestCertificates, caFile: String? = nil,
                     logger: Logger? = nil) async throws -> Tablet {
        let passwordFile = certificates.directory.appendingPathComponent("password-\(UUID().uuidString)").path
        try "\(Self.password)\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let registration = RegistrationConfiguration(
            domain: CentraleProxy.realm, authUser: "tablet", passwordFile: passwordFile,
            instanceID: "urn:uuid:2a4f7f0e-0c1b-4d55-9a0e-5b8d7c6e1f30", edgeProxies: [EdgeProxy(uri: proxy.tlsURI)],
            expires: 120, keepaliveInterval: .seconds(2), pongTimeout: .seconds(1), baseBackoff: .milliseconds(200),
            maxBackoff: .seconds(1))
        let configuration = UserAgentConfiguration(
            localHost: "127.0.0.1", user: "tablet", displayName: "Tablet", srtpRequired: true, transport: .tls,
            tls: TLSTrust(caFile: caFile ?? certificates.caFile, serverName: "localhost"), registration: registration)
        let agent = UserAgent(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                              logger: logger ?? testLogger("tablet"))
        let tablet = Tablet(agent: agent, registrations: Recorder(agent.registrationEvents), events: Recorder(agent.events))
        _ = try await agent.start()
        return tablet
    }

    func registered(_ tablet: Tablet) async throws {
        _ = try await tablet.registrations.next("registered over TLS", timeout: .seconds(15)) {
            if case .registered = $0 { true } else { false }
        }
    }

    /// One test's centrale: certificates, baresip posts called `names` (all made, then all
    /// started) and the proxy in front of them, for `body`; posts and proxy are stopped
    /// afterwards, also when `body` throws. `dispatch` makes the dispatcher list from the
    /// started posts; by default the first post alone, priority 10.
    func withCentrale(
        posts names: [String],
        dispatch: ([Baresip]) async throws -> [(uri: String, priority: Int)] = { [(uri: "sip:127.0.0.1:\($0[0].sipPort)", priority: 10)] },
        _ body: (TestCertificates, [Baresip], CentraleProxy) async throws -> Void
    ) async throws {
        let certificates = try TestCertificates()
        var posts: [Baresip] = []
        defer { for post in posts.reversed() { post.stop() } }
        for name in names { posts.append(try await Baresip(name: name)) }
        for post in posts { try await post.start() }
        let proxy = try await CentraleProxy(certificates: certificates, password: Self.password, posts: try await dispatch(posts))
        defer { proxy.stop() }
        try await body(certificates, posts, proxy)
    }

    /// An echo for the call's audio that decrypts what the post sends with the post's key and
    /// encrypts it again with ours: the post receives SRTP it can authenticate (CALL_MENC).
    struct Media {
        let echo: EchoSet
        let offer: PendingOffer
    }

    func media(for tablet: Tablet) async throws -> Media {
        let echo = try await EchoSet.bind(host: "127.0.0.1", group: MultiThreadedEventLoopGroup.singleton,
                                          counter: EchoCounter(), awaitingKeys: true)
        let offer = tablet.agent.mediaNegotiator(audioPort: echo.audio.port, videoPort: nil).makeOffer()
        return Media(echo: echo, offer: offer)
    }

    func startEcho(_ media: Media, answer: SessionDescription) throws {
        let negotiated = try MediaNegotiator.readAnswer(answer, for: media.offer)
        let audio = try #require(negotiated.audio)
        let send = try #require(audio.sendKey?.bytes, "the answer has no SRTP key")
        let receive = try #require(audio.receiveKey?.bytes)
        try media.echo.rekey(audio: (receive: receive, send: send), video: nil)
    }

    func answered(
        _ tablet: Tablet, _ call: CallHandle, timeout: Duration = .seconds(15), proxy: CentraleProxy, posts: [Baresip]
    ) async throws -> SessionDescription {
        let event = try? await tablet.events.next("answer", timeout: timeout) {
            switch $0 {
            case .answered(let h, _), .failed(let h, _, _): h == call
            default: false
            }
        }
        guard case .answered(_, let remote) = event else {
            throw CommandFailed(
                command: "call to the centrale",
                output: "\(String(describing: event))\nkamailio:\n\(proxy.log.suffix(6000))\n"
                    + posts.map { "baresip \($0.name):\n\($0.log.suffix(4000))" }.joined(separator: "\n"))
        }
        return remote
    }

    @Test func registersOverTLSAndAPostAnswersWithSRTP() async throws {
        try await withCentrale(posts: ["post1"]) { certificates, posts, proxy in
            let post = posts[0]
            let tablet = try await startTablet(proxy: proxy, certificates: certificates)
            defer { Task { await tablet.agent.shutdown() } }  // also when the test fails early
            try await registered(tablet)
            #expect(proxy.log.contains("REGISTER accepted for tablet"))

            let media = try await media(for: tablet)
            defer { Task { await media.echo.close() } }
            let call = await tablet.agent.invite(to: "sip:centrale@\(CentraleProxy.realm)", offer: media.offer.description)
            let answer = try await answered(tablet, call, proxy: proxy, posts: [post])
            #expect(String(decoding: answer.serialized(), as: UTF8.self).contains("RTP/SAVP"), "not SRTP: \(answer)")
            try startEcho(media, answer: answer)
            try await post.next("CALL_ESTABLISHED")
            let menc = try await post.next("CALL_MENC")
            // baresip's MENC_EVENT_SECURE (0) for the audio stream with the SDES suite we offered.
            #expect(menc.fields["param"] == "0,audio,AES_CM_128_HMAC_SHA1_80", "\(menc)")
            _ = try await post.next("CALL_RTPESTAB")
            #expect(proxy.log.contains("centrale call to post sip:127.0.0.1:\(post.sipPort)"))

            await tablet.agent.hangUp(call)
            try await post.next("CALL_CLOSED")
            await tablet.agent.shutdown()
        }
    }

    @Test func aPostPuttingTheTabletOnHoldAndResumingIsAnswered() async throws {
        try await withCentrale(posts: ["holder"]) { certificates, posts, proxy in
            let post = posts[0]
            let capture = LogCapture()
            let tablet = try await startTablet(proxy: proxy, certificates: certificates, logger: capture.logger("tablet"))
            defer { Task { await tablet.agent.shutdown() } }  // also when the test fails early
            try await registered(tablet)
            let media = try await media(for: tablet)
            defer { Task { await media.echo.close() } }
            let call = await tablet.agent.invite(to: "sip:centrale@\(CentraleProxy.realm)", offer: media.offer.description)
            let answer = try await answered(tablet, call, proxy: proxy, posts: [post])
            try startEcho(media, answer: answer)
            try await post.next("CALL_ESTABLISHED")
            let invitesBefore = proxy.log.components(separatedBy: "request INVITE sip:tablet@").count

            try await post.command("hold")
            try await Self.waitUntil("the post's re-INVITE") {
                proxy.log.components(separatedBy: "request INVITE sip:tablet@").count > invitesBefore
            }
            try await Task.sleep(for: .seconds(1))
            try await post.command("resume")
            try await Self.waitUntil("the post's second re-INVITE") {
                proxy.log.components(separatedBy: "request INVITE sip:tablet@").count > invitesBefore + 1
            }
            try await Task.sleep(for: .seconds(1))
            // Both were answered 200 (none refused) and the call is still up on both sides.
            do {
                try await Self.waitUntil("both re-INVITEs answered") {
                    capture.text.components(separatedBy: "re-INVITE answered").count == 3
                }
            } catch {
                let tabletLines = capture.text.split(separator: "\n").filter { !$0.contains("REGISTER") }.suffix(30)
                Issue.record("tablet:\n\(tabletLines.joined(separator: "\n"))\nkamailio:\n\(proxy.log.suffix(2500))\npost:\n\(post.log.suffix(2500))")
            }
            #expect(!capture.text.contains("re-INVITE refused"))
            #expect(!(await post.all()).contains { $0.type == "CALL_CLOSED" })
            #expect(!(await tablet.events.all()).contains { if case .remoteHungUp = $0 { true } else { false } })
            await tablet.agent.hangUp(call)
            try await post.next("CALL_CLOSED")
        }
    }

    static func waitUntil(_ what: String, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
        guard try await poll(timeout: timeout, condition) else { throw TimedOut(what: what) }
    }

    @Test func deadPostIsPassedOverAndAnotherAnswers() async throws {
        // Nothing listens on the dead post's port; the dispatcher tries it first.
        var deadPort = 0
        try await withCentrale(posts: ["live"], dispatch: { posts in
            deadPort = try await freePort(udp: true)
            return [(uri: "sip:127.0.0.1:\(deadPort)", priority: 10), (uri: "sip:127.0.0.1:\(posts[0].sipPort)", priority: 5)]
        }) { certificates, posts, proxy in
            let live = posts[0]
            let tablet = try await startTablet(proxy: proxy, certificates: certificates)
            defer { Task { await tablet.agent.shutdown() } }  // also when the test fails early
            try await registered(tablet)

            let media = try await media(for: tablet)
            defer { Task { await media.echo.close() } }
            let started = ContinuousClock.now
            let call = await tablet.agent.invite(to: "sip:centrale@\(CentraleProxy.realm)", offer: media.offer.description)
            // Well inside Timer B (32 s at T1 = 500 ms): the proxy moved on, not a timeout of ours.
            let answer = try await answered(tablet, call, timeout: .seconds(15), proxy: proxy, posts: [live])
            let elapsed = ContinuousClock.now - started
            print("baresip: dead post then live post answered in \(elapsed.formatted(.units(allowed: [.milliseconds]))) (proxy failover timer 1000 ms)")
            #expect(proxy.log.contains("centrale call to post sip:127.0.0.1:\(deadPort)"), "\(proxy.log)")
            #expect(proxy.log.contains("next post sip:127.0.0.1:\(live.sipPort)"), "\(proxy.log)")
            try startEcho(media, answer: answer)
            try await live.next("CALL_ESTABLISHED")
            try await live.next("CALL_MENC")
            await tablet.agent.hangUp(call)
            try await live.next("CALL_CLOSED")
            await tablet.agent.shutdown()
        }
    }

    @Test func ringAllWithTwoLivePostsLeavesExactlyOneCall() async throws {
        try await withCentrale(posts: ["first", "second"], dispatch: {
            [(uri: "sip:127.0.0.1:\($0[0].sipPort)", priority: 10), (uri: "sip:127.0.0.1:\($0[1].sipPort)", priority: 5)]
        }) { certificates, posts, proxy in
            let (first, second) = (posts[0], posts[1])
            let tablet = try await startTablet(proxy: proxy, certificates: certificates)
            defer { Task { await tablet.agent.shutdown() } }  // also when the test fails early
            try await registered(tablet)

            let media = try await media(for: tablet)
            defer { Task { await media.echo.close() } }
            let call = await tablet.agent.invite(to: "sip:ringall@\(CentraleProxy.realm)", offer: media.offer.description)
            _ = try await answered(tablet, call, proxy: proxy, posts: [first, second])
            #expect(proxy.log.contains("ring-all fork"))
            // Both posts were offered the call; each either keeps it or has it closed (CANCEL, or
            // our ACK-and-BYE for a second 200).
            for post in [first, second] { try await post.next("CALL_REMOTE_SDP") }  // (auto-answer: no CALL_INCOMING)
            try await Task.sleep(for: .seconds(3))
            func live(_ post: Baresip) async -> Bool {
                let types = await post.all().map(\.type)
                return types.contains("CALL_ESTABLISHED") && !types.contains("CALL_CLOSED")
            }
            let firstLive = await live(first)
            let secondLive = await live(second)
            let firstEvents = await first.all()
            let secondEvents = await second.all()
            #expect([firstLive, secondLive].filter { $0 }.count == 1, "first: \(firstEvents)\nsecond: \(secondEvents)")
            await tablet.agent.hangUp(call)
            try await (firstLive ? first : second).next("CALL_CLOSED")
            let stillLive = [await live(first), await live(second)]
            #expect(stillLive == [false, false])
            await tablet.agent.shutdown()
        }
    }

    @Test func proxyCertificateFromWrongCAIsRefusedAndNoPostRings() async throws {
        try await withCentrale(posts: ["post"]) { certificates, posts, proxy in
            let post = posts[0]
            let tablet = try await startTablet(proxy: proxy, certificates: certificates, caFile: certificates.wrongCAFile)
            defer { Task { await tablet.agent.shutdown() } }  // also when the test fails early
            let event = try await tablet.registrations.next("failed") { if case .failed = $0 { true } else { false } }
            guard case .failed(_, let reason) = event else { return }
            #expect(reason.contains("certificate"), "reason: \(reason)")

            let media = try await media(for: tablet)
            defer { Task { await media.echo.close() } }
            let call = await tablet.agent.invite(to: "sip:centrale@\(CentraleProxy.realm)", offer: media.offer.description,
                                                 ringTimeout: .seconds(3))
            let outcome = try await tablet.events.next("call outcome") {
                switch $0 {
                case .answered(let h, _), .failed(let h, _, _): h == call
                default: false
                }
            }
            guard case .failed = outcome else { Issue.record("a call went through an untrusted proxy: \(outcome)"); return }
            await tablet.agent.shutdown()
            #expect(!proxy.log.contains("request "), "kamailio saw SIP: \(proxy.log)")
            let postEvents = await post.all()
            #expect(postEvents.isEmpty, "the post heard of a call: \(postEvents)")
        }
    }
}
