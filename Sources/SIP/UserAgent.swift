public import Logging
public import NIOCore

/// Settings for one SIP user agent.
public struct UserAgentConfiguration: Sendable {
    /// The transport this agent listens on and sends with. TLS comes later, as a third case.
    public enum Transport: String, Sendable {
        case udp, tcp, tls
    }

    /// For `.tls`: the CA file that must have issued the server's certificate (no system roots)
    /// and the host name it must carry, unless an `EdgeProxy` names its own.
    public var tls: TLSTrust?
    /// RFC 5626 outbound registration at one or two edge proxies; nil = no REGISTER.
    public var registration: RegistrationConfiguration?

    public var transport: Transport
    /// The address we bind to and put in Via/Contact (loopback in tests and the demo).
    public var localHost: String
    /// 0 = any free port.
    public var localPort: Int
    public var user: String
    /// The host part of our address of record, `sip:user@domain`: what the tablet's own
    /// `From` says (INVITE, OPTIONS, REGISTER), so the centrale sees the client, not an IP
    /// address. Contact keeps the real address. nil: the registration's domain, else (a bare
    /// agent in tests and the demo) our own address.
    public var domain: String?
    public var displayName: String?
    /// Whether media must be SRTP; read by `mediaNegotiator(audioPort:videoPort:)`.
    public var srtpRequired: Bool
    /// RFC 3261 T1 (RTT estimate) and T2; only tests shorten them.
    public var timerT1: Duration
    public var timerT2: Duration
    /// A post dialled directly over UDP (no edge proxy) that answers an INVITE with nothing at
    /// all — not even 100 Trying or 180 — within this time is taken for dead and the attempt
    /// fails ("no response"), so a hunt moves on instead of spending the post's whole ring
    /// timeout (issue 3: ≤ 1.5 s to ringing with a dead post). A live user agent answers in
    /// milliseconds; Timer A still retransmits meanwhile. Only used with a ring timeout.
    public var silentPeerTimeout: Duration
    public var userAgentHeader: String
    /// With `.tcp`: limits on the connections the listener accepts (count, per address, idle
    /// and header deadlines), so a flood cannot take the daemon's descriptors.
    public var streamServerLimits: StreamServerLimits = .default

    public init(
        localHost: String = "127.0.0.1", localPort: Int = 0, user: String, displayName: String? = nil,
        srtpRequired: Bool = false, timerT1: Duration = .milliseconds(500), timerT2: Duration = .seconds(4),
        userAgentHeader: String = "Beeldzorg", transport: Transport = .udp, tls: TLSTrust? = nil,
        registration: RegistrationConfiguration? = nil, silentPeerTimeout: Duration = .seconds(1),
        domain: String? = nil
    ) {
        self.silentPeerTimeout = silentPeerTimeout
        self.domain = domain
        self.tls = tls
        self.registration = registration
        self.transport = transport
        self.localHost = localHost
        self.localPort = localPort
        self.user = user
        self.displayName = displayName
        self.srtpRequired = srtpRequired
        self.timerT1 = timerT1
        self.timerT2 = timerT2
        self.userAgentHeader = userAgentHeader
    }
}

/// Identifies one call (one INVITE dialog) of a user agent.
public struct CallHandle: Hashable, Sendable, CustomStringConvertible {
    public let id: UInt64
    /// The SIP Call-ID, for logs and the call log.
    public let callID: String
    public var description: String { "call#\(id)" }
}

/// What a user agent reports to its owner (the daemon, which feeds CallFlow).
public enum UserAgentEvent: Sendable, Equatable {
    /// A provisional response (180, 183) to our INVITE.
    case progress(CallHandle, status: Int)
    /// The callee answered (2xx, ACK sent); `remote` is its SDP answer.
    case answered(CallHandle, remote: SessionDescription)
    /// Our INVITE ended without a call: a final error response (`status`), or no response /
    /// our ring timeout / our cancel (`status` nil). Exactly one of answered/failed per INVITE.
    case failed(CallHandle, status: Int?, reason: String)
    /// Someone calls us. Answer with `answer`, refuse with `reject`; `ring` sends 180.
    case incoming(CallHandle, fromURI: String, displayName: String?, offer: SessionDescription)
    /// The caller cancelled before we answered.
    case remoteCancelled(CallHandle)
    /// The other side sent BYE.
    case remoteHungUp(CallHandle)
    /// Our 200 to a re-INVITE went out with an answer the owner's `ReofferHandler` built with
    /// `mediaChanged: true` (a new address, port, key or codec, hold or resume): apply it now.
    /// `remote` is the re-INVITE's offer.
    case mediaChanged(CallHandle, remote: SessionDescription)
}

/// What the owner makes of an offer in a re-INVITE (see `UserAgent.setReofferHandler`).
public enum ReofferDecision: Sendable, Equatable {
    /// Answer 200 with this description; with `mediaChanged`, report `.mediaChanged` once sent.
    case answer(SessionDescription, mediaChanged: Bool)
    /// Refuse it (488 for an offer we cannot take); the call goes on as it was.
    case refuse(status: Int)
}

/// Decides on a re-INVITE's offer: the call, the offer and our description as last sent.
/// Called on the user agent's actor, so it must not block for long (binding sockets is fine).
public typealias ReofferHandler = @Sendable (CallHandle, _ offer: SessionDescription, _ current: SessionDescription)
    -> ReofferDecision

/// Answers an incoming MESSAGE with a status code (200 takes it).
public typealias MessageHandler = @Sendable (SIPRequest) -> Int

