/// The tablet's call state machine: events in, actions out. No I/O, no clock reads, no
/// randomness; timers are actions and come back as `timerFired` events.
///
/// Shaped after postgres-nio's ConnectionStateMachine: a private `State` enum, one handler
/// per event that switches over every state (no `default:`, so a new state cannot be
/// forgotten). A misbehaving peer (a late 2xx, a response for a leg we gave up on) becomes an
/// action or is ignored; a broken invariant of our own is a `preconditionFailure`.
/// Every transition returns its feedback (prompt or tone, and indicator) in the same batch,
/// so feedback reaches the client as fast as the I/O layer executes one batch.
/// The full state × event table is in docs/CALLFLOW.md.
public struct CallFlow: Sendable {
    // MARK: State

    private struct Leg: Sendable, Equatable {
        var id: CallLegID
        var post: CentralePost
    }

    /// One attempt to reach the centrale, from the press until answer, cancel or give-up.
    private struct Attempt: Sendable {
        var record: CallRecordID
        /// Posts of the current round (live posts, or all of them if none is known alive).
        var round: [CentralePost] = []
        /// Hunt: index in `round` of the next post to try.
        var nextIndex = 0
        /// Hunt: some post in this round rang out (it is alive, only busy), so another round is worth it.
        var anyRangOut = false
        /// The network was down at some point in this round, so its failures say nothing
        /// about the posts: another round is worth it.
        var networkDroppedThisRound = false
        /// INVITEs in flight. Empty between rounds while waiting for the network.
        var legs: [Leg] = []
        var postsTried: [String] = []
        /// A post sent 180/183: ringback is playing.
        var ringing = false
        /// The press came without a network and its callback request went out then; giving up
        /// later does not queue a second one.
        var callbackQueued = false
    }

    private struct Incoming: Sendable {
        var record: CallRecordID
        var leg: CallLegID
        var caller: Caller
        var contact: KnownContact
        var autoAnswer: Bool
    }

    private struct Call: Sendable {
        var record: CallRecordID
        var leg: CallLegID
        var peerName: String
        var postsTried: [String]
    }

    private enum State: Sendable {
        /// Nothing happening; a press calls the centrale.
        case idle
        /// Idle, but the network is down or the button is stuck. A press still does what it
        /// does in idle (a stuck button's presses are ignored everywhere).
        case fault
        /// Calling the centrale; `ringing` distinguishes "ringing out" for status and tones.
        case calling(Attempt)
        case incomingRinging(Incoming)
        case inCall(Call)
        /// "Het gesprek is beëindigd" on screen for `endedScreenDuration`.
        case ending(CallRecordID)
        /// "Niet bereikbaar" on screen for `unreachableScreenDuration`; callback queued.
        case unreachable(CallRecordID)
        /// "De verbinding is verbroken" on screen for `unreachableScreenDuration`: the other
        /// side went silent mid-call (for a centrale call, a callback request is queued).
        case connectionLost(CallRecordID)
    }

    private var state: State = .idle
    private let configuration: CallFlowConfiguration

    // Conditions that outlive any single call.
    private var networkUp = true
    private var registered = false
    private var buttonStuck = false
    private var callbackPending = false
    private var deadPosts: Set<String> = []

    private var lastLegNumber: UInt64 = 0
    private var lastRecordNumber: UInt64 = 0

    /// The network is assumed up until the I/O layer says otherwise, so the first press
    /// says "Ik bel de beeldzorgcentrale." rather than a fault.
    public init(configuration: CallFlowConfiguration) {
        self.configuration = configuration
    }

