import FoundationEssentials
import NIOCore

/// Which CA must have issued a TLS server's certificate and which name it must carry.
public struct TLSTrust: Sendable, Equatable {
    /// PEM file with the CA certificate(s); the system's roots are never used.
    public var caFile: String
    /// SNI and the name checked against the certificate (a DNS name, not an IP literal).
    public var serverName: String

    public init(caFile: String, serverName: String) {
        self.caFile = caFile
        self.serverName = serverName
    }
}

/// One RFC 5626 edge proxy: where the flow goes and, for TLS, the name its certificate carries.
public struct EdgeProxy: Sendable, Equatable {
    /// `sip:127.0.0.1:5061;transport=tls`, or a DNS name: `sip:edge.example;transport=tls`
    /// (no port: RFC 3263 SRV `_sips._tcp.edge.example`, else A/AAAA on the default port).
    public var uri: String
    /// Overrides `UserAgentConfiguration.tls.serverName` for this proxy.
    public var tlsServerName: String?

    public init(uri: String, tlsServerName: String? = nil) {
        self.uri = uri
        self.tlsServerName = tlsServerName
    }
}

/// REGISTER settings (RFC 3261 §10, RFC 5626 outbound).
public struct RegistrationConfiguration: Sendable {
    /// Host part of our address-of-record, `sip:user@domain`; also the REGISTER Request-URI.
    public var domain: String
    /// Digest user name (often the same as the AoR user).
    public var authUser: String
    /// File holding the digest password (first line). Read at each REGISTER; never logged.
    public var passwordFile: String
    /// `urn:uuid:…`, stable for this device (RFC 5626 `+sip.instance`).
    public var instanceID: String
    /// One or two; the first gets reg-id 1, the second reg-id 2.
    public var edgeProxies: [EdgeProxy]
    /// Requested registration lifetime.
    public var expires: Int
    /// CRLF ping interval on TCP/TLS flows (RFC 5626 §4.4.1 suggests ~25 s for TCP/TLS... we
    /// keep it configurable) and how long to wait for the pong before the flow counts dead.
    public var keepaliveInterval: Duration
    public var pongTimeout: Duration
    /// Retry after failure: min(maxBackoff, baseBackoff · 2^failures) · random(0.5…1) (RFC 5626 §4.5).
    public var baseBackoff: Duration
    public var maxBackoff: Duration
    /// UDP only: the longest time between two REGISTERs. A registrar that restarted and lost
    /// its bindings still answers STUN and OPTIONS on the same address, so on UDP nothing but
    /// a REGISTER notices; TCP/TLS notice because the connection breaks. 30 s bounds how long
    /// a tablet can be unreachable after such a restart, at ~1.3 kB per refresh.
    public var udpRefreshInterval: Duration
    /// Where the last good addresses of DNS-named edge proxies are kept, so a boot without DNS
    /// can still try them (TLS still checks the proxy's name); nil = not kept.
    public var addressCacheFile: String?

    public init(
        domain: String, authUser: String, passwordFile: String, instanceID: String, edgeProxies: [EdgeProxy],
        expires: Int = 600, keepaliveInterval: Duration = .seconds(25), pongTimeout: Duration = .seconds(10),
        baseBackoff: Duration = .seconds(2), maxBackoff: Duration = .seconds(300),
        udpRefreshInterval: Duration = .seconds(30), addressCacheFile: String? = nil
    ) {
        self.addressCacheFile = addressCacheFile
        self.domain = domain
        self.authUser = authUser
        self.passwordFile = passwordFile
        self.instanceID = instanceID
        self.edgeProxies = edgeProxies
        self.expires = expires
        self.keepaliveInterval = keepaliveInterval
        self.pongTimeout = pongTimeout
        self.baseBackoff = baseBackoff
        self.maxBackoff = maxBackoff
        self.udpRefreshInterval = udpRefreshInterval
    }
}

/// What registration reports per edge proxy (`proxy` is the `EdgeProxy.uri`).
public enum RegistrationEvent: Sendable, Equatable {
    /// The registrar accepted us for `expires` seconds; the flow is up.
    case registered(proxy: String, expires: Int)
    /// Not registered via this proxy (any more); `reason` is for status and logs; a retry is scheduled.
    case failed(proxy: String, reason: String)

    /// Whether a `failed` reason says the path is missing (no DNS, no answer, no connection)
    /// rather than that the registrar refused us.
    public static func isPathProblem(_ reason: String) -> Bool {
        ["DNS:", "no response", "connection", "no keepalive", "edge proxy address changed"].contains { reason.hasPrefix($0) }
    }
}

/// A snapshot of one edge proxy's registration, for status displays.
public struct RegistrationStatus: Sendable, Equatable {
    public enum State: String, Sendable {
        case registering, registered, failed
    }
    public var proxy: String
    public var state: State
    /// Granted expiry when registered; the last failure reason when failed.
    public var detail: String
}

