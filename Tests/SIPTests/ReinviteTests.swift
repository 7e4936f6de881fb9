import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import SIP

/// INVITEs inside an established dialog (a post putting the tablet on hold, a session refresh):
/// 200 with our session description and mirrored directions instead of 488.
@Suite(.serialized) struct ReinviteTests {
    static let offerSDP = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 50000, videoPort: 50002, srtpRequired: false)
        .makeOffer().description

    /// The peer's request with the dialog's identifiers.
    func request(_ method: String, port: Int, peer: RawPeer, cseq: Int, branch: String, toTag: String?,
                 body: [UInt8] = [], contactPort: Int? = nil) -> [UInt8] {
        var text = """
            \(method) sip:tablet@127.0.0.1:\(port) SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bK\(branch)\r
            From: "Post" <sip:post@127.0.0.1:\(peer.port)>;tag=posttag\r
            To: <sip:tablet@127.0.0.1:\(port)>\(toTag.map { ";tag=\($0)" } ?? "")\r
            Call-ID: reinvite-1\r
            CSeq: \(cseq) \(method)\r
            Contact: <sip:post@127.0.0.1:\(contactPort ?? peer.port)>\r
            Max-Forwards: 70\r

            """
        if !body.isEmpty { text += "Content-Type: application/sdp\r\n" }
        text += "Content-Length: \(body.count)\r\n\r\n"
        return Array(text.utf8) + body
    }

    func sdp(_ body: [UInt8]) throws -> SessionDescription { try SessionDescription(parsing: body) }

    /// A UDP port on loopback that was free a moment ago.
    static func freeUDPPort() async throws -> Int {
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }

    @Test func holdAndResumeAreAnsweredWithOurSessionAndMirroredDirections() async throws {
        let peer = try await RawPeer.bind()
        let (agent, events, port) = try await makeAgent()
        // The peer calls, the agent answers, the peer acknowledges: the dialog is up.
        try await peer.send(request("INVITE", port: port, peer: peer, cseq: 1, branch: "i1", toTag: nil,
                                    body: Self.offerSDP.serialized()), to: port)
        guard case .incoming(let call, _, _, let offer) = try await events.next("incoming") else {
            Issue.record("no incoming call")
            return
        }
        let (answer, _) = try MediaNegotiator(localAddress: "127.0.0.1", audioPort: 40000, videoPort: 40002,
                                              srtpRequired: false).answer(offer)
        await agent.answer(call, with: answer)
        let ok = try await peer.nextResponse(status: 200)
        let toTag = try #require(SIPNameAddress(ok.headers["To"]!)?.tag)
        try await peer.send(request("ACK", port: port, peer: peer, cseq: 1, branch: "a1", toTag: toTag), to: port)

        // Hold: the post offers sendonly; we answer recvonly with our own ports, version + 1.
        var hold = Self.offerSDP
        hold.sessionVersion = String((UInt64(hold.sessionVersion) ?? 0) + 1)
        for index in hold.media.indices { hold.media[index].attributes.append(SDPAttribute("sendonly")) }
        let holdInvite = request("INVITE", port: port, peer: peer, cseq: 2, branch: "h1", toTag: toTag,
                                 body: hold.serialized())
        try await peer.send(holdInvite, to: port)
        let held = try await peer.nextResponse(status: 200)
        #expect(held.headers["CSeq"] == "2 INVITE")
        let heldSDP = try sdp(held.body)
        #expect(heldSDP.media.count == answer.media.count)
        #expect(heldSDP.media.allSatisfy { $0.hasAttribute("recvonly") && !$0.hasAttribute("sendrecv") })
        #expect(heldSDP.media.map(\.port) == answer.media.map(\.port))
        #expect(heldSDP.sessionID == answer.sessionID)
        #expect(UInt64(heldSDP.sessionVersion) == (UInt64(answer.sessionVersion) ?? 0) + 1)
        try await peer.send(request("ACK", port: port, peer: peer, cseq: 2, branch: "a2", toTag: toTag), to: port)

        // A retransmitted re-INVITE gets the same answer, not a newer version.
        try await peer.send(holdInvite, to: port)
        let again = try await peer.nextResponse(status: 200)
        #expect(again.body == held.body)

        // Resume: sendrecv again, one version higher still.
        try await peer.send(request("INVITE", port: port, peer: peer, cseq: 3, branch: "r1", toTag: toTag,
                                    body: Self.offerSDP.serialized()), to: port)
        let resumed = try sdp(try await peer.nextResponse(status: 200).body)
        #expect(resumed.media.allSatisfy { $0.hasAttribute("sendrecv") })
        #expect(UInt64(resumed.sessionVersion) == (UInt64(heldSDP.sessionVersion) ?? 0) + 1)

        // A session refresh without SDP: our current description as the offer.
        try await peer.send(request("INVITE", port: port, peer: peer, cseq: 4, branch: "s1", toTag: toTag), to: port)
        #expect(try sdp(try await peer.nextResponse(status: 200).body) == resumed)

        // An offer that adds a stream cannot be taken mid-call: 488, and the call goes on.
        var bigger = Self.offerSDP
        bigger.media.append(bigger.media[0])
        try await peer.send(request("INVITE", port: port, peer: peer, cseq: 5, branch: "b1", toTag: toTag,
                                    body: bigger.serialized()), to: port)
        _ = try await peer.nextResponse(status: 488)
        // A re-INVITE for a dialog we do not have: 481.
        try await peer.send(request("INVITE", port: port, peer: peer, cseq: 6, branch: "u1", toTag: "nosuchtag",
                                    body: hold.serialized()), to: port)
        _ = try await peer.nextResponse(status: 481)

        #expect(!(await events.all()).contains { if case .remoteHungUp = $0 { true } else { false } })
        await agent.hangUp(call)
        _ = try await peer.nextRequest(.bye)
        await agent.shutdown()
        await peer.close()
    }

    /// RFC 3261 §13.3.1.4 with sipp (a peer nobody here wrote): sipp calls, sends a re-INVITE
    /// and never ACKs our 200. The 200 comes again at T1, 2·T1, 4·T1 … capped at T2 (counted by
    /// sipp's own message log), and after 64·T1 the call ends with our BYE, as for an initial
    /// INVITE whose 200 is never acknowledged; the owner hears `.remoteHungUp`.
    @Test func ourTwoHundredToAReinviteIsRetransmittedUntilTheAckAndTheCallEndsWithout() async throws {
        let scenario = """
            <?xml version="1.0" encoding="ISO-8859-1" ?>
            <scenario name="re-INVITE whose 200 is never acknowledged">
              <send retrans="500">
                <![CDATA[
                  INVITE sip:tablet@[remote_ip]:[remote_port] SIP/2.0
                  Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
                  From: "Post" <sip:post@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
                  To: <sip:tablet@[remote_ip]:[remote_port]>
                  Call-ID: [call_id]
                  CSeq: 1 INVITE
                  Contact: <sip:post@[local_ip]:[local_port]>
                  Max-Forwards: 70
                  Content-Type: application/sdp
                  Content-Length: [len]

                  v=0
                  o=post 1 1 IN IP4 [local_ip]
                  s=-
                  c=IN IP4 [local_ip]
                  t=0 0
                  m=audio [media_port] RTP/AVP 0
                  a=rtpmap:0 PCMU/8000

                ]]>
              </send>
              <recv response="100" optional="true"/>
              <recv response="180" optional="true"/>
              <recv response="200" rrs="true"/>
              <send>
                <![CDATA[
                  ACK sip:tablet@[remote_ip]:[remote_port] SIP/2.0
                  Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
                  From: "Post" <sip:post@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
                  To: <sip:tablet@[remote_ip]:[remote_port]>[peer_tag_param]
                  Call-ID: [call_id]
                  CSeq: 1 ACK
                  Max-Forwards: 70
                  Content-Length: 0

                ]]>
              </send>
              <pause milliseconds="200"/>
              <send>
                <![CDATA[
                  INVITE sip:tablet@[remote_ip]:[remote_port] SIP/2.0
                  Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
                  From: "Post" <sip:post@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
                  To: <sip:tablet@[remote_ip]:[remote_port]>[peer_tag_param]
                  Call-ID: [call_id]
                  CSeq: 2 INVITE
                  Contact: <sip:post@[local_ip]:[local_port]>
                  Max-Forwards: 70
                  Content-Type: application/sdp
                  Content-Length: [len]

                  v=0
                  o=post 1 2 IN IP4 [local_ip]
                  s=-
                  c=IN IP4 [local_ip]
                  t=0 0
                  m=audio [media_port] RTP/AVP 0
                  a=rtpmap:0 PCMU/8000
                  a=sendonly

                ]]>
              </send>
              <label id="unacknowledged"/>
              <recv response="200" optional="true" next="unacknowledged"/>
              <recv request="BYE" timeout="15000"/>
              <send>
                <![CDATA[
                  SIP/2.0 200 OK
                  [last_Via:]
                  [last_From:]
                  [last_To:]
                  [last_Call-ID:]
                  [last_CSeq:]
                  Content-Length: 0

                ]]>
              </send>
            </scenario>
            """
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("reinvite-noack-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("scenario.xml")
        let messages = directory.appendingPathComponent("messages.log")
        try scenario.write(to: file, atomically: true, encoding: .utf8)
        // T1 100 ms, T2 800 ms: 200s at 0, 0.1, 0.3, 0.7, 1.5, then every 0.8 s; BYE at 6.4 s.
        let (agent, events, port) = try await makeAgent(t1: .milliseconds(100))
        let sipPort = try await Self.freeUDPPort()
        let sipp = try SippTests.Sipp(arguments: [
            "-sf", file.path, "127.0.0.1:\(port)", "-p", "\(sipPort)", "-m", "1", "-trace_msg",
            "-message_file", messages.path,
        ])
        defer { sipp.stop() }
        guard case .incoming(let call, _, _, let offer) = try await events.next("INVITE from sipp") else {
            Issue.record("no incoming call: \(sipp.stderr)")
            return
        }
        let (answer, _) = try agent.mediaNegotiator(audioPort: 40000, videoPort: nil).answer(offer)
        let answeredAt = ContinuousClock.now
        await agent.answer(call, with: answer)
        #expect(try await events.next("the call ended for want of an ACK", timeout: .seconds(20)) == .remoteHungUp(call))
        let ended = ContinuousClock.now - answeredAt
        let status = try await sipp.exitStatus()
        #expect(status == 0, "sipp exit \(status): \(sipp.stderr)")
        await agent.shutdown()

        // sipp's log: one block per message sent or received (retransmissions included), each
        // after a dashed line with its time of day.
        let log = try String(contentsOf: messages, encoding: .utf8)
        let blocks = log.components(separatedBy: "-----------------------------------------------").map { block in
            let time = block.split(separator: "\n").first?.split(separator: " ").last.map { clock in
                clock.split(separator: ":").reduce(0.0) { $0 * 60 + (Double($1) ?? 0) }
            } ?? 0
            return (time: time, text: block)
        }
        let reinviteOKs = blocks.filter {
            $0.text.contains("message received") && $0.text.contains("SIP/2.0 200") && $0.text.contains("CSeq: 2 INVITE")
        }
        let gaps = zip(reinviteOKs.dropFirst(), reinviteOKs).map { $0.time - $1.time }
        print("re-INVITE 200 sent \(reinviteOKs.count) times, gaps \(gaps.map { ($0 * 100).rounded() / 100 }) s; call ended after \(ended)")
        // T1 doubling up to T2: 0.1, 0.2, 0.4, 0.8, 0.8 … s apart (never sooner; later on a
        // loaded machine), which fits 11 sends into 64·T1; without doubling it would be 64.
        let nominal = [0.1, 0.2, 0.4] + Array(repeating: 0.8, count: 20)
        #expect(reinviteOKs.count >= 6 && reinviteOKs.count <= 12, "\(reinviteOKs.count) 200s")
        for (gap, expected) in zip(gaps, nominal) { #expect(gap >= expected * 0.9, "gaps \(gaps)") }
        // They stopped with the BYE: no 200 after it.
        let byeAt = try #require(blocks.first { $0.text.contains("message received") && $0.text.contains("BYE sip:") }?.time)
        #expect(reinviteOKs.allSatisfy { $0.time <= byeAt })
        #expect(ended >= .seconds(6), "the call ended after \(ended), before 64·T1")
    }

    /// The owner's `ReofferHandler` decides: its answer goes out in the 200 and, when it says
    /// the media changed, `.mediaChanged` follows with the offer; its refusal goes out as 488 (a
    /// retransmission gets the same) and the call goes on. The re-INVITE's Contact becomes the
    /// remote target: our BYE goes there.
    @Test func theOwnersHandlerAnswersOrRefusesAndTheContactRefreshesTheTarget() async throws {
        let peer = try await RawPeer.bind()
        let moved = try await RawPeer.bind()  // where the post's new Contact points
        let (agent, events, port) = try await makeAgent()
        try await peer.send(request("INVITE", port: port, peer: peer, cseq: 1, branch: "i1", toTag: nil,
                                    body: Self.offerSDP.serialized()), to: port)
        guard case .incoming(let call, _, _, let offer) = try await events.next("incoming") else {
            Issue.record("no incoming call")
            return
        }
        let (answer, _) = try MediaNegotiator(localAddress: "127.0.0.1", audioPort: 40000, videoPort: 40002,
                                              srtpRequired: false).answer(offer)
        await agent.answer(call, with: answer)
        let toTag = try #require(SIPNameAddress(try await peer.nextResponse(status: 200).headers["To"]!)?.tag)
        try await peer.send(request("ACK", port: port, peer: peer, cseq: 1, branch: "a1", toTag: toTag), to: port)

        var next = answer
        next.sessionVersion = "77"
        let ours = next
        await agent.setReofferHandler { _, offer, _ in
            offer.media.first?.port == 50000 ? .refuse(status: 488) : .answer(ours, mediaChanged: true)
        }
        // Refused: 488, again for a retransmission, and no event.
        let refused = request("INVITE", port: port, peer: peer, cseq: 2, branch: "r1", toTag: toTag,
                              body: Self.offerSDP.serialized())
        try await peer.send(refused, to: port)
        _ = try await peer.nextResponse(status: 488)
        try await peer.send(refused, to: port)
        _ = try await peer.nextResponse(status: 488)
        // Answered with the handler's description, from a new Contact.
        var movedOffer = Self.offerSDP
        movedOffer.media[0].port = 50010
        try await peer.send(request("INVITE", port: port, peer: peer, cseq: 3, branch: "m1", toTag: toTag,
                                    body: movedOffer.serialized(), contactPort: moved.port), to: port)
        let ok = try await peer.nextResponse(status: 200)
        #expect(try sdp(ok.body) == ours)
        try await peer.send(request("ACK", port: port, peer: peer, cseq: 3, branch: "a3", toTag: toTag), to: port)
        guard case .mediaChanged(call, let remote) = try await events.next("media changed", where: {
            if case .mediaChanged = $0 { true } else { false }
        }) else {
            Issue.record("no mediaChanged")
            return
        }
        #expect(remote.media[0].port == 50010)
        #expect(!(await events.all()).contains { if case .remoteHungUp = $0 { true } else { false } })
        await agent.hangUp(call)
        let (bye, _) = try await moved.nextRequest(.bye)
        #expect(bye.uri == "sip:post@127.0.0.1:\(moved.port)")
        await agent.shutdown()
        await peer.close()
        await moved.close()
    }
}
