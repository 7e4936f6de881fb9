public import Control
import Foundation
public import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle
#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a control connection (SO_PEERCRED), for the log of
/// state-changing commands.
public struct ControlPeer: Sendable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// The peer's supplementary groups when it connected (SO_PEERGROUPS); empty when unknown.
    public var groups: [UInt32] = []
    public var description: String { "pid=\(pid) uid=\(uid)" }

    /// Root, the daemon's own user, or a member of the technicians' group (primary or
    /// supplementary, as the kernel recorded them at connect): who may read personal data.
    public func isTechnician(group: UInt32?) -> Bool {
        if uid == 0 || uid == geteuid() { return true }
        guard let group, group != 0 else { return false }
        return gid == group || groups.contains(group)
    }
}

/// The technicians' group's gid: `control_group` as a number, or looked up by name.
public func technicianGID(_ group: String) -> UInt32? {
    if let number = UInt32(group) { return number }
    return getgrnam(group).map { $0.pointee.gr_gid }
}

/// The daemon's end of the control socket (`/run/beeldzorg/control.sock`, mode 0660, group
/// `beeldzorg-tech`): newline-delimited JSON, bounded request size, an idle timeout per
/// client. A bad request gets an error answer and the connection goes on; nothing a client
/// sends can stop the daemon.
public final class ControlServer: Service, Sendable {
    public typealias Handler = @Sendable (ControlRequest, ControlPeer?) async -> ControlResponse
    private typealias Listener = NIOAsyncChannel<NIOAsyncChannel<ControlLine, ByteBuffer>, Never>

    private let path: String
    private let server: Listener
    private let logger: Logger
    private let handler: Handler

    private init(path: String, server: Listener, logger: Logger, handler: @escaping Handler) {
        self.path = path
        self.server = server
        self.logger = logger
        self.handler = handler
    }

    /// Binds the socket (mode 0660, the technicians' group) so it exists before the daemon
    /// says READY=1; `run()` then serves it.
    public static func bind(path: String, group: any EventLoopGroup, technicianGroup: String = "beeldzorg-tech",
                            logger: Logger, handler: @escaping Handler) async throws -> ControlServer {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: .seconds(10)))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ControlLineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(CloseOnIdleHandler())
                    return try NIOAsyncChannel<ControlLine, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        restrictSocketFile(path, group: technicianGroup, logger: logger)
        logger.info("control socket listening", metadata: ["path": "\(path)"])
        return ControlServer(path: path, server: server, logger: logger, handler: handler)
    }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { tasks in
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        tasks.addTask { await self.serve(connection) }
                    }
                }
            }
        } onGracefulShutdown: {
            self.server.channel.close(promise: nil)
        }
        try? FileManager.default.removeItem(atPath: path)
    }

    /// 0660 and the technicians' group, so only root, the daemon and technicians can talk to it.
    private static func restrictSocketFile(_ path: String, group technicianGroup: String, logger: Logger) {
        chmod(path, 0o660)
        if let gid = technicianGID(technicianGroup) {
            if chown(path, getuid(), gid) != 0 {
                logger.warning("cannot give the control socket to its group", metadata: ["group": "\(technicianGroup)", "error": "\(String(cString: strerror(errno)))"])
            }
        }
    }

    private func serve(_ connection: NIOAsyncChannel<ControlLine, ByteBuffer>) async {
        let peer = await Self.peerCredentials(connection.channel)
        // On shutdown an idle client must not hold the daemon until its timeout.
        await withGracefulShutdownHandler {
            await serveRequests(connection, peer: peer)
        } onGracefulShutdown: {
            connection.channel.close(promise: nil)
        }
    }

    private func serveRequests(_ connection: NIOAsyncChannel<ControlLine, ByteBuffer>, peer: ControlPeer?) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                for try await line in inbound {
                    let response: ControlResponse
                    var closeAfter = false
                    switch line {
                    case .tooLong:
                        response = .failure(ControlError(.tooLarge, "request longer than \(ControlProtocol.maximumRequestBytes) bytes"))
                        closeAfter = true
                    case .line(let bytes):
                        switch ControlCoding.decodeRequest(Data(bytes.readableBytesView)) {
                        case .success(let request):
                            response = await handler(request, peer)
                        case .failure(let error):
                            logger.notice("control request refused", metadata: ["peer": "\(peer?.description ?? "?")", "reason": "\(error.message)"])
                            response = .failure(error)
                        }
                    }
                    var out = ByteBuffer(bytes: response.encoded())
                    out.writeInteger(UInt8(ascii: "\n"))
                    try await outbound.write(out)
                    if closeAfter { return }
                }
            }
        } catch {
            logger.debug("control connection ended", metadata: ["error": "\(error)"])
        }
    }

    private static func peerCredentials(_ channel: any Channel) async -> ControlPeer? {
        guard let provider = channel as? any SocketOptionProvider else { return nil }
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        let credentials: (Int32, UInt32, UInt32)? = try? await provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED)
        ).get()
        guard var peer = credentials.map({ ControlPeer(pid: $0.0, uid: $0.1, gid: $0.2) }) else { return nil }
        // Up to 64 groups; more is ERANGE and leaves `groups` empty (the primary gid still counts).
        // Unused slots stay 0, which `isTechnician` never takes for the technicians' group.
        let groups: InlineArray<64, UInt32>? = try? await provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(59 /* SO_PEERGROUPS */)
        ).get()
        if let groups { peer.groups = (0..<64).map { groups[$0] }.filter { $0 != 0 } }
        return peer
    }
}

enum ControlLine: Sendable {
    case line(ByteBuffer)
    case tooLong
}

/// Splits the stream at newlines; a line that grows past the limit is reported once as
/// `tooLong` and the connection is then closed by the server, so memory stays bounded.
struct ControlLineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ControlLine
    private var discarding = false

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - buffer.readerIndex
            var line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            if discarding {
                discarding = false
                return .continue
            }
            if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
            if line.readableBytes == 0 { return .continue }
            context.fireChannelRead(wrapInboundOut(.line(line)))
            return .continue
        }
        if buffer.readableBytes > ControlProtocol.maximumRequestBytes {
            buffer.moveReaderIndex(to: buffer.writerIndex)
            if !discarding {
                discarding = true
                context.fireChannelRead(wrapInboundOut(.tooLong))
            }
            return .continue
        }
        return .needMoreData
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Closes a connection that has sent no complete request for the idle timeout — but not while
/// the daemon is still working on one (a button test waits for a press for many seconds).
/// It sits after the line decoder, so a client dribbling bytes without a newline is closed.
final class CloseOnIdleHandler: ChannelDuplexHandler {
    typealias InboundIn = ControlLine
    typealias InboundOut = ControlLine
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var awaitingAnswer = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        awaitingAnswer = true
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        awaitingAnswer = false
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if !awaitingAnswer { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}