struct ConfigurationError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum RegistrationTimer: Hashable {
    case refresh, retry, keepalive, pongTimeout
    /// Resolve the edge proxy's name again (TTL expired, or a failed lookup's retry).
    case resolve
    /// UDP: the STUN keepalive request again (RFC 5389 retransmission, T1 doubling).
    case keepaliveRetransmit
}

/// How a UDP flow is kept alive and checked (RFC 5626 §4.4.2). TCP/TLS always use CRLF.
enum UDPKeepalive: Equatable {
    /// No answer yet: STUN is tried first.
    case unknown
    /// The edge proxy answers STUN Binding requests (Kamailio with its `stun` module).
    case stun
    /// STUN went unanswered; an OPTIONS to the edge proxy decides whether it is there at all.
    case optionsTrial
    /// The edge proxy answers OPTIONS but not STUN: OPTIONS it is, for this flow.
    case options
}

/// Protocol state of one edge proxy's registration; owned by the `UserAgent` actor.
final class RegistrationFlow {
    enum State: Equatable {
        case registering
        case registered(expires: Int)
        case waiting(reason: String)
        case stopped
    }

    let index: Int
    let proxy: EdgeProxy
    let regID: Int
    /// The address in use now: one of `candidates`; nil while DNS has given none.
    var destination: SocketAddress?
    /// RFC 3263's ordered targets for this proxy (SRV priority/weight, then A/AAAA); a failed
    /// REGISTER moves on to the next one, and only after all of them the backoff applies.
    var candidates: [SocketAddress] = []
    /// Candidates tried without success since the last success or the last full round.
    var triedInRound = 0
    var resolution: ProxyResolution
    let proxyURI: SIPURI
    let callID: String
    var cseq: UInt32 = 1
    var state: State = .registering
    var failures = 0
    /// Nonce we last answered; another challenge with it (not stale) means wrong credentials.
    var answeredNonce: String?
    var nonceCount: UInt32 = 0
    var challenge: DigestChallenge?
    var challengeHeader = "Authorization"
    var pendingBranch: String?
    /// Set by a transport failure so the aborted transaction reports why.
    var abortReason: String?
    var expiresRequested: Int
    /// Challenges answered since the last success or failure; a second 401/407 in a row
    /// means the credentials are wrong (servers send a fresh nonce each time).
    var authAttempts = 0
    /// A keepalive (CRLF ping, STUN or OPTIONS) is out and its answer has not come.
    var awaitingPong = false
    /// nil until the first keepalive of this registration; then whether the last was answered.
    var keepaliveAnswered: Bool?
    var udpKeepalive = UDPKeepalive.unknown
    /// The outstanding STUN request's transaction id, and its retransmission interval.
    var stunTransaction: [UInt8]?
    var stunInterval: Duration = .milliseconds(500)
    /// Where the edge proxy last saw us from (XOR-MAPPED-ADDRESS); a change means a NAT
    /// rebound the flow, and we register again (RFC 5626 §4.4.2).
    var mappedAddress: SocketAddress?

    init(index: Int, proxy: EdgeProxy, lookup: ServerLookup, proxyURI: SIPURI, callID: String, expires: Int) {
        self.index = index
        self.proxy = proxy
        self.regID = index + 1
        self.resolution = ProxyResolution(lookup: lookup)
        self.proxyURI = proxyURI
        self.callID = callID
        self.expiresRequested = expires
    }
}

extension UserAgent {
    // MARK: - Public

    /// Each edge proxy's registration as it stands.
    public func registrationStatus() -> [RegistrationStatus] {
        flows.map { flow in
            switch flow.state {
            case .registering: RegistrationStatus(proxy: flow.proxy.uri, state: .registering, detail: "")
            case .registered(let expires):
                RegistrationStatus(proxy: flow.proxy.uri, state: .registered,
                                   detail: "expires \(expires) s; \(keepaliveDescription(flow))")
            case .waiting(let reason):
                RegistrationStatus(proxy: flow.proxy.uri, state: .failed, detail: reason)
            case .stopped:
                RegistrationStatus(proxy: flow.proxy.uri, state: .failed, detail: "stopped")
            }
        }
    }

    /// Connectivity may have changed (`NetworkWatcher`): re-register every flow at once instead
    /// of waiting for its backoff timer. Registered flows are redone too: their connection may
    /// have died with the old address or route (RFC 5626 §4.4 wants a new flow then), so a
    /// TCP/TLS connection is closed and dialled again rather than trusted.
    public func networkChanged() {
        guard !stopped else { return }
        logger.info("network changed; registering again", metadata: ["flows": "\(flows.count)"])
        for flow in flows where flow.state != .stopped {
            flow.failures = 0
            flow.awaitingPong = false
            flow.mappedAddress = nil  // a new address is expected now, not a NAT rebinding
            cancelTimer(.registration(flow.index, .pongTimeout))
            cancelTimer(.registration(flow.index, .keepaliveRetransmit))
            if let destination = flow.destination { streamTransport?.disconnect(destination) }
            flow.triedInRound = 0
            resolutionEvent(flow, .networkChanged)
            sendRegister(flow)
        }
    }

