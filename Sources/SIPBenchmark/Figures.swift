import CallFlow
import DemoCentrale
import Foundation
import Glibc
import Logging
import Media
import NIOPosix
import SIP
import Synchronization

// MARK: - Statistics

func milliseconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) * 1000 + Double(attoseconds) / 1e15
}

/// p-th percentile (nearest rank) of `values`, in the unit given.
func percentile(_ values: [Double], _ p: Double) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

func format(_ value: Double) -> String { String(format: value < 10 ? "%.2f" : "%.0f", value) }

func summary(_ values: [Double]) -> String {
    "p50 \(format(percentile(values, 50))) ms, p99 \(format(percentile(values, 99))) ms, "
        + "max \(format(values.max() ?? .nan)) ms (n=\(values.count))"
}

func iterations(default value: Int) -> Int { Int(option("iterations") ?? "") ?? value }

func hostLoad() -> String {
    (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8))?.split(separator: " ").prefix(3)
        .joined(separator: " ") ?? "?"
}

// MARK: - A CallFlow driver: what the daemon's controller and SIPCallSignalling do, minus devices

/// Runs CallFlow's signalling actions against a user agent the way the daemon does (one media
/// session bound per attempt for the offer, hunt ring timeout on each INVITE, timers as
/// tasks), and records when the first 180 and the 200 came.
actor Driver {
    var flow: CallFlow
    let agent: UserAgent
    let configuration: CallFlowConfiguration
    var legs: [CallLegID: CallHandle] = [:]
    var handles: [CallHandle: CallLegID] = [:]
    var offer: SessionDescription?
    var session: MediaSession?
    var pressedAt: ContinuousClock.Instant?
    var ringingAt: ContinuousClock.Instant?
    var answeredAt: ContinuousClock.Instant?
    var answeredLeg: CallLegID?
    var timers: [CallFlowTimer: Task<Void, Never>] = [:]

    init(configuration: CallFlowConfiguration, agent: UserAgent) {
        self.configuration = configuration
        self.flow = CallFlow(configuration: configuration)
        self.agent = agent
    }

    func reset() {
        flow = CallFlow(configuration: configuration)
        _ = flow.handle(.network(up: true))
        _ = flow.handle(.registration(up: true))
        for timer in timers.values { timer.cancel() }
        timers = [:]
        legs = [:]
        handles = [:]
        offer = nil
        session?.stop()
        session = nil
        pressedAt = nil
        ringingAt = nil
        answeredAt = nil
        answeredLeg = nil
    }

    func press() async {
        pressedAt = .now
        await feed(.shortPress)
    }

    func availability(_ postID: String, alive: Bool) async { await feed(.postAvailability(postID: postID, alive: alive)) }

    func feed(_ event: CallFlowEvent) async {
        for action in flow.handle(event) { await execute(action) }
    }

    func execute(_ action: CallFlowAction) async {
        switch action {
        case .sendInvite(let leg, let post):
            if offer == nil {
                let bound = try! MediaSession.bind(host: "127.0.0.1")
                session = bound
                let negotiator = MediaNegotiator(localAddress: "127.0.0.1", audioPort: bound.localAudioPort,
                                                 videoPort: bound.localVideoPort, srtpRequired: true)
                offer = negotiator.makeOffer().description
            }
            let ringTimeout: Duration? = if case .hunt(let timeout) = configuration.policy { timeout } else { nil }
            let handle = await agent.invite(to: post.uri, offer: offer!, ringTimeout: ringTimeout)
            legs[leg] = handle
            handles[handle] = leg
        case .cancelInvite(let leg), .sendBye(let leg):
            if let handle = legs[leg] { await agent.hangUp(handle) }
        case .scheduleTimer(let timer, let delay):
            timers[timer]?.cancel()
            timers[timer] = Task {
                try? await Task.sleep(for: delay)
                guard !Task.isCancelled else { return }
                await self.feed(.timerFired(timer))
            }
        case .cancelTimer(let timer):
            timers.removeValue(forKey: timer)?.cancel()
        case .answer, .reject, .startMedia, .stopMedia, .stopVideo, .playPrompt, .playTone, .stopTone, .setIndicator,
             .callLog, .queueCallbackRequest, .centraleReached:
            break
        }
    }

    func agentEvent(_ event: UserAgentEvent) async {
        switch event {
        case .progress(let handle, let status):
            guard let leg = handles[handle], status >= 180 else { return }
            if ringingAt == nil { ringingAt = .now }
            await feed(.provisional(leg, code: status))
        case .answered(let handle, _):
            guard let leg = handles[handle] else { return }
            if answeredAt == nil {
                answeredAt = .now
                answeredLeg = leg
            }
            await feed(.answered(leg))
        case .failed(let handle, let status, let reason):
            guard let leg = handles[handle] else { return }
            await feed(.failed(leg, code: status, reason: reason))
        case .incoming, .remoteCancelled, .remoteHungUp, .mediaChanged:
            break
        }
    }

    /// Ends the answered call (BYE) so the next round starts clean.
    func hangUpAnswered() async {
        if let leg = answeredLeg, let handle = legs[leg] { await agent.hangUp(handle) }
    }
}

