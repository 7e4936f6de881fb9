import CallFlow
import Foundation
import Synchronization

/// Where the call flow's state reaches the screen: the real screen (`ScreenService`, drawn
/// by the Screen module) gets every status, and with `--console` one plain line per state
/// change and per spoken prompt goes to standard output, so the demo shows in a terminal
/// what the client sees and hears (the integration tests read those lines too).
final class ConsoleScreen: Sendable {
    private let enabled: Bool
    private let display: ScreenService?
    private let lastPhase = Mutex<CallFlowStatus.Phase?>(nil)
    private let lastCallback = Mutex<CallbackPromise>(.none)

    init(enabled: Bool, display: ScreenService? = nil) {
        self.enabled = enabled
        self.display = display
    }

    func show(status: CallFlowStatus) {
        display?.show(status: status)
        guard enabled else { return }
        let changed = lastPhase.withLock { last in
            defer { last = status.phase }
            return last != status.phase
        }
        if changed { emit("\(Self.clock())  [\(Self.headline(status))]") }
        let callbackChanged = lastCallback.withLock { last in
            defer { last = status.callback }
            return last != status.callback
        }
        if callbackChanged { emit("\(Self.clock())    terugbelverzoek: \(Self.callbackLine(status.callback))") }
    }

    static func callbackLine(_ promise: CallbackPromise) -> String {
        switch promise {
        case .none: "afgehandeld"
        case .trying: "nog niet bevestigd door de centrale — de tablet blijft het proberen"
        case .promised(let since):
            "bevestigd door de centrale om \(Date(timeIntervalSince1970: since.secondsSince1970).formatted(.dateTime.hour(.twoDigits(amPM: .omitted)).minute(.twoDigits).locale(Locale(identifier: "nl_NL"))))"
        }
    }

    /// A prompt is about to be spoken (the screen shows the auto-answer countdown from it).
    func heard(_ prompt: Prompt) {
        display?.heard(prompt)
    }

    func say(_ text: String) {
        guard enabled else { return }
        emit("\(Self.clock())    🔊 \(text)")
    }

    func note(_ text: String) {
        guard enabled else { return }
        emit("\(Self.clock())    \(text)")
    }

    /// One unbuffered write per line, so lines appear at once even when stdout is a pipe.
    private func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func headline(_ status: CallFlowStatus) -> String {
        let peer = status.peerName.map { " \($0)" } ?? ""
        switch status.phase {
        case .idle: return "rust — druk op de knop om de beeldzorgcentrale te bellen"
        case .callingCentrale: return "bellen naar de beeldzorgcentrale…"
        case .ringingOut: return "de centrale gaat over\(peer)…"
        case .incomingRinging: return "\(status.peerName ?? "iemand") belt — druk op de knop om op te nemen"
        case .inCall: return "in gesprek\(peer.isEmpty ? "" : " met\(peer)")"
        case .ending: return "gesprek beëindigd"
        case .unreachable: return "centrale niet bereikbaar"
        case .connectionLost: return "verbinding verbroken — gesprek gestopt"
        case .fault where !status.buttonStuck && !status.networkUp:
            return "geen internet — ik blijf het proberen; de knop belt nog steeds de centrale"
        case .fault: return "storing — de knop belt nog steeds de centrale"
        }
    }

    private static func clock() -> String {
        Date().formatted(.dateTime.hour(.twoDigits(amPM: .omitted)).minute(.twoDigits).second(.twoDigits).locale(Locale(identifier: "nl_NL")))
    }
}