    public mutating func handle(_ event: CallFlowEvent) -> [CallFlowAction] {
        switch event {
        case .shortPress: shortPress()
        case .longPress: longPress()
        case .buttonStuck: buttonStuckReported()
        case .buttonReleased: buttonReleased()
        case .provisional(let leg, let code): provisional(leg, code: code)
        case .answered(let leg): answered(leg)
        case .failed(let leg, let code, let reason): failed(leg, code: code, reason: reason)
        case .incomingCall(let leg, let caller): incomingCall(leg, caller)
        case .remoteCancelled(let leg): remoteCancelled(leg)
        case .remoteHungUp(let leg): remoteHungUp(leg)
        case .registration(let up): registration(up: up)
        case .network(let up): network(up: up)
        case .postAvailability(let postID, let alive): postAvailability(postID, alive: alive)
        case .timerFired(let timer): timerFired(timer)
        case .mediaFailed(let failure): mediaFailed(failure)
        case .connectionLost(let leg): connectionLost(leg)
        case .callbackOutstanding(let outstanding): callbackOutstanding(outstanding)
        }
    }

    public var status: CallFlowStatus {
        var status = CallFlowStatus(
            phase: .idle,
            callbackPending: callbackPending,
            networkUp: networkUp,
            registered: registered,
            buttonStuck: buttonStuck
        )
        switch state {
        case .idle:
            status.phase = .idle
        case .fault:
            status.phase = .fault
        case .calling(let attempt):
            status.phase = attempt.ringing ? .ringingOut : .callingCentrale
            status.legsInFlight = attempt.legs.map(\.id)
        case .incomingRinging(let incoming):
            status.phase = .incomingRinging
            status.peerName = incoming.contact.name
            status.legsInFlight = [incoming.leg]
        case .inCall(let call):
            status.phase = .inCall
            status.peerName = call.peerName
            status.legsInFlight = [call.leg]
        case .ending:
            status.phase = .ending
        case .unreachable:
            status.phase = .unreachable
        case .connectionLost:
            status.phase = .connectionLost
        }
        return status
    }

    // MARK: Button

    private mutating func shortPress() -> [CallFlowAction] {
        // Devices stops reporting presses of a stuck button; this guards the same promise here.
        if buttonStuck { return [] }
        switch state {
        case .idle, .fault:
            return startAttempt(leaving: [])
        case .ending(let record), .unreachable(let record), .connectionLost(let record):
            // The tablet is effectively idle behind these screens: a press is a call for help.
            return startAttempt(leaving: [.cancelTimer(.screenTimeout(record))])
        case .calling, .inCall:
            // Never harmful: a blip that says "heard you", nothing else.
            return [.playTone(.pressAck)]
        case .incomingRinging(let incoming):
            return answerIncoming(incoming)
        }
    }

    private mutating func longPress() -> [CallFlowAction] {
        if buttonStuck { return [] }
        switch state {
        case .idle, .fault:
            // Holding the button is asking for help just as much as pressing it.
            return startAttempt(leaving: [])
        case .ending(let record), .unreachable(let record), .connectionLost(let record):
            // One long press always leads back to idle.
            return [.cancelTimer(.screenTimeout(record))] + enterRest()
        case .calling(let attempt):
            return cancelAttempt(attempt)
        case .incomingRinging(let incoming):
            return declineIncoming(incoming)
        case .inCall(let call):
            return endCall(call, sendBye: true, reason: "hung up by client")
        }
    }

    private mutating func buttonStuckReported() -> [CallFlowAction] {
        let wasStuck = buttonStuck
        buttonStuck = true
        switch state {
        case .idle:
            state = .fault
            return [.playPrompt(.buttonStuck), .setIndicator(.fault)]
        case .fault:
            return wasStuck ? [] : [.playPrompt(.buttonStuck)]
        case .calling, .incomingRinging, .inCall, .ending, .unreachable, .connectionLost:
            // Calls go on; an incoming call can still be answered by auto-answer. The fault
            // shows once the tablet is back at rest.
            return []
        }
    }

    private mutating func buttonReleased() -> [CallFlowAction] {
        buttonStuck = false
        switch state {
        case .fault:
            return networkUp ? enterRest() : []
        case .idle, .calling, .incomingRinging, .inCall, .ending, .unreachable, .connectionLost:
            return []
        }
    }

    // MARK: Outgoing legs

