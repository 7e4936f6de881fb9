import NIOCore
import NIOPosix
import Synchronization

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
/// time, on its own actor. STUN answers (our RFC 5626 §4.4.2 keepalives share the SIP socket)
/// are told apart by their first bytes and go to the transport events instead.
private final class DatagramInboundHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let continuation: AsyncStream<InboundDatagram>.Continuation
    let events: AsyncStream<TransportEvent>.Continuation
    let onInactive: @Sendable () -> Void

    init(continuation: AsyncStream<InboundDatagram>.Continuation, events: AsyncStream<TransportEvent>.Continuation,
         onInactive: @escaping @Sendable () -> Void) {
        self.continuation = continuation
        self.events = events
        self.onInactive = onInactive
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let bytes = Array(envelope.data.readableBytesView)
        if STUN.isSTUN(bytes) {
            if let answer = STUN.parseBindingSuccess(bytes) {
                events.yield(.stunAnswer(envelope.remoteAddress, transaction: answer.transaction, mapped: answer.mapped))
            }
            return  // requests or errors: we are no STUN server
        }
        continuation.yield(InboundDatagram(bytes: bytes, source: envelope.remoteAddress))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP port unreachable and the like surface here on UDP; the transaction timers
        // already cover a silent peer, so there is nothing to do.
    }

    func channelInactive(context: ChannelHandlerContext) {
        onInactive()
    }
}

/// SIP over UDP on a SwiftNIO datagram channel.
///
/// NIO closes a datagram channel on most send errors, and a link going down makes `sendto`
/// fail with ENETUNREACH: without care, one REGISTER sent while the cable is out would leave
/// the tablet deaf for good. So the socket is bound again (same address and port) whenever it
/// closes without `close()`, at once and then every half second until the address is back;
/// datagrams sent meanwhile are dropped (transactions retransmit). The streams live as long
/// as the transport, not as long as one socket.
final class UDPTransport: SIPTransport {
    /// The largest UDP payload (the IP length field's 65,535 bytes; what the parser takes as
    /// one message, `SIPParserLimits.maxMessageSize`).
    static let maxDatagramSize = 65_535

    private struct State {
        var channel: (any Channel)?
        var closing = false
        var rebinding = false
    }

    let localPort: Int
    var transportName: String { "UDP" }
    var isReliable: Bool { false }

    private let host: String
    private let group: any EventLoopGroup
    private let state = Mutex(State())
    private let continuation: AsyncStream<InboundDatagram>.Continuation
    private let eventContinuation: AsyncStream<TransportEvent>.Continuation

    private init(host: String, port: Int, group: any EventLoopGroup,
                 continuation: AsyncStream<InboundDatagram>.Continuation,
                 eventContinuation: AsyncStream<TransportEvent>.Continuation) {
        self.host = host
        self.localPort = port
        self.group = group
        self.continuation = continuation
        self.eventContinuation = eventContinuation
    }

    /// Binds and returns the transport with the stream of datagrams it receives and the STUN
    /// keepalive answers (`TransportEvent.stunAnswer`).
    static func bind(host: String, port: Int, group: any EventLoopGroup) async throws
        -> (UDPTransport, AsyncStream<InboundDatagram>, AsyncStream<TransportEvent>)
    {
        let (stream, continuation) = AsyncStream<InboundDatagram>.makeStream(bufferingPolicy: .bufferingNewest(2048))
        let (events, eventContinuation) = AsyncStream<TransportEvent>.makeStream(bufferingPolicy: .bufferingNewest(256))
        // The first channel exists before the transport does; its close reaches the transport
        // through this box.
        let owner = Mutex<UDPTransport?>(nil)
        let first = try await makeChannel(host: host, port: port, group: group, continuation: continuation,
                                          events: eventContinuation,
                                          onInactive: { owner.withLock { $0 }?.channelClosed() })
        let transport = UDPTransport(host: host, port: first.localAddress?.port ?? port, group: group,
                                     continuation: continuation, eventContinuation: eventContinuation)
        transport.state.withLock { $0.channel = first }
        owner.withLock { $0 = transport }
        return (transport, stream, events)
    }

