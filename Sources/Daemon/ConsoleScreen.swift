import CallFlow
import Foundation
import Synchronization

/// The screen's stand-in until the DRM screen lands (issue 9): one plain line per state
/// change and per spoken prompt, on standard output, so the demo shows what the client sees
/// and hears. Off unless `--console` is given.
final class ConsoleScreen: Sendable {
    private let enabled: Bool
    private let lastPhase = Mutex<CallFlowStatus.Phase?>(nil)

    init(enabled: Bool) {
        self.enabled = enabled
    }

    func show(status: CallFlowStatus) {
        guard enabled else { return }
        let changed = lastPhase.withLock { last in
            defer { last = status.phase }
            return last != status.phase
        }
        guard changed else { return }
        emit("\(Self.clock())  [\(Self.headline(status))]")
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
        case .unreachable: return "centrale niet bereikbaar — terugbelverzoek verstuurd"
        case .fault: return "storing — de knop belt nog steeds de centrale"
        }
    }

    private static func clock() -> String {
        Date().formatted(.dateTime.hour(.twoDigits(amPM: .omitted)).minute(.twoDigits).second(.twoDigits).locale(Locale(identifier: "nl_NL")))
    }
}