    /// For status: how the flow is kept alive and whether the last keepalive was answered.
    private func keepaliveDescription(_ flow: RegistrationFlow) -> String {
        let method = switch (reliable, flow.udpKeepalive) {
        case (true, _): "CRLF"
        case (false, .unknown), (false, .stun): "STUN"
        case (false, .optionsTrial): "STUN unanswered, trying OPTIONS"
        case (false, .options): "OPTIONS (edge proxy does not answer STUN)"
        }
        let answered = switch flow.keepaliveAnswered {
        case nil: "none sent yet"
        case true?: flow.awaitingPong ? "answered, next one out" : "answered"
        case false?: "waiting for an answer"
        }
        return "flow keepalive \(method): \(answered)"
    }

    // MARK: - Lifecycle

    func startRegistrations() throws {
        guard let registration = configuration.registration else { return }
        guard (1...2).contains(registration.edgeProxies.count) else {
            throw ConfigurationError("registration needs one or two edge proxies")
        }
        // A DNS name is resolved off the actor (RFC 3263), never here: without DNS the flow
        // waits for an answer (or uses the last good addresses) instead of failing the start.
        let cached = ServerAddressCache.read(registration.addressCacheFile)
        for (index, proxy) in registration.edgeProxies.enumerated() {
            guard let uri = SIPURI(proxy.uri), let lookup = ServerLookup(uri: proxy.uri) else {
                throw ConfigurationError("edge proxy \(proxy.uri) is not a usable SIP URI")
            }
            let flow = RegistrationFlow(index: index, proxy: proxy, lookup: lookup, proxyURI: uri,
                                        callID: newCallID(toward: nil), expires: registration.expires)
            flow.state = .waiting(reason: "DNS: resolving \(lookup.host)")
            flows.append(flow)
        }
        for flow in flows {
            resolutionEvent(flow, .start(cached: lookupIsLiteral(flow) ? [] : cached[flow.proxy.uri] ?? []))
        }
    }

    private func lookupIsLiteral(_ flow: RegistrationFlow) -> Bool { flow.resolution.lookup.isLiteral }

    // MARK: - RFC 3263 resolution (ProxyResolution decides, this runs its actions)

    func resolutionEvent(_ flow: RegistrationFlow, _ event: ProxyResolution.Event) {
        guard !stopped, flow.state != .stopped else { return }
        for action in flow.resolution.handle(event) {
            switch action {
            case .query:
                let lookup = flow.resolution.lookup
                let index = flow.index
                logger.debug("resolving edge proxy", metadata: ["proxy": "\(flow.proxy.uri)"])
                Task {
                    let outcome = await DNSResolver.resolve(lookup)
                    await self.resolved(index, outcome)
                }
            case .scheduleQuery(let delay):
                startTimer(.registration(flow.index, .resolve), after: delay)
            case .useCandidates(let candidates):
                useCandidates(flow, candidates)
            case .persist:
                persistAddresses()
            }
        }
    }

    private func resolved(_ index: Int, _ outcome: DNSResolver.Outcome) {
        guard !stopped, flows.indices.contains(index) else { return }
        let flow = flows[index]
        switch outcome {
        case .answered(let candidates, let ttl):
            logger.info("edge proxy resolved", metadata: [
                "proxy": "\(flow.proxy.uri)", "addresses": "\(candidates.map(\.description))", "ttl": "\(ttl)"])
            resolutionEvent(flow, .answered(candidates, ttl: ttl))
        case .failed(let reason):
            logger.warning("edge proxy not resolved", metadata: ["proxy": "\(flow.proxy.uri)", "reason": "\(reason)"])
            resolutionEvent(flow, .failed(reason: reason))
            if flow.destination == nil, flow.state != .stopped, flow.state != .waiting(reason: reason) {
                flow.state = .waiting(reason: reason)
                registrationContinuation.yield(.failed(proxy: flow.proxy.uri, reason: reason))
            }
        }
    }

    /// New addresses for a flow. The one in use stays while it is still among them (after a
    /// failover we do not jump back); else the flow moves to the first and registers there.
    private func useCandidates(_ flow: RegistrationFlow, _ candidates: [ServerCandidate]) {
        let addresses = candidates.compactMap { try? SocketAddress(ipAddress: $0.host, port: $0.port) }
        guard !addresses.isEmpty else { return }
        flow.candidates = addresses
        let name = flow.proxy.tlsServerName ?? configuration.tls?.serverName
        if let name { for address in addresses { streamTransport?.setServerName(name, for: address) } }
        if let current = flow.destination, addresses.contains(current) { return }
        let old = flow.destination
        flow.destination = addresses[0]
        flow.triedInRound = 0
        if let old {
            logger.notice("edge proxy addresses changed; registering at the new one", metadata: ["proxy": "\(flow.proxy.uri)"])
            streamTransport?.disconnect(old)
        }
        if case .registered = flow.state { flowBroke(flow, reason: "edge proxy address changed") } else { sendRegister(flow) }
    }

