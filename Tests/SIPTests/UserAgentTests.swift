import DemoCentrale
import NIOCore
import NIOPosix
import Testing

@testable import SIP

/// The user agent against the demo centrale and against hand-written peers, all on loopback.
@Suite struct UserAgentTests {
    private func centrale(_ posts: [DemoPostBehaviour], ringDelay: Duration = .milliseconds(200)) async throws
        -> (DemoCentrale, Recorder<DemoCentraleEvent>, [Int])
    {
        let centrale = DemoCentrale(posts: posts, ringDelay: ringDelay, group: MultiThreadedEventLoopGroup.singleton,
                                    logger: testLogger("centrale"))
        let ports = try await centrale.start()
        return (centrale, Recorder(centrale.events), ports)
    }

    @Test func callRingAnswerEchoAndHangUp() async throws {
        let (centrale, centraleEvents, ports) = try await centrale([.answer])
        let (agent, events, _) = try await makeAgent()
        let media = try await RawPeer.bind()  // stands in for the tablet's RTP socket
        let offer = MediaNegotiator(localAddress: "127.0.0.1", audioPort: media.port, videoPort: media.port,
                                    srtpRequired: true).makeOffer()

        let call = await agent.invite(to: "sip:post@127.0.0.1:\(ports[0])", offer: offer.description)
        let progress = try await events.next("180") { $0 == .progress(call, status: 180) }
        #expect(progress == .progress(call, status: 180))
        let answered = try await events.next("answer")
        guard case .answered(call, let remote) = answered else {
            Issue.record("expected answered, got \(answered)")
            return
        }
        let negotiated = try MediaNegotiator.readAnswer(remote, for: offer)
        #expect(negotiated.audio?.codec == .opus)
        #expect(negotiated.isSecure)
        // The centrale answers with our own key so its echo decrypts on our side.
        #expect(negotiated.audio?.receiveKey == negotiated.audio?.sendKey)

        // A real round trip through the echo port.
        let before = centrale.echoedPackets
        let packet: [UInt8] = [0x80, 111, 0, 1] + Array(repeating: 7, count: 20)
        try await media.send(packet, to: negotiated.audio!.remotePort)
        let echoed = try await media.received.next("echo") { $0.bytes == packet }
        #expect(echoed.bytes == packet)
        #expect(centrale.echoedPackets == before + 1)

        await agent.hangUp(call)
        _ = try await centraleEvents.next("BYE at centrale") { $0 == .tabletHungUp(post: 0) }
        await agent.shutdown()
        await centrale.shutdown()
        await media.close()
    }

    @Test func cancelWhileRinging() async throws {
        let (centrale, centraleEvents, ports) = try await centrale([.noAnswer])
        let (agent, events, _) = try await makeAgent()
        let offer = agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer()
        let call = await agent.invite(to: "sip:post@127.0.0.1:\(ports[0])", offer: offer.description)
        _ = try await events.next("180") { $0 == .progress(call, status: 180) }
        await agent.cancel(call)
        let failed = try await events.next("final") { if case .failed = $0 { true } else { false } }
        #expect(failed == .failed(call, status: 487, reason: "Request Terminated"))
        _ = try await centraleEvents.next("CANCEL at centrale") { $0 == .cancelled(post: 0) }
        await agent.shutdown()
        await centrale.shutdown()
    }

    @Test func busyPost() async throws {
        let (centrale, _, ports) = try await centrale([.busy])
        let (agent, events, _) = try await makeAgent()
        let call = await agent.invite(to: "sip:post@127.0.0.1:\(ports[0])",
                                      offer: agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer().description)
        let failed = try await events.next("486")
        #expect(failed == .failed(call, status: 486, reason: "Busy Here"))
        await agent.shutdown()
        await centrale.shutdown()
    }

    @Test func unreachablePostCostsOnlyTheRingTimeout() async throws {
        let (centrale, _, ports) = try await centrale([.unreachable])
        let (agent, events, _) = try await makeAgent(t1: .milliseconds(500))  // production T1
        let clock = ContinuousClock()
        let start = clock.now
        let call = await agent.invite(to: "sip:post@127.0.0.1:\(ports[0])",
                                      offer: agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer().description,
                                      ringTimeout: .milliseconds(1500))
        let failed = try await events.next("timeout", timeout: .seconds(5))
        // Silence from a post dialled directly is given up after silentPeerTimeout (1 s), not
        // its ring timeout, let alone Timer B's 32 s.
        #expect(failed == .failed(call, status: nil, reason: "no response"))
        #expect(clock.now - start < .milliseconds(1450))
        await agent.shutdown()
        await centrale.shutdown()
    }

