import NIOCore
import NIOPosix
import Synchronization

/// Cuts a TCP byte stream into SIP messages with `SIPStreamFramer` and answers RFC 5626
/// keepalive pings. A framing error closes the connection: a stream cannot be resynchronised.
private final class StreamFramingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var framer: SIPStreamFramer
    private let continuation: AsyncStream<InboundDatagram>.Continuation
    private let onInactive: @Sendable (SocketAddress?) -> Void

    init(role: SIPStreamFramer.KeepAliveRole, continuation: AsyncStream<InboundDatagram>.Continuation,
         onInactive: @escaping @Sendable (SocketAddress?) -> Void) {
        framer = SIPStreamFramer(role: role)
        self.continuation = continuation
        self.onInactive = onInactive
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        framer.append(buffer.readableBytesView)
        guard let source = context.remoteAddress else { return }
        do {
            while let frame = try framer.next() {
                switch frame {
                case .message(let bytes):
                    continuation.yield(InboundDatagram(bytes: bytes, source: source, kind: .stream))
                case .keepAlivePing:
                    context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: [13, 10])), promise: nil)
                case .keepAlivePong:
                    break
                }
            }
        } catch {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        onInactive(context.remoteAddress)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// SIP over TCP: listens for connections and opens (then reuses) one connection per peer
/// address. Responses to a request go back over the connection it came on, because its
/// source address is the key of that connection.
final class TCPTransport: SIPTransport {
    let localPort: Int
    var transportName: String { "TCP" }
    var isReliable: Bool { true }

    private let server: any Channel
    private let group: any EventLoopGroup
    private let continuation: AsyncStream<InboundDatagram>.Continuation
    private let registry: ConnectionRegistry

    private init(server: any Channel, group: any EventLoopGroup, continuation: AsyncStream<InboundDatagram>.Continuation,
                 registry: ConnectionRegistry) {
        self.server = server
        self.group = group
        self.continuation = continuation
        self.registry = registry
        localPort = server.localAddress?.port ?? 0
    }

    static func bind(host: String, port: Int, group: any EventLoopGroup) async throws
        -> (TCPTransport, AsyncStream<InboundDatagram>)
    {
        let (stream, continuation) = AsyncStream<InboundDatagram>.makeStream(bufferingPolicy: .bufferingNewest(2048))
        // Accepted connections register themselves so replies reuse them.
        let registry = ConnectionRegistry()
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let remote = channel.remoteAddress {
                        registry.accepted(remote, channel.eventLoop.makeSucceededFuture(channel))
                    }
                    try channel.pipeline.syncOperations.addHandler(
                        StreamFramingHandler(role: .flowServer, continuation: continuation) { registry.closed($0) })
                }
            }
            .bind(host: host, port: port)
            .get()
        return (TCPTransport(server: server, group: group, continuation: continuation, registry: registry), stream)
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

    func send(_ bytes: [UInt8], to destination: SocketAddress) {
        let connection = registry.table.withLock { table -> EventLoopFuture<any Channel> in
            if let existing = table[destination] { return existing }
            let continuation = self.continuation
            let future = ClientBootstrap(group: group)
                .connectTimeout(.seconds(3))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(
                            StreamFramingHandler(role: .flowClient, continuation: continuation) { [weak self] _ in
                                self?.forget(destination)
                            })
                    }
                }
                .connect(to: destination)
            table[destination] = future
            return future
        }
        connection.whenComplete { [weak self] result in
            switch result {
            case .success(let channel):
                channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
            case .failure:
                // Connection refused or timed out: the transaction's timer reports the failure.
                self?.forget(destination)
            }
        }
    }

    private func forget(_ destination: SocketAddress) {
        registry.table.withLock { $0[destination] = nil }
    }

    func close() async {
        let open = registry.table.withLock { table in
            defer { table.removeAll() }
            return Array(table.values)
        }
        for future in open {
            if let channel = try? await future.get() { try? await channel.close() }
        }
        try? await server.close()
        continuation.finish()
    }
}
