import Devices
import Logging
import ServiceLifecycle

/// Runs the call controller's loop for the lifetime of the service group.
struct ControllerService: Service {
    let controller: CallController

    func run() async throws {
        await withGracefulShutdownHandler {
            await controller.run()
        } onGracefulShutdown: {
            controller.finish()
        }
    }
}

/// Feeds one button source into the controller; stops the source on shutdown.
struct ButtonService: Service {
    let source: any ButtonSource
    let sink: AsyncStream<ControllerInput>.Continuation
    let logger: Logger

    func run() async throws {
        let events = source.events()
        await withGracefulShutdownHandler {
            for await event in events {
                logger.info("button", metadata: ["event": "\(event.rawValue)"])
                sink.yield(.button(event))
            }
        } onGracefulShutdown: {
            source.stop()
        }
        // A source that ends by itself (end of standard input) leaves the tablet without a
        // button, not without a daemon: incoming calls and the control socket go on.
        if !Task.isShuttingDownGracefully {
            logger.warning("button source ended; waiting for shutdown")
            try? await gracefulShutdown()
        }
    }
}

/// Asks the controller's loop to send `WATCHDOG=1` at half of systemd's `WatchdogSec=`.
struct WatchdogService: Service {
    let interval: Duration
    let sink: AsyncStream<ControllerInput>.Continuation

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    sink.yield(.watchdogTick)
                    try await Task.sleep(for: interval)
                }
            }
        } catch is CancellationError {
            // Shutting down: the watchdog stops with the daemon.
        }
    }
}