    private static func makeChannel(
        host: String, port: Int, group: any EventLoopGroup, continuation: AsyncStream<InboundDatagram>.Continuation,
        events: AsyncStream<TransportEvent>.Continuation, onInactive: @escaping @Sendable () -> Void
    ) async throws -> any Channel {
        let handler = DatagramInboundHandler(continuation: continuation, events: events, onInactive: onInactive)
        return try await DatagramBootstrap(group: group)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            // NIO's default allocator reads 2,048 bytes and drops the rest of a datagram; a
            // SIP message over UDP may be as large as a datagram can be (issue 15).
            .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: maxDatagramSize))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
            }
            .bind(host: host, port: port)
            .get()
    }

    private func bindAgain() async throws {
        let channel = try await Self.makeChannel(
            host: host, port: localPort, group: group, continuation: continuation, events: eventContinuation,
            onInactive: { [weak self] in self?.channelClosed() })
        let keep = state.withLock { state -> Bool in
            guard !state.closing else { return false }
            state.channel = channel
            return true
        }
        if !keep { try? await channel.close() }
    }

    private func channelClosed() {
        let rebind = state.withLock { state -> Bool in
            state.channel = nil
            guard !state.closing, !state.rebinding else { return false }
            state.rebinding = true
            return true
        }
        guard rebind else { return }
        Task {
            var attempt = 0
            while true {
                do {
                    try await bindAgain()
                    break
                } catch {
                    if state.withLock({ $0.closing }) { break }
                    attempt += 1
                    try? await Task.sleep(for: .milliseconds(attempt == 1 ? 50 : 500))
                }
            }
            state.withLock { $0.rebinding = false }
        }
    }

    func send(_ bytes: [UInt8], to destination: SocketAddress) {
        guard let channel = state.withLock({ $0.channel }) else { return }
        let buffer = channel.allocator.buffer(bytes: bytes)
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: destination, data: buffer), promise: nil)
    }

    func close() async {
        let channel = state.withLock { state -> (any Channel)? in
            state.closing = true
            defer { state.channel = nil }
            return state.channel
        }
        try? await channel?.close()
        continuation.finish()
        eventContinuation.finish()
    }
}

/// The little of STUN (RFC 5389) that RFC 5626 §4.4.2 keepalives need: a Binding request, and
/// the transaction id and XOR-MAPPED-ADDRESS of a Binding success response.
enum STUN {
    static let magicCookie: [UInt8] = [0x21, 0x12, 0xA4, 0x42]

    /// A Binding request without attributes; `transaction` is 12 random bytes.
    static func bindingRequest(transaction: [UInt8]) -> [UInt8] {
        precondition(transaction.count == 12, "STUN transaction ids are 12 bytes")
        return [0x00, 0x01, 0x00, 0x00] + magicCookie + transaction
    }

    static func newTransaction() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<12).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    /// STUN and SIP share the port: a STUN message starts with two zero bits and has the magic
    /// cookie at bytes 4–7; SIP starts with a letter.
    static func isSTUN(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 20 && bytes[0] & 0xC0 == 0 && Array(bytes[4..<8]) == magicCookie
    }

    /// A Binding success response's transaction id and mapped address (nil if it names none we
    /// can read); nil for anything else or anything malformed.
    static func parseBindingSuccess(_ bytes: [UInt8]) -> (transaction: [UInt8], mapped: SocketAddress?)? {
        guard isSTUN(bytes), bytes[0] == 0x01, bytes[1] == 0x01 else { return nil }
        let length = Int(bytes[2]) << 8 | Int(bytes[3])
        guard length % 4 == 0, 20 + length <= bytes.count else { return nil }
        let transaction = Array(bytes[8..<20])
        var mapped: SocketAddress?
        var offset = 20
        while offset + 4 <= 20 + length {
            let type = Int(bytes[offset]) << 8 | Int(bytes[offset + 1])
            let size = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let value = offset + 4
            guard value + size <= 20 + length else { return nil }
            if type == 0x0020, size >= 8, bytes[value + 1] == 0x01 {  // XOR-MAPPED-ADDRESS, IPv4
                let port = (Int(bytes[value + 2]) << 8 | Int(bytes[value + 3])) ^ 0x2112
                let octets = (0..<4).map { bytes[value + 4 + $0] ^ magicCookie[$0] }
                mapped = try? SocketAddress(ipAddress: octets.map(String.init).joined(separator: "."), port: port)
            }
            offset = value + (size + 3) & ~3
        }
        return (transaction, mapped)
    }
}