    private mutating func provisional(_ leg: CallLegID, code: Int) -> [CallFlowAction] {
        switch state {
        case .calling(var attempt):
            guard code >= 180, attempt.legs.contains(where: { $0.id == leg }), !attempt.ringing else {
                return []
            }
            attempt.ringing = true
            state = .calling(attempt)
            return [.playTone(.ringback)]
        case .idle, .fault, .incomingRinging, .inCall, .ending, .unreachable, .connectionLost:
            return []
        }
    }

    private mutating func answered(_ leg: CallLegID) -> [CallFlowAction] {
        switch state {
        case .calling(let attempt):
            if let winner = attempt.legs.first(where: { $0.id == leg }) {
                return connectOutgoing(attempt, winner: winner)
            }
        case .inCall(let call):
            if call.leg == leg { return [] }  // a retransmitted 2xx; the SIP layer re-ACKs
        case .idle, .fault, .incomingRinging, .ending, .unreachable, .connectionLost:
            break
        }
        // A 2xx for a leg we cancelled or gave up on (ring-all race, CANCEL crossing the 200):
        // the SIP layer has ACKed it; end that dialog at once.
        switch leg {
        case .outgoing: return [.sendBye(leg)]
        case .incoming: return []  // we are the UAS on incoming legs; nothing to end here
        }
    }

    private mutating func failed(_ leg: CallLegID, code: Int?, reason: String) -> [CallFlowAction] {
        switch state {
        case .calling(var attempt):
            guard let index = attempt.legs.firstIndex(where: { $0.id == leg }) else { return [] }
            attempt.legs.remove(at: index)
            var actions: [CallFlowAction] = []
            if case .hunt = configuration.policy {
                actions.append(.cancelTimer(.postRingTimeout(leg)))
            }
            return actions + continueAfterLegGone(attempt)
        case .inCall(let call):
            guard call.leg == leg else { return [] }
            // The dialog died under us (408/481, transport): nothing left to BYE.
            let why = code.map { "call failed (\($0)): \(reason)" } ?? "call failed: \(reason)"
            return endCall(call, sendBye: false, reason: why)
        case .incomingRinging(let incoming):
            guard incoming.leg == leg else { return [] }
            return missIncoming(incoming, reject: nil, reason: "caller gone: \(reason)")
        case .idle, .fault, .ending, .unreachable, .connectionLost:
            // Typically the 487 for a leg we cancelled.
            return []
        }
    }

    // MARK: Incoming legs

    private mutating func incomingCall(_ leg: CallLegID, _ caller: Caller) -> [CallFlowAction] {
        if isCurrentLeg(leg) {
            // A duplicate report of the call we already have; rejecting it "busy" would end it.
            return []
        }
        guard let contact = caller.contact else {
            // Not on the list: turned away and logged; the client never hears about it.
            let record = nextRecord()
            return [
                .reject(leg, .notAContact),
                .callLog(.started(record, direction: .incoming, peer: caller.uri)),
                .callLog(.ended(record, outcome: .rejectedNotAContact, postsTried: [], reason: nil)),
            ]
        }
        switch state {
        case .idle, .fault:
            return startRinging(leg, caller, contact, leaving: [])
        case .ending(let record), .unreachable(let record), .connectionLost(let record):
            return startRinging(leg, caller, contact, leaving: [.cancelTimer(.screenTimeout(record))])
        case .calling, .incomingRinging, .inCall:
            let record = nextRecord()
            return [
                .reject(leg, .busy),
                .callLog(.started(record, direction: .incoming, peer: caller.uri)),
                .callLog(.ended(record, outcome: .rejectedBusy, postsTried: [], reason: nil)),
            ]
        }
    }

    private mutating func remoteCancelled(_ leg: CallLegID) -> [CallFlowAction] {
        switch state {
        case .incomingRinging(let incoming):
            guard incoming.leg == leg else { return [] }
            return missIncoming(incoming, reject: nil, reason: "caller cancelled")
        case .idle, .fault, .calling, .inCall, .ending, .unreachable, .connectionLost:
            return []
        }
    }

