// The public vocabulary of the call flow: configuration, events in, actions out, status.
// Everything here is plain data so the machine stays pure and the I/O layer (Daemon) can
// execute actions in one switch. See docs/CALLFLOW.md for what each state does with each event.

/// How the tablet reaches the centrale and how long it waits for people.
public struct CallFlowConfiguration: Sendable, Equatable, Codable {
    /// The centrale's posts, in hunt order (ring-all uses the same order for its INVITEs).
    public var posts: [CentralePost]
    public var policy: RingPolicy
    /// From the press to "unreachable": after this everything is cancelled and a callback is queued.
    public var overallDeadline: Duration
    /// "Even geduld…" is spoken this often while trying.
    public var reassuranceInterval: Duration
    /// An incoming call nobody answers stops ringing after this.
    public var ringingTimeout: Duration
    public var queueCallbackWhenUnreachable: Bool
    /// How long the "unreachable" screen shows before the tablet is idle again.
    public var unreachableScreenDuration: Duration
    /// How long the "call ended" screen shows before the tablet is idle again.
    public var endedScreenDuration: Duration

    public init(
        posts: [CentralePost],
        policy: RingPolicy = .ringAll,
        overallDeadline: Duration = .seconds(60),
        reassuranceInterval: Duration = .seconds(15),
        ringingTimeout: Duration = .seconds(45),
        queueCallbackWhenUnreachable: Bool = true,
        unreachableScreenDuration: Duration = .seconds(10),
        endedScreenDuration: Duration = .seconds(5)
    ) {
        self.posts = posts
        self.policy = policy
        self.overallDeadline = overallDeadline
        self.reassuranceInterval = reassuranceInterval
        self.ringingTimeout = ringingTimeout
        self.queueCallbackWhenUnreachable = queueCallbackWhenUnreachable
        self.unreachableScreenDuration = unreachableScreenDuration
        self.endedScreenDuration = endedScreenDuration
    }
}

/// Ring every live post at once (first answer wins) or one after another.
public enum RingPolicy: Sendable, Equatable, Hashable, Codable {
    case ringAll
    case hunt(perPostTimeout: Duration)
}

/// One staffed post of the centrale (or one address a proxy distributes).
public struct CentralePost: Sendable, Hashable, Codable {
    /// Stable name used in logs, liveness reports and the call log ("post-1", "utrecht-3").
    public var id: String
    /// SIP URI the INVITE goes to.
    public var uri: String

    public init(id: String, uri: String) {
        self.id = id
        self.uri = uri
    }
}

/// One INVITE dialog (attempt). Outgoing IDs are allocated by CallFlow (a counter);
/// incoming IDs by the I/O layer when it reports `incomingCall`.
public enum CallLegID: Hashable, Sendable, Codable, CustomStringConvertible {
    case outgoing(UInt64)
    case incoming(UInt64)

    public var description: String {
        switch self {
        case .outgoing(let n): "out-\(n)"
        case .incoming(let n): "in-\(n)"
        }
    }
}

/// Who is calling, as the I/O layer determined it (From / trusted P-Asserted-Identity,
/// looked up in the contact list).
public struct Caller: Sendable, Equatable, Codable {
    public var uri: String
    public var displayName: String?
    /// nil: not on the client's contact list; the call is rejected and never shown.
    public var contact: KnownContact?

    public init(uri: String, displayName: String? = nil, contact: KnownContact? = nil) {
        self.uri = uri
        self.displayName = displayName
        self.contact = contact
    }
}

/// A network contact allowed to call the client.
public struct KnownContact: Sendable, Equatable, Codable {
    /// What the client hears and sees ("Marieke").
    public var name: String
    /// Arranged check-ins: answer by itself after this, with a spoken countdown. nil = never.
    public var autoAnswerAfter: Duration?
    /// One of the centrale's own posts (calling back): its call clears callback requests.
    public var isCentralePost: Bool

    public init(name: String, autoAnswerAfter: Duration? = nil, isCentralePost: Bool = false) {
        self.name = name
        self.autoAnswerAfter = autoAnswerAfter
        self.isCentralePost = isCentralePost
    }
}

/// A device that stopped working during a call.
public enum MediaFailure: String, Sendable, Equatable, Codable {
    /// Video stops; the audio goes on.
    case camera
    case microphone
    case speaker
    /// RTP/SRTP no longer flows (no packets, socket error): the call is over.
    case transport
}