func tabletAgent(t1: Duration = .milliseconds(500)) async throws -> UserAgent {
    let agent = UserAgent(
        configuration: UserAgentConfiguration(localHost: "127.0.0.1", user: "tablet", srtpRequired: true, timerT1: t1),
        group: MultiThreadedEventLoopGroup.singleton, logger: makeLogger())
    _ = try await agent.start()
    return agent
}

// MARK: - invite: button event → INVITE on the wire

/// A UDP socket read on its own thread, stamping each datagram as it arrives.
final class StampingReceiver: Sendable {
    let port: Int
    private let fd: Int32
    let stamps = Mutex<[ContinuousClock.Instant]>([])

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count <= 0 { return }
                let now = ContinuousClock.now
                // Only INVITEs count (not retransmissions' successors like CANCEL/ACK).
                if count > 6, buffer[0] == UInt8(ascii: "I") { stamps.withLock { $0.append(now) } }
            }
        }
        thread.start()
    }

    func count() -> Int { stamps.withLock { $0.count } }
}

func inviteBenchmark() async {
    let rounds = iterations(default: 500)
    do {
        let receiver = try StampingReceiver()
        let agent = try await tabletAgent(t1: .seconds(2))
        let post = CentralePost(id: "post-1", uri: "sip:post1@127.0.0.1:\(receiver.port)")
        let driver = Driver(configuration: CallFlowConfiguration(posts: [post]), agent: agent)
        var samples: [Double] = []
        for round in 0..<(rounds + 20) {
            await driver.reset()
            let before = receiver.count()
            let pressed = ContinuousClock.now
            await driver.press()
            while receiver.count() == before { usleep(50) }
            let arrived = receiver.stamps.withLock { $0[before] }
            if round >= 20 { samples.append(milliseconds(arrived - pressed)) }  // 20 warm-up rounds
            await driver.reset()  // the unanswered INVITE is abandoned; its agent-side record expires
            try? await Task.sleep(for: .milliseconds(2))
        }
        say("button event → INVITE on the wire (CallFlow, media ports bound, SDP offer with SRTP keys, "
            + "INVITE serialised and sent over UDP, received on loopback): \(summary(samples))")
        say("host: \(ProcessInfo.processInfo.activeProcessorCount) cores, load \(hostLoad()), debug build: \(isDebugBuild)")
        await agent.shutdown()
    } catch {
        say("error \(error)")
        exit(1)
    }
}

var isDebugBuild: Bool {
    #if DEBUG
    true
    #else
    false
    #endif
}

// MARK: - setup: press → 180 and → 200, with and without a dead post

final class CurrentDriver: Sendable {
    let driver = Mutex<Driver?>(nil)
}

