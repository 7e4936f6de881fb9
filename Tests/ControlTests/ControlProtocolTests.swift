import Control
import Foundation
import Testing

@Suite struct ControlProtocolTests {
    private func decode(_ text: String) -> Result<ControlRequest, ControlError> {
        ControlCoding.decodeRequest(Data(text.utf8))
    }

    @Test func aWellFormedRequestDecodes() throws {
        let request = try decode(#"{"v":1,"cmd":"press","kind":"long"}"#).get()
        #expect(request.cmd == .press)
        #expect(request.kind == "long")
    }

    @Test(arguments: [
        ("not json at all", ControlError.Code.malformed),
        ("[1,2,3]", .malformed),
        (#"{"cmd":"status"}"#, .malformed),
        (#"{"v":2,"cmd":"status"}"#, .unsupportedVersion),
        (#"{"v":1}"#, .malformed),
        (#"{"v":1,"cmd":"reboot-the-world"}"#, .unknownCommand),
        (#"{"v":1,"cmd":"press","kind":7}"#, .badArgument),
    ])
    func badRequestsGetTheRightErrorCode(text: String, code: ControlError.Code) {
        guard case .failure(let error) = decode(text) else {
            Issue.record("accepted: \(text)")
            return
        }
        #expect(error.code == code)
    }

    @Test func anOversizedRequestIsRefusedBeforeParsing() {
        let huge = Data(repeating: 0x20, count: ControlProtocol.maximumRequestBytes + 1)
        guard case .failure(let error) = ControlCoding.decodeRequest(huge) else {
            Issue.record("accepted an oversized request")
            return
        }
        #expect(error.code == .tooLarge)
    }

    @Test func responsesRoundTripAsOneLine() throws {
        let call = StatusReport.Call(phase: "inCall", peer: "Post 1", callbackPending: false)
        let line = try ControlResponse.success(call).encoded()
        #expect(!line.contains(0x0A))
        let decoded = try ControlResponse.decode(line)
        #expect(decoded.ok)
        #expect(try decoded.decodeResult(StatusReport.Call.self) == call)

        let failure = ControlResponse.failure(ControlError(.unavailable, "no demo centrale"))
        let back = try ControlResponse.decode(failure.encoded())
        #expect(!back.ok)
        #expect(back.error == ControlError(.unavailable, "no demo centrale"))
    }

    /// The `status --json` shape is a contract with field tools: this golden list of keys
    /// fails when a field is renamed or removed.
    @Test func statusJSONKeepsItsShape() throws {
        let report = StatusReport(
            daemon: .init(version: "0.1.0", pid: 42, startedAt: Date(timeIntervalSince1970: 0), uptimeSeconds: 5, demo: true),
            call: .init(phase: "inCall", peer: "post-1", callbackPending: false),
            registration: [.init(proxy: "sip:edge", state: "registered", detail: nil)],
            network: true,
            devices: [.init(name: "button", source: "stdin", present: true, detail: nil)],
            lastCall: .init(direction: "outgoing", peer: "post-1", startedAt: Date(timeIntervalSince1970: 0), outcome: "answered", durationSeconds: 3),
            store: .init(healthy: true, path: "/tmp/x.sqlite", detail: nil),
            media: .init(audioPacketsSent: 1, audioPacketsReceived: 1, videoFramesSent: 1, videoFramesDecoded: 1, authenticationFailures: 0),
            faults: []
        )
        let json = try JSONSerialization.jsonObject(with: ControlCoding.encoder.encode(report)) as! [String: Any]
        #expect(Set(json.keys) == ["daemon", "call", "registration", "network", "devices", "lastCall", "store", "media", "faults"])
        #expect(Set((json["daemon"] as! [String: Any]).keys) == ["version", "pid", "startedAt", "uptimeSeconds", "demo"])
        #expect(Set((json["call"] as! [String: Any]).keys) == ["phase", "callbackPending", "peer"])
        #expect(Set(((json["devices"] as! [Any])[0] as! [String: Any]).keys) == ["name", "source", "present"])
        #expect(Set((json["lastCall"] as! [String: Any]).keys) == ["direction", "peer", "startedAt", "outcome", "durationSeconds"])
        #expect(Set((json["media"] as! [String: Any]).keys) == ["audioPacketsSent", "audioPacketsReceived", "videoFramesSent", "videoFramesDecoded", "authenticationFailures"])
        #expect((json["daemon"] as! [String: Any])["startedAt"] as? String == "1970-01-01T00:00:00Z")
    }

    @Test func aFailedRegistrationIsAFaultButFirstTryingIsNot() {
        let faults = StatusReport.registrationFaults([
            .init(proxy: "sip:edge-1.example:5061;transport=tls", state: "registered", detail: "expires in 600 s"),
            .init(proxy: "sip:edge-2.example:5061;transport=tls", state: "failed", detail: "TLS: certificate not trusted"),
            .init(proxy: "sip:edge-3.example:5061;transport=tls", state: "registering", detail: nil),
        ])
        #expect(faults == ["registration with sip:edge-2.example:5061;transport=tls failed: TLS: certificate not trusted; retrying"])
    }

    @Test func aClientWithNoDaemonSaysSoPlainly() {
        let client = ControlClient(socketPath: "/tmp/beeldzorg-test-\(getpid())-absent.sock")
        do {
            _ = try client.send(ControlRequest(cmd: .status))
            Issue.record("a request to nothing succeeded")
        } catch let failure as ControlClient.Failure {
            #expect(failure.description.hasPrefix("beeldzorgd is not running"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}