    private mutating func remoteHungUp(_ leg: CallLegID) -> [CallFlowAction] {
        switch state {
        case .inCall(let call):
            guard call.leg == leg else { return [] }
            return endCall(call, sendBye: false, reason: "hung up by other side")
        case .idle, .fault, .calling, .incomingRinging, .ending, .unreachable, .connectionLost:
            return []
        }
    }

    // MARK: Conditions

    private mutating func registration(up: Bool) -> [CallFlowAction] {
        // Status only: outgoing INVITEs go through the edge proxy whether or not we are
        // registered, so a press is handled the same either way.
        registered = up
        return []
    }

    /// The I/O layer's delivery of callback requests (`CallbackDelivery`) is the truth about
    /// them, also across restarts; this keeps CallFlow's view the same, so that reaching the
    /// centrale reports `centraleReached` exactly when something is outstanding.
    private mutating func callbackOutstanding(_ outstanding: Bool) -> [CallFlowAction] {
        callbackPending = outstanding
        return []
    }

    private mutating func network(up: Bool) -> [CallFlowAction] {
        let wasUp = networkUp
        networkUp = up
        switch state {
        case .idle:
            guard !up else { return [] }
            // No prompt: a wifi blip at night must not wake the client. The screen and LED say it.
            state = .fault
            return [.setIndicator(.fault)]
        case .fault:
            return up && !buttonStuck ? enterRest() : []
        case .calling(var attempt):
            if !up {
                attempt.networkDroppedThisRound = true
                state = .calling(attempt)
                return wasUp ? [.playPrompt(.noNetwork)] : []
            }
            if attempt.legs.isEmpty {
                // Waiting between rounds for exactly this.
                return startRound(attempt)
            }
            return []
        case .incomingRinging(let incoming):
            guard !up else { return [] }
            return missIncoming(incoming, reject: .noAnswer, reason: "network lost")
        case .inCall(let call):
            guard !up else { return [] }
            return endCall(call, sendBye: true, reason: "network lost")
        case .ending, .unreachable, .connectionLost:
            // Back at rest, the tablet shows the fault.
            return []
        }
    }

    private mutating func postAvailability(_ postID: String, alive: Bool) -> [CallFlowAction] {
        if alive {
            deadPosts.remove(postID)
        } else {
            deadPosts.insert(postID)
        }
        // Legs already ringing are left alone; liveness decides the next round only.
        switch state {
        case .idle, .fault, .calling, .incomingRinging, .inCall, .ending, .unreachable, .connectionLost:
            return []
        }
    }

    private mutating func mediaFailed(_ failure: MediaFailure) -> [CallFlowAction] {
        switch state {
        case .inCall(let call):
            switch failure {
            case .camera:
                return [.stopVideo]
            case .transport:
                return endCall(call, sendBye: true, reason: "media transport failed")
            case .microphone, .speaker:
                // Keep the call: the post still sees the client and decides what to do.
                return []
            }
        case .idle, .fault, .calling, .incomingRinging, .ending, .unreachable, .connectionLost:
            return []
        }
    }

    private mutating func connectionLost(_ leg: CallLegID) -> [CallFlowAction] {
        switch state {
        case .inCall(let call):
            // A report from a media session of another leg is stale (its call has gone).
            guard call.leg == leg else { return [] }
            return loseConnection(call)
        case .idle, .fault, .calling, .incomingRinging, .ending, .unreachable, .connectionLost:
            // No media is running (media starts only once answered).
            return []
        }
    }

    // MARK: Timers