/// Everything that can happen to the call flow. The I/O layer reports these.
public enum CallFlowEvent: Sendable, Equatable {
    case shortPress
    case longPress
    /// The button has been held far too long (Devices reports it); presses are ignored until released.
    case buttonStuck
    case buttonReleased
    /// 180 or 183 on an outgoing leg (100 is ignored).
    case provisional(CallLegID, code: Int)
    /// 2xx on an outgoing leg. The SIP layer ACKs it; CallFlow decides whether to keep or BYE it.
    case answered(CallLegID)
    /// Final failure of a leg: 3xx–6xx, transaction timeout, transport error, or a dialog that died.
    case failed(CallLegID, code: Int?, reason: String)
    case incomingCall(CallLegID, Caller)
    /// The caller CANCELled before we answered.
    case remoteCancelled(CallLegID)
    /// BYE from the other side of an established call.
    case remoteHungUp(CallLegID)
    case registration(up: Bool)
    case network(up: Bool)
    /// Liveness from keepalives/OPTIONS: dead posts are skipped while any post is alive.
    case postAvailability(postID: String, alive: Bool)
    case timerFired(CallFlowTimer)
    case mediaFailed(MediaFailure)
    /// Nothing (no RTP, no RTCP) has come from the other side of this leg's call for the
    /// configured liveness time: the post or contact is gone without a BYE (killed, power cut,
    /// a broken NAT, a lost BYE). Reported once per media session by the I/O layer.
    case connectionLost(CallLegID)
    /// Whether callback requests are outstanding (not yet cleared), from the I/O layer's
    /// `CallbackDelivery`, after a restart too.
    case callbackOutstanding(Bool)
}

/// Why an incoming call is turned away; `sipStatusCode` is what the SIP layer answers.
public enum RejectReason: String, Sendable, Equatable, Codable {
    case notAContact
    case busy
    case declined
    /// Rang until `ringingTimeout` without anybody answering.
    case noAnswer

    public var sipStatusCode: Int {
        switch self {
        case .notAContact: 403
        case .busy: 486
        case .declined: 603
        case .noAnswer: 480
        }
    }
}

/// Spoken Dutch prompts. The texts live with the audio layer (one translatable file).
public enum Prompt: Sendable, Equatable, Hashable, Codable {
    /// "Ik bel de beeldzorgcentrale."
    case callingCentrale
    /// "Even geduld, ik probeer het nog een keer."
    case stillTrying
    /// "U bent verbonden."
    case connected
    /// "{naam} belt u. Druk op de knop om op te nemen."
    case incomingCall(name: String)
    /// "Ik neem over {n} seconden vanzelf op."
    case autoAnswerIn(seconds: Int)
    /// "Het gesprek is beëindigd."
    case callEnded
    /// "De beeldzorgcentrale is nu niet bereikbaar." (no promise: see the two below)
    case centraleUnreachable
    /// "Ik blijf proberen de centrale te bereiken." (a callback request not yet acknowledged)
    case callbackTrying
    /// "De centrale weet dat u hebt gebeld. De centrale belt u terug." (acknowledged)
    case callbackPromised
    /// "Er is geen internet. Ik blijf het proberen."
    case noNetwork
    /// "De knop blijft ingedrukt. Laat de knop los."
    case buttonStuck
    /// "De verbinding is verbroken." (nothing came from the other side any more)
    case connectionLost
}

public enum Tone: String, Sendable, Equatable, Codable {
    case ringback
    case incomingRing
    /// A short blip: "I heard your press, nothing changes".
    case pressAck
}

/// What the LED / status light shows.
public enum Indicator: String, Sendable, Equatable, Codable {
    case idle
    case calling
    case ringing
    case inCall
    case fault
    case unreachable
}

/// Identifies one call-log record (one attempt, outgoing or incoming). A counter CallFlow owns.
public struct CallRecordID: Sendable, Hashable, Codable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "call-\(rawValue)" }
}

public enum CallDirection: String, Sendable, Equatable, Codable {
    case outgoing
    case incoming
}

public enum CallOutcome: String, Sendable, Equatable, Codable {
    /// Talked, then somebody hung up (or the line dropped).
    case completed
    /// The client cancelled the attempt before anyone answered.
    case cancelled
    /// Nobody at the centrale could be reached.
    case unreachable
    /// An incoming call that stopped ringing unanswered (caller cancelled or timeout).
    case missed
    /// The client declined an incoming call with a long press.
    case declined
    /// Caller not on the contact list.
    case rejectedNotAContact
    /// Incoming call while the tablet was busy.
    case rejectedBusy
    /// Talked, then nothing came from the other side any more (no RTP, no RTCP): the other
    /// side vanished without hanging up.
    case connectionLost
}

