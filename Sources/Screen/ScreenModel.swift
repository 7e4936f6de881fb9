public import CallFlow
public import Devices
public import Foundation

/// What the screen shows, decided from CallFlow's status and a little context (the time,
/// when the client last did something, the auto-answer deadline, the latest video frames).
/// Pure: the same inputs give the same model, so every screen can be rendered at a fixed
/// time for the reference images. All words come from `ScreenTexts`.
public enum ScreenModel: Sendable, Equatable {
    public enum Notice: String, Sendable, Equatable {
        case ended, unreachable, connectionLost, noNetwork, fault, needsService
    }

    /// The clock, the date and what the button does; `note`: the callback request;
    /// `missed`: contacts' calls nobody took, newest first; `dimmed` after a quiet while.
    case idle(clock: String, date: String, sentence: String, note: String?, missed: [String], dimmed: Bool)
    /// Calling the centrale: the spoken sentence, what is happening now, and the step
    /// (0..<`ScreenModel.animationSteps`) of the slow pulse.
    case calling(headline: String, detail: String?, animationStep: Int)
    /// Somebody on the contact list is calling: their name, photo, the spoken sentence and,
    /// with auto-answer, the countdown.
    case incoming(name: String, sentence: String, countdown: String?, photo: ScreenImage?)
    /// The other person's face, a small self view, and who it is.
    case inCall(label: String?, remote: VideoFrame?, selfView: VideoFrame?)
    /// Something the client should know: what happened and what the tablet does next.
    case notice(Notice, headline: String, next: String?)

    /// The daemon cannot start for a configuration fault and stays up only to say so: the
    /// button does nothing, so the client is told to use another telephone.
    public static func needsService(texts: ScreenTexts) -> ScreenModel {
        .notice(.needsService, headline: texts.text(ScreenTexts.Key.needsService),
                next: texts.text(ScreenTexts.Key.needsServiceNext))
    }

    /// One pulse of the calling animation lasts this many steps of 100 ms.
    public static let animationSteps = 30

    /// Everything besides CallFlow's status that decides the picture.
    public struct Context: Sendable {
        public var now: Date
        public var timeZone: TimeZone
        /// The last state change or press; the idle screen dims `dimAfter` later.
        public var lastActivity: Date
        public var dimAfter: Duration?
        /// When auto-answer will pick up (the incoming call's countdown), if it will.
        public var autoAnswerAt: Date?
        public var photo: ScreenImage?
        public var remote: VideoFrame?
        public var selfView: VideoFrame?

        public init(now: Date, timeZone: TimeZone = .current, lastActivity: Date? = nil, dimAfter: Duration? = nil,
                    autoAnswerAt: Date? = nil, photo: ScreenImage? = nil, remote: VideoFrame? = nil,
                    selfView: VideoFrame? = nil) {
            self.now = now
            self.timeZone = timeZone
            self.lastActivity = lastActivity ?? now
            self.dimAfter = dimAfter
            self.autoAnswerAt = autoAnswerAt
            self.photo = photo
            self.remote = remote
            self.selfView = selfView
        }
    }