    private mutating func timerFired(_ timer: CallFlowTimer) -> [CallFlowAction] {
        switch state {
        case .calling(var attempt):
            switch timer {
            case .overallDeadline(let record) where record == attempt.record:
                return giveUp(attempt, reason: "deadline reached", deadlineFired: true)
            case .reassurance(let record) where record == attempt.record:
                return [
                    .playPrompt(.stillTrying),
                    .scheduleTimer(.reassurance(record), after: configuration.reassuranceInterval),
                ]
            case .postRingTimeout(let leg):
                guard let index = attempt.legs.firstIndex(where: { $0.id == leg }) else { return [] }
                attempt.legs.remove(at: index)
                attempt.anyRangOut = true
                return [.cancelInvite(leg)] + continueAfterLegGone(attempt)
            case .overallDeadline, .reassurance, .ringingTimeout, .autoAnswer, .screenTimeout:
                return []
            }
        case .incomingRinging(let incoming):
            switch timer {
            case .autoAnswer(let leg) where leg == incoming.leg && incoming.autoAnswer:
                return answerIncoming(incoming, autoAnswerFired: true)
            case .ringingTimeout(let leg) where leg == incoming.leg:
                return missIncoming(incoming, reject: .noAnswer, reason: "not answered", ringingTimerFired: true)
            case .overallDeadline, .reassurance, .postRingTimeout, .ringingTimeout, .autoAnswer, .screenTimeout:
                return []
            }
        case .ending(let record), .unreachable(let record), .connectionLost(let record):
            guard timer == .screenTimeout(record) else { return [] }
            return enterRest()
        case .idle, .fault, .inCall:
            // Stale: its state has gone and the cancel crossed the firing.
            return []
        }
    }

    // MARK: Transitions

    /// Idle, or fault if a condition is active. Feedback: the indicator.
    private mutating func enterRest() -> [CallFlowAction] {
        if networkUp && !buttonStuck {
            state = .idle
            return [.setIndicator(.idle)]
        }
        state = .fault
        return [.setIndicator(.fault)]
    }

    private var restIndicator: Indicator {
        networkUp && !buttonStuck ? .idle : .fault
    }

    private mutating func startAttempt(leaving: [CallFlowAction]) -> [CallFlowAction] {
        let record = nextRecord()
        var actions = leaving
        actions += [
            .playPrompt(networkUp ? .callingCentrale : .noNetwork),
            .setIndicator(.calling),
            .callLog(.started(record, direction: .outgoing, peer: "centrale")),
            .scheduleTimer(.overallDeadline(record), after: configuration.overallDeadline),
            .scheduleTimer(.reassurance(record), after: configuration.reassuranceInterval),
        ]
        var attempt = Attempt(record: record)
        if !networkUp && configuration.queueCallbackWhenUnreachable {
            // Issue 16: offline, the centrale learns of the press as soon as any path exists
            // (the outbox), while the tablet keeps trying to call until the deadline.
            actions.append(.queueCallbackRequest(record, postsTried: [], reason: "pressed without network"))
            callbackPending = true
            attempt.callbackQueued = true
        }
        if configuration.posts.isEmpty {
            // A configuration without posts is refused by the config loader; should one slip
            // through, the client still gets the unreachable path and a callback request.
            state = .calling(attempt)
            return actions + giveUp(attempt, reason: "no centrale posts configured", deadlineFired: false)
        }
        return actions + startRound(attempt)
    }

    /// Sends the INVITEs of a new round and stores the attempt.
    private mutating func startRound(_ attempt: Attempt) -> [CallFlowAction] {
        var attempt = attempt
        precondition(attempt.legs.isEmpty, "new round with legs in flight: \(attempt)")
        let live = configuration.posts.filter { !deadPosts.contains($0.id) }
        // A stale liveness view must never leave the client with nothing: all dead → try all.
        attempt.round = live.isEmpty ? configuration.posts : live
        attempt.nextIndex = 0
        attempt.anyRangOut = false
        attempt.networkDroppedThisRound = !networkUp
        var actions: [CallFlowAction] = []
        switch configuration.policy {
        case .ringAll:
            for post in attempt.round {
                actions.append(invite(post, in: &attempt))
            }
        case .hunt:
            actions += inviteNextHuntPost(&attempt)
        }
        state = .calling(attempt)
        return actions
    }