    @Test func aPostThatRingsKeepsItsWholeRingTimeout() async throws {
        let peer = try await RawPeer.bind()
        let (agent, events, _) = try await makeAgent(t1: .milliseconds(500))  // production timers
        let clock = ContinuousClock()
        let start = clock.now
        let call = await agent.invite(to: "sip:peer@127.0.0.1:\(peer.port)",
                                      offer: agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer().description,
                                      ringTimeout: .milliseconds(2500))
        let (invite, source) = try await peer.nextRequest(.invite, timeout: .seconds(2))
        try await peer.send(response(to: invite, status: 180, toTag: "p1"), to: source)
        _ = try await events.next("180") { $0 == .progress(call, status: 180) }
        let failed = try await events.next("ring timeout", timeout: .seconds(5)) {
            if case .failed = $0 { true } else { false }
        }
        #expect(failed == .failed(call, status: nil, reason: "ring timeout"))
        // Counted from the first send: not cut short at 1 s, not restarted at the 180.
        let elapsed = clock.now - start
        #expect(elapsed >= .milliseconds(2400), "failed after \(elapsed)")
        #expect(elapsed < .milliseconds(2500) + .seconds(1), "failed after \(elapsed)")
        _ = try await peer.nextRequest(.cancel)
        await agent.shutdown()
        await peer.close()
    }

    @Test func centraleCallsTheTablet() async throws {
        let (centrale, centraleEvents, _) = try await centrale([])
        let (agent, events, port) = try await makeAgent()
        let outcome = Task { await centrale.callTablet(uri: "sip:tablet@127.0.0.1:\(port)", displayName: "Zorgcentrale") }
        let incoming = try await events.next("incoming")
        guard case .incoming(let call, let fromURI, let displayName, let offer) = incoming else {
            Issue.record("expected incoming, got \(incoming)")
            return
        }
        #expect(displayName == "Zorgcentrale")
        #expect(fromURI.hasPrefix("sip:centrale@127.0.0.1:"))
        await agent.ring(call)
        let (answer, _) = try agent.mediaNegotiator(audioPort: 40000, videoPort: 40002).answer(offer)
        await agent.answer(call, with: answer)
        #expect(await outcome.value == .answered)
        await centrale.hangUpTabletCalls()
        let hungUp = try await events.next("BYE")
        #expect(hungUp == .remoteHungUp(call))
        _ = centraleEvents
        await agent.shutdown()
        await centrale.shutdown()
    }

    @Test func tabletRejectsAnIncomingCall() async throws {
        let (centrale, _, _) = try await centrale([])
        let (agent, events, port) = try await makeAgent()
        let outcome = Task { await centrale.callTablet(uri: "sip:tablet@127.0.0.1:\(port)", displayName: "Onbekend") }
        guard case .incoming(let call, _, _, _) = try await events.next("incoming") else {
            Issue.record("expected incoming")
            return
        }
        await agent.reject(call, status: 403, reason: "Forbidden")
        #expect(await outcome.value == .failed(status: 403, reason: "Forbidden"))
        await agent.shutdown()
        await centrale.shutdown()
    }

    @Test func probeTellsAliveFromDead() async throws {
        let (centrale, _, ports) = try await centrale([.answer, .unreachable])
        let (agent, _, _) = try await makeAgent()
        #expect(await agent.probe("sip:post@127.0.0.1:\(ports[0])", timeout: .seconds(2)) == 200)
        #expect(await agent.probe("sip:post@127.0.0.1:\(ports[1])", timeout: .milliseconds(500)) == nil)
        await agent.shutdown()
        await centrale.shutdown()
    }

    // MARK: Hand-written peers