    /// Moves to the next candidate after a failure; false when every one has been tried in this round.
    private func failOver(_ flow: RegistrationFlow) -> Bool {
        guard flow.candidates.count > 1, let current = flow.destination else { return false }
        flow.triedInRound += 1
        guard flow.triedInRound < flow.candidates.count else {
            flow.triedInRound = 0
            return false
        }
        let position = flow.candidates.firstIndex(of: current) ?? -1
        flow.destination = flow.candidates[(position + 1) % flow.candidates.count]
        logger.notice("edge proxy target failed; trying the next", metadata: [
            "proxy": "\(flow.proxy.uri)", "next": "\(flow.destination.map { "\($0)" } ?? "")"])
        return true
    }

    private func persistAddresses() {
        guard let file = configuration.registration?.addressCacheFile else { return }
        var entries: [String: [ServerCandidate]] = [:]
        for flow in flows where !flow.resolution.lookup.isLiteral && !flow.resolution.candidates.isEmpty {
            entries[flow.proxy.uri] = flow.resolution.candidates
        }
        if let problem = ServerAddressCache.write(entries, to: file) {
            logger.warning("cannot keep the edge proxies' addresses", metadata: ["error": "\(problem)"])
        }
    }

    /// Best-effort de-registration (Expires: 0) on shutdown.
    func stopRegistrations() {
        for flow in flows where flow.state != .stopped {
            if case .registered = flow.state, let destination = flow.destination,
               let request = registerRequest(flow, expires: 0) {
                send(request.serialized(), to: destination)
            }
            flow.state = .stopped
        }
    }

    // MARK: - REGISTER

    private func registerRequest(_ flow: RegistrationFlow, expires: Int) -> SIPRequest? {
        guard let registration = configuration.registration else { return nil }
        let branch = newBranch()
        flow.pendingBranch = branch
        flow.cseq += 1
        let aor = addressOfRecord
        let requestURI = "sip:\(registration.domain)"
        // Each flow names the address toward its own edge proxy (listen_host 0.0.0.0).
        let host = advertisedHost(toward: flow.destination)
        var headers = SIPHeaders()
        headers.add("Via", via(branch, host: host))
        headers.add("Max-Forwards", "70")
        headers.add("From", "<\(aor)>;tag=\(flow.callID.prefix(8))")
        headers.add("To", "<\(aor)>")
        headers.add("Call-ID", flow.callID)
        headers.add("CSeq", "\(flow.cseq) REGISTER")
        headers.add("Route", "<\(flow.proxy.uri);lr>")
        headers.add("Contact",
                    "<\(localURI(host: host));ob>;+sip.instance=\"<\(registration.instanceID)>\";reg-id=\(flow.regID)")
        headers.add("Expires", "\(expires)")
        headers.add("Supported", "outbound, path")
        headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
        headers.add("User-Agent", configuration.userAgentHeader)
        if let challenge = flow.challenge, let password = readPassword() {
            flow.nonceCount = flow.answeredNonce == challenge.nonce ? flow.nonceCount + 1 : 1
            flow.answeredNonce = challenge.nonce
            // `best(of:)` only picks algorithms libcrypto computes, so this does not throw in practice.
            if let credentials = try? challenge.authorization(
                method: "REGISTER", uri: requestURI, username: registration.authUser, password: password,
                cnonce: randomToken(8), nonceCount: flow.nonceCount) {
                headers.add(flow.challengeHeader, credentials)
            }
        }
        return SIPRequest(method: .register, uri: requestURI, headers: headers)
    }

    func sendRegister(_ flow: RegistrationFlow) {
        guard !stopped, flow.state != .stopped else { return }
        cancelTimer(.registration(flow.index, .retry))
        cancelTimer(.registration(flow.index, .refresh))
        if let branch = flow.pendingBranch, let old = transactions[branch + "|REGISTER"] {
            transactions[branch + "|REGISTER"] = nil
            cancelTimer(.requestRetransmit(branch + "|REGISTER"))
            cancelTimer(.requestTimeout(branch + "|REGISTER"))
            _ = old
        }
        guard let destination = flow.destination else {
            // Nothing to register to before DNS answers; `resolved` calls again then.
            return
        }
        if case .registered = flow.state {} else { flow.state = .registering }
        flow.abortReason = nil
        guard let request = registerRequest(flow, expires: flow.expiresRequested), let branch = flow.pendingBranch
        else { return }
        let index = flow.index
        logger.debug("REGISTER sent", metadata: ["proxy": "\(flow.proxy.uri)", "authenticated": "\(flow.challenge != nil)"])
        startClientTransaction(request, branch: branch, to: destination, timeout: configuration.timerT1 * 64) {
            response in
            Task { await self.registerCompleted(index, branch: branch, response) }
        }
    }