    private mutating func invite(_ post: CentralePost, in attempt: inout Attempt) -> CallFlowAction {
        let leg = nextLeg()
        attempt.legs.append(Leg(id: leg, post: post))
        if !attempt.postsTried.contains(post.id) {
            attempt.postsTried.append(post.id)
        }
        return .sendInvite(leg, post)
    }

    /// Hunt: INVITE the next post of the round with its ring timer; nothing if the round is done.
    private mutating func inviteNextHuntPost(_ attempt: inout Attempt) -> [CallFlowAction] {
        guard case .hunt(let perPostTimeout) = configuration.policy else {
            preconditionFailure("hunting with policy \(configuration.policy)")
        }
        guard attempt.nextIndex < attempt.round.count else { return [] }
        let post = attempt.round[attempt.nextIndex]
        attempt.nextIndex += 1
        let send = invite(post, in: &attempt)
        guard case .sendInvite(let leg, _) = send else { preconditionFailure("invite gave \(send)") }
        return [send, .scheduleTimer(.postRingTimeout(leg), after: perPostTimeout)]
    }

    /// A leg failed or rang out: hunt on, start another round, wait for the network, or give up.
    private mutating func continueAfterLegGone(_ attempt: Attempt) -> [CallFlowAction] {
        var attempt = attempt
        if case .hunt = configuration.policy {
            let next = inviteNextHuntPost(&attempt)
            if !next.isEmpty {
                state = .calling(attempt)
                return next
            }
        }
        guard attempt.legs.isEmpty else {
            state = .calling(attempt)
            return []
        }
        // The round is over and nobody answered.
        if !networkUp {
            // "Ik blijf het proberen": the next round starts when the network returns;
            // the deadline still bounds the wait. Nothing rings meanwhile, so no ringback.
            let wasRinging = attempt.ringing
            attempt.ringing = false
            state = .calling(attempt)
            return wasRinging ? [.stopTone] : []
        }
        if attempt.anyRangOut || attempt.networkDroppedThisRound {
            // Hunt: a post rang without answer, so posts are alive, only busy; or the network
            // was away and the failures prove nothing. Go round again until the deadline.
            return startRound(attempt)
        }
        return giveUp(attempt, reason: "every post failed", deadlineFired: false)
    }

    private mutating func connectOutgoing(_ attempt: Attempt, winner: Leg) -> [CallFlowAction] {
        var actions: [CallFlowAction] = []
        for leg in attempt.legs where leg.id != winner.id {
            actions.append(.cancelInvite(leg.id))
        }
        // The answer is on record (durably) before camera and microphone open: a power cut
        // from here on leaves a call log that says the post answered.
        actions.append(.callLog(.answered(attempt.record, peer: winner.post.id)))
        actions.append(.startMedia(winner.id))
        actions += cancelAttemptTimers(attempt, deadlineFired: false)
        if attempt.ringing { actions.append(.stopTone) }
        actions += [
            .playPrompt(.connected),
            .setIndicator(.inCall),
        ]
        if callbackPending { actions.append(.centraleReached(attempt.record)) }
        callbackPending = false
        state = .inCall(
            Call(record: attempt.record, leg: winner.id, peerName: winner.post.id, postsTried: attempt.postsTried)
        )
        return actions
    }

    /// Client's long press while calling.
    private mutating func cancelAttempt(_ attempt: Attempt) -> [CallFlowAction] {
        var actions: [CallFlowAction] = attempt.legs.map { .cancelInvite($0.id) }
        actions += cancelAttemptTimers(attempt, deadlineFired: false)
        if attempt.ringing { actions.append(.stopTone) }
        actions += [
            .playPrompt(.callEnded),
            .setIndicator(restIndicator),
            .callLog(
                .ended(attempt.record, outcome: .cancelled, postsTried: attempt.postsTried, reason: "cancelled by client")
            ),
            .scheduleTimer(.screenTimeout(attempt.record), after: configuration.endedScreenDuration),
        ]
        state = .ending(attempt.record)
        return actions
    }