/// An RFC 3261 user agent over UDP on SwiftNIO: client and server INVITE transactions with
/// retransmission, CANCEL, BYE both ways, OPTIONS. Media is not its business: callers build
/// SDP with `MediaNegotiator` and pass it in.
///
/// All protocol state lives on this actor; timers are tasks that report back to it and are
/// ignored if they were superseded (each carries a token).
public actor UserAgent {
    public nonisolated let configuration: UserAgentConfiguration
    public nonisolated let events: AsyncStream<UserAgentEvent>
    private let eventContinuation: AsyncStream<UserAgentEvent>.Continuation
    private let group: any EventLoopGroup
    var logger: Logger
    private let parser = SIPMessageParser()

    var transport: (any SIPTransport)?
    private var receiveTask: Task<Void, Never>?
    var calls: [CallHandle: Call] = [:]
    /// Client INVITE transactions by branch.
    var inviteBranches: [String: CallHandle] = [:]
    /// Server INVITE transactions by Call-ID and branch.
    private var serverInvites: [String: CallHandle] = [:]
    /// Client non-INVITE transactions by branch and method.
    var transactions: [String: ClientTransaction] = [:]
    private var timers: [TimerKey: (token: UInt64, task: Task<Void, Never>)] = [:]
    private var nextToken: UInt64 = 0
    private var nextHandle: UInt64 = 1
    var stopped = false
    /// The TCP/TLS transport, when that is what we run on (flows, keepalives, server names).
    var streamTransport: TCPTransport?
    /// Registration state per edge proxy (see Registration.swift).
    var flows: [RegistrationFlow] = []
    public nonisolated let registrationEvents: AsyncStream<RegistrationEvent>
    let registrationContinuation: AsyncStream<RegistrationEvent>.Continuation
    private var transportEventTask: Task<Void, Never>?
    /// The peer of the message being built or answered: with a wildcard `localHost`, Via and
    /// Contact carry our address toward it (see `advertisedHost`).
    var addressPeer: SocketAddress?
    /// The owner's say on re-INVITE offers; nil = our description again, directions mirrored.
    private var reofferHandler: ReofferHandler?
    /// Rate limit for the log line about requests refused for coming from outside the flows.
    private var untrustedLog = RefusalLog()
    /// The owner's answer to MESSAGE requests; nil = 405.
    private var messageHandler: MessageHandler?

    public init(configuration: UserAgentConfiguration, group: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        (events, eventContinuation) = AsyncStream<UserAgentEvent>.makeStream()
        (registrationEvents, registrationContinuation) = AsyncStream<RegistrationEvent>.makeStream(
            bufferingPolicy: .bufferingNewest(256))
    }

    /// The port we listen on (0 before `start`).
    public var port: Int { transport?.localPort ?? 0 }

    /// A negotiator for this agent's address and SRTP policy.
    public nonisolated func mediaNegotiator(audioPort: Int, videoPort: Int?) -> MediaNegotiator {
        MediaNegotiator(localAddress: configuration.localHost, audioPort: audioPort, videoPort: videoPort,
                        srtpRequired: configuration.srtpRequired)
    }

    /// Lets the owner answer MESSAGE requests (RFC 3428) with the status it returns; without
    /// a handler they get 405. Called on this actor, so it must be quick.
    public func setMessageHandler(_ handler: MessageHandler?) {
        messageHandler = handler
    }

    /// Lets the owner answer offers in re-INVITEs (new media address, port, key or codec;
    /// hold and resume). Without a handler, `MediaNegotiator.reanswer` answers them.
    public func setReofferHandler(_ handler: ReofferHandler?) {
        reofferHandler = handler
    }

    /// Binds the socket (UDP) or listener (TCP); returns the bound port.
    public func start() async throws -> Int {
        precondition(transport == nil, "UserAgent.start called twice")
        let bound: any SIPTransport
        let datagrams: AsyncStream<InboundDatagram>
        switch configuration.transport {
        case .udp:
            let (udp, udpDatagrams, transportEvents) = try await UDPTransport.bind(
                host: configuration.localHost, port: configuration.localPort, group: group)
            (bound, datagrams) = (udp, udpDatagrams)
            transportEventTask = Task {
                for await event in transportEvents { self.transportEvent(event) }  // STUN keepalive answers
            }
        case .tcp, .tls:
            var tls: TLSClientSettings?
            if configuration.transport == .tls {
                guard let trust = configuration.tls else { throw ConfigurationError("transport tls needs a CA file (tls)") }
                tls = TLSClientSettings(caFile: trust.caFile, serverName: trust.serverName)
            }
            let (stream, streamDatagrams, transportEvents) = try await TCPTransport.bind(
                host: configuration.localHost, port: configuration.localPort, group: group, tls: tls,
                limits: configuration.streamServerLimits, logger: logger)
            (bound, datagrams) = (stream, streamDatagrams)
            streamTransport = stream
            transportEventTask = Task {
                for await event in transportEvents { self.transportEvent(event) }
            }
        }
        transport = bound
        let udp = bound
        logger[metadataKey: "sip.port"] = "\(udp.localPort)"
        receiveTask = Task {
            for await datagram in datagrams {
                self.receive(datagram)
            }
        }
        logger.info("SIP user agent listening", metadata: ["host": "\(configuration.localHost)"])
        try startRegistrations()
        return udp.localPort
    }

    /// Ends calls (best effort, one BYE/CANCEL each), stops timers, closes the socket and
    /// finishes `events`.
    public func shutdown() async {
        guard !stopped else { return }
        for call in calls.values {
            switch call.state {
            case .confirmed: sendBye(call)
            case .proceeding: sendCancel(call)
            case .incomingProceeding: sendFinal(call, status: 480, reason: nil)
            case .calling, .cancelling, .answering, .rejecting, .terminated: break
            }
        }
        stopRegistrations()
        stopped = true
        for (_, timer) in timers { timer.task.cancel() }
        timers.removeAll()
        for (_, transaction) in transactions { transaction.completion?(nil) }
        transactions.removeAll()
        await transport?.close()
        receiveTask?.cancel()
        transportEventTask?.cancel()
        eventContinuation.finish()
        registrationContinuation.finish()
    }

    // MARK: - Public call control

    /// Sends an INVITE. `ringTimeout` bounds the whole attempt (the caller's per-post ring
    /// timeout): when it passes without a final answer we CANCEL (if the callee sent a
    /// provisional) and report `.failed`. Without it, RFC 3261 Timer B (64·T1) applies until
    /// the first provisional response.
    public func invite(
        to uri: String, offer: SessionDescription, ringTimeout: Duration? = nil, displayName: String? = nil
    ) -> CallHandle {
        let target = SIPNameAddress(uri)
        let destination = target.flatMap { outOfDialogDestination($0.uri) }
        let callID = newCallID(toward: destination)
        let handle = CallHandle(id: nextHandle, callID: callID)
        nextHandle += 1
        guard let target, let destination else {
            let reason = target != nil && !flows.isEmpty ? "no address for the edge proxy yet (DNS)" : "invalid or unresolvable URI"
            logger.warning("INVITE not sent", metadata: ["reason": "\(reason)"])
            eventContinuation.yield(.failed(handle, status: nil, reason: reason))
            return handle
        }
        let branch = newBranch()
        addressPeer = destination
        let local = SIPNameAddress(displayName: displayName ?? configuration.displayName, uri: addressOfRecord)
        let remote = SIPNameAddress(uri: target.uri)
        let call = Call(handle: handle, role: .outgoing, state: .calling, callID: callID, localTag: randomToken(8),
                        localParty: local, remoteParty: remote, remoteTarget: target.uri, peer: destination,
                        localCSeq: UInt32.random(in: 1...100_000), inviteBranch: branch)
        var headers = SIPHeaders()
        headers.add("Via", via(branch))
        headers.add("Max-Forwards", "70")
        headers.add("From", fromHeader(call))
        headers.add("To", remote.description)
        headers.add("Call-ID", callID)
        headers.add("CSeq", "\(call.localCSeq) INVITE")
        if let route = outboundRoute() { headers.add("Route", route) }
        headers.add("Contact", contactHeader)
        headers.add("Allow", Self.allow)
        headers.add("Supported", "outbound")
        headers.add("User-Agent", configuration.userAgentHeader)
        headers.add("Content-Type", "application/sdp")
        call.invite = SIPRequest(method: .invite, uri: target.uri, headers: headers, body: offer.serialized())
        call.localSDP = offer
        calls[handle] = call
        inviteBranches[branch] = handle
        logger.info("INVITE sent", metadata: ["call": "\(handle)", "to": "\(target.uri)"])
        send(call.invite.serialized(), to: destination)
        call.retransmitInterval = configuration.timerT1
        if !reliable { startTimer(.inviteRetransmit(handle), after: configuration.timerT1) }
        let timerB = configuration.timerT1 * 64
        var first = ringTimeout.map { min($0, timerB) } ?? timerB
        call.hasRingTimeout = ringTimeout != nil
        call.sentAt = .now
        if let ringTimeout, ringTimeout > timerB {
            // The caller asked for longer than Timer B: keep Timer B for the "no response at
            // all" case, then its ring timeout once the callee rings.
            call.ringTimeoutAfterProvisional = ringTimeout
        }
        if let ringTimeout, !reliable, outboundRoute() == nil, configuration.silentPeerTimeout < first {
            // Straight to a post over UDP: silence means a dead post (see silentPeerTimeout);
            // the ring timeout takes over as soon as it answers anything.
            call.silentPeer = true
            call.ringTimeoutAfterProvisional = ringTimeout
            first = configuration.silentPeerTimeout
        }
        startTimer(.inviteTimeout(handle), after: first)
        startFlowCheck(call)  // a silent edge proxy → the other flow (Registration.swift)
        return handle
    }

    /// Stops an outgoing call before it is answered. Reported as `.failed` (487 or "cancelled").
    public func cancel(_ handle: CallHandle) {
        guard let call = calls[handle], call.role == .outgoing else { return }
        switch call.state {
        case .calling:
            // RFC 3261 §9.1: no CANCEL before a provisional; send it if one arrives.
            call.cancelWanted = true
            call.state = .cancelling
            cancelTimer(.inviteRetransmit(handle))
            report(call, .failed(handle, status: nil, reason: "cancelled"))
            startTimer(.inviteTimeout(handle), after: configuration.timerT1 * 64)
        case .proceeding:
            call.cancelWanted = true
            sendCancel(call)
        case .cancelling, .confirmed, .terminated, .incomingProceeding, .answering, .rejecting:
            break
        }
    }

    /// Sends 180 Ringing for an incoming call.
    public func ring(_ handle: CallHandle) {
        guard let call = calls[handle], call.state == .incomingProceeding, call.lastResponse?.status != 180 else { return }
        let response = makeResponse(to: call.invite, status: 180, toTag: call.localTag, recordRoute: true,
                                    contact: true)
        call.lastResponse = response
        send(response.serialized(), to: call.responseDestination)
    }

    /// Answers an incoming call with our SDP; the 200 is retransmitted until the ACK.
    public func answer(_ handle: CallHandle, with answer: SessionDescription) {
        guard let call = calls[handle], call.state == .incomingProceeding else { return }
        var response = makeResponse(to: call.invite, status: 200, toTag: call.localTag, recordRoute: true,
                                    contact: true)
        response.headers.add("Allow", Self.allow)
        response.headers.add("Content-Type", "application/sdp")
        response.body = answer.serialized()
        call.localSDP = answer
        call.lastResponse = response
        call.state = .answering
        send(response.serialized(), to: call.responseDestination)
        call.retransmitInterval = configuration.timerT1
        startTimer(.responseRetransmit(handle), after: configuration.timerT1)
        startTimer(.responseTimeout(handle), after: configuration.timerT1 * 64)
        logger.info("call answered", metadata: ["call": "\(handle)"])
    }

    /// Refuses an incoming call (403, 486, 488, 603, …).
    public func reject(_ handle: CallHandle, status: Int, reason: String) {
        guard let call = calls[handle], call.state == .incomingProceeding, (300...699).contains(status) else { return }
        sendFinal(call, status: status, reason: reason)
        logger.info("call rejected", metadata: ["call": "\(handle)", "status": "\(status)"])
    }

    /// Ends a call in whatever state it is: BYE, CANCEL or a 603 to an unanswered incoming call.
    public func hangUp(_ handle: CallHandle) {
        guard let call = calls[handle] else { return }
        switch call.state {
        case .calling, .proceeding:
            cancel(handle)
        case .confirmed:
            sendBye(call)
        case .answering:
            call.hangUpAfterAck = true  // RFC 3261 §15: no BYE before the ACK (or its timeout)
        case .incomingProceeding:
            sendFinal(call, status: 603, reason: "Decline")
        case .cancelling, .rejecting, .terminated:
            break
        }
    }

    /// Sends OPTIONS and returns the final status, or nil when nothing answered in `timeout`.
    /// Used to learn ahead of a press which posts are alive. With edge proxies it goes the way
    /// an INVITE would (over the flow, with a Route), since posts sit behind them.
    public func probe(_ uri: String, timeout: Duration) async -> Int? {
        guard !stopped, let target = SIPNameAddress(uri), let destination = outOfDialogDestination(target.uri)
        else { return nil }
        let branch = newBranch()
        addressPeer = destination
        var headers = SIPHeaders()
        headers.add("Via", via(branch))
        headers.add("Max-Forwards", "70")
        headers.add("From", "<\(addressOfRecord)>;tag=\(randomToken(8))")
        headers.add("To", "<\(target.uri)>")
        headers.add("Call-ID", newCallID(toward: destination))
        headers.add("CSeq", "1 OPTIONS")
        if let route = outboundRoute() { headers.add("Route", route) }
        headers.add("Accept", "application/sdp")
        headers.add("User-Agent", configuration.userAgentHeader)
        let request = SIPRequest(method: .options, uri: target.uri, headers: headers)
        return await withCheckedContinuation { (continuation: CheckedContinuation<Int?, Never>) in
            startClientTransaction(request, branch: branch, to: destination, timeout: timeout) { response in
                continuation.resume(returning: response?.status)
            }
        }
    }

    // MARK: - Receiving

    private func receive(_ datagram: InboundDatagram) {
        guard !stopped else { return }
        let bytes = datagram.bytes
        if bytes.allSatisfy({ $0 == 13 || $0 == 10 }) { return }  // keepalive
        let message: SIPMessage
        do {
            message = try parser.parse(bytes, transport: datagram.kind)
        } catch {
            if error == .unsupportedVersion, let salvaged = parser.salvageRequest(bytes, anyVersion: true),
               salvaged.method != .ack
            {
                // A SIP version we do not speak gets 505 (RFC 3261 §21.5.20), never silence.
                guard mayAnswer(datagram.source) else { return }
                send(makeResponse(to: salvaged, status: 505, reason: "Version Not Supported").serialized(),
                     to: datagram.source)
            } else if let salvaged = parser.salvageRequest(bytes), salvaged.method != .ack {
                guard mayAnswer(datagram.source) else { return }
                logger.notice("malformed SIP request answered with 400",
                              metadata: ["error": "\(error)", "from": "\(datagram.source)"])
                let response = makeResponse(to: salvaged, status: 400, reason: "Bad Request")
                send(response.serialized(), to: datagram.source)
            } else {
                logger.notice("malformed SIP message dropped",
                              metadata: ["error": "\(error)", "from": "\(datagram.source)", "bytes": "\(bytes.count)"])
            }
            return
        }
        switch message {
        case .request(let request):
            addressPeer = datagram.source
            handleRequest(request, from: datagram.source)
        case .response(let response): handleResponse(response)
        }
    }

    private func handleResponse(_ response: SIPResponse) {
        guard let top = response.headers.values("Via").first.flatMap(SIPVia.init), let branch = top.branch,
              let cseq = response.headers["CSeq"].flatMap(SIPCSeq.init)
        else { return }
        if cseq.method == .invite, let handle = inviteBranches[branch], let call = calls[handle] {
            handleInviteResponse(call, response)
        } else if let transaction = transactions[branch + "|" + cseq.method.rawValue] {
            if response.status >= 200 {
                finishTransaction(branch + "|" + cseq.method.rawValue, transaction, response)
            }
        } else {
            logger.debug("stray response dropped", metadata: ["status": "\(response.status)"])
        }
    }

    private func handleInviteResponse(_ call: Call, _ response: SIPResponse) {
        let handle = call.handle
        let status = response.status
        switch call.state {
        case .calling, .proceeding, .cancelling:
            if status < 200 {
                cancelTimer(.inviteRetransmit(handle))
                if !call.provisionalSeen {
                    call.provisionalSeen = true
                    if call.cancelWanted { sendCancel(call) }
                    if !call.hasRingTimeout {
                        cancelTimer(.inviteTimeout(handle))  // Timer B covers the calling state only
                    } else if let longer = call.ringTimeoutAfterProvisional {
                        // The ring timeout counts from the first send.
                        let left = longer - (ContinuousClock.now - call.sentAt)
                        startTimer(.inviteTimeout(handle), after: max(left, .zero))
                    }
                }
                if call.state == .calling { call.state = .proceeding }
                if status > 100, call.state == .proceeding { report(call, .progress(handle, status: status)) }
            } else if status < 300 {
                cancelTimer(.inviteRetransmit(handle))
                cancelTimer(.inviteTimeout(handle))
                establishDialog(call, from: response)
                sendAck(call, for: response)
                if call.cancelWanted || call.finalReported {
                    // 2xx raced our CANCEL or ring timeout: confirm then end it at once.
                    logger.info("answered after cancel; sending BYE", metadata: ["call": "\(handle)"])
                    report(call, .failed(handle, status: nil, reason: "answered after cancel"))
                    sendBye(call)
                } else if let remote = try? SessionDescription(parsing: response.body) {
                    call.state = .confirmed
                    logger.info("call answered by remote", metadata: ["call": "\(handle)"])
                    report(call, .answered(handle, remote: remote))
                } else {
                    logger.warning("2xx without usable SDP; sending BYE", metadata: ["call": "\(handle)"])
                    report(call, .failed(handle, status: status, reason: "answer without usable SDP"))
                    sendBye(call)
                }
            } else {
                cancelTimer(.inviteRetransmit(handle))
                cancelTimer(.inviteTimeout(handle))
                sendNon2xxAck(call, for: response)
                if (status == 401 || status == 407), call.state != .cancelling, !call.cancelWanted,
                   resendAuthenticated(call, challenge: response)
                {
                    return
                }
                call.state = .terminated
                scheduleCleanup(call)
                logger.info("INVITE failed", metadata: ["call": "\(handle)", "status": "\(status)"])
                report(call, .failed(handle, status: status, reason: response.reason))
            }
        case .confirmed, .terminated:
            if (200..<300).contains(status) {
                let toTag = response.headers["To"].flatMap(SIPNameAddress.init)?.tag
                if toTag == call.remoteTag, let ack = call.ackFor2xx {
                    send(ack.serialized(), to: call.inDialogDestination)  // retransmitted 2xx
                } else {
                    // A second fork answered: acknowledge and end that dialog only.
                    let fork = Call(copying: call)
                    establishDialog(fork, from: response)
                    sendAck(fork, for: response)
                    sendBye(fork, isFork: true)
                }
            } else if status >= 300 {
                sendNon2xxAck(call, for: response)
            }
        case .incomingProceeding, .answering, .rejecting:
            preconditionFailure("client INVITE response matched a server call \(call.state)")
        }
    }

    private func handleRequest(_ request: SIPRequest, from source: SocketAddress) {
        let toTag = request.headers["To"].flatMap(SIPNameAddress.init)?.tag
        if toTag == nil, request.method != .ack, !isTrusted(source) {
            refuseUntrusted(request, from: source)
            return
        }
        if request.method != .ack, let refusal = Self.requestURIRefusal(request.uri) {
            logger.notice("request refused: unusable Request-URI",
                          metadata: ["status": "\(refusal.status)", "from": "\(source)"])
            send(makeResponse(to: request, status: refusal.status, reason: refusal.reason, toTag: randomToken(8))
                .serialized(), to: source)
            return
        }
        switch request.method {
        case .invite: handleInvite(request, from: source)
        case .ack: handleAck(request)
        case .cancel: handleCancel(request, from: source)
        case .bye: handleBye(request, from: source)
        case .options:
            var response = makeResponse(to: request, status: 200, toTag: randomToken(8))
            response.headers.add("Allow", Self.allow)
            response.headers.add("Accept", "application/sdp")
            send(response.serialized(), to: source)
        case .message where messageHandler != nil:
            // Only an agent whose owner asked for MESSAGEs takes them (the demo centrale);
            // the tablet's own agent answers 405 as before.
            let status = messageHandler?(request) ?? 405
            send(makeResponse(to: request, status: status, toTag: randomToken(8)).serialized(), to: source)
        default:
            var response = makeResponse(to: request, status: 405, toTag: randomToken(8))
            response.headers.add("Allow", Self.allow)
            send(response.serialized(), to: source)
        }
    }

    private func handleInvite(_ request: SIPRequest, from source: SocketAddress) {
        // The parser guarantees these headers exist and parse.
        let from = SIPNameAddress(request.headers["From"]!)!
        let to = SIPNameAddress(request.headers["To"]!)!
        let callID = request.headers["Call-ID"]!
        let branch = request.headers.values("Via").first.flatMap(SIPVia.init)?.branch ?? ""
        if to.tag != nil {
            handleReinvite(request, from: source)
            return
        }
        if let handle = serverInvites[callID + "|" + branch], let call = calls[handle] {
            if let last = call.lastResponse { send(last.serialized(), to: call.responseDestination) }
            return
        }
        // Bounded state: a flood of INVITEs must not grow the call table without limit.
        guard calls.count < Self.maxCalls else {
            logger.warning("too many calls; INVITE refused", metadata: ["calls": "\(calls.count)"])
            send(makeResponse(to: request, status: 503, toTag: randomToken(8)).serialized(), to: source)
            return
        }
        guard !request.body.isEmpty else {
            send(makeResponse(to: request, status: 488, reason: "Offer Required", toTag: randomToken(8)).serialized(),
                 to: source)
            return
        }
        let offer: SessionDescription
        do {
            offer = try SessionDescription(parsing: request.body)
        } catch {
            logger.notice("INVITE with unparsable SDP", metadata: ["error": "\(error)"])
            send(makeResponse(to: request, status: 400, reason: "Bad SDP", toTag: randomToken(8)).serialized(), to: source)
            return
        }
        let handle = CallHandle(id: nextHandle, callID: callID)
        nextHandle += 1
        var remote = from
        remote.parameters.remove("tag")
        var local = to
        local.parameters.remove("tag")
        let contact = request.headers.values("Contact").first.flatMap(SIPNameAddress.init)?.uri ?? from.uri
        let call = Call(handle: handle, role: .incoming, state: .incomingProceeding, callID: callID,
                        localTag: randomToken(8), localParty: local, remoteParty: remote, remoteTarget: contact,
                        peer: source, localCSeq: UInt32.random(in: 1...100_000), inviteBranch: branch)
        call.remoteTag = from.tag
        call.invite = request
        call.routeSet = request.headers.values("Record-Route")
        call.responseDestination = source
        if call.routeSet.isEmpty, let direct = resolve(contact), isIPLiteral(contact) {
            call.peer = direct
        }
        calls[handle] = call
        serverInvites[callID + "|" + branch] = handle
        let trying = makeResponse(to: request, status: 100)
        call.lastResponse = trying
        send(trying.serialized(), to: source)
        logger.info("incoming call", metadata: ["call": "\(handle)"])
        let caller = callerIdentity(request, from: from, source: source)
        eventContinuation.yield(.incoming(handle, fromURI: caller.uri, displayName: caller.displayName, offer: offer))
    }

    // MARK: - Trust

    /// Whether every `.incoming` call came over a flow to a configured edge proxy: then its
    /// identity is what that proxy asserted (P-Asserted-Identity) or the From the proxy
    /// authenticated. Without edge proxies (a lab set-up) nothing is verified: the caller is
    /// who its own From says, which anyone can forge.
    public nonisolated var verifiesCallers: Bool { configuration.registration != nil }

    /// A source allowed to start something here: with edge proxies, only their flows (TCP/TLS:
    /// the connection we dialled, keyed by the proxy's address; UDP: datagrams from the proxy's
    /// resolved address); without, anyone.
    func isTrusted(_ source: SocketAddress) -> Bool {
        configuration.registration == nil || flows.contains { $0.destination == source }
    }

    /// Whether a request from `source` that we do not take may be answered at all: over UDP
    /// not when it came from outside the edge proxies' flows, since an answer to a forged
    /// source address would make us a reflector; over TCP a refusal goes back on the
    /// connection it came on.
    func mayAnswer(_ source: SocketAddress) -> Bool {
        reliable || isTrusted(source)
    }

    /// A new request (INVITE, OPTIONS, MESSAGE, … outside a dialog) from outside the edge
    /// proxies' flows: 403 over TCP, nothing over UDP (see `mayAnswer`). One log line names
    /// the source, at most every `RefusalLog.interval`, with how many were not logged.
    private func refuseUntrusted(_ request: SIPRequest, from source: SocketAddress) {
        if let suppressed = untrustedLog.shouldLog(now: .now) {
            logger.warning("request from outside the edge proxy flows refused", metadata: [
                "from": "\(source)", "method": "\(request.method.rawValue)",
                "answer": "\(reliable ? "403" : "none (UDP)")", "suppressed": "\(suppressed)",
            ])
        }
        guard mayAnswer(source), request.method != .ack else { return }
        send(makeResponse(to: request, status: 403, reason: "Forbidden", toTag: randomToken(8)).serialized(), to: source)
    }

    /// 416 for a Request-URI scheme we do not serve (tel:, mailto:, …; RFC 3261 §8.2.2.1),
    /// 400 for a sip:/sips: URI that does not parse (`sip:@@@:::`); nil when it is usable.
    static func requestURIRefusal(_ uri: String) -> (status: Int, reason: String)? {
        let scheme = uri.prefix { $0 != ":" }.lowercased()
        guard scheme == "sip" || scheme == "sips" else { return (416, "Unsupported URI Scheme") }
        guard let parsed = SIPURI(uri), parsed.user.map({ !$0.isEmpty && !$0.contains("@") }) ?? true else {
            return (400, "Bad Request-URI")
        }
        return nil
    }

    /// Who calls: the From header, or the first SIP URI in P-Asserted-Identity (RFC 3325) when
    /// the INVITE came over the flow to a configured edge proxy, the only party we trust to
    /// assert an identity. A P-Asserted-Identity from any other source is ignored.
    func callerIdentity(_ request: SIPRequest, from: SIPNameAddress, source: SocketAddress) -> SIPNameAddress {
        let asserted = request.headers.values("P-Asserted-Identity").flatMap { splitTopLevelCommas($0) }
        guard !asserted.isEmpty else { return from }
        guard flows.contains(where: { $0.destination == source }) else {
            logger.notice("P-Asserted-Identity from outside the edge proxy flows ignored",
                          metadata: ["from": "\(source)"])
            return from
        }
        for value in asserted {
            // SIPURI takes sip: and sips: only; a tel: identity is skipped.
            guard let identity = SIPNameAddress(value), SIPURI(identity.uri) != nil else { continue }
            return identity
        }
        return from
    }

    /// An INVITE inside a dialog (hold, resume, session refresh, a B2BUA moving the call):
    /// the owner's `ReofferHandler` decides on an offer (a new answer, or 488 and the call goes
    /// on as it was); without one, our current session description with the directions
    /// mirrored (`MediaNegotiator.reanswer`). Without an offer, our current description is the
    /// offer and the ACK's answer changes nothing here. The Contact refreshes the remote target
    /// (RFC 3261 §12.2.2). Our 200 is retransmitted until the ACK (RFC 3261 §13.3.1.4, T1
    /// doubling up to T2); none within 64·T1 ends the call with BYE, as for the initial INVITE.
    /// A retransmitted re-INVITE gets the same answer again.
    private func handleReinvite(_ request: SIPRequest, from source: SocketAddress) {
        guard let call = findDialog(request), call.state != .terminated else {
            send(makeResponse(to: request, status: 481).serialized(), to: source)
            return
        }
        let cseq = request.headers["CSeq"] ?? ""
        if let last = call.lastReinvite, last.cseq == cseq {
            send(last.response.serialized(), to: source)
            return
        }
        if call.reinviteAck != nil {
            // A new re-INVITE: the peer has moved on from the last one; stop repeating our 2xx.
            call.reinviteAck = nil
            cancelTimer(.reinviteRetransmit(call.handle))
            cancelTimer(.reinviteTimeout(call.handle))
        }
        guard call.state == .confirmed, let current = call.localSDP else {
            // RFC 3261 §14.2: an INVITE while one of ours is pending or before the dialog is up.
            send(makeResponse(to: request, status: 491, reason: "Request Pending").serialized(), to: source)
            return
        }
        let answer: SessionDescription
        var changed: SessionDescription?
        if request.body.isEmpty {
            answer = current
        } else {
            let offer = try? SessionDescription(parsing: request.body)
            let decision: ReofferDecision = if let offer, let reofferHandler {
                reofferHandler(call.handle, offer, current)
            } else if let offer, let reanswer = MediaNegotiator.reanswer(offer, current: current) {
                .answer(reanswer, mediaChanged: false)
            } else {
                .refuse(status: 488)
            }
            switch decision {
            case .answer(let description, let mediaChanged):
                answer = description
                if mediaChanged { changed = offer }
            case .refuse(let status):
                logger.notice("re-INVITE refused; the call goes on unchanged",
                              metadata: ["call": "\(call.handle)", "status": "\(status)"])
                let response = makeResponse(to: request, status: status)
                call.lastReinvite = (cseq, response)
                send(response.serialized(), to: source)
                return
            }
        }
        if let contact = request.headers.values("Contact").first.flatMap(SIPNameAddress.init)?.uri {
            call.remoteTarget = contact
            if call.routeSet.isEmpty, isIPLiteral(contact), let address = resolve(contact) { call.peer = address }
        }
        var response = makeResponse(to: request, status: 200, contact: true)
        response.headers.add("Allow", Self.allow)
        response.headers.add("Content-Type", "application/sdp")
        response.body = answer.serialized()
        call.localSDP = answer
        call.lastReinvite = (cseq, response)
        call.reinviteAck = (SIPCSeq(cseq)?.number ?? 0, source)
        send(response.serialized(), to: source)
        call.retransmitInterval = configuration.timerT1
        startTimer(.reinviteRetransmit(call.handle), after: configuration.timerT1)
        startTimer(.reinviteTimeout(call.handle), after: configuration.timerT1 * 64)
        logger.info("re-INVITE answered", metadata: ["call": "\(call.handle)", "media changed": "\(changed != nil)"])
        if let changed { eventContinuation.yield(.mediaChanged(call.handle, remote: changed)) }
    }

    private func handleAck(_ request: SIPRequest) {
        guard let call = findDialog(request) else { return }
        switch call.state {
        case .answering:
            cancelTimer(.responseRetransmit(call.handle))
            cancelTimer(.responseTimeout(call.handle))
            call.state = .confirmed
            if call.hangUpAfterAck { sendBye(call) }
        case .rejecting:
            cancelTimer(.responseRetransmit(call.handle))
            cancelTimer(.responseTimeout(call.handle))
            call.state = .terminated
            scheduleCleanup(call)
        case .confirmed:
            // The ACK for our 2xx to a re-INVITE carries that INVITE's CSeq number.
            if let pending = call.reinviteAck, request.headers["CSeq"].flatMap(SIPCSeq.init)?.number == pending.cseq {
                call.reinviteAck = nil
                cancelTimer(.reinviteRetransmit(call.handle))
                cancelTimer(.reinviteTimeout(call.handle))
            }
        case .calling, .proceeding, .cancelling, .terminated, .incomingProceeding:
            break  // retransmitted or stray ACK
        }
    }

    private func handleCancel(_ request: SIPRequest, from source: SocketAddress) {
        let callID = request.headers["Call-ID"]!
        let branch = request.headers.values("Via").first.flatMap(SIPVia.init)?.branch ?? ""
        guard let handle = serverInvites[callID + "|" + branch], let call = calls[handle] else {
            send(makeResponse(to: request, status: 481).serialized(), to: source)
            return
        }
        send(makeResponse(to: request, status: 200, toTag: call.localTag).serialized(), to: source)
        guard call.state == .incomingProceeding else { return }
        sendFinal(call, status: 487, reason: nil)
        logger.info("incoming call cancelled by caller", metadata: ["call": "\(handle)"])
        eventContinuation.yield(.remoteCancelled(handle))
    }

    private func handleBye(_ request: SIPRequest, from source: SocketAddress) {
        guard let call = findDialog(request) else {
            send(makeResponse(to: request, status: 481).serialized(), to: source)
            return
        }
        send(makeResponse(to: request, status: 200).serialized(), to: source)
        switch call.state {
        case .confirmed, .answering:
            cancelTimer(.responseRetransmit(call.handle))
            cancelTimer(.responseTimeout(call.handle))
            cancelTimer(.reinviteRetransmit(call.handle))
            cancelTimer(.reinviteTimeout(call.handle))
            call.state = .terminated
            scheduleCleanup(call)
            logger.info("remote hung up", metadata: ["call": "\(call.handle)"])
            eventContinuation.yield(.remoteHungUp(call.handle))
        case .incomingProceeding:
            // BYE in an early dialog: treat as the caller giving up.
            sendFinal(call, status: 487, reason: nil)
            eventContinuation.yield(.remoteCancelled(call.handle))
        case .calling, .proceeding, .cancelling, .rejecting, .terminated:
            break
        }
    }

    // MARK: - Sending helpers

    private static let allow = "INVITE, ACK, CANCEL, BYE, OPTIONS"
    /// Calls (including finished ones kept for retransmissions) beyond which new INVITEs get 503.
    static let maxCalls = 64

    var localURI: String { localURI(host: advertisedHost) }

    /// Our address of record for `From` (see `UserAgentConfiguration.domain`): never an IP
    /// address with a transport parameter once a domain is known.
    var addressOfRecord: String {
        guard let domain = configuration.domain ?? configuration.registration?.domain else { return localURI }
        return SIPURI(scheme: "sip", user: configuration.user, host: domain, port: nil).description
    }

    func localURI(host: String) -> String {
        let parameter = configuration.transport == .udp ? "" : ";transport=\(configuration.transport.rawValue)"
        return "sip:\(configuration.user)@\(HostPort(host: host, port: sentByPort).description)\(parameter)"
    }

    /// The host Via and Contact carry: `localHost`, unless that is the wildcard; then the
    /// address the kernel uses toward the edge proxy in use, else toward `addressPeer`.
    var advertisedHost: String {
        advertisedHost(toward: outboundDestination() ?? addressPeer)
    }

    func advertisedHost(toward peer: SocketAddress?) -> String {
        guard LocalAddress.isWildcard(configuration.localHost) else { return configuration.localHost }
        if let peer, let host = LocalAddress.toward(peer) { return host }
        return configuration.localHost
    }

    /// A new Call-ID (RFC 3261 §8.1.1.4): random, with the host part our address toward `peer`
    /// (never the wildcard `localHost`); a random host part when no address is known.
    func newCallID(toward peer: SocketAddress?) -> String {
        let host = advertisedHost(toward: peer)
        return randomToken(16) + "@" + (LocalAddress.isWildcard(host) ? randomToken(4) : host)
    }

    /// The address for an SDP offer's c= line to `uri` (the edge proxy's way when registered).
    public func mediaAddress(toward uri: String) -> String {
        advertisedHost(toward: outOfDialogDestination(uri))
    }

    /// The address for the SDP answer to an incoming call: toward the edge proxy, else
    /// toward where the INVITE came from.
    public func mediaAddress(for handle: CallHandle) -> String {
        advertisedHost(toward: outboundDestination() ?? calls[handle]?.peer)
    }

    /// Via and Contact port: none when TLS only dials (answers come back over the flow).
    var sentByPort: Int? { port == 0 ? nil : port }

    /// Our Contact for dialog-forming requests and responses; `;ob` when we use outbound flows
    /// (RFC 5626 §4.2.1), so the other side's in-dialog requests come back over the flow.
    var contactHeader: String { contactHeader(host: advertisedHost) }

    func contactHeader(host: String) -> String {
        configuration.registration == nil ? "<\(localURI(host: host))>" : "<\(localURI(host: host));ob>"
    }

    var reliable: Bool { transport?.isReliable ?? false }

    func via(_ branch: String, host: String? = nil) -> String {
        let hostPort = HostPort(host: host ?? advertisedHost, port: sentByPort).description
        return "SIP/2.0/\(transport?.transportName ?? "UDP") \(hostPort);branch=\(branch);rport"
    }

    private func fromHeader(_ call: Call) -> String {
        var party = call.localParty
        party.parameters.set("tag", call.localTag)
        return party.description
    }

    private func toHeader(_ call: Call) -> String {
        var party = call.remoteParty
        if let tag = call.remoteTag { party.parameters.set("tag", tag) }
        return party.description
    }

    func send(_ bytes: [UInt8], to destination: SocketAddress) {
        guard !stopped, let transport else { return }
        transport.send(bytes, to: destination)
    }

    private func report(_ call: Call, _ event: UserAgentEvent) {
        switch event {
        case .answered, .failed:
            guard !call.finalReported else { return }
            call.finalReported = true
        case .progress:
            guard !call.finalReported else { return }
        case .incoming, .remoteCancelled, .remoteHungUp, .mediaChanged:
            break
        }
        eventContinuation.yield(event)
    }

    /// A response built from a request's Via, From, To, Call-ID and CSeq (RFC 3261 §8.2.6).
    private func makeResponse(
        to request: SIPRequest, status: Int, reason: String? = nil, toTag: String? = nil, recordRoute: Bool = false,
        contact: Bool = false
    ) -> SIPResponse {
        var headers = SIPHeaders()
        for field in request.headers where field.name == "Via" { headers.add("Via", field.value) }
        if let from = request.headers["From"] { headers.add("From", from) }
        if var to = request.headers["To"] {
            if let toTag, status != 100, var party = SIPNameAddress(to), party.tag == nil {
                party.parameters.set("tag", toTag)
                to = party.description
            }
            headers.add("To", to)
        }
        if let callID = request.headers["Call-ID"] { headers.add("Call-ID", callID) }
        if let cseq = request.headers["CSeq"] { headers.add("CSeq", cseq) }
        if recordRoute {
            for field in request.headers where field.name == "Record-Route" { headers.add("Record-Route", field.value) }
        }
        if contact { headers.add("Contact", contactHeader) }
        headers.add("Server", configuration.userAgentHeader)
        return SIPResponse(status: status, reason: reason, headers: headers)
    }

    /// A final response to an incoming INVITE, retransmitted until the ACK (Timers G and H).
    private func sendFinal(_ call: Call, status: Int, reason: String?) {
        let response = makeResponse(to: call.invite, status: status, reason: reason, toTag: call.localTag)
        call.lastResponse = response
        call.state = .rejecting
        send(response.serialized(), to: call.responseDestination)
        call.retransmitInterval = configuration.timerT1
        if !reliable { startTimer(.responseRetransmit(call.handle), after: configuration.timerT1) }
        startTimer(.responseTimeout(call.handle), after: configuration.timerT1 * 64)
    }

    private func establishDialog(_ call: Call, from response: SIPResponse) {
        call.remoteTag = response.headers["To"].flatMap(SIPNameAddress.init)?.tag
        if let contact = response.headers.values("Contact").first.flatMap(SIPNameAddress.init) {
            call.remoteTarget = contact.uri
        }
        call.routeSet = response.headers.values("Record-Route").reversed()
        if let next = call.routeSet.first.flatMap(SIPNameAddress.init), let address = resolve(next.uri) {
            call.peer = address
        } else if let address = resolve(call.remoteTarget), isIPLiteral(call.remoteTarget) {
            call.peer = address
        }
    }

    private func dialogRequest(_ call: Call, method: SIPMethod, cseq: UInt32, branch: String) -> SIPRequest {
        addressPeer = call.peer
        var headers = SIPHeaders()
        headers.add("Via", via(branch))
        headers.add("Max-Forwards", "70")
        headers.add("From", fromHeader(call))
        headers.add("To", toHeader(call))
        headers.add("Call-ID", call.callID)
        headers.add("CSeq", "\(cseq) \(method.rawValue)")
        for route in call.routeSet { headers.add("Route", route) }
        headers.add("User-Agent", configuration.userAgentHeader)
        return SIPRequest(method: method, uri: call.remoteTarget, headers: headers)
    }

    private func sendAck(_ call: Call, for response: SIPResponse) {
        let ack = dialogRequest(call, method: .ack, cseq: call.localCSeq, branch: newBranch())
        call.ackFor2xx = ack
        send(ack.serialized(), to: call.inDialogDestination)
    }

    /// The ACK for a non-2xx final is part of the INVITE transaction: same branch and URI.
    func sendNon2xxAck(_ call: Call, for response: SIPResponse) {
        var headers = SIPHeaders()
        if let topVia = call.invite.headers.values("Via").first { headers.add("Via", topVia) }
        headers.add("Max-Forwards", "70")
        headers.add("From", call.invite.headers["From"]!)
        headers.add("To", response.headers["To"] ?? call.invite.headers["To"]!)
        headers.add("Call-ID", call.callID)
        headers.add("CSeq", "\(call.localCSeq) ACK")
        let ack = SIPRequest(method: .ack, uri: call.invite.uri, headers: headers)
        send(ack.serialized(), to: call.inviteDestination)
    }

    private func sendCancel(_ call: Call) {
        var headers = SIPHeaders()
        if let topVia = call.invite.headers.values("Via").first { headers.add("Via", topVia) }
        headers.add("Max-Forwards", "70")
        headers.add("From", call.invite.headers["From"]!)
        headers.add("To", call.invite.headers["To"]!)
        headers.add("Call-ID", call.callID)
        headers.add("CSeq", "\(call.localCSeq) CANCEL")
        headers.add("User-Agent", configuration.userAgentHeader)
        let cancel = SIPRequest(method: .cancel, uri: call.invite.uri, headers: headers)
        call.state = .cancelling
        startClientTransaction(cancel, branch: call.inviteBranch, to: call.inviteDestination,
                               timeout: configuration.timerT1 * 64, completion: nil)
        // If the callee never answers the CANCEL with 487, give up after Timer B's span.
        startTimer(.inviteTimeout(call.handle), after: configuration.timerT1 * 64)
        logger.info("CANCEL sent", metadata: ["call": "\(call.handle)"])
    }

    /// `isFork`: a throwaway record for an extra forked 2xx; it shares the real call's handle,
    /// so it must not touch that call's timers.
    private func sendBye(_ call: Call, isFork: Bool = false) {
        call.localCSeq += 1
        let branch = newBranch()
        let bye = dialogRequest(call, method: .bye, cseq: call.localCSeq, branch: branch)
        call.state = .terminated
        startClientTransaction(bye, branch: branch, to: call.inDialogDestination, timeout: configuration.timerT1 * 64,
                               completion: nil)
        logger.info("BYE sent", metadata: ["call": "\(call.handle)"])
        guard !isFork else { return }
        cancelTimer(.responseRetransmit(call.handle))
        cancelTimer(.responseTimeout(call.handle))
        cancelTimer(.reinviteRetransmit(call.handle))
        cancelTimer(.reinviteTimeout(call.handle))
        scheduleCleanup(call)
    }

    // MARK: - Non-INVITE client transactions (Timers E and F)

    struct ClientTransaction {
        var request: SIPRequest
        var destination: SocketAddress
        var interval: Duration
        var completion: (@Sendable (SIPResponse?) -> Void)?
    }

    func startClientTransaction(
        _ request: SIPRequest, branch: String, to destination: SocketAddress, timeout: Duration,
        completion: (@Sendable (SIPResponse?) -> Void)?
    ) {
        let key = branch + "|" + request.method.rawValue
        transactions[key] = ClientTransaction(request: request, destination: destination,
                                              interval: configuration.timerT1, completion: completion)
        send(request.serialized(), to: destination)
        if !reliable { startTimer(.requestRetransmit(key), after: configuration.timerT1) }
        startTimer(.requestTimeout(key), after: min(timeout, configuration.timerT1 * 64))
    }

    func finishTransaction(_ key: String, _ transaction: ClientTransaction, _ response: SIPResponse?) {
        transactions[key] = nil
        cancelTimer(.requestRetransmit(key))
        cancelTimer(.requestTimeout(key))
        transaction.completion?(response)
    }

    // MARK: - Timers

    enum TimerKey: Hashable {
        case inviteRetransmit(CallHandle)  // Timer A
        case inviteTimeout(CallHandle)  // Timer B, or the caller's ring timeout
        case responseRetransmit(CallHandle)  // 2xx retransmission / Timer G
        case responseTimeout(CallHandle)  // 64·T1 without ACK / Timer H
        case reinviteRetransmit(CallHandle)  // our 2xx to a re-INVITE, until its ACK
        case reinviteTimeout(CallHandle)  // 64·T1 without that ACK
        case cleanup(CallHandle)
        case requestRetransmit(String)  // Timer E
        case requestTimeout(String)  // Timer F
        case registration(Int, RegistrationTimer)
        /// No response at all to an INVITE sent over an edge proxy's flow (Registration.swift).
        case inviteFlowCheck(CallHandle)
    }

    func startTimer(_ key: TimerKey, after delay: Duration) {
        guard !stopped else { return }
        timers[key]?.task.cancel()
        nextToken += 1
        let token = nextToken
        let task = Task {
            try? await Task.sleep(for: delay)
            self.timerFired(key, token: token)
        }
        timers[key] = (token, task)
    }

    func cancelTimer(_ key: TimerKey) {
        timers.removeValue(forKey: key)?.task.cancel()
    }

    private func timerFired(_ key: TimerKey, token: UInt64) {
        guard !stopped, timers[key]?.token == token else { return }  // superseded or cancelled
        timers[key] = nil
        switch key {
        case .inviteRetransmit(let handle):
            guard let call = calls[handle], call.state == .calling else { return }
            send(call.invite.serialized(), to: call.inviteDestination)
            call.retransmitInterval = call.retransmitInterval * 2
            startTimer(key, after: call.retransmitInterval)
        case .inviteTimeout(let handle):
            guard let call = calls[handle] else { return }
            cancelTimer(.inviteRetransmit(handle))
            switch call.state {
            case .calling:
                call.cancelWanted = true  // should a provisional still come, CANCEL it
                call.state = .cancelling
                logger.info("no response to INVITE", metadata: ["call": "\(handle)"])
                let silent = call.silentPeer || !call.hasRingTimeout
                report(call, .failed(handle, status: nil, reason: silent ? "no response" : "ring timeout"))
                startTimer(.cleanup(handle), after: configuration.timerT1 * 64)
            case .proceeding:
                logger.info("ring timeout", metadata: ["call": "\(handle)"])
                report(call, .failed(handle, status: nil, reason: "ring timeout"))
                sendCancel(call)
            case .cancelling:
                report(call, .failed(handle, status: nil, reason: "cancelled"))
                call.state = .terminated
                scheduleCleanup(call)
            case .confirmed, .terminated, .incomingProceeding, .answering, .rejecting:
                break
            }
        case .responseRetransmit(let handle):
            guard let call = calls[handle], call.state == .answering || call.state == .rejecting,
                  let response = call.lastResponse
            else { return }
            send(response.serialized(), to: call.responseDestination)
            call.retransmitInterval = min(call.retransmitInterval * 2, configuration.timerT2)
            startTimer(key, after: call.retransmitInterval)
        case .responseTimeout(let handle):
            guard let call = calls[handle] else { return }
            cancelTimer(.responseRetransmit(handle))
            if call.state == .answering {
                logger.warning("no ACK for our 200; ending the call", metadata: ["call": "\(handle)"])
                eventContinuation.yield(.remoteHungUp(handle))
                sendBye(call)
            } else if call.state == .rejecting {
                call.state = .terminated
                scheduleCleanup(call)
            }
        case .reinviteRetransmit(let handle):
            guard let call = calls[handle], call.state == .confirmed, let pending = call.reinviteAck,
                  let response = call.lastReinvite?.response
            else { return }
            send(response.serialized(), to: pending.destination)
            call.retransmitInterval = min(call.retransmitInterval * 2, configuration.timerT2)
            startTimer(key, after: call.retransmitInterval)
        case .reinviteTimeout(let handle):
            guard let call = calls[handle], call.state == .confirmed, call.reinviteAck != nil else { return }
            cancelTimer(.reinviteRetransmit(handle))
            call.reinviteAck = nil
            logger.warning("no ACK for our 200 to a re-INVITE; ending the call", metadata: ["call": "\(handle)"])
            eventContinuation.yield(.remoteHungUp(handle))
            sendBye(call)
        case .cleanup(let handle):
            guard let call = calls.removeValue(forKey: handle) else { return }
            inviteBranches[call.inviteBranch] = nil
            serverInvites[call.callID + "|" + call.inviteBranch] = nil
            for other in [TimerKey.inviteRetransmit(handle), .inviteTimeout(handle), .responseRetransmit(handle),
                          .responseTimeout(handle), .reinviteRetransmit(handle), .reinviteTimeout(handle)] {
                cancelTimer(other)
            }
        case .requestRetransmit(let key):
            guard var transaction = transactions[key] else { return }
            send(transaction.request.serialized(), to: transaction.destination)
            transaction.interval = min(transaction.interval * 2, configuration.timerT2)
            transactions[key] = transaction
            startTimer(.requestRetransmit(key), after: transaction.interval)
        case .requestTimeout(let key):
            guard let transaction = transactions[key] else { return }
            finishTransaction(key, transaction, nil)
        case .registration(let index, let timer):
            registrationTimerFired(index, timer)
        case .inviteFlowCheck(let handle):
            inviteFlowCheckFired(handle)
        }
    }

    /// Keeps a finished call long enough to absorb retransmissions, then forgets it.
    private func scheduleCleanup(_ call: Call) {
        startTimer(.cleanup(call.handle), after: configuration.timerT1 * 64)
    }

    // MARK: - Lookup and addressing

    /// The call whose dialog a request belongs to (Call-ID plus both tags).
    private func findDialog(_ request: SIPRequest) -> Call? {
        guard let callID = request.headers["Call-ID"] else { return nil }
        let fromTag = request.headers["From"].flatMap(SIPNameAddress.init)?.tag
        let toTag = request.headers["To"].flatMap(SIPNameAddress.init)?.tag
        return calls.values.first { call in
            call.callID == callID && call.localTag == toTag && call.remoteTag == fromTag
        }
    }

    /// Where a request outside a dialog goes: with edge proxies always the flow's (nil while
    /// DNS has given it no address: a post's name is then never looked up here, where a
    /// blocking getaddrinfo would stall the actor for the resolver's whole timeout); without
    /// edge proxies, the request URI's host.
    func outOfDialogDestination(_ uri: String) -> SocketAddress? {
        flows.isEmpty ? resolve(uri) : outboundDestination()
    }

    func resolve(_ uriString: String) -> SocketAddress? {
        guard let uri = SIPURI(uriString) else { return nil }
        let port = uri.port ?? (uri.scheme == "sips" ? 5061 : 5060)
        if let address = try? SocketAddress(ipAddress: uri.host, port: port) { return address }
        return try? SocketAddress.makeAddressResolvingHost(uri.host, port: port)
    }

    private func isIPLiteral(_ uriString: String) -> Bool {
        guard let uri = SIPURI(uriString) else { return false }
        return (try? SocketAddress(ipAddress: uri.host, port: 0)) != nil
    }
}

