import BeeldzorgConfig
import CallFlow
import Control
import DemoCentrale
import Devices
import Foundation
import Logging
import Media
import NIOCore
import ServiceLifecycle
import SIP
import Store
import Synchronization

/// Executes CallFlow's signalling and media actions with the SIP user agent and a media
/// session per call, and turns what the user agent reports into CallFlow events.
///
/// Legs: CallFlow names them (`CallLegID`), the user agent names its dialogs
/// (`CallHandle`); this class keeps the two-way map. One media session is bound before the
/// first INVITE of an attempt (its ports go into the SDP offer, shared by every forked leg of
/// ring-all) and started when CallFlow says `startMedia`.
final class SIPCallSignalling: CallSignalling, Service, Sendable {
    private struct State {
        var sink: AsyncStream<ControllerInput>.Continuation?
        var handles: [CallLegID: CallHandle] = [:]
        var legs: [CallHandle: CallLegID] = [:]
        /// The media session and offer of the current outgoing attempt.
        var outgoing: (session: MediaSession, offer: PendingOffer)?
        /// Offers of incoming calls, until answered or gone.
        var incomingOffers: [CallLegID: SessionDescription] = [:]
        /// Negotiated media per leg, from the answer (outgoing) or our answer (incoming).
        var negotiated: [CallLegID: MediaDescription] = [:]
        /// The session bound for an incoming call we answered.
        var answering: [CallLegID: MediaSession] = [:]
        var active: MediaSession?
        /// The leg whose media runs (or is held); set by `startMedia`.
        var activeLeg: CallLegID?
        /// The post holds the call: we do not send until it resumes (a re-INVITE).
        var held = false
        /// What a re-INVITE's answer promised, applied when the user agent reports
        /// `.mediaChanged` (our 200 is out).
        var mediaChanges: [CallHandle: MediaChange] = [:]
        var nextIncoming: UInt64 = 1
    }

    /// A change of the running call's media that a re-INVITE brought.
    private enum MediaChange {
        /// Held by the post, or resumed: the session runs on unchanged (see `reoffer`).
        case held(Bool)
        /// Stop the running session and start this one, bound for the new answer.
        case restart(MediaSession, MediaDescription, held: Bool)
    }

    private let configuration: Configuration
    private let userAgent: UserAgent
    private let demoCentrale: DemoCentrale?
    private let devices: DeviceSet
    private let callLog: CallLogWriter
    private let screen: ConsoleScreen
    private let logger: Logger
    private let tabletURI: String
    private let state = Mutex(State())

    private init(configuration: Configuration, userAgent: UserAgent, demoCentrale: DemoCentrale?, devices: DeviceSet,
                 callLog: CallLogWriter, screen: ConsoleScreen, tabletURI: String, logger: Logger) {
        self.configuration = configuration
        self.userAgent = userAgent
        self.demoCentrale = demoCentrale
        self.devices = devices
        self.callLog = callLog
        self.screen = screen
        self.tabletURI = tabletURI
        self.logger = logger
    }