/// A call-log write. The I/O layer adds the wall-clock time.
public enum CallLogEvent: Sendable, Equatable {
    /// peer: "centrale" for outgoing attempts; the caller's URI for incoming calls.
    case started(CallRecordID, direction: CallDirection, peer: String)
    /// peer: the post id that answered, or the caller's URI.
    case answered(CallRecordID, peer: String)
    case ended(CallRecordID, outcome: CallOutcome, postsTried: [String], reason: String?)
}

/// Timers CallFlow asks for. Each carries the record or leg it belongs to, so a timer that
/// fires after its state is gone is recognised as stale and ignored.
public enum CallFlowTimer: Sendable, Hashable {
    /// From the press: give up and go to "unreachable".
    case overallDeadline(CallRecordID)
    /// Every `reassuranceInterval` while trying.
    case reassurance(CallRecordID)
    /// Hunt: this post has rung long enough.
    case postRingTimeout(CallLegID)
    /// Incoming call rang long enough.
    case ringingTimeout(CallLegID)
    /// Arranged check-in: answer now.
    case autoAnswer(CallLegID)
    /// The "ended", "unreachable" or "connection lost" screen has been shown long enough.
    case screenTimeout(CallRecordID)
}

/// What the I/O layer must do, in order.
public enum CallFlowAction: Sendable, Equatable {
    case sendInvite(CallLegID, CentralePost)
    case cancelInvite(CallLegID)
    case answer(CallLegID)
    case reject(CallLegID, RejectReason)
    /// BYE an established dialog (also a 2xx that arrived for a leg we no longer want).
    case sendBye(CallLegID)
    /// Open camera and microphone and start RTP for this leg's negotiated session.
    case startMedia(CallLegID)
    /// Close camera and microphone; stop RTP.
    case stopMedia
    /// Camera gone: stop sending video, keep audio.
    case stopVideo
    case playPrompt(Prompt)
    case playTone(Tone)
    case stopTone
    case setIndicator(Indicator)
    case callLog(CallLogEvent)
    /// Store a callback request for this attempt (and its posts) and deliver it to the
    /// centrale until acknowledged (`CallbackDelivery`); the organisation's server gets it too.
    case queueCallbackRequest(CallRecordID, postsTried: [String], reason: String)
    /// The centrale was reached (a post answered the client, or a post is calling the
    /// tablet): pending callback requests are done; this record is the call that did it.
    case centraleReached(CallRecordID)
    case scheduleTimer(CallFlowTimer, after: Duration)
    case cancelTimer(CallFlowTimer)
}

/// What `beeldzorgctl status` shows.
public struct CallFlowStatus: Sendable, Equatable, Codable {
    public enum Phase: String, Sendable, Equatable, Codable {
        case idle
        case callingCentrale
        case ringingOut
        case incomingRinging
        case inCall
        case ending
        case unreachable
        /// The call ended because nothing came from the other side any more.
        case connectionLost
        case fault
    }

    public var phase: Phase
    /// The contact's name, or the post id once a post answered.
    public var peerName: String?
    public var legsInFlight: [CallLegID]
    public var callbackPending: Bool
    /// What the client is told about callback requests (set by the I/O layer from
    /// `CallbackDelivery`; CallFlow itself leaves it `.none`).
    public var callback: CallbackPromise
    public var networkUp: Bool
    public var registered: Bool
    public var buttonStuck: Bool
    /// Contacts whose call nobody took and who have not been in a call with the client since,
    /// newest first (set by the I/O layer from the call log, which owns them; CallFlow itself
    /// leaves it empty). Shown at rest; a press still calls the centrale at once.
    public var missedCalls: [MissedCallNote]

    public init(
        phase: Phase,
        peerName: String? = nil,
        legsInFlight: [CallLegID] = [],
        callbackPending: Bool = false,
        callback: CallbackPromise = .none,
        networkUp: Bool = true,
        registered: Bool = false,
        buttonStuck: Bool = false,
        missedCalls: [MissedCallNote] = []
    ) {
        self.phase = phase
        self.peerName = peerName
        self.legsInFlight = legsInFlight
        self.callbackPending = callbackPending
        self.callback = callback
        self.networkUp = networkUp
        self.registered = registered
        self.buttonStuck = buttonStuck
        self.missedCalls = missedCalls
    }
}

/// "Anna heeft gebeld om 10:02": who called and when it rang.
public struct MissedCallNote: Sendable, Equatable, Hashable, Codable {
    public var name: String
    public var at: WallTime

    public init(name: String, at: WallTime) {
        self.name = name
        self.at = at
    }
}
