import Media
import NIOCore
import NIOPosix
import Synchronization

/// Counts what the echo sockets bounced back, for tests and the demo's status line.
final class EchoCounter: Sendable {
    let packets = Atomic<Int>(0)
}

/// For SRTP calls where each side has its own key (the centrale called the tablet): the echo
/// decrypts with the tablet's key and encrypts again with the centrale's, as a real peer would.
struct EchoRekey: Sendable {
    let inbound: SRTPSession
    let outbound: SRTPSession

    init(receiveKey: [UInt8], sendKey: [UInt8]) throws {
        inbound = try SRTPSession(masterKeyAndSalt: receiveKey, direction: .inbound)
        outbound = try SRTPSession(masterKeyAndSalt: sendKey, direction: .outbound)
    }

    /// nil: the packet failed authentication or is not RTP/RTCP; it is dropped.
    func reencrypt(_ packet: [UInt8]) -> [UInt8]? {
        // RFC 5761 §4: payload types 200–204 in the second byte are RTCP on a muxed port.
        let isRTCP = packet.count > 1 && (200...204).contains(packet[1])
        do {
            return isRTCP
                ? try outbound.protectRTCP(inbound.unprotectRTCP(packet))
                : try outbound.protect(inbound.unprotect(packet))
        } catch {
            return nil
        }
    }
}

/// Sends every datagram straight back to whoever sent it: RTP and RTCP (plain or SRTP) make a
/// real round trip through the network stack and back into the tablet's receive pipeline.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    enum Mode: Sendable {
        /// Reflect as received (plain RTP, or SRTP whose answer reused the offerer's key).
        case reflect
        /// SRTP with separate keys, before the answer told us the tablet's: drop.
        case awaitingKeys
        case rekey(EchoRekey)
    }

    let counter: EchoCounter
    let mode: Mutex<Mode>

    init(counter: EchoCounter, mode: Mode) {
        self.counter = counter
        self.mode = Mutex(mode)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        var payload = envelope.data
        switch mode.withLock({ $0 }) {
        case .reflect:
            break
        case .awaitingKeys:
            return
        case .rekey(let rekey):
            guard let bytes = rekey.reencrypt(Array(envelope.data.readableBytesView)) else { return }
            payload = ByteBuffer(bytes: bytes)
        }
        counter.packets.add(1, ordering: .relaxed)
        let reply = AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: payload)
        context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors after the tablet closed its socket: nothing to do.
    }
}

/// One UDP echo socket on loopback.
struct EchoSocket: Sendable {
    let channel: any Channel
    let handler: EchoHandler
    var port: Int { channel.localAddress?.port ?? 0 }

    static func bind(host: String, group: any EventLoopGroup, counter: EchoCounter,
                     mode: EchoHandler.Mode) async throws -> EchoSocket {
        let handler = EchoHandler(counter: counter, mode: mode)
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .bind(host: host, port: 0)
            .get()
        return EchoSocket(channel: channel, handler: handler)
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

    /// `awaitingKeys`: an SRTP call the centrale placed, whose echo must wait for `rekey`.
    static func bind(host: String, group: any EventLoopGroup, counter: EchoCounter,
                     awaitingKeys: Bool = false) async throws -> EchoSet {
        let mode: EchoHandler.Mode = awaitingKeys ? .awaitingKeys : .reflect
        return EchoSet(
            audio: try await .bind(host: host, group: group, counter: counter, mode: mode),
            audioRTCP: try await .bind(host: host, group: group, counter: counter, mode: mode),
            video: try await .bind(host: host, group: group, counter: counter, mode: mode),
            videoRTCP: try await .bind(host: host, group: group, counter: counter, mode: mode))
    }

    func close() async {
        for socket in [audio, audioRTCP, video, videoRTCP] { await socket.close() }
    }

    /// Switches the sockets of each SRTP stream to decrypt-and-re-encrypt.
    func rekey(audio audioKeys: (receive: [UInt8], send: [UInt8])?, video videoKeys: (receive: [UInt8], send: [UInt8])?) throws {
        if let audioKeys {
            for socket in [audio, audioRTCP] {
                let rekey = try EchoRekey(receiveKey: audioKeys.receive, sendKey: audioKeys.send)
                socket.handler.mode.withLock { $0 = .rekey(rekey) }
            }
        }
        if let videoKeys {
            for socket in [video, videoRTCP] {
                let rekey = try EchoRekey(receiveKey: videoKeys.receive, sendKey: videoKeys.send)
                socket.handler.mode.withLock { $0 = .rekey(rekey) }
            }
        }
    }
}