    @Test func timerARetransmitsUntilProvisional() async throws {
        let peer = try await RawPeer.bind()
        let (agent, events, _) = try await makeAgent(t1: .milliseconds(50))
        let call = await agent.invite(to: "sip:peer@127.0.0.1:\(peer.port)",
                                      offer: agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer().description,
                                      ringTimeout: .seconds(5))
        // 0, 50, 150, 350 ms: four copies, each the same transaction.
        var copies: [SIPRequest] = []
        var source: SocketAddress?
        for _ in 0..<4 {
            let (invite, from) = try await peer.nextRequest(.invite, timeout: .seconds(2))
            copies.append(invite)
            source = from
        }
        #expect(Set(copies.map { $0.headers.values("Via").first! }).count == 1)
        try await peer.send(response(to: copies[0], status: 180, toTag: "p1"), to: source!)
        _ = try await events.next("180") { $0 == .progress(call, status: 180) }
        // After the provisional, no more copies. Without that rule, copies would go out at 750 and
        // 1550 ms; one copy already in flight when the 180 was handled is tolerated.
        let countAfter180 = await peer.received.all().count
        try await Task.sleep(for: .milliseconds(1300))
        #expect(await peer.received.all().count <= countAfter180 + 1)
        await agent.cancel(call)
        let (cancel, _) = try await peer.nextRequest(.cancel)
        #expect(cancel.headers.values("Via").first == copies[0].headers.values("Via").first)
        await agent.shutdown()
        await peer.close()
    }

    @Test func okAfterCancelIsAcknowledgedAndHungUp() async throws {
        let peer = try await RawPeer.bind()
        let (agent, events, _) = try await makeAgent()
        let offer = agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer()
        let call = await agent.invite(to: "sip:peer@127.0.0.1:\(peer.port)", offer: offer.description)
        let (invite, source) = try await peer.nextRequest(.invite)
        try await peer.send(response(to: invite, status: 180, toTag: "t9"), to: source)
        _ = try await events.next("180") { $0 == .progress(call, status: 180) }
        await agent.cancel(call)
        let (cancel, _) = try await peer.nextRequest(.cancel)
        // The callee answered just before the CANCEL arrived.
        let answerSDP = try MediaNegotiator(localAddress: "127.0.0.1", audioPort: 50000, videoPort: nil, srtpRequired: false)
            .answer(offer.description).answer
        try await peer.send(response(to: invite, status: 200, toTag: "t9", body: answerSDP.serialized(),
                                     contactPort: peer.port), to: source)
        try await peer.send(response(to: cancel, status: 200, toTag: "t9"), to: source)
        let (ack, _) = try await peer.nextRequest(.ack)
        #expect(ack.headers["To"]?.contains("tag=t9") == true)
        let (bye, byeSource) = try await peer.nextRequest(.bye)
        #expect(bye.headers["Call-ID"] == invite.headers["Call-ID"])
        try await peer.send(response(to: bye, status: 200, toTag: nil), to: byeSource)
        let final = try await events.next("final") { if case .failed = $0 { true } else { false } }
        #expect(final == .failed(call, status: nil, reason: "answered after cancel"))
        await agent.shutdown()
        await peer.close()
    }

    @Test func malformedRequestGets400AndGarbageIsDropped() async throws {
        let peer = try await RawPeer.bind()
        let (agent, _, port) = try await makeAgent()
        let bad = """
            OPTIONS sip:tablet@127.0.0.1 SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bKbad1\r
            From: <sip:x@127.0.0.1>;tag=1\r
            To: <sip:tablet@127.0.0.1>\r
            Call-ID: bad-1\r
            CSeq: 1 OPTIONS\r
            Content-Length: many\r
            \r

            """
        try await peer.send(Array(bad.utf8), to: port)
        let answer = try await peer.nextResponse()
        #expect(answer.status == 400)
        #expect(answer.headers["Call-ID"] == "bad-1")
        // Garbage gets no answer, and the agent still works afterwards.
        try await peer.send([0xFF, 0x00, 0x13, 0x37], to: port)
        try await peer.send(Array("INVITE sip:x SIP/2.0\r\nVia: broken\r\n\r\n".utf8), to: port)
        let options = bad.replacing("Content-Length: many", with: "Content-Length: 0").replacing("bad1", with: "ok2")
        try await peer.send(Array(options.utf8), to: port)
        let ok = try await peer.nextResponse()
        #expect(ok.status == 200)
        #expect(ok.headers.values("Via").first?.contains("ok2") == true)
        await agent.shutdown()
        await peer.close()
    }

