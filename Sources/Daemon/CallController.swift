import CallFlow
import Control
import Devices
import Foundation
import Logging

/// Everything that reaches the call controller, in the order it happened. One loop consumes
/// them, so CallFlow sees one event at a time and its actions run to completion before the
/// next event — no actor reentrancy between an event and its actions.
enum ControllerInput: Sendable {
    case flow(CallFlowEvent)
    case button(ButtonEvent)
    case control(ControlRequest, ControlPeer?, @Sendable (ControlResponse) -> Void)
    case watchdogTick
    /// Callback delivery: a MESSAGE's result, or one of its timers.
    case callback(CallbackDeliveryEvent)
    /// The technician's button test (`test-button`) waited long enough.
    case buttonTestExpired(UInt64)
}

/// What `test-button` answers: the press the technician made, if any.
struct ButtonTestResult: Codable, Sendable {
    var event: String?
    var waitedSeconds: Double
}

/// The signalling and media half of executing CallFlow's actions: SIP legs, SDP, RTP.
/// `SIPCallSignalling` is the real one; its events come back through `ControllerInput`.
protocol CallSignalling: Sendable {
    func sendInvite(_ leg: CallLegID, to post: CentralePost) async
    func cancel(_ leg: CallLegID) async
    func answer(_ leg: CallLegID) async
    func reject(_ leg: CallLegID, status: Int) async
    func hangUp(_ leg: CallLegID) async
    func startMedia(_ leg: CallLegID) async
    func stopMedia() async
    func stopVideo() async
    /// Media counters of the running call, if any.
    func mediaStatistics() async -> StatusReport.Media?
    func registrationStatus() async -> [StatusReport.Registration]
    /// The demo centrale (only in demo mode) calls the tablet.
    func demoCallIn(from uri: String?) async throws
    /// Sends a callback request as a SIP MESSAGE; the final status, or nil for no answer.
    func sendCallbackMessage(to uri: String, contentType: String, body: [UInt8]) async -> Int?
}

/// Spoken prompts, tones and the status light: what the client hears and sees.
protocol ClientFeedback: Sendable {
    func play(_ prompt: Prompt) async
    func play(_ tone: Tone) async
    func stopTone() async
    func show(_ indicator: Indicator) async
    /// Called after every event with the new status, for the screen.
    func stateChanged(_ status: CallFlowStatus) async
}