    /// Nobody reachable: cancel everything, tell the client, queue a callback.
    private mutating func giveUp(_ attempt: Attempt, reason: String, deadlineFired: Bool) -> [CallFlowAction] {
        var actions: [CallFlowAction] = attempt.legs.map { .cancelInvite($0.id) }
        actions += cancelAttemptTimers(attempt, deadlineFired: deadlineFired)
        if attempt.ringing { actions.append(.stopTone) }
        actions += [
            .playPrompt(.centraleUnreachable),
            .setIndicator(.unreachable),
            .callLog(.ended(attempt.record, outcome: .unreachable, postsTried: attempt.postsTried, reason: reason)),
        ]
        if configuration.queueCallbackWhenUnreachable && !attempt.callbackQueued {
            actions.append(.queueCallbackRequest(attempt.record, postsTried: attempt.postsTried, reason: reason))
            callbackPending = true
        }
        actions.append(.scheduleTimer(.screenTimeout(attempt.record), after: configuration.unreachableScreenDuration))
        state = .unreachable(attempt.record)
        return actions
    }

    private func cancelAttemptTimers(_ attempt: Attempt, deadlineFired: Bool) -> [CallFlowAction] {
        var actions: [CallFlowAction] = []
        if !deadlineFired {
            actions.append(.cancelTimer(.overallDeadline(attempt.record)))
        }
        actions.append(.cancelTimer(.reassurance(attempt.record)))
        if case .hunt = configuration.policy {
            for leg in attempt.legs {
                actions.append(.cancelTimer(.postRingTimeout(leg.id)))
            }
        }
        return actions
    }

    private mutating func endCall(_ call: Call, sendBye: Bool, reason: String) -> [CallFlowAction] {
        var actions: [CallFlowAction] = sendBye ? [.sendBye(call.leg)] : []
        actions += [
            .stopMedia,
            .playPrompt(.callEnded),
            .setIndicator(restIndicator),
            .callLog(.ended(call.record, outcome: .completed, postsTried: call.postsTried, reason: reason)),
            .scheduleTimer(.screenTimeout(call.record), after: configuration.endedScreenDuration),
        ]
        state = .ending(call.record)
        return actions
    }

    /// The other side went silent: BYE (a dead post will not answer; the SIP layer must not
    /// wait for it), media off, tell the client, log "connection lost"; a call to the
    /// centrale also queues a callback request, as when nobody could be reached.
    private mutating func loseConnection(_ call: Call) -> [CallFlowAction] {
        var actions: [CallFlowAction] = [
            .sendBye(call.leg),
            .stopMedia,
            .playPrompt(.connectionLost),
            .setIndicator(restIndicator),
            .callLog(.ended(call.record, outcome: .connectionLost, postsTried: call.postsTried,
                            reason: "connection lost: nothing received from the other side")),
        ]
        if case .outgoing = call.leg, configuration.queueCallbackWhenUnreachable {
            actions.append(.queueCallbackRequest(call.record, postsTried: call.postsTried,
                                                 reason: "connection lost during a call"))
            callbackPending = true
        }
        actions.append(.scheduleTimer(.screenTimeout(call.record), after: configuration.unreachableScreenDuration))
        state = .connectionLost(call.record)
        return actions
    }

    private mutating func startRinging(
        _ leg: CallLegID,
        _ caller: Caller,
        _ contact: KnownContact,
        leaving: [CallFlowAction]
    ) -> [CallFlowAction] {
        let record = nextRecord()
        var actions = leaving
        actions += [.playTone(.incomingRing), .playPrompt(.incomingCall(name: contact.name))]
        if let after = contact.autoAnswerAfter {
            actions.append(.playPrompt(.autoAnswerIn(seconds: Self.wholeSecondsRoundedUp(after))))
        }
        actions += [
            .setIndicator(.ringing),
            .callLog(.started(record, direction: .incoming, peer: caller.uri)),
            .scheduleTimer(.ringingTimeout(leg), after: configuration.ringingTimeout),
        ]
        if let after = contact.autoAnswerAfter {
            actions.append(.scheduleTimer(.autoAnswer(leg), after: after))
        }
        if contact.isCentralePost && callbackPending {
            // The centrale calls back: whether or not the client answers, the request has
            // reached a person, who now knows the client wants them (after the call-log
            // record exists, so that the record can point at the request).
            actions.append(.centraleReached(record))
            callbackPending = false
        }
        state = .incomingRinging(
            Incoming(record: record, leg: leg, caller: caller, contact: contact, autoAnswer: contact.autoAnswerAfter != nil)
        )
        return actions
    }

