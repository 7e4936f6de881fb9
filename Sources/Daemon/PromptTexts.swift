import CallFlow
import Devices

/// CallFlow's prompts as keys and values of the translators' prompt file (`prompts/nl.txt`).
enum PromptTexts {
    static func key(for prompt: Prompt) -> String {
        switch prompt {
        case .callingCentrale: PromptCatalog.Key.callingCentrale
        case .stillTrying: PromptCatalog.Key.stillTrying
        case .connected: PromptCatalog.Key.connected
        case .incomingCall: PromptCatalog.Key.incomingCall
        case .autoAnswerIn: PromptCatalog.Key.autoAnswer
        case .callEnded: PromptCatalog.Key.callEnded
        case .centraleUnreachable: PromptCatalog.Key.centraleUnreachable
        case .noNetwork: PromptCatalog.Key.noNetwork
        case .buttonStuck: PromptCatalog.Key.buttonStuck
        case .connectionLost: PromptCatalog.Key.connectionLost
        case .callbackTrying: PromptCatalog.Key.callbackTrying
        case .callbackPromised: PromptCatalog.Key.callbackPromised
        }
    }

    static func values(for prompt: Prompt) -> [String: String] {
        switch prompt {
        case .incomingCall(let name): ["naam": name]
        case .autoAnswerIn(let seconds): ["seconden": "\(seconds)"]
        case .callingCentrale, .stillTrying, .connected, .callEnded, .centraleUnreachable, .noNetwork, .buttonStuck,
             .connectionLost, .callbackTrying, .callbackPromised: [:]
        }
    }
}
