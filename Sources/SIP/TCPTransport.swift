import Glibc  // strerror
import Logging
public import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS  // TLSUserEvent
import Synchronization

/// What a connection-oriented transport tells the user agent besides messages: flows coming
/// up, failing (with a reason a technician can read) and keepalive pongs (RFC 5626 §4.4.1).
enum TransportEvent: Sendable, Equatable {
    /// A connection we dialled is usable (TCP connected; TLS handshake and verification done).
    case connected(SocketAddress)
    /// Dialling failed; nothing was sent on it. `reason` says why (refused, certificate, …).
    case connectFailed(SocketAddress, reason: String)
    /// An open connection closed or broke.
    case closed(SocketAddress)
    /// A CRLF pong arrived on a flow we opened.
    case pong(SocketAddress)
    /// UDP: a STUN Binding success (our keepalive's answer) with the address the edge proxy
    /// saw us from (RFC 5626 §4.4.2).
    case stunAnswer(SocketAddress, transaction: [UInt8], mapped: SocketAddress?)
}

/// TLS client settings: the server certificate must chain to `caFile` (no system roots) and
/// name `serverName` (SNI and hostname verification).
struct TLSClientSettings: Sendable {
    var caFile: String
    var serverName: String
}

/// Cuts a TCP byte stream into SIP messages with `SIPStreamFramer` and answers RFC 5626
/// keepalive pings. A framing error closes the connection: a stream cannot be resynchronised.
private final class StreamFramingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var framer: SIPStreamFramer
    private let continuation: AsyncStream<InboundDatagram>.Continuation
    private let onPong: @Sendable (SocketAddress) -> Void
    private let onInactive: @Sendable (SocketAddress?) -> Void
    private let remote: SocketAddress?
    /// Accepted connections only: closed when silent for `idleTimeout`, or when a header
    /// block started is not complete within `headerTimeout` (a slow-loris peer).
    private let deadlines: StreamServerLimits?
    private var idleTimer: Scheduled<Void>?
    private var headerTimer: Scheduled<Void>?

    init(role: SIPStreamFramer.KeepAliveRole, remote: SocketAddress?,
         continuation: AsyncStream<InboundDatagram>.Continuation,
         deadlines: StreamServerLimits? = nil,
         onPong: @escaping @Sendable (SocketAddress) -> Void = { _ in },
         onInactive: @escaping @Sendable (SocketAddress?) -> Void) {
        framer = SIPStreamFramer(role: role)
        self.remote = remote
        self.continuation = continuation
        self.deadlines = deadlines
        self.onPong = onPong
        self.onInactive = onInactive
    }

    func handlerAdded(context: ChannelHandlerContext) {
        armIdleTimer(context)
    }

    private func armIdleTimer(_ context: ChannelHandlerContext) {
        guard let deadlines else { return }
        idleTimer?.cancel()
        // Channel is Sendable; cancelling and firing both happen on the channel's loop.
        let channel = context.channel
        idleTimer = context.eventLoop.scheduleTask(in: deadlines.idleTimeout) { channel.close(promise: nil) }
    }

    /// Starts the header deadline when a message's head has begun and is not complete,
    /// stops it otherwise.
    private func updateHeaderTimer(_ context: ChannelHandlerContext) {
        guard let deadlines else { return }
        if framer.isReadingHeader {
            guard headerTimer == nil else { return }
            let channel = context.channel
            headerTimer = context.eventLoop.scheduleTask(in: deadlines.headerTimeout) { channel.close(promise: nil) }
        } else {
            headerTimer?.cancel()
            headerTimer = nil
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        armIdleTimer(context)
        defer { updateHeaderTimer(context) }
        framer.append(buffer.readableBytesView)
        // For dialled connections the key is the address we dialled (the same the user agent
        // sends to), so replies to requests that come in over the flow reuse it.
        guard let source = remote ?? context.remoteAddress else { return }
        do {
            while let frame = try framer.next() {
                switch frame {
                case .message(let bytes):
                    continuation.yield(InboundDatagram(bytes: bytes, source: source, kind: .stream))
                case .keepAlivePing:
                    context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: [13, 10])), promise: nil)
                case .keepAlivePong:
                    onPong(source)
                }
            }
        } catch {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        headerTimer?.cancel()
        onInactive(remote ?? context.remoteAddress)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Limits on the connections the SIP/TCP listener accepts, so a flood of connections (idle or
/// slow) cannot take the daemon's descriptors: the control socket, media sockets, the
/// database and the devices need theirs (issue 15: 1,100 idle connections took all 1,024).
/// Connections we dial (flows to edge proxies, posts) are not counted and never time out here;
/// their liveness is the RFC 5626 keepalive's business.
public struct StreamServerLimits: Sendable, Equatable {
    /// Accepted connections open at once; one more is closed as soon as it is accepted.
    public var maxConnections: Int
    /// Accepted connections open at once from one IP address.
    public var maxConnectionsPerSource: Int
    /// An accepted connection on which nothing arrives for this long is closed (a peer that
    /// still needs it connects again; RFC 3261 §18 lets either side close).
    public var idleTimeout: TimeAmount
    /// A message whose header block has begun must have it complete within this time.
    public var headerTimeout: TimeAmount

    public init(maxConnections: Int = 128, maxConnectionsPerSource: Int = 32, idleTimeout: TimeAmount = .seconds(64),
                headerTimeout: TimeAmount = .seconds(10)) {
        self.maxConnections = maxConnections
        self.maxConnectionsPerSource = maxConnectionsPerSource
        self.idleTimeout = idleTimeout
        self.headerTimeout = headerTimeout
    }

    /// 128 connections, 32 per address, 64 s idle (64·T1 past a transaction's life, longer
    /// than an RFC 5626 keepalive interval), 10 s for a header block.
    public static let `default` = StreamServerLimits()
}

/// Counts accepted connections, total and per source address, and says which to refuse;
/// one log line per 10 s at most while refusing, with the number refused.
final class ConnectionAdmission: Sendable {
    private struct State {
        var total = 0
        var bySource: [String: Int] = [:]
        var refusedSinceLog = 0
        var lastLog: NIODeadline?
    }

    let limits: StreamServerLimits
    private let logger: Logger
    private let state = Mutex(State())

    init(limits: StreamServerLimits, logger: Logger) {
        self.limits = limits
        self.logger = logger
    }

    /// The key of a connection's source: its IP address without the port.
    static func sourceKey(_ address: SocketAddress?) -> String {
        address?.ipAddress ?? "?"
    }

    /// Counts the connection in (true), or refuses it (false) when a limit is reached.
    func admit(_ remote: SocketAddress?) -> Bool {
        let key = Self.sourceKey(remote)
        let now = NIODeadline.now()
        let (admitted, report) = state.withLock { state -> (Bool, (refused: Int, total: Int)?) in
            let fromSource = state.bySource[key, default: 0]
            if state.total < limits.maxConnections, fromSource < limits.maxConnectionsPerSource {
                state.total += 1
                state.bySource[key] = fromSource + 1
                return (true, nil)
            }
            state.refusedSinceLog += 1
            if let last = state.lastLog, now - last < .seconds(10) { return (false, nil) }
            defer {
                state.lastLog = now
                state.refusedSinceLog = 0
            }
            return (false, (state.refusedSinceLog, state.total))
        }
        if let report {
            // Names the source (an address, not a person); at most once per 10 s.
            logger.warning("SIP/TCP connection limit reached; closing new connections", metadata: [
                "source": "\(key)", "refused": "\(report.refused)", "open": "\(report.total)",
                "limit": "\(limits.maxConnections) total, \(limits.maxConnectionsPerSource) per address"])
        }
        return admitted
    }

    func release(_ remote: SocketAddress?) {
        let key = Self.sourceKey(remote)
        state.withLock { state in
            state.total -= 1
            let left = state.bySource[key, default: 1] - 1
            state.bySource[key] = left > 0 ? left : nil
        }
    }

    var openConnections: Int { state.withLock { $0.total } }
}

/// Completes `ready` when the connection may carry SIP: at once for TCP, after the TLS
/// handshake (with certificate and host name verified) for TLS. Until then nothing is
/// written, so a server that fails verification never sees a SIP byte.
private final class ConnectionReadyHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let ready: EventLoopPromise<any Channel>
    private let waitForTLS: Bool
    private var done = false

    init(ready: EventLoopPromise<any Channel>, waitForTLS: Bool) {
        self.ready = ready
        self.waitForTLS = waitForTLS
    }

    func channelActive(context: ChannelHandlerContext) {
        if !waitForTLS { succeed(context) }
        context.fireChannelActive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if !waitForTLS, context.channel.isActive { succeed(context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if waitForTLS, let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent {
            succeed(context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(ConnectionFailure(reason: describe(error)))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(ConnectionFailure(reason: waitForTLS ? "TLS connection closed during handshake" : "connection closed"))
        context.fireChannelInactive()
    }

    private func succeed(_ context: ChannelHandlerContext) {
        guard !done else { return }
        done = true
        ready.succeed(context.channel)
    }

    private func fail(_ error: ConnectionFailure) {
        guard !done else { return }
        done = true
        ready.fail(error)
    }
}

struct ConnectionFailure: Error, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}

/// A readable reason for a failed connection or handshake, for logs and status.
func describe(_ error: any Error) -> String {
    if let failure = error as? ConnectionFailure { return failure.reason }
    if let io = error as? IOError {
        // NIO's own text for these has a stray ")" ("…: Network is unreachable) (errno: 101)").
        return "connection failed: \(String(cString: strerror(io.errnoCode))) (errno \(io.errnoCode))"
    }
    if let ssl = error as? NIOSSLError {
        switch ssl {
        case .handshakeFailed(let inner):
            let text = "\(inner)"
            if text.contains("CERTIFICATE_VERIFY_FAILED") { return "TLS: server certificate not trusted (\(text))" }
            return "TLS handshake failed (\(text))"
        default:
            return "TLS error (\(ssl))"
        }
    }
    if let ssl = error as? NIOSSLExtraError { return "TLS: \(ssl)" }
    if error is ChannelError { return "connection failed (\(error))" }
    return "\(error)"
}

/// SIP over TCP or TLS. TCP listens for connections and opens (then reuses) one connection
/// per peer address; TLS only dials (the tablet has no server certificate) and keeps each
/// connection as the RFC 5626 flow to that peer, over which incoming requests arrive too.
/// Responses to a request go back over the connection it came on, because the peer address
/// is the key of that connection.
final class TCPTransport: SIPTransport {
    let localPort: Int
    var transportName: String { tlsContext == nil ? "TCP" : "TLS" }
    var isReliable: Bool { true }

    private let server: (any Channel)?
    private let group: any EventLoopGroup
    private let continuation: AsyncStream<InboundDatagram>.Continuation
    private let eventContinuation: AsyncStream<TransportEvent>.Continuation
    private let registry: ConnectionRegistry
    private let tlsContext: NIOSSLContext?
    private let tlsServerNames: Mutex<[SocketAddress: String]>
    private let defaultServerName: String?

    private init(server: (any Channel)?, localPort: Int, group: any EventLoopGroup,
                 continuation: AsyncStream<InboundDatagram>.Continuation,
                 eventContinuation: AsyncStream<TransportEvent>.Continuation,
                 registry: ConnectionRegistry, tls: (NIOSSLContext, String)?) {
        self.server = server
        self.group = group
        self.continuation = continuation
        self.eventContinuation = eventContinuation
        self.registry = registry
        self.localPort = server?.localAddress?.port ?? localPort
        tlsContext = tls?.0
        defaultServerName = tls?.1
        tlsServerNames = Mutex([:])
    }

    /// TCP: binds a listener. TLS (`tls` set): builds the client context; listens nowhere;
    /// `port` is then only what Via and Contact name (answers come back over the flow).
    static func bind(host: String, port: Int, group: any EventLoopGroup, tls: TLSClientSettings? = nil,
                     limits: StreamServerLimits = .default, logger: Logger = Logger(label: "beeldzorg.sip.tcp"))
        async throws -> (TCPTransport, AsyncStream<InboundDatagram>, AsyncStream<TransportEvent>)
    {
        let (stream, continuation) = AsyncStream<InboundDatagram>.makeStream(bufferingPolicy: .bufferingNewest(2048))
        let (events, eventContinuation) = AsyncStream<TransportEvent>.makeStream(bufferingPolicy: .bufferingNewest(256))
        let registry = ConnectionRegistry()
        if let tls {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .file(tls.caFile)
            configuration.certificateVerification = .fullVerification
            configuration.minimumTLSVersion = .tlsv12
            let context = try NIOSSLContext(configuration: configuration)
            let transport = TCPTransport(server: nil, localPort: port, group: group, continuation: continuation,
                                         eventContinuation: eventContinuation, registry: registry,
                                         tls: (context, tls.serverName))
            return (transport, stream, events)
        }
        // Accepted connections register themselves so replies reuse them; over the limits
        // they are closed at once, before any handler or buffer exists for them.
        let admission = ConnectionAdmission(limits: limits, logger: logger)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let remote = channel.remoteAddress
                    guard admission.admit(remote) else {
                        channel.close(promise: nil)
                        return
                    }
                    if let remote {
                        registry.accepted(remote, channel.eventLoop.makeSucceededFuture(channel))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        StreamFramingHandler(role: .flowServer, remote: nil, continuation: continuation,
                                             deadlines: limits) {
                            registry.closed($0)
                            admission.release(remote)
                        })
                }
            }
            .bind(host: host, port: port)
            .get()
        let transport = TCPTransport(server: server, localPort: port, group: group, continuation: continuation,
                                     eventContinuation: eventContinuation, registry: registry, tls: nil)
        return (transport, stream, events)
    }

    /// Open connections by peer address, accepted or dialled; shared with the server's child
    /// initializer, which runs before the transport object exists.
    private final class ConnectionRegistry: Sendable {
        let table = Mutex<[SocketAddress: EventLoopFuture<any Channel>]>([:])
        func accepted(_ address: SocketAddress, _ channel: EventLoopFuture<any Channel>) {
            table.withLock { $0[address] = channel }
        }
        func closed(_ address: SocketAddress?) {
            guard let address else { return }
            table.withLock { $0[address] = nil }
        }
    }

    /// The name a TLS peer's certificate must carry (SNI and verification); per peer, since two
    /// edge proxies have two names.
    func setServerName(_ name: String, for destination: SocketAddress) {
        tlsServerNames.withLock { $0[destination] = name }
    }

    func send(_ bytes: [UInt8], to destination: SocketAddress) {
        let connection = connection(to: destination)
        connection.whenSuccess { channel in
            channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
        }
    }

    /// Opens the flow to `destination` now (without sending), so a registration or keepalive
    /// learns early whether it is up; `connected`/`connectFailed` report the outcome.
    func connect(to destination: SocketAddress) {
        _ = connection(to: destination)
    }

    /// Closes the connection to `destination` (a flow declared dead); the next send re-dials.
    func disconnect(_ destination: SocketAddress) {
        guard let future = registry.table.withLock({ $0.removeValue(forKey: destination) }) else { return }
        future.whenSuccess { $0.close(promise: nil) }
    }

    private func connection(to destination: SocketAddress) -> EventLoopFuture<any Channel> {
        registry.table.withLock { table -> EventLoopFuture<any Channel> in
            if let existing = table[destination] { return existing }
            let future = dial(destination)
            table[destination] = future
            return future
        }
    }

    private func dial(_ destination: SocketAddress) -> EventLoopFuture<any Channel> {
        let continuation = self.continuation
        let events = self.eventContinuation
        let registry = self.registry
        let loop = group.next()
        let ready = loop.makePromise(of: (any Channel).self)
        let tls = tlsContext.map { context in
            (context, tlsServerNames.withLock { $0[destination] } ?? defaultServerName)
        }
        let connect = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(3))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let (context, name) = tls {
                        // An edge proxy configured by address: SNI cannot carry an IP literal
                        // (NIOSSL refuses it), and without a host name NIOSSL checks the
                        // certificate's IP subjectAltName against the address we dialled.
                        let isAddress = name.map { (try? SocketAddress(ipAddress: $0, port: 0)) != nil } ?? false
                        try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : name))
                    }
                    try sync.addHandler(ConnectionReadyHandler(ready: ready, waitForTLS: tls != nil))
                    try sync.addHandler(
                        StreamFramingHandler(role: .flowClient, remote: destination, continuation: continuation,
                                             onPong: { events.yield(.pong($0)) }) { _ in
                            let removed = registry.table.withLock { table -> Bool in
                                // Only this connection's own entry: a re-dial may have replaced it.
                                guard table[destination] === ready.futureResult else { return false }
                                table[destination] = nil
                                return true
                            }
                            if removed { events.yield(.closed(destination)) }
                        })
                }
            }
            .connect(to: destination)
        connect.whenFailure { ready.fail(ConnectionFailure(reason: describe($0))) }
        ready.futureResult.whenComplete { result in
            switch result {
            case .success:
                events.yield(.connected(destination))
            case .failure(let error):
                // Refused, timed out or not trusted: forget it so a later send re-dials.
                registry.table.withLock { table in
                    if table[destination] === ready.futureResult { table[destination] = nil }
                }
                connect.whenSuccess { $0.close(promise: nil) }
                events.yield(.connectFailed(destination, reason: describe(error)))
            }
        }
        return ready.futureResult
    }

    func close() async {
        let open = registry.table.withLock { table in
            defer { table.removeAll() }
            return Array(table.values)
        }
        for future in open {
            if let channel = try? await future.get() { try? await channel.close() }
        }
        try? await server?.close()
        continuation.finish()
        eventContinuation.finish()
    }
}