    /// Binds the user agent (and starts the demo centrale when configured).
    static func start(configuration: Configuration, group: any EventLoopGroup, devices: DeviceSet,
                      callLog: CallLogWriter, screen: ConsoleScreen, instanceID: String,
                      logger: Logger) async throws -> SIPCallSignalling {
        var demo: DemoCentrale?
        if configuration.demoCentrale {
            let ports = try configuration.centrale.posts.map { post -> Int in
                guard let port = Self.port(of: post.uri) else {
                    throw ConfigError(key: "centrale.posts", line: nil, message: "demo post \(post.id) needs an explicit port in \(post.uri)")
                }
                return port
            }
            let centrale = DemoCentrale(posts: ports.map { _ in .answer }, ports: ports, group: group,
                                        logger: Logger(label: "beeldzorgd.demo-centrale"))
            _ = try await centrale.start()
            demo = centrale
            logger.notice("demo centrale listening", metadata: ["posts": "\(configuration.centrale.posts.map(\.uri))"])
        }
        let account = configuration.account
        var agentConfiguration = UserAgentConfiguration(
            localHost: account.listenHost, localPort: account.listenPort, user: account.user,
            displayName: account.displayName, srtpRequired: configuration.srtp == .required,
            transport: userAgentTransport(configuration.transport),
            tls: tlsTrust(configuration), registration: registration(configuration, instanceID: instanceID, logger: logger),
            domain: account.domain
        )
        let tcp = configuration.sipTCP
        agentConfiguration.streamServerLimits = StreamServerLimits(
            maxConnections: tcp.maxConnections, maxConnectionsPerSource: tcp.maxConnectionsPerAddress,
            idleTimeout: .seconds(Int64(tcp.idleTimeoutSeconds)), headerTimeout: .seconds(Int64(tcp.headerTimeoutSeconds)))
        let userAgent = UserAgent(configuration: agentConfiguration, group: group, logger: logger)
        let port = try await userAgent.start()
        if !userAgent.verifiesCallers {
            logger.warning("no edge proxy: callers are not verified (anyone can claim a contact's address); contacts ring, auto-answer is off")
        }
        // The demo centrale calls this URI; with a wildcard listen_host it names the domain.
        let host = account.listenHost == "0.0.0.0" ? account.domain : account.listenHost
        let tabletURI = "sip:\(account.user)@\(host):\(port)"
        let bound = account.listenHost.contains(":") ? "[\(account.listenHost)]:\(port)" : "\(account.listenHost):\(port)"
        logger.info("user agent listening", metadata: [
            "address": "\(bound)", "user": "\(account.user)", "transport": "\(configuration.transport.rawValue)"])
        let signalling = SIPCallSignalling(configuration: configuration, userAgent: userAgent, demoCentrale: demo,
                                           devices: devices, callLog: callLog, screen: screen, tabletURI: tabletURI,
                                           logger: logger)
        await userAgent.setReofferHandler { [weak signalling] handle, offer, current in
            signalling?.reoffer(handle, offer: offer, current: current)
                ?? MediaNegotiator.reanswer(offer, current: current).map { .answer($0, mediaChanged: false) }
                ?? .refuse(status: 488)
        }
        return signalling
    }

    static func userAgentTransport(_ transport: Configuration.Transport) -> UserAgentConfiguration.Transport {
        switch transport {
        case .udp: .udp
        case .tcp: .tcp
        case .tls: .tls
        }
    }

    /// The pinned CA and the first edge proxy's DNS name (SNI and the certificate check).
    static func tlsTrust(_ configuration: Configuration) -> TLSTrust? {
        guard configuration.transport == .tls, let caFile = configuration.caFile,
              let first = configuration.edgeProxies.first else { return nil }
        return TLSTrust(caFile: caFile, serverName: host(of: first))
    }

    /// REGISTER through each edge proxy (RFC 5626 outbound), when any are configured.
    static func registration(_ configuration: Configuration, instanceID: String, logger: Logger) -> RegistrationConfiguration? {
        guard !configuration.edgeProxies.isEmpty else { return nil }
        guard let passwordFile = configuration.account.passwordFile else {
            logger.error("edge proxies configured without account.password_file; not registering")
            return nil
        }
        let suffix = configuration.transport == .udp ? "" : ";transport=\(configuration.transport.rawValue)"
        let proxies = configuration.edgeProxies.map { uri in
            EdgeProxy(uri: "sip:" + hostPort(of: uri) + suffix, tlsServerName: configuration.transport == .tls ? host(of: uri) : nil)
        }
        return RegistrationConfiguration(
            domain: configuration.account.domain, authUser: configuration.account.user, passwordFile: passwordFile,
            instanceID: instanceID, edgeProxies: proxies, addressCacheFile: addressCacheFile(configuration))
    }

    /// The last good addresses of DNS-named edge proxies, beside the database (the state
    /// directory, `/var/lib/beeldzorg`), so a boot without DNS can still try them.
    static func addressCacheFile(_ configuration: Configuration) -> String {
        let database = configuration.databasePath
        let directory = database.contains("/") ? String(database[..<database.lastIndex(of: "/")!]) : "."
        return (directory.isEmpty ? "" : directory) + "/edge-proxy-addresses"
    }

    /// `sips:edge1.example:5061;lr` → `edge1.example:5061`.
    static func hostPort(of uri: String) -> String {
        var text = Substring(uri)
        if let colon = text.firstIndex(of: ":"), ["sip", "sips"].contains(text[..<colon].lowercased()) {
            text = text[text.index(after: colon)...]
        }
        if let at = text.firstIndex(of: "@") { text = text[text.index(after: at)...] }
        return String(text.prefix { $0 != ";" && $0 != ">" && $0 != "?" })
    }