// MARK: - Call record

/// Per-call protocol state, owned by the `UserAgent` actor.
final class Call {
    enum Role { case outgoing, incoming }

    enum State: Equatable {
        /// Outgoing: INVITE sent, nothing heard (Timer A running).
        case calling
        /// Outgoing: a provisional response arrived.
        case proceeding
        /// Outgoing: CANCEL sent or wanted; waiting for the INVITE's final response.
        case cancelling
        /// Incoming: 100 (and maybe 180) sent; waiting for answer or reject.
        case incomingProceeding
        /// Incoming: 2xx sent, retransmitting until the ACK.
        case answering
        /// Incoming: a final error sent, retransmitting until the ACK.
        case rejecting
        /// Both: the dialog is up.
        case confirmed
        /// Both: over; kept a while to absorb retransmissions.
        case terminated
    }

    let handle: CallHandle
    let role: Role
    var state: State
    let callID: String
    let localTag: String
    var remoteTag: String?
    var localParty: SIPNameAddress
    var remoteParty: SIPNameAddress
    var remoteTarget: String
    var routeSet: [String] = []
    /// Next hop for requests inside the dialog.
    var peer: SocketAddress
    /// Where the initial INVITE went (CANCEL and non-2xx ACK follow it).
    var inviteDestination: SocketAddress
    /// Where responses to an incoming INVITE go (its source address, as with rport).
    var responseDestination: SocketAddress
    var localCSeq: UInt32
    var inviteBranch: String
    /// Credentials already sent for this nonce; a second challenge for it means refused.
    var authenticatedNonce: String?
    var invite = SIPRequest(method: .invite, uri: "sip:invalid")
    var provisionalSeen = false
    var cancelWanted = false
    var finalReported = false
    var hasRingTimeout = false
    var ringTimeoutAfterProvisional: Duration?
    /// Timed by `silentPeerTimeout` until the callee answers anything.
    var silentPeer = false
    var sentAt = ContinuousClock.now
    var hangUpAfterAck = false
    /// Our session description as last sent (offer or answer), for re-INVITEs.
    var localSDP: SessionDescription?
    /// The last re-INVITE's CSeq and our answer to it, sent again for a retransmission.
    var lastReinvite: (cseq: String, response: SIPResponse)?
    /// Our 2xx to a re-INVITE is out and its ACK not in: the INVITE's CSeq number, and where
    /// the 2xx goes again.
    var reinviteAck: (cseq: UInt32, destination: SocketAddress)?
    var lastResponse: SIPResponse?
    var ackFor2xx: SIPRequest?
    var retransmitInterval: Duration = .milliseconds(500)

