import Foundation
import Testing

@testable import SIP

/// INVITEs inside an established dialog (a post putting the tablet on hold, a session refresh):
/// 200 with our session description and mirrored directions instead of 488.
@Suite(.serialized) struct ReinviteTests {
    static let offerSDP = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 50000, videoPort: 50002, srtpRequired: false)
        .makeOffer().description

    /// The peer's request with the dialog's identifiers.
    func request(_ method: String, port: Int, peer: RawPeer, cseq: Int, branch: String, toTag: String?,
                 body: [UInt8] = []) -> [UInt8] {
        var text = """
            \(method) sip:tablet@127.0.0.1:\(port) SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bK\(branch)\r
            From: "Post" <sip:post@127.0.0.1:\(peer.port)>;tag=posttag\r
            To: <sip:tablet@127.0.0.1:\(port)>\(toTag.map { ";tag=\($0)" } ?? "")\r
            Call-ID: reinvite-1\r
            CSeq: \(cseq) \(method)\r
            Contact: <sip:post@127.0.0.1:\(peer.port)>\r
            Max-Forwards: 70\r

            """
        if !body.isEmpty { text += "Content-Type: application/sdp\r\n" }
        text += "Content-Length: \(body.count)\r\n\r\n"
        return Array(text.utf8) + body
    }

    func sdp(_ body: [UInt8]) throws -> SessionDescription { try SessionDescription(parsing: body) }

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
}