    private func registerCompleted(_ index: Int, branch: String, _ response: SIPResponse?) {
        guard !stopped, flows.indices.contains(index) else { return }
        let flow = flows[index]
        guard flow.pendingBranch == branch, flow.state != .stopped else { return }  // superseded
        flow.pendingBranch = nil
        guard let response else {
            let reason = flow.abortReason ?? "no response from edge proxy"
            if failOver(flow) {
                logger.warning("registration failed", metadata: ["proxy": "\(flow.proxy.uri)", "reason": "\(reason)"])
                sendRegister(flow)
            } else {
                registrationFailed(flow, reason: reason)
            }
            return
        }
        switch response.status {
        case 200..<300:
            let granted = grantedExpiry(response, flow) ?? flow.expiresRequested
            guard granted > 0 else {
                registrationFailed(flow, reason: "registrar granted no expiry")
                return
            }
            let wasRegistered = flow.state == .registered(expires: granted)
            flow.state = .registered(expires: granted)
            flow.failures = 0
            flow.triedInRound = 0
            flow.authAttempts = 0
            flow.awaitingPong = false
            if !wasRegistered {
                logger.info("registered", metadata: ["proxy": "\(flow.proxy.uri)", "expires": "\(granted)"])
            }
            registrationContinuation.yield(.registered(proxy: flow.proxy.uri, expires: granted))
            // Refresh at about half the granted time (RFC 5626 §4.4.1 says before expiry; half
            // leaves room for a retry or two); on UDP at least every `udpRefreshInterval`, the
            // only way to learn that a restarted registrar lost our binding.
            startTimer(.registration(index, .refresh), after: refreshDelay(granted: granted))
            // RFC 5626 §4.4: keep the flow alive and learn early when it dies (CRLF on TCP/TLS,
            // STUN or OPTIONS on UDP).
            startTimer(.registration(index, .keepalive), after: keepaliveInterval)
        case 401, 407:
            let header = response.status == 401 ? "WWW-Authenticate" : "Proxy-Authenticate"
            guard let challenge = DigestChallenge.best(of: response.headers.values(header)) else {
                if let missing = DigestChallenge.unavailable(in: response.headers.values(header)) {
                    logger.error("digest challenge refused: \(missing)", metadata: ["proxy": "\(flow.proxy.uri)"])
                    registrationFailed(flow, reason: "\(response.status) challenge refused: \(missing)")
                } else {
                    registrationFailed(flow, reason: "\(response.status) without a usable digest challenge")
                }
                return
            }
            if flow.authAttempts >= 1, !challenge.stale {
                flow.challenge = nil
                flow.answeredNonce = nil
                registrationFailed(flow, reason: "authentication rejected (\(response.status) \(response.reason))")
                return
            }
            flow.authAttempts += 1
            guard readPassword() != nil else {
                registrationFailed(flow, reason: "cannot read the password file")
                return
            }
            flow.challenge = challenge
            flow.challengeHeader = response.status == 401 ? "Authorization" : "Proxy-Authorization"
            sendRegister(flow)
        case 423:
            if let minimum = response.headers["Min-Expires"].flatMap({ Int($0.filter { $0 != " " && $0 != "\t" }) }),
               minimum > flow.expiresRequested
            {
                flow.expiresRequested = minimum
                sendRegister(flow)
            } else {
                registrationFailed(flow, reason: "423 without a usable Min-Expires")
            }
        default:
            registrationFailed(flow, reason: "\(response.status) \(response.reason)")
        }
    }

    /// When to send the next REGISTER after one for `granted` seconds succeeded.
    func refreshDelay(granted: Int) -> Duration {
        let half = Duration.milliseconds(max(500, granted * 500))
        guard !reliable, let registration = configuration.registration else { return half }
        return min(half, registration.udpRefreshInterval)
    }

    /// The expiry the registrar granted our binding: the `expires` of our Contact (matched by
    /// instance id), else the Expires header.
    private func grantedExpiry(_ response: SIPResponse, _ flow: RegistrationFlow) -> Int? {
        let instance = configuration.registration?.instanceID ?? ""
        for value in response.headers.values("Contact") {
            for contact in splitContacts(value) where contact.contains(instance) {
                if let address = SIPNameAddress(contact), let expires = address.parameters["expires"].flatMap({ Int($0) }) {
                    return expires
                }
            }
        }
        return response.headers["Expires"].flatMap { Int($0.filter { $0 != " " && $0 != "\t" }) }
    }

    private func registrationFailed(_ flow: RegistrationFlow, reason: String) {
        cancelTimer(.registration(flow.index, .keepalive))
        cancelTimer(.registration(flow.index, .pongTimeout))
        cancelTimer(.registration(flow.index, .keepaliveRetransmit))
        flow.keepaliveAnswered = nil
        cancelTimer(.registration(flow.index, .refresh))
        flow.state = .waiting(reason: reason)
        flow.authAttempts = 0
        flow.awaitingPong = false
        let delay = backoff(failures: flow.failures)
        flow.failures += 1
        // Every target failed: the records may have changed (RFC 3263 §4.3 asks again).
        resolutionEvent(flow, .allCandidatesFailed)
        logger.warning("registration failed", metadata: [
            "proxy": "\(flow.proxy.uri)", "reason": "\(reason)", "retryInMs": "\(delay.milliseconds)",
        ])
        registrationContinuation.yield(.failed(proxy: flow.proxy.uri, reason: reason))
        startTimer(.registration(flow.index, .retry), after: delay)
    }

