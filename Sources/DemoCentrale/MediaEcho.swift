import NIOCore
import NIOPosix
import Synchronization

/// Counts what the echo sockets bounced back, for tests and the demo's status line.
final class EchoCounter: Sendable {
    let packets = Atomic<Int>(0)
}

/// Sends every datagram straight back to whoever sent it: RTP and RTCP (plain or SRTP) make a
/// real round trip through the network stack and back into the tablet's receive pipeline.
private final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let counter: EchoCounter

    init(counter: EchoCounter) { self.counter = counter }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        counter.packets.add(1, ordering: .relaxed)
        let reply = AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: envelope.data)
        context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors after the tablet closed its socket: nothing to do.
    }
}

/// One UDP echo socket on loopback.
struct EchoSocket: Sendable {
    let channel: any Channel
    var port: Int { channel.localAddress?.port ?? 0 }

    static func bind(host: String, group: any EventLoopGroup, counter: EchoCounter) async throws -> EchoSocket {
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(EchoHandler(counter: counter))
                }
            }
            .bind(host: host, port: 0)
            .get()
        return EchoSocket(channel: channel)
    }

    func close() async { try? await channel.close() }
}

/// The echo sockets of one call: audio and video, each with its own RTCP socket for peers that
/// do not multiplex (RFC 5761).
struct EchoSet: Sendable {
    var audio: EchoSocket
    var audioRTCP: EchoSocket
    var video: EchoSocket
    var videoRTCP: EchoSocket

    static func bind(host: String, group: any EventLoopGroup, counter: EchoCounter) async throws -> EchoSet {
        EchoSet(
            audio: try await .bind(host: host, group: group, counter: counter),
            audioRTCP: try await .bind(host: host, group: group, counter: counter),
            video: try await .bind(host: host, group: group, counter: counter),
            videoRTCP: try await .bind(host: host, group: group, counter: counter))
    }

    func close() async {
        for socket in [audio, audioRTCP, video, videoRTCP] { await socket.close() }
    }
}
