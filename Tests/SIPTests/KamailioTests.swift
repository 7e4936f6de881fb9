import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import SIP

/// Keeps every log line (message and metadata) so a test can look for what must not be there.
final class LogCapture: Sendable {
    let lines = Mutex<[String]>([])

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let all = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.lines.withLock { $0.append("\(event.level) \(event.message) \(all)") }
        }
    }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { _ in Handler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    var text: String { lines.withLock { $0.joined(separator: "\n") } }
}

/// The user agent registering and calling through a real Kamailio over UDP, TCP and TLS.
@Suite(.serialized) struct KamailioTests {
    static let password = "pw-Kx93-vqZ"
    static let instance = "urn:uuid:6f1c0b52-3c1e-4f7b-9a55-0d9a4c1e7a21"

    /// A started agent registering at `proxy`; its registration events and call events recorded.
    struct Agent {
        let agent: UserAgent
        let registrations: Recorder<RegistrationEvent>
        let events: Recorder<UserAgentEvent>
    }

    func writePassword(_ password: String, in directory: URL) throws -> String {
        let path = directory.appendingPathComponent("password-\(UUID().uuidString)").path
        try "\(password)\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func startAgent(
        user: String, transport: UserAgentConfiguration.Transport, proxy: String, passwordFile: String,
        caFile: String? = nil, instance: String = KamailioTests.instance, logger: Logger? = nil,
        keepaliveInterval: Duration = .seconds(1), pongTimeout: Duration = .milliseconds(800),
        udpRefreshInterval: Duration = .seconds(30)
    ) async throws -> Agent {
        let registration = RegistrationConfiguration(
            domain: Kamailio.realm, authUser: user, passwordFile: passwordFile, instanceID: instance,
            edgeProxies: [EdgeProxy(uri: proxy)], expires: 120, keepaliveInterval: keepaliveInterval,
            pongTimeout: pongTimeout, baseBackoff: .milliseconds(200), maxBackoff: .seconds(1),
            udpRefreshInterval: udpRefreshInterval)
        let configuration = UserAgentConfiguration(
            localHost: "127.0.0.1", user: user, displayName: user.capitalized, timerT1: .milliseconds(100),
            timerT2: .milliseconds(800), transport: transport,
            tls: caFile.map { TLSTrust(caFile: $0, serverName: "localhost") }, registration: registration)
        let agent = UserAgent(configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                              logger: logger ?? testLogger(user))
        let registrations = Recorder(agent.registrationEvents)
        let events = Recorder(agent.events)
        _ = try await agent.start()
        return Agent(agent: agent, registrations: registrations, events: events)
    }

    func proxyURI(_ kamailio: Kamailio, _ transport: UserAgentConfiguration.Transport) -> String {
        switch transport {
        case .udp: kamailio.udpURI
        case .tcp: kamailio.tcpURI
        case .tls: kamailio.tlsURI
        }
    }

    @Test(arguments: [UserAgentConfiguration.Transport.udp, .tcp, .tls])
    func registersWithDigest(transport: UserAgentConfiguration.Transport) async throws {
        // TLS runs with SHA-256 digests (RFC 8760), the others with MD5.
        let algorithm = transport == .tls ? "SHA-256" : "MD5"
        try await Kamailio.withRunning(password: Self.password, algorithm: algorithm) { certificates, kamailio in
            let capture = LogCapture()
            let passwordFile = try writePassword(Self.password, in: certificates.directory)
            let tablet = try await startAgent(user: "tablet", transport: transport, proxy: proxyURI(kamailio, transport),
                                              passwordFile: passwordFile, caFile: certificates.caFile,
                                              logger: capture.logger("tablet"))
            let event = try await tablet.registrations.next("registered") {
                if case .registered = $0 { true } else { false }
            }
            #expect(event == .registered(proxy: proxyURI(kamailio, transport), expires: 120))
            // The registrar's own record of what it saved: our outbound Contact.
            let accepted = kamailio.log.split(separator: "\n").filter { $0.contains("REGISTER accepted for tablet") }
            #expect(!accepted.isEmpty, "kamailio log: \(kamailio.log)")
            #expect(accepted.allSatisfy { $0.contains(Self.instance) && $0.contains("reg-id=1") && $0.contains(";ob>") })
            let status = await tablet.agent.registrationStatus()
            #expect(status.first?.state == .registered)
            await tablet.agent.shutdown()
            let logs = capture.text
            #expect(!logs.isEmpty)
            #expect(!logs.contains(Self.password), "the password leaked into the log")
        }
    }

    @Test func wrongPasswordFailsWithReason() async throws {
        try await Kamailio.withRunning(password: Self.password) { certificates, kamailio in
            let passwordFile = try writePassword("not-the-password", in: certificates.directory)
            let tablet = try await startAgent(user: "tablet", transport: .tcp, proxy: kamailio.tcpURI,
                                              passwordFile: passwordFile)
            let event = try await tablet.registrations.next("failed") { if case .failed = $0 { true } else { false } }
            guard case .failed(let proxy, let reason) = event else { Issue.record("not failed: \(event)"); return }
            #expect(proxy == kamailio.tcpURI)
            #expect(reason.contains("authentication rejected"), "reason: \(reason)")
            #expect(!(await tablet.registrations.all()).contains { if case .registered = $0 { true } else { false } })
            #expect(!kamailio.log.contains("REGISTER accepted"))
            // It keeps trying (with backoff): a second attempt is reported too.
            _ = try await tablet.registrations.next("retry failed") { if case .failed = $0 { true } else { false } }
            await tablet.agent.shutdown()
        }
    }

