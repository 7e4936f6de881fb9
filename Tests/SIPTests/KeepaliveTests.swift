import Foundation
import Testing

@testable import SIP

/// RFC 5626 §4.4.2 flow keepalives on UDP against a real Kamailio: STUN when its `stun`
/// module answers, OPTIONS when it does not; a dead edge proxy is noticed with no call and no
/// REGISTER refresh due, and shows in the registration status.
@Suite(.serialized) struct KeepaliveTests {
    static let password = KamailioTests.password

    func passwordFile(_ certificates: TestCertificates) throws -> String {
        try KamailioTests().writePassword(Self.password, in: certificates.directory)
    }

    /// Polls the registration status until `predicate` holds for the first flow.
    func status(
        of agent: UserAgent, _ what: String, timeout: Duration = .seconds(10),
        where predicate: @Sendable (RegistrationStatus) -> Bool
    ) async throws -> RegistrationStatus {
        let deadline = ContinuousClock.now + timeout
        var last: RegistrationStatus?
        while ContinuousClock.now < deadline {
            last = await agent.registrationStatus().first
            if let last, predicate(last) { return last }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TimedOut(what: "\(what); last status: \(String(describing: last))")
    }

    @Test func udpSTUNKeepaliveNoticesADeadEdgeProxyAndRegistersAgainAfterRestart() async throws {
        try await Kamailio.withRunning(password: Self.password, stun: true) { certificates, kamailio in
            let tablet = try await KamailioTests().startAgent(
                user: "tablet", transport: .udp, proxy: kamailio.udpURI, passwordFile: try passwordFile(certificates))
            _ = try await tablet.registrations.next("registered") { if case .registered = $0 { true } else { false } }
            // Registered for 120 s, keepalive every second: STUN answers show in the status.
            let alive = try await status(of: tablet.agent, "STUN keepalive answered") {
                $0.state == .registered && $0.detail.contains("STUN: answered")
            }
            print("status while alive: \(alive.detail)")

            kamailio.stop()
            let stopped = ContinuousClock.now
            let lost = try await tablet.registrations.next("flow lost") { if case .failed = $0 { true } else { false } }
            guard case .failed(_, let reason) = lost else { return }
            #expect(reason == "no keepalive answer (STUN) from edge proxy")
            print("dead edge proxy noticed after \(wholeMilliseconds(ContinuousClock.now - stopped)) ms: \(reason)")
            let dead = await tablet.agent.registrationStatus().first
            #expect(dead?.state != .registered, "status: \(String(describing: dead))")

            let acceptedBefore = kamailio.log.components(separatedBy: "REGISTER accepted for tablet").count
            try kamailio.start()
            try await kamailio.waitUntilReady()
            _ = try await tablet.registrations.next("registered again", timeout: .seconds(20)) {
                if case .registered = $0 { true } else { false }
            }
            #expect(kamailio.log.components(separatedBy: "REGISTER accepted for tablet").count > acceptedBefore)
            _ = try await status(of: tablet.agent, "STUN keepalive answered again") {
                $0.state == .registered && $0.detail.contains("STUN: answered")
            }
            await tablet.agent.shutdown()
        }
    }

    /// A registrar restarted between two keepalives forgets every binding, yet answers STUN
    /// and OPTIONS as before: the UDP flow looks healthy while calls to the tablet fail. Only
    /// the next REGISTER notices, so on UDP it comes every `udpRefreshInterval` (30 s in the
    /// product, 3 s here) instead of at half the granted 120 s.
    @Test func udpRegistrationComesBackSoonAfterTheRegistrarRestartedAndLostItsBindings() async throws {
        try await Kamailio.withRunning(password: Self.password, stun: true) { certificates, kamailio in
            let tablet = try await KamailioTests().startAgent(
                user: "tablet", transport: .udp, proxy: kamailio.udpURI, passwordFile: try passwordFile(certificates),
                keepaliveInterval: .seconds(25), pongTimeout: .seconds(10), udpRefreshInterval: .seconds(3))
            _ = try await tablet.registrations.next("registered") { if case .registered = $0 { true } else { false } }
            let accepted = { kamailio.log.components(separatedBy: "REGISTER accepted for tablet").count - 1 }
            #expect(accepted() >= 1)

            // A quick restart: the new process starts with an empty location table.
            kamailio.stop()
            try kamailio.start()
            try await kamailio.waitUntilReady()
            let restarted = ContinuousClock.now
            let before = accepted()
            let deadline = restarted + .seconds(3) + .seconds(3)
            while accepted() == before, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(accepted() > before, "no REGISTER reached the restarted registrar; log: \(kamailio.log)")
            print("binding restored \(wholeMilliseconds(ContinuousClock.now - restarted)) ms after the registrar restarted")
            // Nothing on the flow looked wrong: no failure was reported in between.
            #expect(!(await tablet.registrations.all()).contains { if case .failed = $0 { true } else { false } })
            await tablet.agent.shutdown()
        }
    }

    @Test func udpKeepaliveFallsBackToOptionsWhenTheEdgeProxyHasNoSTUN() async throws {
        try await Kamailio.withRunning(password: Self.password, stun: false) { certificates, kamailio in
            let tablet = try await KamailioTests().startAgent(
                user: "tablet", transport: .udp, proxy: kamailio.udpURI, passwordFile: try passwordFile(certificates))
            _ = try await tablet.registrations.next("registered") { if case .registered = $0 { true } else { false } }
            let options = try await status(of: tablet.agent, "OPTIONS keepalive answered") {
                $0.state == .registered && $0.detail.contains("OPTIONS") && $0.detail.contains(": answered")
            }
            print("status without STUN: \(options.detail)")
            // A few more rounds: the flow stays up (no STUN is not a dead proxy).
            try await Task.sleep(for: .seconds(3))
            #expect(!(await tablet.registrations.all()).contains { if case .failed = $0 { true } else { false } })
            #expect(kamailio.log.contains("request OPTIONS"))

            kamailio.stop()
            let lost = try await tablet.registrations.next("flow lost") { if case .failed = $0 { true } else { false } }
            guard case .failed(_, let reason) = lost else { return }
            #expect(reason == "no keepalive answer (OPTIONS) from edge proxy")
            await tablet.agent.shutdown()
        }
    }
}
