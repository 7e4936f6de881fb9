/// Cuts a TCP/TLS byte stream into SIP messages by Content-Length (RFC 3261 §18.3), and
/// recognises RFC 5626 §4.4.1 keepalives between messages: a double CRLF "ping" from a flow's
/// client, a single CRLF "pong" from its server.
///
/// A small struct with a private state, in the shape of swift-nio-extras' Content-Length
/// framing, so the TCP channel handler stays a thin loop around `next()`.
public struct SIPStreamFramer: Sendable {
    /// Which end of an RFC 5626 flow we are; it decides how a bare CRLF is read.
    public enum KeepAliveRole: Sendable {
        /// We opened the flow (the tablet): a CRLF from the server is a pong.
        case flowClient
        /// We accepted the flow: CRLFCRLF from the client is a ping (answer with CRLF).
        case flowServer
    }

    public enum Frame: Sendable, Equatable {
        /// The bytes of one complete message, to hand to `SIPMessageParser` with `.stream`.
        case message([UInt8])
        case keepAlivePing
        case keepAlivePong
    }

    private enum State: Sendable {
        /// Between messages.
        case idle
        /// Header section complete; waiting until `total` bytes (head + body) are buffered.
        case body(total: Int)
        /// A framing error: the stream cannot be resynchronised and must be closed.
        case failed(SIPParseError)
    }

    private var state: State = .idle
    private var buffer: [UInt8] = []
    private var readIndex = 0
    private let role: KeepAliveRole
    private let limits: SIPParserLimits

    public init(role: KeepAliveRole, limits: SIPParserLimits = .default) {
        self.role = role
        self.limits = limits
    }

    /// Number of bytes held and not yet returned as a frame.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Whether a message's header block has begun and is not complete yet (what a listener's
    /// header deadline watches); false between messages and while a body is awaited.
    public var isReadingHeader: Bool {
        switch state {
        case .idle: bufferedByteCount > 0
        case .body, .failed: false
        }
    }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        if readIndex > 4096, readIndex * 2 > buffer.count {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, nil when more bytes are needed. Once it throws, it always throws.
    public mutating func next() throws(SIPParseError) -> Frame? {
        while true {
            switch state {
            case .failed(let error):
                throw error
            case .idle:
                guard readIndex < buffer.count else { return nil }
                if buffer[readIndex] == 13 || buffer[readIndex] == 10 {
                    switch keepAlive() {
                    case .needMore: return nil
                    case .frame(let frame): return frame
                    case .skipped: continue
                    }
                }
                guard let total = try scanHead() else { return nil }
                state = .body(total: total)
            case .body(let total):
                guard buffer.count - readIndex >= total else { return nil }
                let frame = Array(buffer[readIndex..<(readIndex + total)])
                readIndex += total
                state = .idle
                return .message(frame)
            }
        }
    }

    private enum KeepAliveOutcome {
        case needMore
        case frame(Frame)
        case skipped
    }

    private mutating func keepAlive() -> KeepAliveOutcome {
        let available = buffer.count - readIndex
        let crlf: [UInt8] = [13, 10]
        func matches(_ pattern: [UInt8], at offset: Int) -> Bool? {
            guard available >= offset + pattern.count else {
                // Partial: do the bytes we have agree with the pattern?
                for i in 0..<(available - offset) where buffer[readIndex + offset + i] != pattern[i] { return false }
                return nil
            }
            for i in 0..<pattern.count where buffer[readIndex + offset + i] != pattern[i] { return false }
            return true
        }
        switch role {
        case .flowClient:
            switch matches(crlf, at: 0) {
            case .some(true):
                readIndex += 2
                return .frame(.keepAlivePong)
            case .none:
                return .needMore
            case .some(false):
                readIndex += 1  // a stray CR or LF
                return .skipped
            }
        case .flowServer:
            switch matches(crlf + crlf, at: 0) {
            case .some(true):
                readIndex += 4
                return .frame(.keepAlivePing)
            case .none:
                return .needMore
            case .some(false):
                // A lone CRLF before a message is allowed and ignored (RFC 3261 §7.5).
                readIndex += matches(crlf, at: 0) == true ? 2 : 1
                return .skipped
            }
        }
    }

    /// Finds the end of the header section and the declared Content-Length; returns the total
    /// frame size, nil if the header section is not complete yet.
    private mutating func scanHead() throws(SIPParseError) -> Int? {
        var i = readIndex
        var lineStart = readIndex
        var contentLength: Int?
        while i < buffer.count {
            if i - readIndex > limits.maxHeaderSectionSize {
                state = .failed(.headerSectionTooLarge)
                throw .headerSectionTooLarge
            }
            if buffer[i] == 10 {
                var lineEnd = i
                if lineEnd > lineStart, buffer[lineEnd - 1] == 13 { lineEnd -= 1 }
                if lineEnd == lineStart {
                    guard let length = contentLength else {
                        state = .failed(.missingContentLength)
                        throw .missingContentLength
                    }
                    let total = i + 1 - readIndex + length
                    if length > limits.maxBodySize || total > limits.maxMessageSize {
                        state = .failed(.bodyTooLarge)
                        throw .bodyTooLarge
                    }
                    return total
                }
                if let length = try contentLengthValue(lineStart..<lineEnd) {
                    if let previous = contentLength, previous != length {
                        state = .failed(.invalidContentLength)
                        throw .invalidContentLength
                    }
                    contentLength = length
                }
                lineStart = i + 1
            }
            i += 1
        }
        if buffer.count - readIndex > limits.maxHeaderSectionSize {
            state = .failed(.headerSectionTooLarge)
            throw .headerSectionTooLarge
        }
        return nil
    }

    /// The value if the line is a Content-Length (or `l`) header.
    private mutating func contentLengthValue(_ range: Range<Int>) throws(SIPParseError) -> Int? {
        guard let colon = buffer[range].firstIndex(of: UInt8(ascii: ":")) else { return nil }
        var nameEnd = colon
        while nameEnd > range.lowerBound, buffer[nameEnd - 1] == 32 || buffer[nameEnd - 1] == 9 { nameEnd -= 1 }
        let name = buffer[range.lowerBound..<nameEnd].map { $0 | 0x20 }  // ASCII lowercase
        guard name == Array("content-length".utf8) || name == [UInt8(ascii: "l")] else { return nil }
        let valueBytes = buffer[(colon + 1)..<range.upperBound].filter { $0 != 32 && $0 != 9 }
        guard !valueBytes.isEmpty, valueBytes.count <= 9, valueBytes.allSatisfy(isDigit) else {
            state = .failed(.invalidContentLength)
            throw .invalidContentLength
        }
        return valueBytes.reduce(0) { $0 * 10 + Int($1 - 48) }
    }
}