    /// Issue 15: NIO's default datagram allocator read 2,048 bytes, so a valid OPTIONS of
    /// 2,100 bytes was dropped as "incompleteHeaders". Padded with headers (as many Via and
    /// Record-Route lines would) up to 12 KB, then with a body, to exactly `size` bytes.
    @Test(arguments: [2_100, 8_000, 60_000])
    func largeOptionsOverUDPAreAnswered(size: Int) async throws {
        let peer = try await RawPeer.bind()
        let (agent, _, port) = try await makeAgent()
        var head = """
            OPTIONS sip:tablet@127.0.0.1 SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bKbig\(size)\r
            Max-Forwards: 70\r
            From: <sip:x@127.0.0.1>;tag=1\r
            To: <sip:tablet@127.0.0.1>\r
            Call-ID: big-\(size)\r
            CSeq: 1 OPTIONS\r

            """
        var line = 0
        while head.utf8.count + 1_100 < min(size - 200, 12_000) {
            head += "X-Padding-\(line): " + String(repeating: "p", count: 1_000) + "\r\n"
            line += 1
        }
        head += "Content-Type: text/plain\r\n"
        // The body fills the rest; its Content-Length line's own width is part of the sum.
        var bodyCount = 0
        for _ in 0..<3 {
            bodyCount = size - head.utf8.count - "Content-Length: \(bodyCount)\r\n\r\n".utf8.count
        }
        let message = Array((head + "Content-Length: \(bodyCount)\r\n\r\n").utf8) + Array(repeating: UInt8(ascii: "b"), count: bodyCount)
        #expect(message.count == size)
        try await peer.send(message, to: port)
        let answer = try await peer.nextResponse(timeout: .seconds(5))
        #expect(answer.status == 200)
        #expect(answer.headers["Call-ID"] == "big-\(size)")
        await agent.shutdown()
        await peer.close()
    }