    @Test func serverCertificateFromWrongCAIsRefusedAndNothingIsSent() async throws {
        try await Kamailio.withRunning(password: Self.password) { certificates, kamailio in
            let passwordFile = try writePassword(Self.password, in: certificates.directory)
            let tablet = try await startAgent(user: "tablet", transport: .tls, proxy: kamailio.tlsURI,
                                              passwordFile: passwordFile, caFile: certificates.wrongCAFile)
            let event = try await tablet.registrations.next("failed") { if case .failed = $0 { true } else { false } }
            guard case .failed(_, let reason) = event else { Issue.record("not failed: \(event)"); return }
            #expect(reason.contains("certificate"), "reason: \(reason)")
            let status = await tablet.agent.registrationStatus()
            #expect(status.first?.state == .failed)
            #expect(status.first?.detail.contains("certificate") == true)
            // Retried later, and refused again.
            _ = try await tablet.registrations.next("second failure") { if case .failed = $0 { true } else { false } }
            await tablet.agent.shutdown()
            // Kamailio never saw a SIP request: not one "request … from" line, no binding.
            #expect(!kamailio.log.contains("request REGISTER"), "kamailio log: \(kamailio.log)")
            #expect(!kamailio.log.contains("REGISTER accepted"))
        }
    }

    @Test func registersAgainAfterKamailioRestarts() async throws {
        try await Kamailio.withRunning(password: Self.password) { certificates, kamailio in
            let passwordFile = try writePassword(Self.password, in: certificates.directory)
            let tablet = try await startAgent(user: "tablet", transport: .tls, proxy: kamailio.tlsURI,
                                              passwordFile: passwordFile, caFile: certificates.caFile)
            _ = try await tablet.registrations.next("registered") { if case .registered = $0 { true } else { false } }
            kamailio.stop()
            let lost = try await tablet.registrations.next("flow lost") { if case .failed = $0 { true } else { false } }
            guard case .failed(_, let reason) = lost else { return }
            #expect(reason.contains("closed") || reason.contains("pong") || reason.contains("refused"), "reason: \(reason)")
            let acceptedBefore = kamailio.log.components(separatedBy: "REGISTER accepted for tablet").count
            try kamailio.start()
            defer { kamailio.stop() }
            try await kamailio.waitUntilReady()
            _ = try await tablet.registrations.next("registered again", timeout: .seconds(15)) {
                if case .registered = $0 { true } else { false }
            }
            #expect(kamailio.log.components(separatedBy: "REGISTER accepted for tablet").count > acceptedBefore)
            await tablet.agent.shutdown()
        }
    }

    @Test func callsThroughKamailioOverTLSBothWays() async throws {
        try await Kamailio.withRunning(password: Self.password) { certificates, kamailio in
            let passwordFile = try writePassword(Self.password, in: certificates.directory)
            let tablet = try await startAgent(user: "tablet", transport: .tls, proxy: kamailio.tlsURI,
                                              passwordFile: passwordFile, caFile: certificates.caFile)
            let post = try await startAgent(user: "post1", transport: .tls, proxy: kamailio.tlsURI,
                                            passwordFile: passwordFile, caFile: certificates.caFile,
                                            instance: "urn:uuid:0b7d5e1a-8c55-4a1e-bb0e-3f0f6c9a1d42")
            _ = try await tablet.registrations.next("tablet registered") { if case .registered = $0 { true } else { false } }
            _ = try await post.registrations.next("post registered") { if case .registered = $0 { true } else { false } }

            // Tablet → post: Kamailio challenges the INVITE (407), the tablet answers it.
            let offer = tablet.agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer().description
            let call = await tablet.agent.invite(to: "sip:post1@\(Kamailio.realm)", offer: offer)
            let incoming = try await post.events.next("incoming at post") { if case .incoming = $0 { true } else { false } }
            guard case .incoming(let postHandle, let fromURI, _, let remoteOffer) = incoming else { return }
            #expect(fromURI.contains("tablet@"))
            let (answer, _) = try post.agent.mediaNegotiator(audioPort: 40010, videoPort: nil).answer(remoteOffer)
            await post.agent.answer(postHandle, with: answer)
            let answered = try await tablet.events.next("answered") {
                if case .answered(let h, _) = $0 { h == call } else { false }
            }
            if case .answered = answered {} else { Issue.record("not answered: \(answered)") }
            #expect(kamailio.log.contains("request INVITE"))
            await tablet.agent.hangUp(call)
            _ = try await post.events.next("BYE at post") { $0 == .remoteHungUp(postHandle) }

            // Post → tablet: arrives over the tablet's own TLS flow (Kamailio cannot dial it).
            let offer2 = post.agent.mediaNegotiator(audioPort: 40020, videoPort: nil).makeOffer().description
            let call2 = await post.agent.invite(to: "sip:tablet@\(Kamailio.realm)", offer: offer2)
            let ringing = try await tablet.events.next("incoming at tablet") { if case .incoming = $0 { true } else { false } }
            guard case .incoming(let tabletHandle, _, _, let offerAtTablet) = ringing else { return }
            await tablet.agent.ring(tabletHandle)
            _ = try await post.events.next("180 at post") { $0 == .progress(call2, status: 180) }
            let (answer2, _) = try tablet.agent.mediaNegotiator(audioPort: 40030, videoPort: nil).answer(offerAtTablet)
            await tablet.agent.answer(tabletHandle, with: answer2)
            _ = try await post.events.next("post's call answered") {
                if case .answered(let h, _) = $0 { h == call2 } else { false }
            }
            await post.agent.hangUp(call2)
            _ = try await tablet.events.next("BYE at tablet") { $0 == .remoteHungUp(tabletHandle) }
            await tablet.agent.shutdown()
            await post.agent.shutdown()
        }
    }
}
