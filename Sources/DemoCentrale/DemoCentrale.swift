public import Logging
public import NIOCore
import SIP

/// How one demo post behaves when the tablet calls it.
public enum DemoPostBehaviour: Sendable, Equatable {
    /// 100, 180, then after the ring delay 200 with an SDP answer; echoes the media.
    case answer
    /// 100 then 486 Busy Here.
    case busy
    /// 100 and 180, then rings until cancelled.
    case noAnswer
    /// Nothing listens on its port.
    case unreachable
}

/// What the centrale saw, for tests and the demo's output.
public enum DemoCentraleEvent: Sendable, Equatable {
    case incomingCall(post: Int)
    case answered(post: Int)
    case rejected(post: Int, status: Int)
    case cancelled(post: Int)
    case tabletHungUp(post: Int)
    /// Our call to the tablet (`callTablet`) was answered / ended by the tablet.
    case tabletAnsweredOurCall
    case tabletEndedOurCall
}

/// Outcome of `callTablet`.
public enum DemoCallResult: Sendable, Equatable {
    case answered
    case failed(status: Int?, reason: String)
}

/// A small SIP centrale on loopback for the demo and for tests without an outside server:
/// one `UserAgent` per post, each with a configured behaviour, plus one caller agent that can
/// ring the tablet. Answered calls echo every RTP/RTCP datagram back to its sender; for SRTP
/// the answer carries the tablet's own key (`AnswerKeyPolicy.reuseOffered`) so the tablet can
/// decrypt its echoed media.
public actor DemoCentrale {
    public nonisolated let events: AsyncStream<DemoCentraleEvent>
    private let continuation: AsyncStream<DemoCentraleEvent>.Continuation
    private let behaviours: [DemoPostBehaviour]
    /// Fixed SIP ports per post (the daemon's demo uses the posts' configured addresses); nil: any.
    private let fixedPorts: [Int]?
    private let ringDelay: Duration
    private let host: String
    private let group: any EventLoopGroup
    private let logger: Logger
    private let counter = EchoCounter()

    private var posts: [Int: UserAgent] = [:]
    private var caller: UserAgent?
    /// Extra caller agents by SIP user, so a call can come from `marieke` or a stranger.
    private var callers: [String: UserAgent] = [:]
    /// Which agent placed each call to the tablet, and with which offer.
    private var callerOf: [CallHandle: UserAgent] = [:]
    private var offerOf: [CallHandle: PendingOffer] = [:]
    private var tasks: [Task<Void, Never>] = []
    private var ringTasks: [CallHandle: Task<Void, Never>] = [:]
    private var echoes: [CallHandle: EchoSet] = [:]
    private var outgoing: [CallHandle: CheckedContinuation<DemoCallResult, Never>] = [:]
    /// Results that arrived before `callTablet` started waiting.
    private var earlyResults: [CallHandle: DemoCallResult] = [:]
    private var activeTabletCalls: Set<CallHandle> = []

    public init(
        posts: [DemoPostBehaviour], ports: [Int]? = nil, ringDelay: Duration = .seconds(2), host: String = "127.0.0.1",
        group: any EventLoopGroup, logger: Logger
    ) {
        precondition(ports == nil || ports!.count == posts.count, "one port per post")
        self.behaviours = posts
        self.fixedPorts = ports
        self.ringDelay = ringDelay
        self.host = host
        self.group = group
        self.logger = logger
        (events, continuation) = AsyncStream<DemoCentraleEvent>.makeStream()
    }

    /// Total RTP/RTCP datagrams echoed so far.
    public nonisolated var echoedPackets: Int { counter.packets.load(ordering: .relaxed) }

    /// Starts every post; returns each post's SIP port in order (for an unreachable post, a
    /// port that was free a moment ago and that nothing listens on).
    public func start() async throws -> [Int] {
        var ports: [Int] = []
        for (index, behaviour) in behaviours.enumerated() {
            if behaviour == .unreachable {
                if let fixed = fixedPorts?[index] {
                    ports.append(fixed)
                } else {
                    ports.append(try await Self.unusedPort(host: host, group: group))
                }
                continue
            }
            var postLogger = logger
            postLogger[metadataKey: "post"] = "\(index)"
            let agent = UserAgent(
                configuration: UserAgentConfiguration(
                    localHost: host, localPort: fixedPorts?[index] ?? 0, user: "post\(index)", displayName: "Post \(index)"),
                group: group, logger: postLogger)
            ports.append(try await agent.start())
            // The centrale's callback service too: a callback request's MESSAGE to a post's
            // address is acknowledged (200), so the demo shows the promise becoming true.
            await agent.setMessageHandler { [postLogger] request in
                postLogger.notice("demo centrale: callback request acknowledged", metadata: ["bytes": "\(request.body.count)"])
                return 200
            }
            posts[index] = agent
            tasks.append(Task { [events = agent.events] in
                for await event in events { await self.handle(event, post: index, agent: agent, behaviour: behaviour) }
            })
        }
        let callerAgent = UserAgent(
            configuration: UserAgentConfiguration(localHost: host, user: "centrale", displayName: "Centrale"),
            group: group, logger: logger)
        _ = try await callerAgent.start()
        caller = callerAgent
        tasks.append(Task { [events = callerAgent.events] in
            for await event in events { await self.handleCallerEvent(event) }
        })
        logger.info("demo centrale started", metadata: ["ports": "\(ports)"])
        return ports
    }

    public func shutdown() async {
        for task in ringTasks.values { task.cancel() }
        ringTasks.removeAll()
        for agent in posts.values { await agent.shutdown() }
        await caller?.shutdown()
        for agent in callers.values { await agent.shutdown() }
        for task in tasks { await task.value }
        for echo in echoes.values { await echo.close() }
        echoes.removeAll()
        for (_, waiter) in outgoing { waiter.resume(returning: .failed(status: nil, reason: "centrale shut down")) }
        outgoing.removeAll()
        continuation.finish()
    }

    /// Rings the tablet at `uri` from the centrale, shown as `displayName`. Returns once the
    /// tablet answers or refuses. With `secure`, the offer uses SRTP; since the tablet answers
    /// with its own key, the echo then decrypts what the tablet sends and encrypts it again
    /// with the centrale's key, so the tablet decodes its own media as from a real peer.
    /// `fromUser` is the SIP user the call comes from (`centrale` by default; a family
    /// member's or a stranger's name to try the tablet's contact list).
    public func callTablet(
        uri: String, displayName: String, fromUser: String = "centrale", secure: Bool = false
    ) async -> DemoCallResult {
        guard let centraleCaller = caller else { return .failed(status: nil, reason: "centrale not started") }
        let caller: UserAgent
        if fromUser == "centrale" {
            caller = centraleCaller
        } else if let existing = callers[fromUser] {
            caller = existing
        } else {
            let agent = UserAgent(
                configuration: UserAgentConfiguration(localHost: host, user: fromUser, displayName: displayName),
                group: group, logger: logger)
            do {
                _ = try await agent.start()
            } catch {
                return .failed(status: nil, reason: "cannot start caller \(fromUser): \(error)")
            }
            callers[fromUser] = agent
            tasks.append(Task { [events = agent.events] in
                for await event in events { await self.handleCallerEvent(event) }
            })
            caller = agent
        }
        let echo: EchoSet
        do {
            echo = try await EchoSet.bind(host: host, group: group, counter: counter, awaitingKeys: secure)
        } catch {
            return .failed(status: nil, reason: "cannot bind media: \(error)")
        }
        let offer = MediaNegotiator(localAddress: host, audioPort: echo.audio.port, videoPort: echo.video.port,
                                    srtpRequired: secure).makeOffer()
        let handle = await caller.invite(to: uri, offer: offer.description, displayName: displayName)
        callerOf[handle] = caller
        offerOf[handle] = offer
        echoes[handle] = echo
        if let result = earlyResults.removeValue(forKey: handle) { return result }
        return await withCheckedContinuation { outgoing[handle] = $0 }
    }

    /// Ends every call the centrale placed to the tablet.
    public func hangUpTabletCalls() async {
        for handle in activeTabletCalls { await (callerOf[handle] ?? caller)?.hangUp(handle) }
        for handle in activeTabletCalls { await closeEcho(handle) }
        activeTabletCalls.removeAll()
    }

    // MARK: - Events

    private func handle(_ event: UserAgentEvent, post: Int, agent: UserAgent, behaviour: DemoPostBehaviour) async {
        switch event {
        case .incoming(let call, _, _, let offer):
            continuation.yield(.incomingCall(post: post))
            switch behaviour {
            case .busy:
                await agent.reject(call, status: 486, reason: "Busy Here")
                continuation.yield(.rejected(post: post, status: 486))
            case .noAnswer:
                await agent.ring(call)
            case .answer:
                await agent.ring(call)
                let delay = ringDelay
                ringTasks[call] = Task {
                    try? await Task.sleep(for: delay)
                    guard !Task.isCancelled else { return }
                    await self.answer(call, offer: offer, post: post, agent: agent)
                }
            case .unreachable:
                break  // never started
            }
        case .remoteCancelled(let call):
            ringTasks.removeValue(forKey: call)?.cancel()
            continuation.yield(.cancelled(post: post))
        case .remoteHungUp(let call):
            await closeEcho(call)
            continuation.yield(.tabletHungUp(post: post))
        case .progress, .answered, .failed, .mediaChanged:
            break  // posts do not place calls; re-INVITEs are answered without a handler
        }
    }

    private func answer(_ call: CallHandle, offer: SessionDescription, post: Int, agent: UserAgent) async {
        ringTasks[call] = nil
        do {
            let echo = try await EchoSet.bind(host: host, group: group, counter: counter)
            echoes[call] = echo
            let negotiator = MediaNegotiator(localAddress: host, audioPort: echo.audio.port,
                                             videoPort: echo.video.port, srtpRequired: false)
            var (answer, _) = try negotiator.answer(offer, keyPolicy: .reuseOffered)
            // Peers without rtcp-mux send RTCP to a separate port: point them at ours.
            for index in answer.media.indices where answer.media[index].port != 0
                && !answer.media[index].hasAttribute("rtcp-mux")
            {
                let rtcp = answer.media[index].kind == "video" ? echo.videoRTCP.port : echo.audioRTCP.port
                answer.media[index].attributes.append(SDPAttribute("rtcp", "\(rtcp)"))
            }
            await agent.answer(call, with: answer)
            continuation.yield(.answered(post: post))
        } catch let error as SDPNegotiationError {
            await agent.reject(call, status: error.sipStatus, reason: "Not Acceptable Here")
            await closeEcho(call)
            continuation.yield(.rejected(post: post, status: error.sipStatus))
        } catch {
            logger.error("demo centrale cannot bind media", metadata: ["error": "\(error)"])
            await agent.reject(call, status: 500, reason: "Server Internal Error")
            continuation.yield(.rejected(post: post, status: 500))
        }
    }

    private func handleCallerEvent(_ event: UserAgentEvent) async {
        switch event {
        case .answered(let call, let remote):
            if let offer = offerOf.removeValue(forKey: call), offer.description.media.contains(where: { $0.proto.uppercased() == "RTP/SAVP" }) {
                do {
                    let media = try MediaNegotiator.readAnswer(remote, for: offer)
                    func keys(_ stream: NegotiatedStream?) -> (receive: [UInt8], send: [UInt8])? {
                        guard let stream, let receive = stream.receiveKey, let send = stream.sendKey else { return nil }
                        return (receive.bytes, send.bytes)
                    }
                    try echoes[call]?.rekey(audio: keys(media.audio), video: keys(media.video))
                } catch {
                    logger.warning("demo echo cannot re-key SRTP", metadata: ["error": "\(error)"])
                }
            }
            activeTabletCalls.insert(call)
            continuation.yield(.tabletAnsweredOurCall)
            resolve(call, .answered)
        case .failed(let call, let status, let reason):
            offerOf[call] = nil
            await closeEcho(call)
            resolve(call, .failed(status: status, reason: reason))
        case .remoteHungUp(let call):
            activeTabletCalls.remove(call)
            await closeEcho(call)
            continuation.yield(.tabletEndedOurCall)
        case .progress, .incoming, .remoteCancelled, .mediaChanged:
            break
        }
    }

    private func resolve(_ call: CallHandle, _ result: DemoCallResult) {
        if let waiter = outgoing.removeValue(forKey: call) {
            waiter.resume(returning: result)
        } else {
            earlyResults[call] = result
        }
    }

    private func closeEcho(_ call: CallHandle) async {
        if let echo = echoes.removeValue(forKey: call) { await echo.close() }
    }

    private static func unusedPort(host: String, group: any EventLoopGroup) async throws -> Int {
        let socket = try await EchoSocket.bind(host: host, group: group, counter: EchoCounter(), mode: .reflect)
        let port = socket.port
        await socket.close()
        return port
    }
}