    @Test func incomingInviteRetransmissionsAndCancel() async throws {
        let peer = try await RawPeer.bind()
        let (agent, events, port) = try await makeAgent()
        let offer = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 50000, videoPort: nil, srtpRequired: false)
            .makeOffer().description.serialized()
        let headers = """
            Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bKinv1\r
            From: "Dochter" <sip:dochter@127.0.0.1:\(peer.port)>;tag=abc\r
            To: <sip:tablet@127.0.0.1:\(port)>\r
            Call-ID: inc-1\r
            Contact: <sip:dochter@127.0.0.1:\(peer.port)>\r
            Max-Forwards: 70\r

            """
        let invite = Array(("INVITE sip:tablet@127.0.0.1:\(port) SIP/2.0\r\n" + headers + "CSeq: 5 INVITE\r\n"
            + "Content-Type: application/sdp\r\nContent-Length: \(offer.count)\r\n\r\n").utf8) + offer
        try await peer.send(invite, to: port)
        #expect(try await peer.nextResponse().status == 100)
        guard case .incoming(let call, _, let name, _) = try await events.next("incoming") else {
            Issue.record("expected incoming")
            return
        }
        #expect(name == "Dochter")
        await agent.ring(call)
        #expect(try await peer.nextResponse().status == 180)
        // A retransmitted INVITE gets the last response again, not a second call.
        try await peer.send(invite, to: port)
        #expect(try await peer.nextResponse().status == 180)
        let cancel = Array(("CANCEL sip:tablet@127.0.0.1:\(port) SIP/2.0\r\n" + headers + "CSeq: 5 CANCEL\r\n"
            + "Content-Length: 0\r\n\r\n").utf8)
        try await peer.send(cancel, to: port)
        let cancelOK = try await peer.nextResponse()
        #expect(cancelOK.status == 200)
        #expect(SIPCSeq(cancelOK.headers["CSeq"]!)?.method == .cancel)
        let terminated = try await peer.nextResponse()
        #expect(terminated.status == 487)
        #expect(try await events.next("cancelled") == .remoteCancelled(call))
        // Without an ACK, the 487 is retransmitted.
        #expect(try await peer.nextResponse(status: 487).status == 487)
        let incomingCount = await events.all().filter { if case .incoming = $0 { true } else { false } }.count
        #expect(incomingCount == 1)
        await agent.shutdown()
        await peer.close()
    }

    @Test func inviteFloodIsBounded() async throws {
        let peer = try await RawPeer.bind()
        let (agent, _, port) = try await makeAgent()
        let offer = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 50000, videoPort: nil, srtpRequired: false)
            .makeOffer().description.serialized()
        for n in 0...UserAgent.maxCalls {
            let head = """
                INVITE sip:tablet@127.0.0.1:\(port) SIP/2.0\r
                Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bKflood\(n)\r
                From: <sip:x@127.0.0.1:\(peer.port)>;tag=f\(n)\r
                To: <sip:tablet@127.0.0.1:\(port)>\r
                Call-ID: flood-\(n)\r
                CSeq: 1 INVITE\r
                Content-Type: application/sdp\r
                Content-Length: \(offer.count)\r
                \r

                """
            try await peer.send(Array(head.utf8) + offer, to: port)
            // One at a time, so the 503 can only be for the last one.
            _ = try await peer.received.next("answer to INVITE \(n)") {
                $0.response?.headers["Call-ID"] == "flood-\(n)"
            }
        }
        let answers = await peer.received.all().compactMap(\.response)
        #expect(answers.filter { $0.status == 100 }.count == UserAgent.maxCalls)
        #expect(answers.filter { $0.status == 503 }.map { $0.headers["Call-ID"] } == ["flood-\(UserAgent.maxCalls)"])
        await agent.shutdown()
        await peer.close()
    }

    /// Ring-all as CallFlow drives it: INVITE every post at once, the first 2xx wins, CANCEL the
    /// rest; a dead post costs nothing extra. Exactly one call survives.
    @Test func ringAllFirstAnswerWins() async throws {
        let fast = try await centrale([.answer], ringDelay: .milliseconds(100))
        let slow = try await centrale([.answer], ringDelay: .seconds(3))
        let dead = try await centrale([.unreachable])
        let (agent, events, _) = try await makeAgent()
        let targets = [fast.2[0], slow.2[0], dead.2[0]].map { "sip:post@127.0.0.1:\($0)" }
        var handles: [CallHandle] = []
        for target in targets {
            let offer = agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer()
            handles.append(await agent.invite(to: target, offer: offer.description, ringTimeout: .seconds(10)))
        }
        let winner = try await events.next("first answer") { if case .answered = $0 { true } else { false } }
        if case .answered(let handle, _) = winner { #expect(handle == handles[0]) }
        for loser in handles.dropFirst() { await agent.cancel(loser) }
        // The ringing post gets CANCEL and 487; the dead one is given up at once.
        let slowFinal = try await events.next("slow post final") {
            if case .failed(handles[1], _, _) = $0 { true } else { false }
        }
        #expect(slowFinal == .failed(handles[1], status: 487, reason: "Request Terminated"))
        _ = try await slow.1.next("CANCEL at slow post") { $0 == .cancelled(post: 0) }
        // (Reported when cancelled, before the slow post's 487: look in the whole record.)
        #expect(await events.all().contains(.failed(handles[2], status: nil, reason: "cancelled")))
        // The slow post never answers after the CANCEL; only the fast post's call is up.
        let answered = await events.all().filter { if case .answered = $0 { true } else { false } }
        #expect(answered.count == 1)
        #expect(await slow.1.all().contains(.answered(post: 0)) == false)
        await agent.hangUp(handles[0])
        _ = try await fast.1.next("BYE at fast post") { $0 == .tabletHungUp(post: 0) }
        await agent.shutdown()
        for c in [fast.0, slow.0, dead.0] { await c.shutdown() }
    }

    /// A hand-written caller's INVITE to `port`.
    private func rawInvite(from peer: RawPeer, to port: Int, callID: String, body: [UInt8]) -> [UInt8] {
        let head = """
            INVITE sip:tablet@127.0.0.1:\(port) SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bK\(callID)\r
            From: <sip:x@127.0.0.1:\(peer.port)>;tag=caller\r
            To: <sip:tablet@127.0.0.1:\(port)>\r
            Call-ID: \(callID)\r
            CSeq: 1 INVITE\r
            Contact: <sip:x@127.0.0.1:\(peer.port)>\r
            Content-Type: application/sdp\r
            Content-Length: \(body.count)\r
            \r

            """
        return Array(head.utf8) + body
    }

    @Test func ourOKIsRetransmittedUntilACKAndAbandonedWithoutOne() async throws {
        let peer = try await RawPeer.bind()
        let (agent, events, port) = try await makeAgent(t1: .milliseconds(20))
        let offer = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 50000, videoPort: nil, srtpRequired: false)
            .makeOffer().description
        // First call: ACKed after the second copy of the 200.
        try await peer.send(rawInvite(from: peer, to: port, callID: "acked", body: offer.serialized()), to: port)
        guard case .incoming(let first, _, _, let firstOffer) = try await events.next("incoming") else { return }
        let answer = try agent.mediaNegotiator(audioPort: 40000, videoPort: nil).answer(firstOffer).answer
        await agent.answer(first, with: answer)
        let ok = try await peer.nextResponse(status: 200)
        _ = try await peer.nextResponse(status: 200)  // retransmission
        let toTag = SIPNameAddress(ok.headers["To"]!)!.tag!
        let ack = """
            ACK sip:tablet@127.0.0.1:\(port) SIP/2.0\r
            Via: SIP/2.0/UDP 127.0.0.1:\(peer.port);branch=z9hG4bKack1\r
            From: <sip:x@127.0.0.1:\(peer.port)>;tag=caller\r
            To: <sip:tablet@127.0.0.1:\(port)>;tag=\(toTag)\r
            Call-ID: acked\r
            CSeq: 1 ACK\r
            Content-Length: 0\r
            \r

            """
        try await peer.send(Array(ack.utf8), to: port)
        // A BYE outside any dialog gets 481; inside the dialog, 200 and remoteHungUp.
        let strayBye = ack.replacing("ACK sip", with: "BYE sip").replacing("1 ACK", with: "2 BYE")
            .replacing("Call-ID: acked", with: "Call-ID: nobody").replacing("ack1", with: "bye0")
        try await peer.send(Array(strayBye.utf8), to: port)
        #expect(try await peer.nextResponse(status: 481).status == 481)
        let okCount = await peer.received.all().filter { $0.response?.status == 200 }.count
        let bye = ack.replacing("ACK sip", with: "BYE sip").replacing("1 ACK", with: "2 BYE").replacing("ack1", with: "bye1")
        try await peer.send(Array(bye.utf8), to: port)
        #expect(try await events.next("BYE") == .remoteHungUp(first))
        // No 200 copies for the INVITE after the ACK (the one new 200 answers the BYE).
        let invite200s = await peer.received.all().filter {
            $0.response?.status == 200 && $0.response?.headers["CSeq"] == "1 INVITE"
        }.count
        #expect(invite200s <= okCount + 1)

        // Second call: never ACKed. After 64·T1 the agent gives up, reports it and sends BYE.
        try await peer.send(rawInvite(from: peer, to: port, callID: "unacked", body: offer.serialized()), to: port)
        guard case .incoming(let second, _, _, let secondOffer) = try await events.next("incoming 2") else { return }
        await agent.answer(second, with: try agent.mediaNegotiator(audioPort: 40002, videoPort: nil).answer(secondOffer).answer)
        #expect(try await events.next("abandoned", timeout: .seconds(5)) == .remoteHungUp(second))
        let (byeFromAgent, _) = try await peer.nextRequest(.bye)
        #expect(byeFromAgent.headers["Call-ID"] == "unacked")
        await agent.shutdown()
        await peer.close()
    }

    /// With `listen_host: 0.0.0.0`, Call-IDs carry the address the kernel uses toward the peer
    /// (or a random host part), never `@0.0.0.0`.
    @Test func callIDsOfAWildcardAgentNameARealHost() async throws {
        let peer = try await RawPeer.bind()
        let agent = UserAgent(
            configuration: UserAgentConfiguration(localHost: "0.0.0.0", user: "tablet", timerT1: .milliseconds(100)),
            group: MultiThreadedEventLoopGroup.singleton, logger: testLogger("tablet"))
        _ = try await agent.start()
        let events = Recorder(agent.events)
        let offer = agent.mediaNegotiator(audioPort: 40000, videoPort: nil).makeOffer()
        let call = await agent.invite(to: "sip:post@127.0.0.1:\(peer.port)", offer: offer.description)
        let (invite, _) = try await peer.nextRequest(.invite)
        #expect(invite.headers["Call-ID"]?.hasSuffix("@127.0.0.1") == true, "\(invite.headers["Call-ID"] ?? "")")
        #expect(call.callID == invite.headers["Call-ID"])
        async let probed = agent.probe("sip:post@127.0.0.1:\(peer.port)", timeout: .milliseconds(300))
        let (options, _) = try await peer.nextRequest(.options)
        #expect(options.headers["Call-ID"]?.hasSuffix("@127.0.0.1") == true, "\(options.headers["Call-ID"] ?? "")")
        _ = await probed
        // No address to name (the URI does not resolve): a random host part, not 0.0.0.0.
        let lost = await agent.invite(to: "sip:post@no-such-host.invalid", offer: offer.description)
        #expect(!lost.callID.contains("0.0.0.0"), "\(lost.callID)")
        _ = try await events.next("the unusable URI fails", where: { if case .failed(lost, _, _) = $0 { true } else { false } })
        await agent.shutdown()
        await peer.close()
    }
}