    /// RFC 5626 §4.5: min(max, base · 2^failures), scaled by a random 50–100 %.
    private func backoff(failures: Int) -> Duration {
        guard let registration = configuration.registration else { return .seconds(2) }
        let base = registration.baseBackoff.milliseconds
        let ceiling = registration.maxBackoff.milliseconds
        let exponential = min(ceiling, base << min(failures, 20))
        return .milliseconds(Int.random(in: (exponential / 2)...max(exponential / 2, exponential)))
    }

    private var keepaliveInterval: Duration { configuration.registration?.keepaliveInterval ?? .seconds(25) }

    // MARK: - Timers and transport events

    func registrationTimerFired(_ index: Int, _ timer: RegistrationTimer) {
        guard flows.indices.contains(index) else { return }
        let flow = flows[index]
        guard flow.state != .stopped else { return }
        switch timer {
        case .refresh, .retry:
            sendRegister(flow)
        case .resolve:
            resolutionEvent(flow, .timerFired)
        case .keepalive:
            guard case .registered = flow.state else { return }
            if flow.awaitingPong {
                registrationTimerFired(index, .pongTimeout)
                return
            }
            flow.awaitingPong = true
            if flow.keepaliveAnswered == nil { flow.keepaliveAnswered = false }
            startTimer(.registration(index, .pongTimeout),
                       after: configuration.registration?.pongTimeout ?? .seconds(10))
            startTimer(.registration(index, .keepalive), after: keepaliveInterval)
            sendKeepalive(flow)
        case .keepaliveRetransmit:
            guard flow.awaitingPong, let transaction = flow.stunTransaction, let destination = flow.destination else { return }
            send(STUN.bindingRequest(transaction: transaction), to: destination)
            flow.stunInterval = min(flow.stunInterval * 2, configuration.timerT2)
            startTimer(.registration(index, .keepaliveRetransmit), after: flow.stunInterval)
        case .pongTimeout:
            guard flow.awaitingPong, case .registered = flow.state else { return }
            cancelTimer(.registration(index, .keepaliveRetransmit))
            flow.stunTransaction = nil
            if !reliable, flow.udpKeepalive == .unknown {
                // Never heard STUN from this edge proxy: it may simply have no STUN server.
                // Whether it is there at all, an OPTIONS tells (any response will do).
                logger.notice("edge proxy did not answer STUN; asking OPTIONS", metadata: ["proxy": "\(flow.proxy.uri)"])
                flow.udpKeepalive = .optionsTrial
                startTimer(.registration(index, .pongTimeout),
                           after: configuration.registration?.pongTimeout ?? .seconds(10))
                startTimer(.registration(index, .keepalive), after: keepaliveInterval)
                sendOptionsKeepalive(flow)
                return
            }
            flow.keepaliveAnswered = false
            logger.warning("no keepalive answer; flow dead", metadata: ["proxy": "\(flow.proxy.uri)"])
            if let destination = flow.destination { streamTransport?.disconnect(destination) }
            let method = switch flow.udpKeepalive {
            case .stun: "STUN"
            case .options: "OPTIONS"
            case .unknown, .optionsTrial: "neither STUN nor OPTIONS"
            }
            flowBroke(flow, reason: reliable ? "no keepalive pong from edge proxy"
                : "no keepalive answer (\(method)) from edge proxy")
        }
    }

    /// RFC 5626 §4.4.1 CRLFCRLF on TCP/TLS (the server answers CRLF); on UDP a STUN Binding
    /// request (§4.4.2), or OPTIONS when this edge proxy has shown it does not answer STUN.
    private func sendKeepalive(_ flow: RegistrationFlow) {
        guard let destination = flow.destination else { return }
        if reliable {
            send([13, 10, 13, 10], to: destination)
            return
        }
        switch flow.udpKeepalive {
        case .unknown, .stun:
            let transaction = STUN.newTransaction()
            flow.stunTransaction = transaction
            flow.stunInterval = configuration.timerT1
            send(STUN.bindingRequest(transaction: transaction), to: destination)
            startTimer(.registration(flow.index, .keepaliveRetransmit), after: flow.stunInterval)
        case .optionsTrial, .options:
            sendOptionsKeepalive(flow)
        }
    }

    /// OPTIONS to the edge proxy itself; any final response means it is there.
    private func sendOptionsKeepalive(_ flow: RegistrationFlow) {
        guard let destination = flow.destination else { return }
        let branch = newBranch()
        let host = advertisedHost(toward: destination)
        var headers = SIPHeaders()
        headers.add("Via", via(branch, host: host))
        headers.add("Max-Forwards", "70")
        headers.add("From", "<\(addressOfRecord)>;tag=\(randomToken(8))")
        headers.add("To", "<\(flow.proxy.uri)>")
        headers.add("Call-ID", newCallID(toward: destination))
        headers.add("CSeq", "1 OPTIONS")
        headers.add("User-Agent", configuration.userAgentHeader)
        let request = SIPRequest(method: .options, uri: flow.proxy.uri, headers: headers)
        let index = flow.index
        startClientTransaction(request, branch: branch, to: destination,
                               timeout: configuration.registration?.pongTimeout ?? .seconds(10)) { response in
            guard let response else { return }  // the pong timeout decides
            Task { await self.optionsKeepaliveAnswered(index, status: response.status) }
        }
    }

