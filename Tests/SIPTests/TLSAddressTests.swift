import Foundation
import NIOPosix
import Testing

@testable import SIP

/// An edge proxy that a SIP engineer configured by IP address over TLS: no SNI (it cannot
/// carry an address), and the certificate must name that address in its subjectAltName.
@Suite(.serialized) struct TLSAddressTests {
    func startAgent(kamailio: Kamailio, certificates: TestCertificates) async throws -> (UserAgent, Recorder<RegistrationEvent>) {
        let passwordFile = certificates.directory.appendingPathComponent("password").path
        try "\(KamailioTests.password)\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        let registration = RegistrationConfiguration(
            domain: Kamailio.realm, authUser: "tablet", passwordFile: passwordFile, instanceID: KamailioTests.instance,
            edgeProxies: [EdgeProxy(uri: kamailio.tlsURI)], expires: 120, keepaliveInterval: .seconds(1),
            pongTimeout: .milliseconds(800), baseBackoff: .milliseconds(200), maxBackoff: .seconds(1))
        // What the daemon does with `sip:127.0.0.1:PORT;transport=tls`: the host is the name to check.
        let configuration = UserAgentConfiguration(
            localHost: "127.0.0.1", user: "tablet", displayName: "Tablet", timerT1: .milliseconds(100),
            timerT2: .milliseconds(800), transport: .tls,
            tls: TLSTrust(caFile: certificates.caFile, serverName: "127.0.0.1"), registration: registration)
        let agent = UserAgent(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                              logger: testLogger("tablet"))
        let registrations = Recorder(agent.registrationEvents)
        _ = try await agent.start()
        return (agent, registrations)
    }

    @Test func registersWithAnEdgeProxyGivenByAddress() async throws {
        try await Kamailio.withRunning(password: KamailioTests.password) { certificates, kamailio in
            #expect(kamailio.tlsURI.hasPrefix("sip:127.0.0.1:"))
            let (agent, registrations) = try await startAgent(kamailio: kamailio, certificates: certificates)
            let event = try await registrations.next("registered or failed") {
                switch $0 {
                case .registered, .failed: true
                default: false
                }
            }
            #expect(event == .registered(proxy: kamailio.tlsURI, expires: 120), "got \(event)")
            await agent.shutdown()
        }
    }

    @Test func aCertificateThatDoesNotNameTheAddressIsRefused() async throws {
        try await Kamailio.withRunning(password: KamailioTests.password, serverNames: "DNS:localhost") { certificates, kamailio in
            let (agent, registrations) = try await startAgent(kamailio: kamailio, certificates: certificates)
            let event = try await registrations.next("failed") { if case .failed = $0 { true } else { false } }
            guard case .failed(_, let reason) = event else { Issue.record("not failed: \(event)"); return }
            #expect(reason.contains("certificate") || reason.contains("hostname"), "reason: \(reason)")
            await agent.shutdown()
            #expect(!kamailio.log.contains("request REGISTER"), "kamailio log: \(kamailio.log)")
        }
    }
}