    private mutating func answerIncoming(_ incoming: Incoming, autoAnswerFired: Bool = false) -> [CallFlowAction] {
        // As for outgoing calls: the answer is on record before media starts.
        var actions: [CallFlowAction] = [
            .answer(incoming.leg),
            .callLog(.answered(incoming.record, peer: incoming.caller.uri)),
            .startMedia(incoming.leg),
            .cancelTimer(.ringingTimeout(incoming.leg)),
        ]
        if incoming.autoAnswer && !autoAnswerFired {
            actions.append(.cancelTimer(.autoAnswer(incoming.leg)))
        }
        actions += [
            .stopTone,
            .playPrompt(.connected),
            .setIndicator(.inCall),
        ]
        state = .inCall(Call(record: incoming.record, leg: incoming.leg, peerName: incoming.contact.name, postsTried: []))
        return actions
    }

    private mutating func declineIncoming(_ incoming: Incoming) -> [CallFlowAction] {
        var actions: [CallFlowAction] = [.reject(incoming.leg, .declined)]
        actions += cancelIncomingTimers(incoming, ringingTimerFired: false)
        actions += [
            .stopTone,
            .playPrompt(.callEnded),
            .setIndicator(restIndicator),
            .callLog(.ended(incoming.record, outcome: .declined, postsTried: [], reason: "declined by client")),
            .scheduleTimer(.screenTimeout(incoming.record), after: configuration.endedScreenDuration),
        ]
        state = .ending(incoming.record)
        return actions
    }

    /// Stops ringing without the client having done anything: straight back to rest, no prompt.
    private mutating func missIncoming(
        _ incoming: Incoming,
        reject: RejectReason?,
        reason: String,
        ringingTimerFired: Bool = false
    ) -> [CallFlowAction] {
        var actions: [CallFlowAction] = reject.map { [.reject(incoming.leg, $0)] } ?? []
        actions += cancelIncomingTimers(incoming, ringingTimerFired: ringingTimerFired)
        actions += [
            .stopTone,
            .callLog(.ended(incoming.record, outcome: .missed, postsTried: [], reason: reason)),
        ]
        return actions + enterRest()
    }

    private func cancelIncomingTimers(_ incoming: Incoming, ringingTimerFired: Bool) -> [CallFlowAction] {
        var actions: [CallFlowAction] = []
        if !ringingTimerFired {
            actions.append(.cancelTimer(.ringingTimeout(incoming.leg)))
        }
        if incoming.autoAnswer {
            actions.append(.cancelTimer(.autoAnswer(incoming.leg)))
        }
        return actions
    }

    private func isCurrentLeg(_ leg: CallLegID) -> Bool {
        switch state {
        case .incomingRinging(let incoming): incoming.leg == leg
        case .inCall(let call): call.leg == leg
        case .calling(let attempt): attempt.legs.contains { $0.id == leg }
        case .idle, .fault, .ending, .unreachable, .connectionLost: false
        }
    }

    // MARK: Counters

    private mutating func nextLeg() -> CallLegID {
        lastLegNumber += 1
        return .outgoing(lastLegNumber)
    }

    private mutating func nextRecord() -> CallRecordID {
        lastRecordNumber += 1
        return CallRecordID(lastRecordNumber)
    }

    static func wholeSecondsRoundedUp(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(seconds) + (attoseconds > 0 ? 1 : 0)
    }
}