func setupBenchmark() async {
    let rounds = iterations(default: 20)
    do {
        // A post keeps a finished call 64·T1 for retransmissions and refuses a 65th: each
        // scenario gets live posts of its own.
        let centrale = DemoCentrale(posts: [.unreachable] + Array(repeating: .answer, count: 7), ringDelay: .zero,
                                    group: MultiThreadedEventLoopGroup.singleton, logger: makeLogger())
        let ports = try await centrale.start()
        let dead = CentralePost(id: "dead", uri: "sip:post0@127.0.0.1:\(ports[0])")
        let live = (1...7).map { CentralePost(id: "live\($0)", uri: "sip:post\($0)@127.0.0.1:\(ports[$0])") }
        let agent = try await tabletAgent()

        // One consumer for the agent's events (an AsyncStream has one), handing them to
        // whichever scenario runs now.
        let current = CurrentDriver()
        let pump = Task {
            for await event in agent.events { await current.driver.withLock { $0 }?.agentEvent(event) }
        }

        func run(_ name: String, _ configuration: CallFlowConfiguration, deadKnown: Bool, rounds: Int) async {
            let driver = Driver(configuration: configuration, agent: agent)
            current.driver.withLock { $0 = driver }
            var ringing: [Double] = []
            var answered: [Double] = []
            for _ in 0..<rounds {
                await driver.reset()
                if deadKnown {
                    // What the daemon's OPTIONS liveness watch (or a keepalive) learnt before the press.
                    let alive = await agent.probe(dead.uri, timeout: .milliseconds(500)) != nil
                    await driver.availability(dead.id, alive: alive)
                }
                await driver.press()
                let deadline = ContinuousClock.now + .seconds(40)
                while await driver.answeredAt == nil, ContinuousClock.now < deadline {
                    try? await Task.sleep(for: .milliseconds(1))
                }
                let (pressed, rang, answer) = await (driver.pressedAt!, driver.ringingAt, driver.answeredAt)
                if let rang { ringing.append(milliseconds(rang - pressed)) }
                if let answer { answered.append(milliseconds(answer - pressed)) }
                await driver.hangUpAnswered()
                await driver.reset()
                try? await Task.sleep(for: .milliseconds(100))
            }
            say("\(name): to 180 \(summary(ringing)); to 200 \(summary(answered))")
        }

        let perPost = Duration.seconds(Int(option("per-post-seconds") ?? "15") ?? 15)
        await run("ring-all, 0 dead posts", CallFlowConfiguration(posts: [live[0], live[1]]), deadKnown: false, rounds: rounds)
        await run("ring-all, 1 dead post", CallFlowConfiguration(posts: [dead, live[2]]), deadKnown: false, rounds: rounds)
        await run("hunt, 0 dead posts", CallFlowConfiguration(posts: [live[3], live[4]], policy: .hunt(perPostTimeout: perPost)),
                  deadKnown: false, rounds: rounds)
        await run("hunt, 1 dead post first, known dead from OPTIONS before the press",
                  CallFlowConfiguration(posts: [dead, live[5]], policy: .hunt(perPostTimeout: perPost)),
                  deadKnown: true, rounds: rounds)
        // Not yet known dead: the INVITE hears nothing, and the user agent gives the post up
        // after its silentPeerTimeout (1 s) rather than the per-post ring timeout.
        await run("hunt, 1 dead post first, not yet known (silent for 1 s, then the next post)",
                  CallFlowConfiguration(posts: [dead, live[6]], policy: .hunt(perPostTimeout: perPost)),
                  deadKnown: false, rounds: max(2, rounds / 4))
        pump.cancel()
        say("posts: DemoCentrale on loopback UDP answering at once (ring delay 0); dead post: nothing listens on its port")
        say("host: \(ProcessInfo.processInfo.activeProcessorCount) cores, load \(hostLoad()), debug build: \(isDebugBuild)")
        await agent.shutdown()
        await centrale.shutdown()
    } catch {
        say("error \(error)")
        exit(1)
    }
}
