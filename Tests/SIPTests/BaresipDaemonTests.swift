import Foundation
import Testing

/// The built `beeldzorgd` calling real baresip posts over TLS through Kamailio (issue 3, the
/// daemon-level version of "call the centrale and a post answers"): the button press goes
/// through CallFlow, the user agent, Kamailio and a post that auto-answers with mandatory SRTP;
/// media flows both ways and authenticates.
@Suite(.serialized) struct BaresipDaemonTests {
    typealias Daemon = BaresipContactTests.Daemon

    /// A baresip post (auto-answer, SRTP mandatory) behind a CentraleProxy over TLS with the test
    /// CA, and the built beeldzorgd registered through it with `posts(post)` as its posts; all
    /// three stopped afterwards (daemon, proxy, post).
    static func withRegisteredDaemon(
        post name: String, posts: (Baresip) -> [String] = { [$0.uri] }, policy: String = "ring_all",
        _ body: (Baresip, CentraleProxy, Daemon) async throws -> Void
    ) async throws {
        let certificates = try TestCertificates()
        let post = try await Baresip(name: name)
        try await post.start()
        defer { post.stop() }
        let proxy = try await CentraleProxy(certificates: certificates, password: BaresipContactTests.password,
                                            posts: [(uri: "sip:127.0.0.1:\(post.sipPort)", priority: 10)])
        defer { proxy.stop() }
        let daemon = try await Daemon(proxy: proxy, certificates: certificates, posts: posts(post), policy: policy)
        defer { daemon.stop() }
        try await daemon.waitFor("the tablet to register over TLS") { proxy.log.contains("REGISTER accepted for tablet") }
        try await body(post, proxy, daemon)
    }

    @Test func aPressReachesABaresipPostOverTLSAndSRTPFlowsBothWays() async throws {
        try await Self.withRegisteredDaemon(post: "daemonpost") { post, proxy, daemon in
            try await daemon.waitFor("the daemon to be idle") { daemon.phase == "idle" }
            // Let the daemon's first OPTIONS round to the posts finish (2 s timeout): the post must
            // be found alive through the edge proxy, not skipped as dead.
            try await daemon.waitFor("the post liveness check") { daemon.log.contains("post liveness") }
            #expect(daemon.log.contains("alive=true"), "\(daemon.log.split(separator: "\n").filter { $0.contains("liveness") })")

            let pressed = ContinuousClock.now
            try daemon.button("press")
            try await daemon.waitFor("the call to be up") { daemon.phase == "inCall" }
            print("baresip via beeldzorgd: press to inCall \((ContinuousClock.now - pressed).formatted(.units(allowed: [.milliseconds])))")
            try await post.next("CALL_ESTABLISHED")
            let menc = try await post.next("CALL_MENC")
            #expect(menc.fields["param"] == "0,audio,AES_CM_128_HMAC_SHA1_80", "\(menc)")
            // Our SRTP reached baresip (it saw RTP from us) and baresip's reached us and authenticated.
            try await post.next("CALL_RTPESTAB", timeout: .seconds(15))
            try await daemon.waitFor("SRTP audio from the post") {
                guard let media = daemon.status?["media"] as? [String: Any] else { return false }
                return (media["audioPacketsReceived"] as? Int ?? 0) >= 25
            }
            let media = try #require(daemon.status?["media"] as? [String: Any])
            #expect(media["authenticationFailures"] as? Int == 0)
            #expect(proxy.log.contains("request INVITE sip:centrale@127.0.0.1:\(post.sipPort)"))

            try daemon.button("long")
            try await post.next("CALL_CLOSED")
            try await daemon.waitFor("the call to end") { daemon.phase != "inCall" }
        }
    }

    /// Hunt with the first post dead (nothing on its port): the daemon's OPTIONS round finds it
    /// dead through the proxy before the press, so the press goes straight to the live post.
    @Test func aDeadPostIsSkippedAndTheLiveOneAnswersThePress() async throws {
        let deadPort = try await freePort(udp: true)
        try await Self.withRegisteredDaemon(post: "livepost", posts: { ["sip:centrale@127.0.0.1:\(deadPort)", $0.uri] },
                                            policy: "hunt") { post, proxy, daemon in
            try await daemon.waitFor("both posts' liveness known") {
                daemon.log.contains("alive=false post=post-1") && daemon.log.contains("alive=true post=post-2")
            }
            let pressed = ContinuousClock.now
            try daemon.button("press")
            try await daemon.waitFor("the call to be up") { daemon.phase == "inCall" }
            print("baresip via beeldzorgd, hunt, first post dead: press to inCall \((ContinuousClock.now - pressed).formatted(.units(allowed: [.milliseconds])))")
            try await post.next("CALL_ESTABLISHED")
            // The dead post was not tried at all.
            #expect(!proxy.log.contains("request INVITE sip:centrale@127.0.0.1:\(deadPort)"), "\(proxy.log.suffix(3000))")
            try daemon.button("long")
            try await post.next("CALL_CLOSED")
        }
    }
}
