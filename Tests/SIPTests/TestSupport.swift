import Logging
import NIOCore
import NIOPosix
import SIP

/// Thrown when an awaited event does not come in time.
struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Records everything a stream yields so tests can wait for a matching element, with a deadline.
actor Recorder<Element: Sendable> {
    private(set) var items: [Element] = []
    private var consumed = 0

    init(_ stream: AsyncStream<Element>) {
        Task { await self.run(stream) }
    }

    private func run(_ stream: AsyncStream<Element>) async {
        for await item in stream { items.append(item) }
    }

    /// The first not-yet-consumed element matching `predicate`; elements before it are consumed too.
    func next(
        _ what: String, timeout: Duration = .seconds(10), where predicate: @Sendable (Element) -> Bool = { _ in true }
    ) async throws -> Element {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if let index = items[consumed...].firstIndex(where: predicate) {
                consumed = index + 1
                return items[index]
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw TimedOut(what: what)
    }

    func all() -> [Element] { items }
}

/// A bare UDP socket on loopback that plays a hand-written SIP peer.
final class RawPeer: Sendable {
    let channel: any Channel
    let received: Recorder<Datagram>
    var port: Int { channel.localAddress!.port! }

    struct Datagram: Sendable {
        var bytes: [UInt8]
        var source: SocketAddress
        var text: String { String(decoding: bytes, as: UTF8.self) }
        var message: SIPMessage? { try? SIPMessageParser().parse(bytes, transport: .datagram) }
        var request: SIPRequest? { if case .request(let r) = message { r } else { nil } }
        var response: SIPResponse? { if case .response(let r) = message { r } else { nil } }
    }

    private final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let continuation: AsyncStream<Datagram>.Continuation
        init(_ continuation: AsyncStream<Datagram>.Continuation) { self.continuation = continuation }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            continuation.yield(Datagram(bytes: Array(envelope.data.readableBytesView), source: envelope.remoteAddress))
        }
    }

    private init(channel: any Channel, received: Recorder<Datagram>) {
        self.channel = channel
        self.received = received
    }

    static func bind() async throws -> RawPeer {
        let (stream, continuation) = AsyncStream<Datagram>.makeStream()
        let handler = Handler(continuation)
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return RawPeer(channel: channel, received: Recorder(stream))
    }

    func send(_ bytes: [UInt8], to port: Int) async throws {
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: port)
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: channel.allocator.buffer(bytes: bytes)))
    }

    func send(_ bytes: [UInt8], to address: SocketAddress) async throws {
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: channel.allocator.buffer(bytes: bytes)))
    }

    /// The next datagram that parses as a request with `method`.
    func nextRequest(_ method: SIPMethod, timeout: Duration = .seconds(10)) async throws -> (SIPRequest, SocketAddress) {
        let d = try await received.next("\(method) request", timeout: timeout) { $0.request?.method == method }
        return (d.request!, d.source)
    }

    func nextResponse(status: Int? = nil, timeout: Duration = .seconds(10)) async throws -> SIPResponse {
        let d = try await received.next("response \(status.map(String.init) ?? "")", timeout: timeout) {
            guard let r = $0.response else { return false }
            return status == nil || r.status == status
        }
        return d.response!
    }

    func close() async { try? await channel.close() }
}

func testLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .warning
    return logger
}

/// A started tablet-side agent with fast timers.
func makeAgent(user: String = "tablet", t1: Duration = .milliseconds(100)) async throws -> (UserAgent, Recorder<UserAgentEvent>, Int) {
    let agent = UserAgent(
        configuration: UserAgentConfiguration(localHost: "127.0.0.1", user: user, displayName: "Tablet", timerT1: t1,
                                              timerT2: .milliseconds(800)),
        group: MultiThreadedEventLoopGroup.singleton, logger: testLogger(user))
    let port = try await agent.start()
    return (agent, Recorder(agent.events), port)
}

/// A minimal response to `request` as a hand-written peer would send it.
func response(to request: SIPRequest, status: Int, toTag: String?, body: [UInt8] = [], contactPort: Int? = nil) -> [UInt8] {
    var headers = SIPHeaders()
    for field in request.headers where field.name == "Via" { headers.add("Via", field.value) }
    headers.add("From", request.headers["From"]!)
    headers.add("To", request.headers["To"]! + (toTag.map { ";tag=\($0)" } ?? ""))
    headers.add("Call-ID", request.headers["Call-ID"]!)
    headers.add("CSeq", request.headers["CSeq"]!)
    if let contactPort { headers.add("Contact", "<sip:peer@127.0.0.1:\(contactPort)>") }
    if !body.isEmpty { headers.add("Content-Type", "application/sdp") }
    return SIPResponse(status: status, headers: headers, body: body).serialized()
}