    var inDialogDestination: SocketAddress { peer }

    init(handle: CallHandle, role: Role, state: State, callID: String, localTag: String, localParty: SIPNameAddress,
         remoteParty: SIPNameAddress, remoteTarget: String, peer: SocketAddress, localCSeq: UInt32, inviteBranch: String) {
        self.handle = handle
        self.role = role
        self.state = state
        self.callID = callID
        self.localTag = localTag
        self.localParty = localParty
        self.remoteParty = remoteParty
        self.remoteTarget = remoteTarget
        self.peer = peer
        self.inviteDestination = peer
        self.responseDestination = peer
        self.localCSeq = localCSeq
        self.inviteBranch = inviteBranch
    }

    /// A copy for a second forked 2xx, which gets its own ACK and BYE.
    convenience init(copying other: Call) {
        self.init(handle: other.handle, role: other.role, state: .confirmed, callID: other.callID,
                  localTag: other.localTag, localParty: other.localParty, remoteParty: other.remoteParty,
                  remoteTarget: other.invite.uri, peer: other.inviteDestination, localCSeq: other.localCSeq,
                  inviteBranch: other.inviteBranch)
        invite = other.invite
        finalReported = true
    }
}

// MARK: - Rate-limited logging

/// At most one log line per `interval` for a kind of refusal, so a flood from a hostile
/// network cannot fill the journal; the next line says how many were not logged.
struct RefusalLog {
    static let interval: Duration = .seconds(10)
    private var lastLogged: ContinuousClock.Instant?
    private var suppressed = 0

    /// The number suppressed since the last line when a line is due now, else nil.
    mutating func shouldLog(now: ContinuousClock.Instant) -> Int? {
        if let lastLogged, now - lastLogged < Self.interval {
            suppressed += 1
            return nil
        }
        defer { suppressed = 0 }
        lastLogged = now
        return suppressed
    }
}

// MARK: - Tokens

func randomToken(_ bytes: Int) -> String {
    var rng = SystemRandomNumberGenerator()
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for _ in 0..<bytes {
        let b = UInt8.random(in: 0...255, using: &rng)
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0F)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// RFC 3261 §8.1.1.7: branches start with the magic cookie.
func newBranch() -> String { "z9hG4bK" + randomToken(10) }