    public init(status: CallFlowStatus, context: Context, texts: ScreenTexts) {
        typealias K = PromptCatalog.Key
        typealias S = ScreenTexts.Key
        switch status.phase {
        case .idle:
            if !status.networkUp {
                self = .notice(.noNetwork, headline: texts.text(K.noNetwork), next: nil)
                return
            }
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = context.timeZone
            let parts = calendar.dateComponents([.hour, .minute, .weekday, .day, .month, .year], from: context.now)
            let clock = String(format: "%02d:%02d", parts.hour ?? 0, parts.minute ?? 0)
            let date = "\(texts.weekdays[(parts.weekday ?? 1) - 1]) \(parts.day ?? 1) \(texts.months[(parts.month ?? 1) - 1]) \(parts.year ?? 2000)"
            var dimmed = false
            if let dimAfter = context.dimAfter {
                let quiet = context.now.timeIntervalSince(context.lastActivity)
                dimmed = quiet >= Double(dimAfter.components.seconds) + Double(dimAfter.components.attoseconds) / 1e18
            }
            self = .idle(clock: clock, date: date, sentence: texts.text(S.idle),
                         note: Self.callbackNote(status.callback, context: context, texts: texts),
                         missed: status.missedCalls.prefix(Self.missedCallLines).map {
                             Self.missedNote($0, context: context, texts: texts)
                         },
                         dimmed: dimmed)
        case .callingCentrale, .ringingOut:
            let tenths = Int((context.now.timeIntervalSinceReferenceDate * 10).rounded(.down))
            let step = ((tenths % Self.animationSteps) + Self.animationSteps) % Self.animationSteps
            self = .calling(headline: texts.text(K.callingCentrale),
                            detail: status.phase == .ringingOut ? texts.text(S.ringing) : nil, animationStep: step)
        case .incomingRinging:
            let name = status.peerName ?? "?"
            var countdown: String?
            if let at = context.autoAnswerAt {
                let seconds = max(0, Int(at.timeIntervalSince(context.now).rounded(.up)))
                countdown = texts.text(K.autoAnswer, ["seconden": "\(seconds)"])
            }
            self = .incoming(name: name, sentence: texts.text(K.incomingCall, ["naam": name]), countdown: countdown,
                             photo: context.photo)
        case .inCall:
            self = .inCall(label: status.peerName.map { texts.text(S.inCall, ["naam": $0]) },
                           remote: context.remote, selfView: context.selfView)
        case .ending:
            self = .notice(.ended, headline: texts.text(K.callEnded), next: nil)
        case .unreachable:
            // What happens with the callback request, once there is one; else what the client can do.
            self = .notice(.unreachable, headline: texts.text(K.centraleUnreachable),
                           next: Self.callbackNote(status.callback, context: context, texts: texts)
                               ?? texts.text(S.unreachableNext))
        case .connectionLost:
            // What happened, and what the button does now (the same sentence as at rest).
            self = .notice(.connectionLost, headline: texts.text(K.connectionLost), next: texts.text(S.idle))
        case .fault:
            // The call flow's fault is a stuck button or a lost network (or both: the button,
            // which the client can do something about, first).
            if !status.buttonStuck && !status.networkUp {
                self = .notice(.noNetwork, headline: texts.text(K.noNetwork), next: nil)
                return
            }
            self = .notice(.fault, headline: texts.text(K.buttonStuck), next: nil)
        }
    }

    /// The sentence about callback requests: the tablet keeps trying while the centrale has not
    /// acknowledged one; only after it did, "De centrale belt u terug" with since when (hh:mm).
    static func callbackNote(_ promise: CallbackPromise, context: Context, texts: ScreenTexts) -> String? {
        switch promise {
        case .none:
            return nil
        case .trying:
            return texts.text(PromptCatalog.Key.callbackTrying)
        case .promised(let since):
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = context.timeZone
            let parts = calendar.dateComponents([.hour, .minute], from: Date(timeIntervalSince1970: since.secondsSince1970))
            return texts.text(ScreenTexts.Key.callbackPending,
                              ["tijd": String(format: "%02d:%02d", parts.hour ?? 0, parts.minute ?? 0)])
        }
    }

    /// At most this many missed calls are shown (the newest); older ones stay in the call log.
    public static let missedCallLines = 2

    /// "Anna heeft gebeld om 10:02." — with the weekday when it was in the last six days,
    /// else the date ("op 23 november").
    static func missedNote(_ missed: MissedCallNote, context: Context, texts: ScreenTexts) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = context.timeZone
        let at = Date(timeIntervalSince1970: missed.at.secondsSince1970)
        let parts = calendar.dateComponents([.hour, .minute, .weekday, .day, .month], from: at)
        let time = String(format: "%02d:%02d", parts.hour ?? 0, parts.minute ?? 0)
        if calendar.isDate(at, inSameDayAs: context.now) {
            return texts.text(ScreenTexts.Key.missedToday, ["naam": missed.name, "tijd": time])
        }
        let days = calendar.dateComponents([.day], from: calendar.startOfDay(for: at), to: calendar.startOfDay(for: context.now)).day ?? 7
        let day = (1...6).contains(days) ? texts.weekdays[(parts.weekday ?? 1) - 1]
            : "\(parts.day ?? 1) \(texts.months[(parts.month ?? 1) - 1])"
        return texts.text(ScreenTexts.Key.missedEarlier, ["naam": missed.name, "tijd": time, "dag": day])
    }

    /// How often the picture changes by itself in this screen (the clock, the pulse, the
    /// countdown, video): the screen service redraws at least this often.
    public var refreshInterval: Duration {
        switch self {
        case .idle: .seconds(1)
        case .calling: .milliseconds(100)
        case .incoming: .milliseconds(250)
        case .inCall: .milliseconds(40)
        case .notice: .seconds(1)
        }
    }
}
