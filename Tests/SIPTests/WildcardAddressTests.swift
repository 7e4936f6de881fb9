import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import SIP

/// Issue 3, "the tablet's own address": with `listen_host: 0.0.0.0` (the shipped default) the
/// daemon runs in a network namespace of the test's own, Kamailio on the host end of the veth.
/// Its REGISTER Contact, its INVITE Contact and the SDP offer's c= line must all carry the
/// tablet end of the veth (the address the kernel uses toward the edge proxy), never 0.0.0.0
/// or 127.0.0.1.
@Suite(.serialized, .enabled(if: NetworkNamespace.available, "needs root and ip(8)"))
struct WildcardAddressTests {
    @Test(arguments: ["udp", "tcp"])
    func wildcardListenHostAdvertisesTheInterfaceAddress(transport: String) async throws {
        try await NetworkNamespace.withKamailio(password: NetworkChangeTests.password) { namespace, certificates, kamailio in
            let d = certificates.directory.path
            let configuration = try writeDaemonFiles(
                in: d, password: NetworkChangeTests.password, domain: Kamailio.realm, listenHost: "0.0.0.0",
                transport: transport, edgeProxy: transport == "tcp" ? kamailio.tcpURI : kamailio.udpURI,
                posts: ["sip:post1@\(Kamailio.realm)"])
            let (_, lines) = try namespace.launch(DaemonNetworkChangeTests.daemon,
                                                  ["--config", configuration, "--console", "--log-level", "debug"])
            func waitFor(_ what: String, timeout: Duration, _ condition: () -> Bool) async throws {
                guard try await poll(timeout: timeout, condition) else {
                    throw TimedOut(what: "\(what); daemon output:\n\(String(lines.text.suffix(4000)))\nKamailio:\n\(kamailio.log.suffix(4000))")
                }
            }
            try await waitFor("the daemon registered", timeout: .seconds(20)) {
                kamailio.log.contains("REGISTER accepted for tablet")
            }
            let registered = kamailio.log.components(separatedBy: "\n").first { $0.contains("REGISTER accepted for tablet") } ?? ""
            #expect(registered.contains("contact <sip:tablet@\(namespace.tabletAddress)"), "\(registered)")
            #expect(!registered.contains("0.0.0.0") && !registered.contains("127.0.0.1"), "\(registered)")

            // A button press calls post-1 through the edge proxy; Kamailio logs the INVITE it
            // authenticated (Contact and body). The post is not registered, so the call ends there.
            try await waitFor("the button FIFO open", timeout: .seconds(10)) {
                let fd = open("\(d)/button", O_WRONLY | O_NONBLOCK)
                guard fd >= 0 else { return false }
                defer { close(fd) }
                let bytes = Array("press\n".utf8)
                return write(fd, bytes, bytes.count) == bytes.count
            }
            try await waitFor("an authenticated INVITE at Kamailio", timeout: .seconds(20)) {
                kamailio.log.contains("INVITE accepted contact")
            }
            let log = kamailio.log
            let invite = String(log[log.range(of: "INVITE accepted contact")!.lowerBound...])
            let contactLine = invite.components(separatedBy: "\n")[0]
            #expect(contactLine.contains("<sip:tablet@\(namespace.tabletAddress)"), "\(contactLine)")
            #expect(invite.contains("c=IN IP4 \(namespace.tabletAddress)"), "\(invite.prefix(2000))")
            #expect(!invite.contains("c=IN IP4 127.0.0.1") && !invite.contains("c=IN IP4 0.0.0.0"), "\(invite.prefix(2000))")
            print("wildcard listen_host over \(transport): \(contactLine)")
        }
    }
}

/// Without an edge proxy, a user agent bound to the wildcard answers an incoming call with the
/// address toward the caller (loopback here) in its Contact and for the SDP answer.
@Suite struct WildcardIncomingAddressTests {
    @Test func incomingCallWithoutProxyUsesTheAddressTowardTheCaller() async throws {
        let peer = try await RawPeer.bind()
        let agent = UserAgent(
            configuration: UserAgentConfiguration(localHost: "0.0.0.0", user: "tablet", timerT1: .milliseconds(100),
                                                  timerT2: .milliseconds(800)),
            group: MultiThreadedEventLoopGroup.singleton, logger: testLogger("tablet"))
        let port = try await agent.start()
        let events = Recorder(agent.events)
        let offer = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 50000, videoPort: nil, srtpRequired: false)
            .makeOffer().description.serialized()
        let head = """
            INVITE sip:tablet@127.0.0.1:\(port) SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bKwild1\r
            From: <sip:post1@127.0.0.1:\(peer.port)>;tag=caller\r
            To: <sip:tablet@127.0.0.1:\(port)>\r
            Call-ID: wildcard-1\r
            CSeq: 1 INVITE\r
            Contact: <sip:post1@127.0.0.1:\(peer.port)>\r
            Max-Forwards: 70\r
            Content-Type: application/sdp\r
            Content-Length: \(offer.count)\r
            \r

            """
        try await peer.send(Array(head.utf8) + offer, to: port)
        guard case .incoming(let call, _, _, _) = try await events.next("incoming") else {
            Issue.record("expected incoming")
            return
        }
        await agent.ring(call)
        let ringing = try await peer.nextResponse(status: 180)
        let contact = ringing.headers["Contact"] ?? ""
        #expect(contact.contains("sip:tablet@127.0.0.1:\(port)"), "\(contact)")
        #expect(!contact.contains("0.0.0.0"), "\(contact)")
        #expect(await agent.mediaAddress(for: call) == "127.0.0.1")
        #expect(LocalAddress.toward(try SocketAddress(ipAddress: "127.0.0.1", port: 5060)) == "127.0.0.1")
        await agent.shutdown()
        await peer.close()
    }
}