    /// `sips:edge1.example:5061` → `edge1.example`.
    static func host(of uri: String) -> String {
        let hostPort = hostPort(of: uri)
        if hostPort.hasPrefix("["), let close = hostPort.firstIndex(of: "]") {
            return String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
        }
        return String(hostPort.prefix { $0 != ":" })
    }

    func attach(_ sink: AsyncStream<ControllerInput>.Continuation) {
        state.withLock { $0.sink = sink }
    }

    private func report(_ event: CallFlowEvent) {
        _ = state.withLock { $0.sink }?.yield(.flow(event))
    }

    // MARK: Service: the user agent's events → CallFlow

    func run() async throws {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.watchPostLiveness() }
                group.addTask { await self.watchRegistration() }
                group.addTask { await self.watchNetwork() }
                for await event in userAgent.events {
                    await handle(event)
                }
                group.cancelAll()
            }
        } onGracefulShutdown: {
            Task { await self.userAgent.shutdown() }
        }
    }

    /// Registration per edge proxy → CallFlow's `registration(up:)`: up while any proxy holds a
    /// binding, down when none does.
    ///
    /// The network (CallFlow's `network(up:)`, "no internet" on the screen) counts as down when
    /// no proxy holds a binding and every one failed for a path reason (DNS, no answer, no
    /// connection), not for a refusal (wrong password, a 4xx): those say the path works.
    private func watchRegistration() async {
        var registered: [String: Bool] = [:]
        var pathDown: [String: Bool] = [:]
        var lastReported: Bool?
        var lastNetwork = true
        for await event in userAgent.registrationEvents {
            switch event {
            case .registered(let proxy, let expires):
                registered[proxy] = true
                pathDown[proxy] = false
                logger.info("registered", metadata: ["proxy": "\(proxy)", "expires": "\(expires)"])
            case .failed(let proxy, let reason):
                registered[proxy] = false
                pathDown[proxy] = RegistrationEvent.isPathProblem(reason)
                logger.warning("registration failed", metadata: ["proxy": "\(proxy)", "reason": "\(reason)"])
            }
            let up = registered.values.contains(true)
            if up != lastReported {
                lastReported = up
                report(.registration(up: up))
            }
            let network = up || pathDown.count < configuration.edgeProxies.count || pathDown.values.contains(false)
            if network != lastNetwork {
                lastNetwork = network
                logger.notice(network ? "network path to the edge proxies is back" : "no network path to the edge proxies")
                report(.network(up: network))
            }
        }
    }

    /// rtnetlink → register again at once when connectivity may have changed (links,
    /// addresses, routes), instead of waiting for a retry timer. Only with edge proxies.
    private func watchNetwork() async {
        guard !configuration.edgeProxies.isEmpty else { return }
        let watcher = NetworkWatcher(logger: logger)
        do {
            try watcher.start()
        } catch {
            logger.warning("cannot watch the network; registration waits for its timers", metadata: ["error": "\(error)"])
            return
        }
        await withTaskCancellationHandler {
            for await _ in watcher.changes { await userAgent.networkChanged() }
        } onCancel: {
            watcher.stop()
        }
    }

    /// How often each post is asked OPTIONS, and how long it may take to answer.
    static let livenessInterval: Duration = .seconds(20)
    static let livenessTimeout: Duration = .seconds(2)

    /// Learns ahead of a press which posts answer at all (OPTIONS), so CallFlow skips dead
    /// ones instead of waiting on them; reports only changes.
    private func watchPostLiveness() async {
        var known: [String: Bool] = [:]
        while !Task.isCancelled {
            for post in configuration.centrale.posts {
                let alive = await userAgent.probe(post.uri, timeout: Self.livenessTimeout) != nil
                if known[post.id] != alive {
                    known[post.id] = alive
                    logger.notice("post liveness", metadata: ["post": "\(post.id)", "alive": "\(alive)"])
                    report(.postAvailability(postID: post.id, alive: alive))
                }
            }
            try? await Task.sleep(for: Self.livenessInterval)
        }
    }

    func shutdown() async {
        let sessions = state.withLock { state -> [MediaSession] in
            let all = [state.active, state.outgoing?.session].compactMap { $0 } + Array(state.answering.values)
            state.active = nil
            state.outgoing = nil
            state.answering = [:]
            return all
        }
        sessions.forEach { $0.stop() }
        await userAgent.shutdown()
        await demoCentrale?.shutdown()
    }

    private func leg(for handle: CallHandle) -> CallLegID? {
        state.withLock { $0.legs[handle] }
    }

    private func handle(_ event: UserAgentEvent) async {
        switch event {
        case .progress(let handle, let status):
            guard let leg = leg(for: handle), status >= 180 else { return }
            report(.provisional(leg, code: status))
        case .answered(let handle, let remote):
            guard let leg = leg(for: handle) else { return }
            let offer = state.withLock { $0.outgoing?.offer }
            guard let offer else {
                report(.answered(leg))
                return
            }
            do {
                let media = try MediaNegotiator.readAnswer(remote, for: offer)
                state.withLock { $0.negotiated[leg] = media }
                report(.answered(leg))
            } catch {
                // An answer we cannot use (no SRTP, no codec): end that dialog, count it as a failed post.
                logger.warning("unusable SDP answer", metadata: ["leg": "\(leg)", "error": "\(error)"])
                await userAgent.hangUp(handle)
                report(.failed(leg, code: error.sipStatus, reason: "unusable SDP answer: \(error)"))
            }
        case .failed(let handle, let status, let reason):
            guard let leg = leg(for: handle) else { return }
            forget(leg)
            report(.failed(leg, code: status, reason: reason))
        case .incoming(let handle, let fromURI, let displayName, let offer):
            await incoming(handle, fromURI: fromURI, displayName: displayName, offer: offer)
        case .remoteCancelled(let handle):
            guard let leg = leg(for: handle) else { return }
            forget(leg)
            report(.remoteCancelled(leg))
        case .remoteHungUp(let handle):
            guard let leg = leg(for: handle) else { return }
            forget(leg)
            report(.remoteHungUp(leg))
        case .mediaChanged(let handle, _):
            applyMediaChange(handle)
        }
    }

    // MARK: Re-INVITEs: a moved call, hold and resume

    /// Decides on a re-INVITE's offer for the running call (called on the user agent's actor):
    /// - an offer we could not take for a new call either (no SRTP when required, no common
    ///   codec) → 488, and the call goes on unchanged;
    /// - the same remote address, ports, codec and key (a session refresh, hold, resume) → our
    ///   description again with the directions mirrored (recvonly to a hold), nothing restarts;
    /// - a new remote address, port, key or payload type (the centrale's B2BUA moved the call)
    ///   → a new media session with new ports and a fresh SRTP key, started once our 200 is out
    ///   (`MediaSession` starts once and closes its sockets when it stops). A fresh key because
    ///   the new session starts new SRTP contexts: the old key with them could repeat keystream.
    ///
    /// A hold pauses our sending on the running session (`MediaSession.holdSending`: the same
    /// sockets and SRTP contexts, receiving goes on, as our recvonly answer says) rather than
    /// stopping it: a stopped session closes its sockets, and the resume would then have to be
    /// answered with new ports and a new key, which baresip does not take from the answer to
    /// its own re-INVITE (it failed to decrypt our media after such a resume:
    /// BaresipHoldDaemonTests), so the post would hear nothing after every hold.
    fileprivate func reoffer(_ handle: CallHandle, offer: SessionDescription, current: SessionDescription) -> ReofferDecision {
        let srtpRequired = configuration.srtp == .required
        let (leg, running, held) = state.withLock { state -> (CallLegID?, MediaDescription?, Bool) in
            guard let leg = state.legs[handle], state.activeLeg == leg else { return (nil, nil, false) }
            return (leg, state.negotiated[leg], state.held)
        }
        guard let leg, let running else {
            // Not the call whose media runs (an answered leg of ring-all being ended): as before.
            return MediaNegotiator.reanswer(offer, current: current).map { .answer($0, mediaChanged: false) }
                ?? .refuse(status: 488)
        }
        let address = current.connection?.address ?? mediaHost
        let offered: MediaDescription
        do {
            offered = try MediaNegotiator(localAddress: address, audioPort: 9, videoPort: 9, srtpRequired: srtpRequired)
                .answer(offer).media
        } catch {
            logger.notice("re-INVITE refused: unusable offer; the call goes on", metadata: [
                "leg": "\(leg)", "status": "\(error.sipStatus)", "error": "\(error)"])
            return .refuse(status: error.sipStatus)
        }
        let hold = MediaNegotiator.offerIsHold(offer)
        if offered.sameRemoteMedia(as: running), let answer = MediaNegotiator.reanswer(offer, current: current) {
            guard hold != held else { return .answer(answer, mediaChanged: false) }
            state.withLock { $0.mediaChanges[handle] = .held(hold) }
            return .answer(answer, mediaChanged: true)
        }
        do {
            let session = try MediaSession.bind(host: mediaHost)
            let negotiator = MediaNegotiator(localAddress: address, audioPort: session.localAudioPort,
                                             videoPort: session.localVideoPort, srtpRequired: srtpRequired)
            let (answer, media) = try negotiator.answer(offer)
            state.withLock { $0.mediaChanges[handle] = .restart(session, media, held: hold) }
            logger.info("re-INVITE moves the call's media", metadata: [
                "leg": "\(leg)", "remote": "\(media.remoteAddress):\(media.audio?.remotePort ?? 0)", "held": "\(hold)"])
            return .answer(MediaNegotiator.continuing(answer, from: current), mediaChanged: true)
        } catch {
            logger.error("cannot bind media for a re-INVITE; the call goes on", metadata: ["error": "\(error)"])
            return .refuse(status: 500)
        }
    }

    /// Our 200 to a re-INVITE is out: do what `reoffer` promised.
    private func applyMediaChange(_ handle: CallHandle) {
        let (change, leg) = state.withLock { state -> (MediaChange?, CallLegID?) in
            guard let change = state.mediaChanges.removeValue(forKey: handle) else { return (nil, nil) }
            guard let leg = state.legs[handle], state.activeLeg == leg else { return (change, nil) }
            return (change, leg)
        }
        switch change {
        case nil:
            return
        case .held(let held):
            guard let leg else { return }
            let session = state.withLock { state -> MediaSession? in
                state.held = held
                return state.active
            }
            session?.holdSending(held)
            logger.notice(held ? "call held by the post" : "call resumed by the post", metadata: ["leg": "\(leg)"])
        case .restart(let session, let media, let held):
            guard let leg else {
                session.stop()  // the call ended meanwhile
                return
            }
            let old = state.withLock { state -> MediaSession? in
                defer { state.active = nil }
                state.negotiated[leg] = media
                state.held = held
                return state.active
            }
            // The old session first: it holds camera and microphone, which the new one opens.
            old?.stop()
            // The call may have ended (stopMedia) while the old session stopped.
            let stillActive = state.withLock { state -> Bool in
                guard state.activeLeg == leg else { return false }
                state.active = session
                return true
            }
            guard stillActive else {
                session.stop()
                return
            }
            // Moved and held at once (a re-offer to a new relay that is sendonly): nothing
            // goes out until the resume.
            session.holdSending(held)
            run(session, media, leg: leg)
        }
    }

    private func incoming(_ handle: CallHandle, fromURI: String, displayName: String?, offer: SessionDescription) async {
        // An offer we could never answer is refused before the client hears anything.
        let probe = MediaNegotiator(localAddress: "127.0.0.1", audioPort: 9, videoPort: 9, srtpRequired: configuration.srtp == .required)
        do {
            _ = try probe.answer(offer)
        } catch {
            logger.notice("incoming call refused: unusable offer", metadata: ["status": "\(error.sipStatus)", "error": "\(error)"])
            await userAgent.reject(handle, status: error.sipStatus, reason: error.sipStatus == 488 ? "Not Acceptable Here" : "Bad Request")
            return
        }
        let leg = state.withLock { state -> CallLegID in
            let leg = CallLegID.incoming(state.nextIncoming)
            state.nextIncoming += 1
            state.handles[leg] = handle
            state.legs[handle] = leg
            state.incomingOffers[leg] = offer
            return leg
        }
        let contact = knownContact(fromURI, verified: userAgent.verifiesCallers)
        report(.incomingCall(leg, Caller(uri: fromURI, displayName: displayName, contact: contact)))
        // 180 only for callers who will ring; a stranger gets nothing but CallFlow's 403.
        if contact != nil { await userAgent.ring(handle) }
    }

    /// Contacts on the list, and the centrale's own posts (a callback from the centrale).
    /// `verified`: the identity came from an edge proxy (see `UserAgent.verifiesCallers`);
    /// an unverified one (no edge proxies, a lab set-up) may ring but never auto-answers,
    /// since anyone can claim a contact's address in a bare From.
    private func knownContact(_ uri: String, verified: Bool) -> KnownContact? {
        if let contact = callLog.contact(forURI: uri) {
            let autoAnswer = verified ? contact.autoAnswerSeconds.map { Duration.seconds($0) } : nil
            return KnownContact(name: contact.displayName, autoAnswerAfter: autoAnswer)
        }
        guard let caller = SIPAddressKey.normalise(uri) else { return nil }
        if configuration.centrale.posts.contains(where: { SIPAddressKey.normalise($0.uri) == caller }) {
            return KnownContact(name: "Beeldzorgcentrale", isCentralePost: true)
        }
        return nil
    }

    /// `user@host` of a SIP URI, lower-cased, without scheme, port, parameters or display name.
    static func userAndHost(_ uri: String) -> String {
        var text = Substring(uri)
        if let open = text.firstIndex(of: "<"), let close = text.lastIndex(of: ">"), open < close {
            text = text[text.index(after: open)..<close]
        }
        if let colon = text.firstIndex(of: ":"), ["sip", "sips"].contains(text[..<colon].lowercased()) {
            text = text[text.index(after: colon)...]
        }
        text = text.prefix { $0 != ";" && $0 != "?" }
        let at = text.firstIndex(of: "@")
        var host = at.map { text[text.index(after: $0)...] } ?? text
        if !host.hasPrefix("["), let colon = host.firstIndex(of: ":") { host = host[..<colon] }
        let user = at.map { text[..<$0] } ?? ""
        return "\(user)@\(host)".lowercased()
    }

    private func forget(_ leg: CallLegID) {
        let released = state.withLock { state -> MediaSession? in
            if let handle = state.handles.removeValue(forKey: leg) {
                state.legs[handle] = nil
                state.mediaChanges[handle] = nil  // a session bound for a re-INVITE closes as it goes
            }
            state.incomingOffers[leg] = nil
            let answering = state.answering.removeValue(forKey: leg)
            // The attempt's bound session goes when its last outgoing leg is gone unanswered.
            if case .outgoing = leg, state.active == nil,
               !state.handles.keys.contains(where: { if case .outgoing = $0 { true } else { false } }) {
                defer { state.outgoing = nil }
                return state.outgoing?.session ?? answering
            }
            return answering
        }
        released?.stop()
    }

    // MARK: CallSignalling: CallFlow's actions

    /// A callback request's MESSAGE: the way an INVITE goes (the edge proxies' flows), From
    /// the tablet's address of record. Nothing answering within this long is a failed attempt
    /// (retried after a backoff); an edge proxy answers at once, a dead centrale with 408.
    static let callbackMessageTimeout: Duration = .seconds(8)

    func sendCallbackMessage(to uri: String, contentType: String, body: [UInt8]) async -> Int? {
        await userAgent.sendMessage(to: uri, contentType: contentType, body: body, timeout: Self.callbackMessageTimeout)
    }

    /// Where media sockets bind: `listen_host` itself, the wildcard included (any interface).
    /// The SDP c= address is the user agent's `mediaAddress`: `listen_host` when explicit,
    /// else the kernel's source address toward the edge proxy or the peer, asked per call.
    private var mediaHost: String { configuration.account.listenHost }

    func sendInvite(_ leg: CallLegID, to post: CentralePost) async {
        let offer: PendingOffer
        let address = await userAgent.mediaAddress(toward: post.uri)
        do {
            offer = try state.withLock { state -> PendingOffer in
                if let outgoing = state.outgoing { return outgoing.offer }
                let session = try MediaSession.bind(host: mediaHost)
                let negotiator = MediaNegotiator(localAddress: address, audioPort: session.localAudioPort,
                                                 videoPort: session.localVideoPort, srtpRequired: configuration.srtp == .required)
                let offer = negotiator.makeOffer()
                state.outgoing = (session, offer)
                return offer
            }
        } catch {
            logger.error("cannot bind media ports", metadata: ["error": "\(error)"])
            report(.failed(leg, code: nil, reason: "media ports: \(error)"))
            return
        }
        // Hunt: the post's ring timeout bounds its INVITE, so a dead post costs that and
        // never RFC 3261's 32 s (CallFlow moves on at the same moment with its own timer).
        let ringTimeout: Duration? = configuration.centrale.policy == .hunt
            ? .seconds(configuration.centrale.perPostTimeoutSeconds) : nil
        let handle = await userAgent.invite(to: post.uri, offer: offer.description, ringTimeout: ringTimeout)
        state.withLock { state in
            state.handles[leg] = handle
            state.legs[handle] = leg
        }
        logger.info("INVITE", metadata: ["leg": "\(leg)", "post": "\(post.id)"])
    }

    func cancel(_ leg: CallLegID) async {
        guard let handle = state.withLock({ $0.handles[leg] }) else { return }
        await userAgent.cancel(handle)
    }

    func answer(_ leg: CallLegID) async {
        guard let (handle, offer) = state.withLock({ state in
            state.handles[leg].flatMap { handle in state.incomingOffers[leg].map { (handle, $0) } }
        }) else { return }
        let address = await userAgent.mediaAddress(for: handle)
        do {
            let session = try MediaSession.bind(host: mediaHost)
            let negotiator = MediaNegotiator(localAddress: address, audioPort: session.localAudioPort,
                                             videoPort: session.localVideoPort, srtpRequired: configuration.srtp == .required)
            let (answer, media) = try negotiator.answer(offer)
            state.withLock { state in
                state.negotiated[leg] = media
                state.answering[leg] = session
            }
            await userAgent.answer(handle, with: answer)
        } catch {
            logger.error("cannot answer", metadata: ["leg": "\(leg)", "error": "\(error)"])
            await userAgent.reject(handle, status: 500, reason: "Server Internal Error")
            forget(leg)
            report(.failed(leg, code: 500, reason: "could not answer: \(error)"))
        }
    }

    func reject(_ leg: CallLegID, status: Int) async {
        guard let handle = state.withLock({ $0.handles[leg] }) else { return }
        await userAgent.reject(handle, status: status, reason: Self.reasonPhrase(status))
        forget(leg)
    }

    func hangUp(_ leg: CallLegID) async {
        guard let handle = state.withLock({ $0.handles[leg] }) else { return }
        await userAgent.hangUp(handle)
        forget(leg)
    }

    func startMedia(_ leg: CallLegID) async {
        let prepared = state.withLock { state -> (MediaSession, MediaDescription)? in
            guard let media = state.negotiated[leg] else { return nil }
            let session: MediaSession?
            switch leg {
            case .outgoing: session = state.outgoing?.session
            case .incoming: session = state.answering.removeValue(forKey: leg)
            }
            guard let session else { return nil }
            if case .outgoing = leg { state.outgoing = nil }
            state.active = session
            state.activeLeg = leg
            state.held = false
            return (session, media)
        }
        guard let (session, media) = prepared else {
            logger.error("no negotiated media for the call", metadata: ["leg": "\(leg)"])
            report(.mediaFailed(.transport))
            return
        }
        run(session, media, leg: leg)
    }

    /// Starts a bound session with the negotiated media (the call's start, or a re-INVITE's).
    private func run(_ session: MediaSession, _ media: MediaDescription, leg: CallLegID) {
        guard let parameters = parameters(for: media) else {
            logger.error("no negotiated audio for the call", metadata: ["leg": "\(leg)"])
            report(.mediaFailed(.transport))
            return
        }
        let sink = state.withLock { $0.sink }
        do {
            try session.start(
                parameters, camera: devices.makeCamera(), microphone: devices.makeMicrophone(),
                speaker: devices.makeSpeaker(), display: devices.makeDisplay(),
                onFailure: { [logger, weak self, weak session] failure in
                    logger.warning("media failure", metadata: ["failure": "\(failure)"])
                    let kind: MediaFailure? = switch failure.component {
                    case .camera: .camera
                    case .microphone: .microphone
                    case .speaker: .speaker
                    case .network: .transport
                    case .display, .codec, .silence: nil
                    }
                    if let kind { sink?.yield(.flow(.mediaFailed(kind))) }
                    // Silence is the call's, not a device's: only while this session is still
                    // the call's media (a re-INVITE may have replaced it meanwhile).
                    if failure.component == .silence, let self, let session,
                       self.state.withLock({ $0.active === session && $0.activeLeg == leg }) {
                        logger.notice("connection lost: nothing from the other side", metadata: [
                            "leg": "\(leg)", "silentSeconds": "\(session.silentFor.components.seconds)"])
                        sink?.yield(.flow(.connectionLost(leg)))
                    }
                }
            )
            logger.info("media started", metadata: [
                "leg": "\(leg)", "audio": "\(parameters.audioCodec)", "video": "\(parameters.videoPayloadType != nil)",
                "srtp": "\(parameters.sendKey != nil)",
            ])
        } catch {
            logger.error("media could not start", metadata: ["error": "\(error)"])
            report(.mediaFailed(.transport))
        }
    }

    private func parameters(for media: MediaDescription) -> MediaParameters? {
        guard let audio = media.audio else { return nil }
        let codec: AudioCodec
        switch audio.codec {
        case .opus: codec = .opus(payloadType: Int(audio.payloadType))
        case .pcma: codec = .pcma
        case .pcmu: codec = .pcmu
        case .vp8: return nil
        }
        let video = media.video
        return MediaParameters(
            remoteHost: media.remoteAddress, remoteAudioPort: audio.remotePort, remoteAudioRTCPPort: audio.remoteRTCPPort,
            remoteVideoPort: video?.remotePort, remoteVideoRTCPPort: video?.remoteRTCPPort,
            audioCodec: codec, videoPayloadType: video.map { Int($0.payloadType) },
            sendKey: audio.sendKey?.bytes, receiveKey: audio.receiveKey?.bytes,
            videoSendKey: video?.sendKey?.bytes, videoReceiveKey: video?.receiveKey?.bytes,
            allowPlainRTP: configuration.srtp == .off, rtcpMux: audio.rtcpMux,
            cameraFormat: devices.cameraFormat,
            livenessTimeout: .seconds(configuration.media.livenessTimeoutSeconds),
            voiceProcessing: VoiceProcessing(
                echoCancellation: configuration.audio.echoCancellation,
                gainControl: configuration.media.voice.gainControl,
                noiseSuppression: configuration.media.voice.noiseSuppression,
                highPassFilter: configuration.media.voice.highPassFilter)
        )
    }

    func stopMedia() async {
        let session = state.withLock { state -> MediaSession? in
            defer {
                state.active = nil
                state.activeLeg = nil
                state.held = false
            }
            return state.active
        }
        session?.stop()
    }

    func stopVideo() async {
        // MediaSession stops sending video itself when the camera fails (and says so in its
        // failure report); the audio goes on. Nothing more to do here.
        logger.notice("video stopped; audio goes on")
    }

    func mediaStatistics() async -> StatusReport.Media? {
        guard let session = state.withLock({ $0.active }) else { return nil }
        let statistics = session.statistics
        return StatusReport.Media(
            audioPacketsSent: statistics.audio.packetsSent, audioPacketsReceived: statistics.audio.packetsReceived,
            videoFramesSent: statistics.video.framesSent, videoFramesDecoded: statistics.video.framesDecoded,
            authenticationFailures: statistics.audio.authenticationFailures + statistics.video.authenticationFailures,
            heldByPost: session.isSendingHeld
        )
    }

    func registrationStatus() async -> [StatusReport.Registration] {
        await userAgent.registrationStatus().map {
            StatusReport.Registration(proxy: $0.proxy, state: $0.state.rawValue, detail: $0.detail.isEmpty ? nil : $0.detail)
        }
    }

    func demoCallIn(from uri: String?) async throws {
        guard let demoCentrale else {
            throw ControlError(.unavailable, "no demo centrale runs (demo_centrale is off)")
        }
        let user = Self.userAndHost(uri ?? "sip:centrale@127.0.0.1").split(separator: "@").first.map(String.init) ?? ""
        guard !user.isEmpty else { throw ControlError(.badArgument, "the caller needs a SIP user, like sip:marieke@127.0.0.1") }
        let tablet = tabletURI
        let secure = configuration.srtp == .required
        // Not awaited: the call returns only when the tablet answers, which needs this very
        // controller loop to go on.
        Task { [logger] in
            let result = await demoCentrale.callTablet(uri: tablet, displayName: user.capitalized, fromUser: user, secure: secure)
            logger.info("demo call-in ended", metadata: ["result": "\(result)"])
        }
    }

    /// The explicit port of a SIP URI (`sip:post1@127.0.0.1:45071` → 45071).
    static func port(of uri: String) -> Int? {
        let hostPart = uri.split(separator: "@").last.map(String.init) ?? uri
        let trimmed = hostPart.prefix { $0 != ";" && $0 != ">" }
        guard let colon = trimmed.lastIndex(of: ":") else { return nil }
        return Int(trimmed[trimmed.index(after: colon)...])
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 403: "Forbidden"
        case 480: "Temporarily Unavailable"
        case 486: "Busy Here"
        case 488: "Not Acceptable Here"
        case 603: "Decline"
        default: "Rejected"
        }
    }
}
