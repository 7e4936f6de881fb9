import NIOCore
import NIOPosix

/// One datagram (UDP) or one framed message (TCP/TLS) as received.
struct InboundDatagram: Sendable {
    var bytes: [UInt8]
    var source: SocketAddress
    var kind: SIPTransportKind = .datagram
}

/// What the user agent needs from a transport. UDP and TCP (with `SIPStreamFramer`) implement
/// it; TLS will too, so the transactions above stay unchanged.
protocol SIPTransport: Sendable {
    var localPort: Int { get }
    var transportName: String { get }  // for Via: UDP, TCP, TLS
    /// Reliable transports do not retransmit requests (RFC 3261 §17.1.1.2, Timers A and E).
    var isReliable: Bool { get }
    func send(_ bytes: [UInt8], to destination: SocketAddress)
    func close() async
}

/// Hands every datagram to an AsyncStream so the user agent handles them in order, one at a
/// time, on its own actor.
private final class DatagramInboundHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let continuation: AsyncStream<InboundDatagram>.Continuation

    init(continuation: AsyncStream<InboundDatagram>.Continuation) { self.continuation = continuation }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        continuation.yield(InboundDatagram(bytes: Array(envelope.data.readableBytesView), source: envelope.remoteAddress))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP port unreachable and the like surface here on UDP; the transaction timers
        // already cover a silent peer, so there is nothing to do.
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.finish()
    }
}

/// SIP over UDP on a SwiftNIO datagram channel.
final class UDPTransport: SIPTransport {
    let channel: any Channel
    let localPort: Int
    var transportName: String { "UDP" }
    var isReliable: Bool { false }

    private init(channel: any Channel) {
        self.channel = channel
        self.localPort = channel.localAddress?.port ?? 0
    }

    /// Binds and returns the transport with the stream of datagrams it receives.
    static func bind(host: String, port: Int, group: any EventLoopGroup) async throws
        -> (UDPTransport, AsyncStream<InboundDatagram>)
    {
        let (stream, continuation) = AsyncStream<InboundDatagram>.makeStream(bufferingPolicy: .bufferingNewest(2048))
        let handler = DatagramInboundHandler(continuation: continuation)
        let channel = try await DatagramBootstrap(group: group)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
            .bind(host: host, port: port)
            .get()
        return (UDPTransport(channel: channel), stream)
    }

    func send(_ bytes: [UInt8], to destination: SocketAddress) {
        let buffer = channel.allocator.buffer(bytes: bytes)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: buffer), promise: nil)
    }

    func close() async {
        try? await channel.close()
    }
}