/// Executes CallFlow's actions: the one place where the pure machine meets timers, SIP,
/// media, the store and the client's feedback.
actor CallController {
    private var flow: CallFlow
    /// Callback requests on their way to the centrale (the truth about them, across restarts).
    private var delivery: CallbackDelivery
    private let callbackSettings: CallbackSettings
    private var callbackTimers: [CallbackDeliveryTimer: Task<Void, Never>] = [:]
    private let signalling: any CallSignalling
    private let feedback: any ClientFeedback
    private let callLog: CallLogWriter
    private let notifier: SystemdNotifier
    private let logger: Logger

    private let inputs: AsyncStream<ControllerInput>
    private let input: AsyncStream<ControllerInput>.Continuation
    private var timers: [CallFlowTimer: Task<Void, Never>] = [:]
    private var lastPhase: CallFlowStatus.Phase?
    private var statusProvider: (@Sendable (CallFlowStatus) async -> StatusReport)?
    /// A technician's `test-button` waiting for the next press; that press does not reach CallFlow.
    private var buttonTest: (token: UInt64, started: ContinuousClock.Instant, reply: @Sendable (ControlResponse) -> Void)?
    private var buttonTests: UInt64 = 0
    /// The call log's missed calls, read again whenever a call is answered or ends (the call
    /// log owns them; this is what the screen shows until the next read).
    private var missedCalls: [MissedCallNote] = []

    init(configuration: CallFlowConfiguration, callback: CallbackSettings, signalling: any CallSignalling,
         feedback: any ClientFeedback, callLog: CallLogWriter, notifier: SystemdNotifier, logger: Logger) {
        flow = CallFlow(configuration: configuration)
        delivery = CallbackDelivery(configuration: callback.delivery)
        callbackSettings = callback
        self.signalling = signalling
        self.feedback = feedback
        self.callLog = callLog
        self.notifier = notifier
        self.logger = logger
        (inputs, input) = AsyncStream.makeStream(of: ControllerInput.self, bufferingPolicy: .unbounded)
    }

    /// Where everything that happens is reported (thread-safe; never blocks).
    nonisolated var sink: AsyncStream<ControllerInput>.Continuation { input }

    func setStatusProvider(_ provider: @escaping @Sendable (CallFlowStatus) async -> StatusReport) {
        statusProvider = provider
    }

    var status: CallFlowStatus { currentStatus }

    /// CallFlow's status with what the client is told about callback requests.
    private var currentStatus: CallFlowStatus {
        var status = flow.status
        status.callback = delivery.promise
        status.callbackPending = status.callback != .none
        status.missedCalls = missedCalls
        return status
    }

    /// The controller's loop. Returns when `finish()` is called.
    func run() async {
        // Calls missed before a restart or power cut stay on the screen.
        missedCalls = callLog.missedCalls()
        if !missedCalls.isEmpty { await statusChanged() }
        // Requests a restart or power cut interrupted: sent again, or still promised.
        let outstanding = callLog.outstandingCallbacks()
        if !outstanding.isEmpty {
            logger.notice("callback requests restored", metadata: ["count": "\(outstanding.count)"])
            await deliver(.restored(outstanding, now: WallTime(Date())))
            await statusChanged()
        }
        if callbackSettings.uri == nil {
            logger.warning("no centrale.callback_uri: callback requests are not sent to the centrale")
        }
        for await item in inputs {
            switch item {
            case .flow(let event):
                await handle(event)
            case .callback(let event):
                await deliver(event)
                await statusChanged()
            case .button(let event):
                if let test = buttonTest, event == .shortPress || event == .longPress {
                    buttonTest = nil
                    logger.notice("button test: press seen", metadata: ["event": "\(event.rawValue)"])
                    let waited = (ContinuousClock.now - test.started) / .milliseconds(100)
                    test.reply((try? .success(ButtonTestResult(event: event.rawValue, waitedSeconds: waited.rounded() / 10)))
                        ?? .failure(ControlError(.internal, "encoding")))
                    continue
                }
                await handle(Self.flowEvent(for: event))
            case .control(let request, let peer, let reply) where request.cmd == .testButton:
                startButtonTest(seconds: request.seconds ?? 15, peer: peer, reply: reply)
            case .control(let request, let peer, let reply):
                reply(await control(request, peer: peer))
            case .buttonTestExpired(let token):
                if let test = buttonTest, test.token == token {
                    buttonTest = nil
                    let waited = (ContinuousClock.now - test.started) / .milliseconds(100)
                    test.reply((try? .success(ButtonTestResult(event: nil, waitedSeconds: waited.rounded() / 10)))
                        ?? .failure(ControlError(.internal, "encoding")))
                }
            case .watchdogTick:
                // Sent from this loop, so a hung loop stops the pings and systemd restarts us.
                notifier.watchdog()
            }
        }
        for task in timers.values { task.cancel() }
        timers.removeAll()
        for task in callbackTimers.values { task.cancel() }
        callbackTimers.removeAll()
    }

    nonisolated func finish() { input.finish() }

    /// The next press goes to the technician, not to CallFlow — only while the tablet is idle
    /// and for at most `seconds`, so a client's real press is never swallowed for long.
    private func startButtonTest(seconds: Double, peer: ControlPeer?, reply: @escaping @Sendable (ControlResponse) -> Void) {
        guard flow.status.phase == .idle || flow.status.phase == .fault else {
            reply(.failure(ControlError(.unavailable, "refused: a call is in progress")))
            return
        }
        guard buttonTest == nil else {
            reply(.failure(ControlError(.unavailable, "refused: another button test is waiting")))
            return
        }
        guard seconds > 0, seconds <= 60 else {
            reply(.failure(ControlError(.badArgument, "seconds must be between 0 and 60")))
            return
        }
        buttonTests += 1
        let token = buttonTests
        buttonTest = (token, ContinuousClock.now, reply)
        logger.notice("button test started", metadata: ["seconds": "\(seconds)", "peer": "\(peer?.description ?? "?")"])
        let sink = input
        Task {
            try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            sink.yield(.buttonTestExpired(token))
        }
    }

    static func flowEvent(for button: ButtonEvent) -> CallFlowEvent {
        switch button {
        case .shortPress: .shortPress
        case .longPress: .longPress
        case .stuck: .buttonStuck
        case .released: .buttonReleased
        }
    }

    private func handle(_ event: CallFlowEvent) async {
        let actions = flow.handle(event)
        // The event's name only: its arguments can hold a caller's address (personal data).
        logger.debug("event", metadata: ["event": "\(String(describing: event).prefix { $0 != "(" })", "actions": "\(actions.count)"])
        for action in actions {
            await execute(action)
        }
        if event == .registration(up: true) || event == .network(up: true) {
            // Back on the network: waiting callback requests go now, not after their backoff.
            await deliver(.networkReturned)
        }
        await statusChanged()
    }

    private func statusChanged() async {
        let status = currentStatus
        if status.phase != lastPhase {
            // The phase only: the peer's name is a contact's (personal data, issue 18.2).
            logger.info("call state", metadata: ["phase": "\(status.phase.rawValue)"])
            notifier.status(Self.describe(status))
            lastPhase = status.phase
        }
        await feedback.stateChanged(status)
    }

    private func execute(_ action: CallFlowAction) async {
        switch action {
        case .sendInvite(let leg, let post):
            await signalling.sendInvite(leg, to: post)
        case .cancelInvite(let leg):
            await signalling.cancel(leg)
        case .answer(let leg):
            await signalling.answer(leg)
        case .reject(let leg, let reason):
            await signalling.reject(leg, status: reason.sipStatusCode)
        case .sendBye(let leg):
            await signalling.hangUp(leg)
        case .startMedia(let leg):
            await signalling.startMedia(leg)
        case .stopMedia:
            await signalling.stopMedia()
        case .stopVideo:
            await signalling.stopVideo()
        case .playPrompt(let prompt):
            await feedback.play(prompt)
        case .playTone(let tone):
            await feedback.play(tone)
        case .stopTone:
            await feedback.stopTone()
        case .setIndicator(let indicator):
            await feedback.show(indicator)
        case .callLog(let entry):
            callLog.write(entry, at: Date())
            switch entry {
            case .answered, .ended: missedCalls = callLog.missedCalls()
            case .started: break
            }
        case .queueCallbackRequest(let record, let postsTried, let reason):
            let now = Date()
            if let request = callLog.queueCallback(record: record, postsTried: postsTried, reason: reason, at: now) {
                await deliver(.requested(request, now: WallTime(now)))
            }
        case .centraleReached(let record):
            await deliver(.centraleReached(now: WallTime(Date())), reachedBy: record)
        case .scheduleTimer(let timer, let delay):
            timers[timer]?.cancel()
            let sink = input
            timers[timer] = Task {
                do {
                    try await Task.sleep(for: delay)
                } catch {
                    return
                }
                sink.yield(.flow(.timerFired(timer)))
            }
        case .cancelTimer(let timer):
            timers.removeValue(forKey: timer)?.cancel()
        }
    }

    // MARK: Callback delivery

    /// Runs one event through `CallbackDelivery` and executes its actions. Results and timers
    /// come back through the input stream, so they are handled one at a time like the rest.
    private func deliver(_ event: CallbackDeliveryEvent, reachedBy record: CallRecordID? = nil) async {
        let actions = delivery.handle(event)
        for action in actions {
            switch action {
            case .send(let request, let attempt, let target):
                guard let uri = callbackSettings.uri(for: target) else { continue }  // logged at start
                let body = callbackSettings.body(request, attempt: attempt, target: target)
                logger.info("callback request sent", metadata: [
                    "request": "\(request.id)", "attempt": "\(attempt)", "target": "\(target.rawValue)"])
                let signalling = signalling
                let sink = input
                Task {
                    let status = await signalling.sendCallbackMessage(to: uri, contentType: CallbackSettings.contentType, body: body)
                    sink.yield(.callback(.answered(id: request.id, attempt: attempt, status: status, now: WallTime(Date()))))
                }
            case .scheduleTimer(let timer, let delay):
                callbackTimers[timer]?.cancel()
                let sink = input
                callbackTimers[timer] = Task {
                    do {
                        try await Task.sleep(for: delay)
                    } catch {
                        return
                    }
                    sink.yield(.callback(.timerFired(timer, now: WallTime(Date()))))
                }
            case .cancelTimer(let timer):
                callbackTimers.removeValue(forKey: timer)?.cancel()
            case .markAcknowledged(let id, _, let target):
                callLog.callbackDelivery(action, clearedBy: nil)
                logger.notice("callback request acknowledged by the centrale", metadata: ["request": "\(id)", "target": "\(target.rawValue)"])
            case .markEscalated(let id, _):
                callLog.callbackDelivery(action, clearedBy: nil)
                logger.warning("callback request not acknowledged in time; escalated to the fallback",
                               metadata: ["request": "\(id)"])
            case .markCleared(let ids, _):
                callLog.callbackDelivery(action, clearedBy: record)
                logger.notice("callback requests cleared: the centrale was reached", metadata: ["count": "\(ids.count)"])
            case .announce(let promise):
                await announce(promise)
            }
        }
        if case .answered(let id, let attempt, let status, _) = event, !(200..<300).contains(status ?? 0) {
            logger.info("callback request not acknowledged", metadata: [
                "request": "\(id)", "attempt": "\(attempt)", "status": "\(status.map(String.init) ?? "no answer")"])
        }
    }

    /// What the client hears when the callback promise changes: that the tablet keeps trying,
    /// and only once the centrale acknowledged it, that the centrale calls back. Spoken only
    /// while the tablet is at rest (never into a call or over ringing); the screen shows it
    /// always.
    private func announce(_ promise: CallbackPromise) async {
        _ = flow.handle(.callbackOutstanding(promise != .none))
        let prompt: Prompt? = switch promise {
        case .none: nil
        case .trying: .callbackTrying
        case .promised: .callbackPromised
        }
        guard let prompt else { return }
        switch flow.status.phase {
        case .idle, .fault, .unreachable, .connectionLost, .ending:
            await feedback.play(prompt)
        case .callingCentrale, .ringingOut, .incomingRinging, .inCall:
            break
        }
    }

    // MARK: Control requests

    private func control(_ request: ControlRequest, peer: ControlPeer?) async -> ControlResponse {
        do {
            switch request.cmd {
            case .status:
                guard let statusProvider else { return .failure(ControlError(.unavailable, "starting up")) }
                return try .success(await statusProvider(currentStatus))
            case .press:
                let event: CallFlowEvent
                switch request.kind ?? "short" {
                case "short": event = .shortPress
                case "long": event = .longPress
                default: return .failure(ControlError(.badArgument, "kind must be short or long"))
                }
                logger.notice("button pressed over the control socket", metadata: ["kind": "\(request.kind ?? "short")", "peer": "\(peer?.description ?? "?")"])
                await handle(event)
                return try .success(Self.callSummary(currentStatus))
            case .demoCallIn:
                logger.notice("demo call-in requested", metadata: ["peer": "\(peer?.description ?? "?")"])
                try await signalling.demoCallIn(from: request.from)
                return try .success(Self.callSummary(currentStatus))
            case .calls, .contacts:
                // Answered by BeeldzorgDaemon's control handler, which checks the peer first.
                return .failure(ControlError(.internal, "\(request.cmd.rawValue) is not handled by the call loop"))
            case .testButton:
                // Answered by the loop itself (startButtonTest): it waits for a press.
                return .failure(ControlError(.internal, "test-button is handled by the controller loop"))
            case .screenshot:
                // Answered by ScreenService before this loop: encoding a PNG must not hold up
                // the button.
                return .failure(ControlError(.internal, "screenshot is not handled by the call loop"))
            case .volume:
                // Answered by VolumeService before this loop (BeeldzorgDaemon's control handler).
                return .failure(ControlError(.internal, "volume is not handled by the call loop"))
            case .provisionStatus, .provisionSync:
                // Answered by ProvisioningService before this loop (BeeldzorgDaemon's control
                // handler): a sync must not hold up the button.
                return .failure(ControlError(.internal, "provisioning requests are not handled by the call loop"))
            case .testCamera, .testMicrophone, .testSpeaker:
                // Awaited on this loop on purpose: no call starts while a test holds a device.
                let devices = await statusProvider?(flow.status).devices ?? []
                return try await TechnicianCommands.run(request, phase: flow.status.phase.rawValue, devices: devices,
                                                        feedback: feedback, peer: peer, logger: logger)
            }
        } catch let error as ControlError {
            return .failure(error)
        } catch {
            return .failure(ControlError(.internal, "\(error)"))
        }
    }

    static func callSummary(_ status: CallFlowStatus) -> StatusReport.Call {
        var call = StatusReport.Call(phase: status.phase.rawValue, peer: status.peerName, callbackPending: status.callbackPending,
                                     missed: status.missedCalls.map { StatusReport.MissedCall(name: $0.name, at: $0.at.date) })
        switch status.callback {
        case .none:
            break
        case .trying(let since):
            call.callback = "trying"
            call.callbackSince = since.date
        case .promised(let since):
            call.callback = "promised"
            call.callbackSince = since.date
        }
        return call
    }

    /// For systemd's STATUS= (readable by every local user): no names, no addresses.
    static func describe(_ status: CallFlowStatus) -> String {
        var text = status.phase.rawValue
        switch status.callback {
        case .none: break
        case .trying: text += ", callback request not yet acknowledged"
        case .promised: text += ", callback promised"
        }
        if !status.networkUp { text += ", no network" }
        return text
    }
}
