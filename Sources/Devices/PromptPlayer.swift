// Plays spoken prompts and tones through any AudioSink, one at a time, on its own thread.

import Synchronization

/// Plays clips through a sink (the speaker, or a recorder in tests). A new `play` or an
/// `interrupt()` stops the clip that is playing within one frame (20 ms of audio), so the
/// newest feedback always wins and a prompt never delays the next state's prompt.
public final class PromptPlayer: Sendable {
    private let sink: any AudioSink
    private let format: AudioFormat
    /// Bumped by every play and interrupt; a playing clip stops when it changes.
    private let generation = Atomic<UInt64>(0)
    /// One clip at a time on the sink.
    private let serial = Mutex<Void>(())

    public init(sink: any AudioSink, format: AudioFormat = AudioFormat()) {
        precondition(format.channels == 1, "prompts are mono")
        self.sink = sink
        self.format = format
    }

    /// Plays `clip` and returns when it has been handed to the sink completely (true) or
    /// was interrupted or superseded (false). Throws if the sink fails (DeviceError) or the
    /// clip is at another sample rate.
    @discardableResult
    public func play(_ clip: AudioClip) async throws -> Bool {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
            start(clip) { continuation.resume(with: $0) }
        }
    }

    /// Starts `clip` at once (superseding whatever plays) without waiting for it, for
    /// callers that must not block; `completion` gets what `play` would have returned.
    public func start(_ clip: AudioClip, completion: @escaping @Sendable (Result<Bool, any Error>) -> Void = { _ in }) {
        guard clip.sampleRate == format.sampleRate else {
            completion(.failure(DeviceError(.unsupported, device: "prompt player",
                                            detail: "clip is \(clip.sampleRate) Hz, speaker runs at \(format.sampleRate) Hz")))
            return
        }
        let ticket = generation.add(1, ordering: .acquiringAndReleasing).newValue
        DeviceThread.detach { [self] in
            completion(Result { try playBlocking(clip, ticket: ticket) })
        }
    }

    /// Stops whatever is playing (and anything queued behind it).
    public func interrupt() {
        generation.add(1, ordering: .acquiringAndReleasing)
    }

    private func current(_ ticket: UInt64) -> Bool {
        generation.load(ordering: .acquiring) == ticket
    }

    private func playBlocking(_ clip: AudioClip, ticket: UInt64) throws -> Bool {
        try serial.withLock { _ in
            guard current(ticket) else { return false }
            try sink.open(format)
            defer { sink.close() }
            let frame = format.frameSamples
            var offset = 0
            while offset < clip.samples.count {
                guard current(ticket) else { return false }
                var chunk = Array(clip.samples[offset..<min(offset + frame, clip.samples.count)])
                if chunk.count < frame { chunk += repeatElement(0, count: frame - chunk.count) }
                try sink.write(chunk)
                offset += frame
            }
            return true
        }
    }
}
