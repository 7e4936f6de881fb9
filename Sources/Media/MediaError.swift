/// Why a media operation failed. Each case names the library or layer and carries its own
/// error text, so logs say which C call failed and why.
public enum MediaError: Error, Sendable, Equatable, CustomStringConvertible {
    case opus(String)
    case vpx(String)
    case srtp(String)
    case rtp(String)
    case socket(String)
    case echoCanceller(String)
    case configuration(String)

    public var description: String {
        switch self {
        case .opus(let detail): "opus: \(detail)"
        case .vpx(let detail): "vpx: \(detail)"
        case .srtp(let detail): "srtp: \(detail)"
        case .rtp(let detail): "rtp: \(detail)"
        case .socket(let detail): "socket: \(detail)"
        case .echoCanceller(let detail): "echo canceller: \(detail)"
        case .configuration(let detail): "configuration: \(detail)"
        }
    }
}
