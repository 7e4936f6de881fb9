import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import SIP

/// Two edge proxies reached over two interfaces: beeldzorgd (`listen_host: 0.0.0.0`) runs in a
/// network namespace of the test's own with one veth pair toward each proxy. The first proxy
/// registers the tablet and then ignores its INVITE; the INVITE retried over the second proxy
/// carries, in Via and Contact, the tablet's address on the second link, not the first's.
@Suite(.serialized, .enabled(if: NetworkNamespace.available, "needs root and ip(8)"))
struct FailoverContactTests {
    /// An edge proxy stand-in on one address: 200 to every REGISTER (Expires 300), nothing to
    /// anything else; keeps every INVITE.
    final class ProxyStub: Sendable {
        final class InviteLog: Sendable {
            let invites = Mutex<[SIPRequest]>([])
        }

        let channel: any Channel
        let log = InviteLog()
        var port: Int { channel.localAddress!.port! }

        private final class Handler: ChannelInboundHandler, Sendable {
            typealias InboundIn = AddressedEnvelope<ByteBuffer>
            typealias OutboundOut = AddressedEnvelope<ByteBuffer>
            let log: InviteLog
            init(_ log: InviteLog) { self.log = log }

            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                let envelope = unwrapInboundIn(data)
                guard case .request(let request)? = try? SIPMessageParser().parse(
                    Array(envelope.data.readableBytesView), transport: .datagram)
                else { return }
                switch request.method {
                case .register:
                    var headers = SIPHeaders()
                    for field in request.headers where field.name == "Via" { headers.add("Via", field.value) }
                    headers.add("From", request.headers["From"]!)
                    headers.add("To", request.headers["To"]! + ";tag=stub")
                    headers.add("Call-ID", request.headers["Call-ID"]!)
                    headers.add("CSeq", request.headers["CSeq"]!)
                    if let contact = request.headers["Contact"] { headers.add("Contact", contact + ";expires=300") }
                    headers.add("Expires", "300")
                    let bytes = SIPResponse(status: 200, headers: headers).serialized()
                    context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(
                        remoteAddress: envelope.remoteAddress, data: context.channel.allocator.buffer(bytes: bytes))),
                        promise: nil)
                case .invite:
                    log.invites.withLock { $0.append(request) }
                default:
                    break
                }
            }
        }

        init(host: String) async throws {
            let handler = Handler(log)
            channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
                }
                .bind(host: host, port: 0).get()
        }

        var received: [SIPRequest] { log.invites.withLock { $0 } }
        func close() async { try? await channel.close() }
    }

    static func ip(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: NetworkNamespace.ip)
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ReinviteTestFailure(command: "ip \(arguments.joined(separator: " "))", output: "exit \(process.terminationStatus)")
        }
    }

    @Test func anInviteRetriedOverTheOtherProxyCarriesTheOtherLinksAddress() async throws {
        let namespace = try NetworkNamespace()  // first link: hostAddress ↔ tabletAddress
        defer { namespace.remove() }
        // The second link, a veth pair of its own in another subnet.
        let tag = String(UInt32.random(in: 0..<0xFFFFFF), radix: 16)
        let (hostEnd, tabletEnd) = ("bzh2\(tag)", "bzt2\(tag)")
        let subnet = "10.\(Int.random(in: 128...191)).\(Int.random(in: 0...255))"
        let (secondHost, secondTablet) = ("\(subnet).1", "\(subnet).2")
        try Self.ip(["link", "add", hostEnd, "type", "veth", "peer", "name", tabletEnd])
        defer { try? Self.ip(["link", "del", hostEnd]) }
        try Self.ip(["link", "set", tabletEnd, "netns", namespace.name])
        try Self.ip(["addr", "add", "\(secondHost)/30", "dev", hostEnd])
        try Self.ip(["link", "set", hostEnd, "up"])
        try namespace.inside(["ip", "addr", "add", "\(secondTablet)/30", "dev", tabletEnd])
        try namespace.inside(["ip", "link", "set", tabletEnd, "up"])

        let first = try await ProxyStub(host: namespace.hostAddress)
        let second = try await ProxyStub(host: secondHost)
        defer { Task { await first.close(); await second.close() } }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bz-failover-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let d = directory.path
        try "secret\n".write(toFile: "\(d)/password", atomically: true, encoding: .utf8)
        chmod("\(d)/password", 0o600)
        mkfifo("\(d)/button", 0o600)
        try ReinviteDaemonTests.Daemon.configuration(
            directory: directory, post: "sip:centrale@zorg.example", account: "  password_file: \(d)/password",
            extra: "edge_proxies:\n  - sip:\(namespace.hostAddress):\(first.port)\n  - sip:\(secondHost):\(second.port)",
            listenHost: "0.0.0.0", domain: "zorg.example"
        ).write(toFile: "\(d)/beeldzorgd.yaml", atomically: true, encoding: .utf8)
        let (daemon, lines) = try namespace.launch(
            ReinviteDaemonTests.Daemon.binaries.appendingPathComponent("beeldzorgd").path,
            ["--config", "\(d)/beeldzorgd.yaml", "--console", "--log-level", "debug"])
        defer { namespace.stopAll() }
        _ = daemon

        // Both flows registered, then a press: the INVITE goes to the first proxy, which says
        // nothing, so after 2·T1 it goes over the second.
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline, !lines.text.split(whereSeparator: \.isNewline).contains(where: { $0.contains(": registered") && $0.contains(secondHost) }) {
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(300))
        let fd = open("\(d)/button", O_WRONLY | O_NONBLOCK)
        #expect(fd >= 0)
        _ = write(fd, "press\n", 6)
        close(fd)
        while ContinuousClock.now < deadline + .seconds(10), second.received.isEmpty {
            try await Task.sleep(for: .milliseconds(100))
        }
        let firstInvite = try #require(first.received.first, "no INVITE to the first proxy:\n\(lines.text.suffix(4000))")
        let retried = try #require(second.received.first, "no INVITE over the second proxy:\n\(lines.text.suffix(4000))")
        #expect(firstInvite.headers["Contact"]?.contains("@\(namespace.tabletAddress):") == true, "\(firstInvite.headers["Contact"] ?? "")")
        #expect(retried.headers["Contact"]?.contains("@\(secondTablet):") == true, "\(retried.headers["Contact"] ?? "")")
        #expect(retried.headers.values("Via").first?.contains(secondTablet) == true, "\(retried.headers.values("Via"))")
        #expect(retried.headers["Call-ID"] == firstInvite.headers["Call-ID"])
    }
}