    private func optionsKeepaliveAnswered(_ index: Int, status: Int) {
        guard !stopped, flows.indices.contains(index) else { return }
        let flow = flows[index]
        guard flow.awaitingPong, case .registered = flow.state else { return }
        if flow.udpKeepalive == .optionsTrial {
            logger.notice("edge proxy answers OPTIONS but not STUN; keepalive with OPTIONS",
                          metadata: ["proxy": "\(flow.proxy.uri)", "status": "\(status)"])
            flow.udpKeepalive = .options
        }
        keepaliveAnswered(flow)
    }

    private func keepaliveAnswered(_ flow: RegistrationFlow) {
        flow.awaitingPong = false
        flow.keepaliveAnswered = true
        flow.stunTransaction = nil
        cancelTimer(.registration(flow.index, .pongTimeout))
        cancelTimer(.registration(flow.index, .keepaliveRetransmit))
    }

    func transportEvent(_ event: TransportEvent) {
        guard !stopped else { return }
        switch event {
        case .connected:
            break
        case .pong(let source):
            for flow in flows where flow.destination == source { keepaliveAnswered(flow) }
        case .stunAnswer(let source, let transaction, let mapped):
            for flow in flows where flow.destination == source && flow.stunTransaction == transaction {
                if flow.udpKeepalive != .stun {
                    logger.info("edge proxy answers STUN keepalives", metadata: ["proxy": "\(flow.proxy.uri)"])
                    flow.udpKeepalive = .stun
                }
                keepaliveAnswered(flow)
                guard let mapped else { continue }
                let previous = flow.mappedAddress
                flow.mappedAddress = mapped
                if let previous, previous != mapped, case .registered = flow.state {
                    logger.notice("our address as the edge proxy sees it changed; registering again",
                                  metadata: ["proxy": "\(flow.proxy.uri)"])
                    sendRegister(flow)
                }
            }
        case .connectFailed(let destination, let reason):
            logger.warning("connection failed", metadata: ["peer": "\(destination)", "reason": "\(reason)"])
            for flow in flows where flow.destination == destination && flow.state != .stopped {
                // Abort the REGISTER now rather than waiting for Timer F.
                if let branch = flow.pendingBranch, let transaction = transactions[branch + "|REGISTER"] {
                    flow.abortReason = reason
                    finishTransaction(branch + "|REGISTER", transaction, nil)
                }
            }
        case .closed(let destination):
            for flow in flows where flow.destination == destination && flow.state != .stopped {
                flowBroke(flow, reason: "connection to edge proxy closed")
            }
        }
    }

    /// A registered flow died: report it and register again at once (the first time) or after
    /// the backoff (when it keeps failing).
    private func flowBroke(_ flow: RegistrationFlow, reason: String) {
        guard case .registered = flow.state else { return }
        cancelTimer(.registration(flow.index, .keepalive))
        cancelTimer(.registration(flow.index, .pongTimeout))
        cancelTimer(.registration(flow.index, .keepaliveRetransmit))
        flow.state = .waiting(reason: reason)
        flow.awaitingPong = false
        flow.keepaliveAnswered = nil
        flow.stunTransaction = nil
        flow.udpKeepalive = .unknown  // learnt again on the new flow
        flow.authAttempts = 0
        registrationContinuation.yield(.failed(proxy: flow.proxy.uri, reason: reason))
        logger.warning("flow to edge proxy lost; registering again", metadata: ["proxy": "\(flow.proxy.uri)"])
        sendRegister(flow)
    }

    // MARK: - Outbound routing and INVITE authentication

    /// With two edge proxies, an INVITE that hears nothing at all (not even the 100 Trying an
    /// RFC 3261 proxy sends at once) within 2·T1 — one retransmission on UDP — takes its
    /// edge proxy for dead: that flow is ended and registers again, and the INVITE goes over
    /// the other registered flow. This covers a proxy that died since its last keepalive.
    func startFlowCheck(_ call: Call) {
        guard flows.count > 1, flows.contains(where: { $0.destination == call.inviteDestination }) else { return }
        startTimer(.inviteFlowCheck(call.handle), after: configuration.timerT1 * 2)
    }

    func inviteFlowCheckFired(_ handle: CallHandle) {
        guard let call = calls[handle], call.state == .calling, !call.cancelWanted,
              let silent = flows.first(where: { $0.destination == call.inviteDestination })
        else { return }
        logger.warning("no response to INVITE from edge proxy", metadata: ["proxy": "\(silent.proxy.uri)", "call": "\(handle)"])
        flowBroke(silent, reason: "no response to INVITE from edge proxy")
        guard let other = flows.first(where: { flow in
            guard flow !== silent, flow.destination != nil, case .registered = flow.state else { return false }
            return true
        }), let otherDestination = other.destination else { return }
        // A new INVITE transaction in the same dialog attempt: new branch, CSeq + 1, the other
        // proxy's Route, and Via and Contact with our address toward that proxy (another
        // interface, perhaps). Timer B (or the ring timeout) keeps counting from the first send.
        var request = call.invite
        let branch = newBranch()
        let host = advertisedHost(toward: otherDestination)
        call.localCSeq += 1
        request.headers.remove("Via")
        request.headers.remove("CSeq")
        request.headers.remove("Route")
        request.headers.remove("Contact")
        request.headers.prepend("Via", via(branch, host: host))
        request.headers.add("CSeq", "\(call.localCSeq) INVITE")
        request.headers.add("Route", "<\(other.proxy.uri);lr>")
        request.headers.add("Contact", contactHeader(host: host))
        inviteBranches[call.inviteBranch] = nil
        call.inviteBranch = branch
        inviteBranches[branch] = handle
        call.invite = request
        call.inviteDestination = otherDestination
        call.peer = otherDestination
        logger.info("INVITE sent over the other edge proxy", metadata: ["proxy": "\(other.proxy.uri)", "call": "\(handle)"])
        send(request.serialized(), to: otherDestination)
        call.retransmitInterval = configuration.timerT1
        if !reliable { startTimer(.inviteRetransmit(handle), after: configuration.timerT1) }
    }

    /// The flow to send dialog-forming requests on: the first registered edge proxy, else the
    /// first configured one; nil without outbound registration.
    func outboundDestination() -> SocketAddress? {
        guard !flows.isEmpty else { return nil }
        let registered = flows.first { if case .registered = $0.state { true } else { false } }
        return (registered ?? flows.first { $0.destination != nil })?.destination
    }

    func outboundRoute() -> String? {
        guard let destination = outboundDestination(), let flow = flows.first(where: { $0.destination == destination })
        else { return nil }
        return "<\(flow.proxy.uri);lr>"
    }

    /// Answers a 401/407 to our INVITE once per nonce: same Call-ID and tags, CSeq + 1, new
    /// branch, credentials added (RFC 3261 §22.2). False when we cannot or already did.
    func resendAuthenticated(_ call: Call, challenge response: SIPResponse) -> Bool {
        guard let registration = configuration.registration, let password = readPassword() else { return false }
        let header = response.status == 401 ? "WWW-Authenticate" : "Proxy-Authenticate"
        guard let challenge = DigestChallenge.best(of: response.headers.values(header)) else {
            if let missing = DigestChallenge.unavailable(in: response.headers.values(header)) {
                logger.error("digest challenge to INVITE refused: \(missing)", metadata: ["call": "\(call.handle)"])
            }
            return false
        }
        guard call.authenticatedNonce != challenge.nonce,
              let credentials = try? challenge.authorization(
                  method: "INVITE", uri: call.invite.uri, username: registration.authUser, password: password,
                  cnonce: randomToken(8), nonceCount: 1)
        else { return false }
        call.authenticatedNonce = challenge.nonce
        var request = call.invite
        let branch = newBranch()
        call.localCSeq += 1
        request.headers.remove("Via")
        request.headers.remove("CSeq")
        request.headers.remove("Authorization")
        request.headers.remove("Proxy-Authorization")
        request.headers.prepend("Via", via(branch))
        request.headers.add("CSeq", "\(call.localCSeq) INVITE")
        request.headers.add(response.status == 401 ? "Authorization" : "Proxy-Authorization", credentials)
        inviteBranches[call.inviteBranch] = nil
        call.inviteBranch = branch
        inviteBranches[branch] = call.handle
        call.invite = request
        call.state = .calling
        call.provisionalSeen = false
        send(request.serialized(), to: call.inviteDestination)
        call.retransmitInterval = configuration.timerT1
        if !reliable { startTimer(.inviteRetransmit(call.handle), after: configuration.timerT1) }
        startTimer(.inviteTimeout(call.handle), after: configuration.timerT1 * 64)
        logger.info("INVITE re-sent with credentials", metadata: ["call": "\(call.handle)"])
        return true
    }

    /// The first line of the password file, or nil (logged without the path's content).
    func readPassword() -> String? {
        guard let path = configuration.registration?.passwordFile,
              let data = try? Data(contentsOf: URL(fileURLWithPath: path))
        else {
            logger.error("cannot read the SIP password file")
            return nil
        }
        let text = String(decoding: data, as: UTF8.self)
        let line = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).first.map(String.init) ?? ""
        return line.isEmpty ? nil : line
    }
}

/// Splits a Contact header value at commas outside quotes and angle brackets.
private func splitContacts(_ value: String) -> [String] {
    var parts: [String] = []
    var current = ""
    var inQuotes = false
    var inAngle = false
    for c in value {
        switch c {
        case "\"": inQuotes.toggle()
        case "<" where !inQuotes: inAngle = true
        case ">" where !inQuotes: inAngle = false
        case "," where !inQuotes && !inAngle:
            parts.append(current)
            current = ""
            continue
        default: break
        }
        current.append(c)
    }
    parts.append(current)
    return parts
}

extension Duration {
    var milliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}
